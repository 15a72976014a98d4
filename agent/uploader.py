"""Drain the spool's outbox: upload each signed batch, delete it only once a collector acknowledged.

Collectors are tried in order (mirrors): a batch goes to the first that answers, and the one that
last worked is tried first next time. Transient failures (unreachable, 5xx, timeouts) are retried
with jittered exponential backoff; a 4xx refusal is final for those bytes, so the batch is moved to
``rejected/`` for a human instead of being re-sent forever. Re-sending an acknowledged batch is
harmless: the collector answers "duplicate".

Each acknowledgement carries the collector's signed receipt. With a pinned ``collector_key`` the
receipt must verify (right key, right batch, right payload hash) before the batch leaves the outbox;
a receipt that does not is reported and the batch kept (the next mirror is tried). Receipts are kept
in ``<spool>/receipts/<batch_id>.json`` as the agent's evidence that its data was accepted.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from protocol import (
    RemoteProtocolError,
    SignedBatch,
    SigningKey,
    canonical_decode,
    check_receipt,
)

from .collector_client import CollectorClient
from .errors import RejectedError, UploadError
from .socks5 import make_session
from .spool import OutboxItem, Spool, write_atomically

#: 4xx answers that a later attempt can cure (the collector forgot us; it is busy).
_RETRYABLE_CODES = frozenset(
    {"unknown_agent", "too_many_requests", "rate_limited", "request_timeout"}
)


@dataclass
class UploadReport:
    batches: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    left: int = 0
    bytes_sent: int = 0
    collector: str | None = None  # the URL that took the last batch
    errors: list[str] = field(default_factory=list)


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Full-jitter exponential backoff: uniform in [base, min(cap, base * 2**attempt)]."""
    high = min(cap, base * 2**attempt)
    return (rng or random).uniform(min(base, high), high)


class Uploader:
    def __init__(
        self,
        spool: Spool,
        key: SigningKey,
        collector_urls: Sequence[str],
        *,
        proxy: str | None = None,
        attempts: int = 3,
        base_delay: float = 0.5,
        max_delay: float = 30.0,
        collector_key: bytes | None = None,
    ) -> None:
        if not collector_urls:
            raise ValueError("at least one collector URL is needed")
        self.spool, self.key = spool, key
        self.urls = list(collector_urls)
        self.proxy = proxy
        self.attempts, self.base_delay, self.max_delay = attempts, base_delay, max_delay
        self.collector_key = collector_key  # pinned receipt key, or None to keep receipts unchecked

    def _prefer(self, url: str) -> None:
        self.urls.remove(url)
        self.urls.insert(0, url)

    async def _upload_registering(
        self, client: CollectorClient, item: OutboxItem
    ) -> dict[str, Any]:
        try:
            return await client.upload(item.signed)
        except RejectedError as exc:
            if exc.code != "unknown_agent":
                raise
        await client.register(self.key)  # first contact with this collector, or it lost us
        return await client.upload(item.signed)

    async def _send(
        self, clients: list[CollectorClient], item: OutboxItem, report: UploadReport
    ) -> str:
        """Try every collector for one batch, with backoff between rounds.

        Returns "ok" (acknowledged), "rejected" (refused for good) or "unreachable".
        """
        for attempt in range(self.attempts):
            problems = []
            for client in list(clients):
                try:
                    answer = await self._upload_registering(client, item)
                except RejectedError as exc:
                    if exc.code in _RETRYABLE_CODES or exc.status in (408, 429):
                        problems.append(str(exc))
                        continue
                    report.errors.append(str(exc))
                    report.rejected += 1
                    self.spool.reject(item)
                    return "rejected"
                except UploadError as exc:
                    problems.append(str(exc))
                    continue
                problem = keep_receipt(self.spool, item.signed, answer, self.collector_key)
                if problem:  # stored there, but unproven: keep the batch, try the next mirror
                    problems.append(f"{client.base_url}: {problem}")
                    continue
                self.spool.acknowledge(item)
                report.batches += 1
                report.stored += int(answer.get("stored", 0))
                report.duplicates += int(answer.get("duplicates", 0))
                report.bytes_sent += len(item.signed.payload)
                report.collector = client.base_url
                if clients[0] is not client:
                    clients.remove(client)
                    clients.insert(0, client)
                    self._prefer(client.base_url)
                return "ok"
            if attempt + 1 == self.attempts:
                report.errors.extend(problems)
                break
            await asyncio.sleep(backoff_delay(attempt, self.base_delay, self.max_delay))
        return "unreachable"

    async def drain(self, batch_size: int = 100) -> UploadReport:
        """Pack what is pending, then upload every outbox batch; stop at the first undeliverable one."""
        report = UploadReport()
        self.spool.pack(self.key, batch_size)
        async with make_session(self.proxy) as session:
            clients = [CollectorClient(url, session) for url in self.urls]
            for item in list(self.spool.outbox_items()):
                if await self._send(clients, item, report) == "unreachable":
                    break  # nobody reachable: the rest would fail the same way; try later
        report.left = self.spool.counts()["outbox"]
        return report


async def drain(
    spool: Spool,
    key: SigningKey,
    collector_url: str | Sequence[str],
    *,
    proxy: str | None = None,
    attempts: int = 3,
    base_delay: float = 0.5,
    collector_key: bytes | None = None,
) -> UploadReport:
    """Upload everything in the spool once (the ``once`` and ``upload`` commands)."""
    urls = [collector_url] if isinstance(collector_url, str) else list(collector_url)
    uploader = Uploader(
        spool,
        key,
        urls,
        proxy=proxy,
        attempts=attempts,
        base_delay=base_delay,
        collector_key=collector_key,
    )
    return await uploader.drain()


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
