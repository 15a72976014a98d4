"""Drain the spool's outbox: upload each signed batch, delete it only once the collector acknowledged.

Each acknowledgement carries the collector's signed receipt. With a pinned ``collector_key`` the receipt
must verify (right key, right batch, right payload hash) before the batch leaves the outbox; a receipt
that does not is reported and the batch kept (re-sending is harmless). Receipts are kept in
``<spool>/receipts/<batch_id>.json`` as the agent's evidence that its data was accepted.
"""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from protocol import (
    RemoteProtocolError,
    SignedBatch,
    SigningKey,
    canonical_decode,
    check_receipt,
)

from .collector_client import CollectorClient
from .errors import RejectedError, UploadError
from .spool import Spool, write_atomically


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
    collector_key: bytes | None = None,
) -> UploadReport:
    """Upload every outbox batch, retrying transient failures with jittered exponential backoff."""
    report = UploadReport()
    spool.pack(key)
    async with aiohttp.ClientSession() as session:
        client = CollectorClient(collector_url, session)
        for item in list(spool.outbox_items()):
            for attempt in range(attempts):
                failure: UploadError | None = None
                try:
                    answer = await client.upload(item.signed)
                except RejectedError as exc:
                    if exc.code == "unknown_agent" and attempt + 1 < attempts:
                        await client.register(key)  # first contact, or the collector lost us
                        continue
                    if exc.status != 429:
                        report.errors.append(str(exc))
                        break  # retrying the same bytes cannot help; keep them for a human
                    failure = exc  # rate limited: worth another try later, like a network error
                except UploadError as exc:
                    failure = exc
                if failure is not None:
                    if attempt + 1 == attempts:
                        report.errors.append(str(failure))
                        break  # the batch waits in the outbox for the next run
                    await asyncio.sleep(base_delay * 2**attempt * random.uniform(0.5, 1.5))
                    continue
                problem = keep_receipt(spool, item.signed, answer, collector_key)
                if problem:
                    report.errors.append(problem)
                    break
                spool.acknowledge(item)
                report.batches += 1
                report.stored += int(answer.get("stored", 0))
                report.duplicates += int(answer.get("duplicates", 0))
                break
    report.left = spool.counts()["outbox"]
    return report


def keep_receipt(
    spool: Spool, signed: SignedBatch, answer: dict[str, Any], pinned: bytes | None
) -> str | None:
    """Check (when a key is pinned) and store the receipt; return a problem, or None if all is well."""
    receipt = answer.get("receipt")
    if receipt is None:
        return None if pinned is None else "collector answered without a receipt; batch kept"
    if pinned is not None:
        batch_id = str(canonical_decode(signed.payload)["batch_id"])
        try:
            check_receipt(receipt, pinned, batch_id=batch_id, payload_sha256=signed.payload_sha256)
        except RemoteProtocolError as exc:
            return f"receipt does not verify ({exc}); batch kept"
    folder = spool.root / "receipts"
    folder.mkdir(exist_ok=True)
    name = str(receipt.get("batch_id", "unknown")) if isinstance(receipt, dict) else "unknown"
    if len(name) == 32 and name.isalnum():
        write_atomically(folder / f"{name}.json", json.dumps(receipt, sort_keys=True).encode())
    return None
