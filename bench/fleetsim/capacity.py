"""Real-time load: the largest fleet one collector process serves at p99 < 200 ms, and a burst.

A fleet of N agents at a 5-minute round sends N/300 uploads a second. Each ramp step offers that rate
for ``seconds`` of real time as an open loop (Poisson arrivals: an upload starts when it is due, not
when the previous one finished, as independent volunteers do), each upload a fresh signed batch of one
round of the test list from a distinct registered agent. A step passes when every upload is
acknowledged, p99 latency is under the budget and the collector kept up (the last answer came less
than a second after the last arrival: no queue built up). The
ramp multiplies N until a step fails, then bisects between the last pass and the first failure.

Bodies are signed before a step starts, so the load generator's own CPU is not on the clock; it still
shares this machine's cores with the collector, which makes the figure a floor.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import aiohttp

from protocol import Batch, NetworkContext, SigningKey, new_uid, sign_batch, utc_now

from .agents import Uploader, UploadStats, percentiles, register
from .audit import Ledger, Pending
from .collector import CollectorProcess, RssSampler
from .world import DailyNoise, measure, networks, test_list

ROUND_SECONDS = 300.0
P99_BUDGET_MS = 200.0


@dataclass
class AgentPool:
    """Registered agents, reused across steps; grown (and registered) on demand."""

    session: aiohttp.ClientSession
    url: str
    keys: list[SigningKey] = field(default_factory=list)
    nets: list[NetworkContext] = field(default_factory=lambda: list(networks()))
    rng: random.Random = field(default_factory=lambda: random.Random(7))
    noise: DailyNoise = field(default_factory=lambda: DailyNoise(7, utc_now()))

    async def ensure(self, count: int) -> None:
        fresh = [SigningKey.generate() for _ in range(count - len(self.keys))]
        for start in range(0, len(fresh), 200):
            chunk = fresh[start : start + 200]
            await asyncio.gather(*(register(self.session, self.url, chunk[i::8]) for i in range(8)))
        self.keys += fresh

    def batch(self, index: int, ledger: Ledger) -> Pending:
        key = self.keys[index]
        net = self.nets[index % len(self.nets)]
        at = utc_now() - timedelta(seconds=30)
        items = []
        for target in test_list(net.country):
            at += timedelta(seconds=self.rng.uniform(0.5, 3))
            effect = "noise" if self.rng.random() < self.noise.rate(at) else "ok"
            items.append(measure(self.rng, key.agent_id, at, net, target, effect))
        batch = Batch(new_uid(), key.agent_id, at, tuple(items))
        signed = sign_batch(key, batch)
        ledger.generated[batch.batch_id] = len(items)
        return Pending(batch.batch_id, signed.to_bytes(), signed.payload_sha256, len(items))


@dataclass
class StepResult:
    agents: int
    offered_per_s: float
    achieved_per_s: float
    uploads: int
    errors: int
    error_kinds: dict[str, int]
    backlog_s: float  # from the last arrival to the last answer: the queue the collector left
    latency_ms: dict[str, float | None]
    start_lag_p99_ms: float | None  # how late the generator started uploads (its own health)
    rss_peak_mb: float | None

    @property
    def passed(self) -> bool:
        p99 = self.latency_ms["p99"]
        return (
            self.errors == 0
            and p99 is not None
            and p99 < P99_BUDGET_MS
            and self.backlog_s < 1.0  # it kept up: no queue builds across the step
        )

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "passed": self.passed}


async def open_loop(
    uploader: Uploader, bodies: list[Pending], rate: float, rng: random.Random
) -> tuple[float, float, list[float]]:
    """Start each upload at its Poisson arrival time; return (span of the arrivals, seconds until the
    last answer, how late each upload started)."""
    lags: list[float] = []
    tasks = []
    started = time.perf_counter()
    due = 0.0
    for pending in bodies:
        due += rng.expovariate(rate)
        delay = started + due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        lags.append(max(0.0, time.perf_counter() - started - due))
        tasks.append(asyncio.ensure_future(uploader.send(pending)))
    await asyncio.gather(*tasks)
    return due, time.perf_counter() - started, lags


async def capacity_step(
    pool: AgentPool,
    uploader: Uploader,
    sampler: RssSampler,
    agents: int,
    seconds: float,
) -> StepResult:
    rate = agents / ROUND_SECONDS
    count = max(20, round(rate * seconds))
    await pool.ensure(count)
    bodies = [pool.batch(i, uploader.ledger) for i in range(count)]
    uploader.stats = UploadStats()
    sampler.phase = f"ramp {agents}"
    span, elapsed, lags = await open_loop(uploader, bodies, rate, random.Random(agents))
    stats = uploader.stats
    return StepResult(
        agents=agents,
        offered_per_s=round(count / span, 2),
        achieved_per_s=round(stats.batches / elapsed, 2),
        backlog_s=round(elapsed - span, 3),
        uploads=count,
        errors=sum(stats.failures.values()) + sum(stats.refused.values()),
        error_kinds={**stats.failures, **stats.refused},
        latency_ms=percentiles(stats.latencies),
        start_lag_p99_ms=percentiles(lags)["p99"],
        rss_peak_mb=sampler.peak(sampler.phase),
    )


async def ramp(
    pool: AgentPool,
    uploader: Uploader,
    sampler: RssSampler,
    *,
    start: int,
    factor: float,
    limit: int,
    seconds: float,
    refine: int,
    log: Any = print,
) -> tuple[int | None, list[StepResult]]:
    """Largest N whose step passed, and every step run."""
    steps: list[StepResult] = []

    async def run(n: int) -> StepResult:
        result = await capacity_step(pool, uploader, sampler, n, seconds)
        steps.append(result)
        p99 = result.latency_ms["p99"]
        log(
            f"  {n:>8,} agents  {result.offered_per_s:>7.1f} uploads/s offered"
            f"  {result.achieved_per_s:>7.1f} done  p99 {p99} ms  errors {result.errors}"
            f"  {'pass' if result.passed else 'FAIL'}"
        )
        return result

    good: int | None = None
    bad: int | None = None
    n = start
    while n <= limit:
        if (await run(n)).passed:
            good, n = n, int(n * factor)
        else:
            bad = n
            break
    if good is not None and bad is not None:
        for _ in range(refine):
            middle = (good + bad) // 2
            if middle in (good, bad):
                break
            if (await run(middle)).passed:
                good = middle
            else:
                bad = middle
    return good, steps


async def burst(
    pool: AgentPool, uploader: Uploader, collector: CollectorProcess, size: int
) -> dict[str, Any]:
    """``size`` uploads from ``size`` agents started at the same instant, each on its own connection."""
    await pool.ensure(size)
    bodies = [pool.batch(i, uploader.ledger) for i in range(size)]
    uploader.stats = UploadStats()
    with RssSampler(collector, interval=0.02) as sampler:
        sampler.phase = "before"
        before = sampler.sample()
        sampler.phase = "burst"
        started = time.perf_counter()
        outcomes = await asyncio.gather(*(uploader.send(p) for p in bodies))
        elapsed = time.perf_counter() - started
        sampler.phase = "after"
        await asyncio.sleep(1.0)
        after = sampler.sample()
        peak = sampler.peak("burst")
    stats = uploader.stats
    peak = max((mb for mb in (peak, after, before) if mb is not None), default=None)

    def mb(value: float | None) -> float | None:
        return None if value is None else round(value, 1)

    return {
        "uploads": size,
        "acknowledged": outcomes.count("ok"),
        "errors": size - outcomes.count("ok"),
        "error_kinds": {**stats.failures, **stats.refused},
        "elapsed_s": round(elapsed, 3),
        "latency_ms": percentiles(stats.latencies),
        "rss_before_mb": mb(before),
        "rss_peak_mb": mb(peak),
        "rss_after_mb": mb(after),
        "rss_growth_mb": mb(peak - before) if peak is not None and before is not None else None,
    }
