"""A known dataset for the dashboard tests, uploaded through the collector's real HTTP API.

Country XA, three provinces × two carriers (MobiNet AS64500 mobile, FiberLine AS64501 wired), one
agent each, six hours ending at the last full hour. Every hour each agent measures two domestic and
two international sites twice and uploads one signed batch (``POST /api/v1/batches``). Two things
happen, and only where this module says:

- ``CUT``: MobiNet in XA-01 loses international reachability (TCP timeouts) in hours 3–5;
- ``FLAKY``: FiberLine in XA-02 sees one TLS reset of its four domestic measurements every hour.

``expected_cells`` computes from the same rules what every heatmap cell must show, independently of
the collector. ``LiveCollector`` runs a collector in a thread on 127.0.0.1 for the synchronous browser
(Playwright) tests.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Coroutine
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from analysis_support import REGIONS, TARGETS

from collector.app import CollectorConfig
from collector.backends import open_storage
from collector.detector import DetectorSettings
from collector.disruptions import detect, floor_hour
from collector.ratelimit import Rate
from collector.server import RunningCollector, start_collector
from protocol import (
    Batch,
    Blocking,
    DnsResult,
    HttpResult,
    Measurement,
    NetworkContext,
    SigningKey,
    Target,
    TcpResult,
    Verdict,
    make_registration,
    new_uid,
    sign_batch,
    utc_now,
)
from protocol import failures as F
from protocol.messages import TlsResult

CARRIERS = ((64500, "MobiNet", "mobile"), (64501, "FiberLine", "wired"))
NETWORKS = {
    (region, asn): NetworkContext("XA", region, asn, name, kind)
    for region in REGIONS
    for asn, name, kind in CARRIERS
}
HOURS = 6
REPEATS = 2
CUT = ("XA-01", 64500)
CUT_HOURS = range(3, 6)
FLAKY = ("XA-02", 64501)
#: One agent per network, so the detector must accept one agent (as ``vantage demo`` does).
DETECTOR = DetectorSettings(min_agents=1)


def outcome(net: tuple[str, int], target: Target, hour: int, rep: int) -> str:
    if net == CUT and hour in CUT_HOURS and target.scope == "international":
        return "cut"
    if net == FLAKY and target.host == "bank.domestic.test" and rep == 1:
        return "reset"
    return "ok"


def expected_cells() -> dict[tuple[str, int, str], tuple[int, int]]:
    """``(region, asn, scope) -> (ok, measurements)`` over the whole dataset."""
    cells: dict[tuple[str, int, str], tuple[int, int]] = {}
    for net in NETWORKS:
        for hour in range(HOURS):
            for target in TARGETS:
                for rep in range(REPEATS):
                    ok, n = cells.get((*net, target.scope), (0, 0))
                    good = outcome(net, target, hour, rep) == "ok"
                    cells[(*net, target.scope)] = (ok + good, n + 1)
    return cells


def measurement(
    key: SigningKey, at: datetime, network: NetworkContext, target: Target, result: str
) -> Measurement:
    ip = "198.18.0.10" if target.scope == "domestic" else "198.19.0.10"
    dns = DnsResult("198.18.0.53:53", (ip,), None, 0.012)
    if result == "cut":
        return Measurement(
            new_uid(), key.agent_id, at, 10.0, network, target, Verdict.ANOMALY,
            blocking=Blocking.TCP_IP, failure=F.GENERIC_TIMEOUT, dns=dns,
            tcp=(TcpResult(ip, 443, F.GENERIC_TIMEOUT, 10.0),),
        )  # fmt: skip
    tcp = (TcpResult(ip, 443, None, 0.021),)
    if result == "reset":
        tls = TlsResult(ip, 443, target.host, None, None, None, F.CONNECTION_RESET, 0.03)
        return Measurement(
            new_uid(), key.agent_id, at, 0.1, network, target, Verdict.FAILURE,
            failure=F.CONNECTION_RESET, dns=dns, tcp=tcp, tls=tls,
        )  # fmt: skip
    tls = TlsResult(ip, 443, target.host, "TLSv1.3", "TLS_AES_128_GCM_SHA256", None, None, 0.04)
    http = HttpResult(target.url, 200, 2048, None, f"{target.host} home", None, 0.09)
    return Measurement(
        new_uid(), key.agent_id, at, 0.2, network, target, Verdict.OK,
        dns=dns, tcp=tcp, tls=tls, http=http,
    )  # fmt: skip


def first_hour(now: datetime) -> datetime:
    """Hour 0 of the dataset: six full hours ending where the current hour starts."""
    return floor_hour(now) - timedelta(hours=HOURS)


async def upload(url: str, *, hours: int = HOURS) -> datetime:
    """Register the agents and upload the dataset through the HTTP API; return hour 0."""
    start = first_hour(utc_now())
    keys = {net: SigningKey.generate() for net in NETWORKS}
    async with aiohttp.ClientSession(url) as http:
        for key in keys.values():
            body = json.dumps(make_registration(key, utc_now()))
            async with http.post("/api/v1/agents", data=body) as response:
                assert response.status == 201, await response.text()
        for hour in range(hours):
            for net, key in keys.items():
                items = tuple(
                    measurement(
                        key,
                        start + timedelta(hours=hour, minutes=5 + 20 * rep, seconds=index),
                        NETWORKS[net],
                        target,
                        outcome(net, target, hour, rep),
                    )
                    for index, target in enumerate(TARGETS)
                    for rep in range(REPEATS)
                )
                signed = sign_batch(key, Batch(new_uid(), key.agent_id, utc_now(), items))
                async with http.post(
                    "/api/v1/batches",
                    data=signed.to_bytes(),
                    headers={"Content-Type": "application/msgpack"},
                ) as response:
                    assert response.status == 200, await response.text()
    return start


async def run_detector(db: Path) -> None:
    """One detection pass, as ``vantage collector detect`` would run it on this database."""
    storage = open_storage(db)
    await storage.open()
    try:
        await detect(storage, utc_now(), DETECTOR)
    finally:
        await storage.close()


def config(db: Path) -> CollectorConfig:
    generous = Rate(per_second=1000, burst=1000)
    return CollectorConfig(
        db, detect_interval=0, detector=DETECTOR, agent_rate=generous, address_rate=generous
    )


T = TypeVar("T")


class LiveCollector:
    """A real collector on 127.0.0.1 in its own thread and event loop, for synchronous tests."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.running: RunningCollector | None = self.run(start_collector(config(db)))
        self.url = self.running.url

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=120)

    def fill(self) -> datetime:
        start = self.run(upload(self.url))
        self.run(run_detector(self.db))
        return start

    def stop(self) -> None:
        if self.running is not None:
            self.run(self.running.stop())
            self.running = None

    def close(self) -> None:
        self.stop()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()
