"""Virtual agents: a real Ed25519 key, a network, a jittered schedule, a spool and an uploader.

Each round an agent measures its whole test list and appends one signed batch to its spool, as
``vantage agent run`` does; the uploader sends spooled batches oldest first and deletes one only when
the collector acknowledged it with a receipt signed by the pinned collector key. A connection error, a
5xx or a 429 keeps the batch and backs off (1, 2, 4 ... up to 30 simulated minutes); re-sending a
batch the collector already stored is harmless (it answers ``duplicate`` with a receipt).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import aiohttp

from protocol import (
    Batch,
    NetworkContext,
    SigningKey,
    Target,
    check_receipt,
    make_registration,
    new_uid,
    sign_batch,
    utc_now,
)

from .audit import Ledger, Pending
from .events import Event, effect_at
from .world import DailyNoise, measure

MSGPACK = {"Content-Type": "application/msgpack"}
MAX_BACKOFF = timedelta(minutes=30)
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=60)


@dataclass
class VirtualAgent:
    key: SigningKey
    network: NetworkContext
    targets: tuple[Target, ...]
    rng: random.Random
    next_round: datetime
    round_every: timedelta
    noise: DailyNoise
    spool: deque[Pending] = field(default_factory=deque)
    upload_at: datetime | None = None
    backoff: timedelta = timedelta(minutes=1)

    @property
    def agent_id(self) -> str:
        return self.key.agent_id

    def run_round(self, events: list[Event], ledger: Ledger) -> None:
        """Measure every target at (about) ``next_round`` and spool the signed batch."""
        at = self.next_round
        items = []
        for target in self.targets:
            at += timedelta(seconds=self.rng.uniform(0.5, 3.0))
            effect = effect_at(events, self.network, target, at)
            if effect == "ok" and self.rng.random() < self.noise.rate(at):
                effect = "noise"
            items.append(measure(self.rng, self.agent_id, at, self.network, target, effect))
        batch = Batch(new_uid(), self.agent_id, at, tuple(items))
        signed = sign_batch(self.key, batch)
        pending = Pending(batch.batch_id, signed.to_bytes(), signed.payload_sha256, len(items))
        ledger.generated[pending.batch_id] = pending.count
        self.spool.append(pending)
        if self.upload_at is None:
            self.upload_at = at + timedelta(seconds=self.rng.uniform(5, 120))
        jitter = self.rng.uniform(-0.1, 0.1) * self.round_every
        self.next_round += self.round_every + jitter

    def failed(self, now: datetime) -> None:
        self.upload_at = now + self.backoff
        self.backoff = min(self.backoff * 2, MAX_BACKOFF)

    def drained(self) -> None:
        self.upload_at = None
        self.backoff = timedelta(minutes=1)


@dataclass
class UploadStats:
    latencies: list[float] = field(default_factory=list)  # seconds, acknowledged uploads only
    failures: Counter[str] = field(default_factory=Counter)  # retried: connection errors, 5xx, 429
    refused: Counter[str] = field(default_factory=Counter)  # 4xx: the batch is dropped (a bug)
    measurements: int = 0
    batches: int = 0

    def summary(self, elapsed: float | None = None) -> dict[str, object]:
        out: dict[str, object] = {
            "batches": self.batches,
            "measurements": self.measurements,
            "latency_ms": percentiles(self.latencies),
            "retried_failures": dict(self.failures),
            "refused": dict(self.refused),
        }
        if elapsed:
            out["elapsed_s"] = round(elapsed, 2)
            out["batches_per_s"] = round(self.batches / elapsed, 1)
            out["measurements_per_s"] = round(self.measurements / elapsed, 1)
        return out


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "p99": None, "max": None}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)

    return {"p50": at(0.50), "p95": at(0.95), "p99": at(0.99), "max": at(1.0)}


@dataclass
class Uploader:
    session: aiohttp.ClientSession
    url: Callable[[], str]
    collector_key: bytes
    ledger: Ledger
    stats: UploadStats = field(default_factory=UploadStats)
    in_flight: int = 0

    async def send(self, pending: Pending) -> str:
        """One upload: "ok" (acknowledged, receipt checked), "retry" or "refused"."""
        started = time.perf_counter()
        self.in_flight += 1
        try:
            async with self.session.post(
                f"{self.url()}/api/v1/batches", data=pending.body, headers=MSGPACK
            ) as response:
                text = await response.text()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.stats.failures[type(exc).__name__] += 1
            return "retry"
        finally:
            self.in_flight -= 1
        elapsed = time.perf_counter() - started
        if status == 200:
            answer = json.loads(text)
            check_receipt(
                answer["receipt"],
                self.collector_key,
                batch_id=pending.batch_id,
                payload_sha256=pending.sha256,
            )
            self.ledger.acknowledge(pending, answer)
            self.stats.latencies.append(elapsed)
            self.stats.batches += 1
            self.stats.measurements += pending.count
            return "ok"
        if status == 429 or status >= 500:
            self.stats.failures[f"http {status}"] += 1
            return "retry"
        self.stats.refused[f"http {status}: {text[:200]}"] += 1
        return "refused"

    async def drain(self, agent: VirtualAgent, now: datetime) -> None:
        while agent.spool:
            outcome = await self.send(agent.spool[0])
            if outcome == "retry":
                agent.failed(now)
                return
            agent.spool.popleft()  # acknowledged, or refused for good (counted as an error)
        agent.drained()


async def register(session: aiohttp.ClientSession, url: str, keys: list[SigningKey]) -> None:
    """POST each key to /api/v1/agents, as ``vantage agent register`` does."""
    for key in keys:
        body = json.dumps(make_registration(key, utc_now())).encode()
        async with session.post(
            f"{url}/api/v1/agents", data=body, headers={"Content-Type": "application/json"}
        ) as response:
            if response.status not in (200, 201):
                raise RuntimeError(f"registration refused: {await response.text()}")


async def collector_key(session: aiohttp.ClientSession, url: str) -> bytes:
    import base64

    async with session.get(f"{url}/api/v1/collector-key") as response:
        response.raise_for_status()
        return base64.b64decode((await response.json())["public_key"])


def new_session(limit: int = 100) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=limit), timeout=REQUEST_TIMEOUT
    )


async def bounded(jobs: Sequence[Callable[[], Awaitable[None]]], concurrency: int) -> None:
    """Run coroutine factories with at most ``concurrency`` in flight."""
    semaphore = asyncio.Semaphore(concurrency)

    async def one(job: Callable[[], Awaitable[None]]) -> None:
        async with semaphore:
            await job()

    await asyncio.gather(*(one(job) for job in jobs))
