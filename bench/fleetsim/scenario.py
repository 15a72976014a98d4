"""The simulated clock: agents measure, spool and upload; events happen; the detector runs.

The clock advances in steps (default 5 simulated minutes) as fast as the collector answers. In each
step every agent whose round is due measures and spools a signed batch, every agent whose upload is
due (and who has a network) drains its spool over HTTP, with at most ``concurrency`` uploads in flight,
and every detection pass that falls in the step runs at its simulated time (``disruptions.detect``,
what ``vantage collector detect --at`` runs) after which ``GET /api/v1/disruptions`` is read, as a
researcher's dashboard would, to see when each disruption first appeared.

The simulated days end at the last real midnight (UTC), so every measurement is in the collector's past
and within its ``--max-age-days``; the collector judges age by its real clock, the detector by ``at``.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp

from collector.backends import open_storage
from collector.detector import DetectorSettings
from collector.disruptions import detect
from protocol import SigningKey, format_time

from .agents import (
    Uploader,
    UploadStats,
    VirtualAgent,
    bounded,
    collector_key,
    new_session,
    register,
)
from .audit import AuditResult, Ledger, audit
from .collector import CollectorProcess, RssSampler
from .events import COLLECTOR_KILL, COLLECTOR_OUTAGE, Event, offline
from .world import DailyNoise, fleet_networks, test_list

MAX_FINAL_DRAIN_ROUNDS = 50


def last_midnight(now: datetime | None = None) -> datetime:
    now = now or datetime.now(UTC)
    return now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


@dataclass
class ScenarioConfig:
    days: float
    events: list[Event]
    day0: datetime
    agents_per_network: int = 4
    round_minutes: float = 30.0
    step_minutes: float = 5.0
    detect_every_minutes: float = 60.0
    concurrency: int = 8
    seed: int = 1
    detector: DetectorSettings = field(default_factory=DetectorSettings)

    @property
    def end(self) -> datetime:
        return self.day0 + timedelta(days=self.days)


@dataclass
class Sighting:
    """One disruption as ``GET /api/v1/disruptions`` showed it over the run."""

    first_seen: datetime  # simulated time of the first pass that listed it
    first_pattern: str
    item: dict[str, Any]  # as last listed
    retracted_at: datetime | None = None
    history: list[tuple[datetime, str]] = field(default_factory=list)  # (when, pattern) changes

    def saw(self, at: datetime, item: dict[str, Any]) -> None:
        self.item, self.retracted_at = item, None
        if not self.history or self.history[-1][1] != item["pattern"]:
            self.history.append((at, item["pattern"]))

    def became(self, pattern: str) -> datetime | None:
        """When it was first listed with ``pattern``."""
        return next((at for at, p in self.history if p == pattern), None)


@dataclass
class ScenarioResult:
    config: ScenarioConfig
    agents: int
    stats: UploadStats
    ingest_seconds: float
    detect_seconds: float
    passes: int
    skipped_passes: int
    sightings: dict[str, Sighting]
    audit: AuditResult
    faults: list[dict[str, Any]]
    rss: dict[str, object]
    wall_seconds: float
    collector_starts: int


class Simulation:
    def __init__(self, config: ScenarioConfig, workdir: Path, db: str) -> None:
        self.config = config
        self.collector = CollectorProcess(db, workdir)
        self.db = db
        self.ledger = Ledger()
        self.sightings: dict[str, Sighting] = {}
        self.faults: list[dict[str, Any]] = []
        self.passes = self.skipped = 0
        self.detect_seconds = self.ingest_seconds = 0.0
        self.up = True

    def build_agents(self) -> list[VirtualAgent]:
        cfg = self.config
        rng = random.Random(cfg.seed)
        every = timedelta(minutes=cfg.round_minutes)
        noise = DailyNoise(cfg.seed, cfg.day0)
        return [
            VirtualAgent(
                key=SigningKey.generate(),
                network=net,
                targets=test_list(net.country),
                rng=random.Random(rng.random()),
                next_round=cfg.day0 + rng.random() * every,
                round_every=every,
                noise=noise,
            )
            for net in fleet_networks(cfg.agents_per_network)
        ]

    async def run(self) -> ScenarioResult:
        started = time.monotonic()
        cfg = self.config
        await self.collector.start()
        storage = open_storage(self.db, migrate=False)
        await storage.open()
        agents = self.build_agents()
        async with new_session(limit=max(100, cfg.concurrency)) as http:
            await register(http, self.collector.url, [a.key for a in agents])
            key = await collector_key(http, self.collector.url)
            uploader = Uploader(http, lambda: self.collector.url, key, self.ledger)
            with RssSampler(self.collector) as rss:
                rss.phase = "scenario"
                await self._loop(agents, uploader, storage, http)
                rss.phase = "final drain"
                await self._final_drain(agents, uploader)
                await self._detect(storage, http, cfg.end)
                result_audit = await audit(storage, self.ledger)
                rss.sample()
            await storage.close()
        await self.collector.stop()
        return ScenarioResult(
            cfg,
            len(agents),
            uploader.stats,
            self.ingest_seconds,
            self.detect_seconds,
            self.passes,
            self.skipped,
            self.sightings,
            result_audit,
            self.faults,
            rss.summary(),
            time.monotonic() - started,
            self.collector.starts,
        )

    async def _loop(
        self,
        agents: list[VirtualAgent],
        uploader: Uploader,
        storage: Any,
        http: aiohttp.ClientSession,
    ) -> None:
        cfg = self.config
        step = timedelta(minutes=cfg.step_minutes)
        every = timedelta(minutes=cfg.detect_every_minutes)
        faults = sorted(
            (e for e in cfg.events if e.kind in (COLLECTOR_KILL, COLLECTOR_OUTAGE)),
            key=lambda e: e.start,
        )
        outage: tuple[Event, dict[str, Any]] | None = None
        now, next_pass = cfg.day0, cfg.day0 + every
        while now < cfg.end:
            upto = now + step
            kill = next(
                (e for e in faults if now <= e.start < upto and e.kind == COLLECTOR_KILL), None
            )
            for event in faults:
                if event.kind == COLLECTOR_OUTAGE and now <= event.start < upto:
                    await self.collector.stop()
                    self.up = False
                    outage = (event, self._fault(event, "collector stopped (SIGTERM)"))
            if outage is not None and now >= outage[0].end:
                await self.collector.start()
                self.up = True
                outage[1]["restarted_at"] = format_time(now)
                outage[1]["spooled_batches_at_restart"] = sum(len(a.spool) for a in agents)
                outage = None
            for agent in agents:
                while agent.next_round < upto:
                    agent.run_round(cfg.events, self.ledger)
            due = [
                a
                for a in agents
                if a.spool
                and a.upload_at is not None
                and a.upload_at < upto
                and not offline(cfg.events, a.network, now)
            ]
            t0 = time.perf_counter()
            jobs = [partial(uploader.drain, a, now) for a in due]
            if kill is not None:
                await self._kill_during(kill, jobs, uploader)
            else:
                await bounded(jobs, cfg.concurrency)
            self.ingest_seconds += time.perf_counter() - t0
            while next_pass <= upto:
                await self._detect(storage, http, next_pass)
                next_pass += every
            now = upto

    async def _kill_during(
        self, event: Event, jobs: Sequence[Callable[[], Awaitable[None]]], uploader: Uploader
    ) -> None:
        """Start the step's uploads, kill -9 the collector once some are acknowledged and others are
        in flight, let the agents fail over, then restart it as a service manager would."""
        record = self._fault(event, "collector killed (SIGKILL) with uploads in flight")
        before = uploader.stats.batches
        failures_before = sum(uploader.stats.failures.values())
        uploads = asyncio.ensure_future(bounded(jobs, self.config.concurrency))
        deadline = time.monotonic() + 10
        while uploader.stats.batches - before < 3 and not uploads.done():
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.0005)
        record["acknowledged_in_step_before_kill"] = uploader.stats.batches - before
        record["in_flight_at_kill"] = uploader.in_flight
        await self.collector.kill9()
        await uploads
        record["uploads_failed_by_kill"] = sum(uploader.stats.failures.values()) - failures_before
        await self.collector.start()

    def _fault(self, event: Event, what: str) -> dict[str, Any]:
        record = {"fault": event.group, "at": format_time(event.start), "what": what}
        self.faults.append(record)
        return record

    async def _detect(self, storage: Any, http: aiohttp.ClientSession, at: datetime) -> None:
        if not self.up:
            self.skipped += 1  # the detector runs inside the collector: down with it
            return
        t0 = time.perf_counter()
        await detect(storage, at, self.config.detector)
        self.passes += 1
        async with http.get(
            f"{self.collector.url}/api/v1/disruptions", params={"limit": "10000"}
        ) as response:
            response.raise_for_status()
            items = (await response.json())["disruptions"]
        self.detect_seconds += time.perf_counter() - t0
        listed = set()
        for item in items:
            listed.add(item["id"])
            seen = self.sightings.setdefault(item["id"], Sighting(at, item["pattern"], item))
            seen.saw(at, item)
        for ident, seen in self.sightings.items():
            if ident not in listed and seen.retracted_at is None:
                seen.retracted_at = at

    async def _final_drain(self, agents: list[VirtualAgent], uploader: Uploader) -> None:
        """After the last step: every agent uploads what it still holds (bounded number of tries)."""
        end = self.config.end
        for _ in range(MAX_FINAL_DRAIN_ROUNDS):
            waiting = [a for a in agents if a.spool]
            if not waiting:
                return
            jobs = [partial(uploader.drain, a, end) for a in waiting]
            await bounded(jobs, self.config.concurrency)
            await asyncio.sleep(0.05)


async def run_scenario(
    config: ScenarioConfig, workdir: Path, db: str | None = None
) -> ScenarioResult:
    workdir.mkdir(parents=True, exist_ok=True)
    return await Simulation(config, workdir, db or f"sqlite://{workdir}/fleet.db").run()
