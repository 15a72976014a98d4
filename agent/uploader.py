"""Drain the spool's outbox: upload each signed batch, delete it only once the collector acknowledged."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field

import aiohttp

from protocol import SigningKey

from .collector_client import CollectorClient
from .errors import RejectedError, UploadError
from .spool import Spool


@dataclass
class UploadReport:
    batches: int = 0
    stored: int = 0
    duplicates: int = 0
    left: int = 0
    errors: list[str] = field(default_factory=list)


async def drain(
    spool: Spool,
    key: SigningKey,
    collector_url: str,
    *,
    attempts: int = 3,
    base_delay: float = 0.5,
) -> UploadReport:
    """Upload every outbox batch, retrying transient failures with jittered exponential backoff."""
    report = UploadReport()
    spool.pack(key)
    async with aiohttp.ClientSession() as session:
        client = CollectorClient(collector_url, session)
        for item in list(spool.outbox_items()):
            for attempt in range(attempts):
                try:
                    answer = await client.upload(item.signed)
                except RejectedError as exc:
                    if exc.code == "unknown_agent" and attempt + 1 < attempts:
                        await client.register(key)  # first contact, or the collector lost us
                        continue
                    report.errors.append(str(exc))
                    break  # retrying the same bytes cannot help; keep them for a human to look at
                except UploadError as exc:
                    if attempt + 1 == attempts:
                        report.errors.append(str(exc))
                        break
                    await asyncio.sleep(base_delay * 2**attempt * random.uniform(0.5, 1.5))
                    continue
                spool.acknowledge(item)
                report.batches += 1
                report.stored += int(answer.get("stored", 0))
                report.duplicates += int(answer.get("duplicates", 0))
                break
    report.left = spool.counts()["outbox"]
    return report
