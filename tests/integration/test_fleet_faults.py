"""Collector faults under a small fleet: kill -9 mid-ingest, then a 30-minute outage (simulated).

22 agents (one per network) play six simulated hours against a real collector process, on SQLite and
on PostgreSQL. At 02:00 the
collector is killed with SIGKILL while uploads are in flight and restarted on the same port; at 03:00
it is stopped for 30 simulated minutes while agents keep measuring into their spools. Afterwards every
batch any agent signed must have been acknowledged, and every acknowledged batch must be stored once,
with its exact bytes and rows, and counted once in the rollups.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from fleetsim.events import collector_kill, collector_outage
from fleetsim.scenario import ScenarioConfig, last_midnight, run_scenario


def test_kill_9_and_an_outage_lose_nothing_and_store_nothing_twice(
    tmp_path: Path, storage_url: str
) -> None:
    day0 = last_midnight() - timedelta(days=1)
    events = [collector_kill(day0, 0, 2), collector_outage(day0, 0, 3, minutes=30)]
    config = ScenarioConfig(
        days=0.25,
        events=events,
        day0=day0,
        agents_per_network=1,
        round_minutes=10,
        concurrency=4,
    )
    result = asyncio.run(run_scenario(config, tmp_path, storage_url))

    kill, outage = result.faults
    assert kill["uploads_failed_by_kill"] > 0  # the kill hit live uploads, which were retried
    assert outage["spooled_batches_at_restart"] > 0  # agents spooled while it was down
    assert result.collector_starts == 3
    assert sum(result.stats.failures.values()) > 0 and not result.stats.refused

    audit = result.audit
    assert audit.nothing_lost, audit
    assert audit.exactly_once, audit
    assert audit.acknowledged == audit.generated == audit.stored_batches
