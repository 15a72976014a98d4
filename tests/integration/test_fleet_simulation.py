"""The fleet simulator at small scale, in the suite: a real collector process, real signed uploads.

A simulated day of 88 agents (four per network, 22 networks) with the seed event in the morning: every
acknowledged batch must be stored exactly once, the two drops must be found as international cuts on
exactly the mobile carriers of the four provinces, and nothing else (fixed lines, other provinces,
domestic scope, the quiet afternoon) may raise anything. The large runs live in bench/fleet.py.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import timedelta
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from fleetsim.evaluate import detection_table, false_alarms
from fleetsim.events import SEED_CARRIERS, SEED_REGIONS, seed_event
from fleetsim.scenario import ScenarioConfig, ScenarioResult, last_midnight, run_scenario


@pytest.fixture(scope="module")
def seed_day(tmp_path_factory: pytest.TempPathFactory) -> ScenarioResult:
    day0 = last_midnight() - timedelta(days=1)
    config = ScenarioConfig(days=1, events=seed_event(day0, 0), day0=day0, seed=11)
    return asyncio.run(run_scenario(config, tmp_path_factory.mktemp("fleet")))


def test_every_acknowledged_batch_is_stored_exactly_once(seed_day: ScenarioResult) -> None:
    audit = seed_day.audit
    assert seed_day.stats.batches > 1000 and not seed_day.stats.refused
    assert audit.acknowledged == audit.generated == audit.stored_batches
    assert audit.missing == audit.wrong_content == audit.unknown == 0
    assert audit.stored_rows == audit.expected_rows == audit.rollup_rows
    assert audit.exactly_once and audit.nothing_lost


def test_the_seed_event_is_found_as_two_international_cuts_per_mobile_network(
    seed_day: ScenarioResult,
) -> None:
    [row] = detection_table(seed_day.config.events, seed_day.sightings)
    assert row["expected"]["episodes"] == 2 * len(SEED_REGIONS) * len(SEED_CARRIERS)
    assert row["found"]["patterns"] == ["international_cut"]
    assert row["found"]["regions"] == sorted(SEED_REGIONS)
    assert row["found"]["carriers"] == sorted(SEED_CARRIERS)
    assert row["found"]["network_types"] == ["mobile"]
    assert row["found"]["episodes"] == row["expected"]["episodes"]
    assert row["separate_drops"] and row["correct"]
    # Found while it happened: the first pass after the drop began, give or take a round.
    assert row["alert_latency_min"]["max"] is not None
    for seen in seed_day.sightings.values():
        assert seen.item["scope"] == "international"


def test_the_quiet_rest_of_the_fleet_raises_nothing(seed_day: ScenarioResult) -> None:
    assert false_alarms(seed_day.config.events, seed_day.sightings, None) == []
    flagged = {(s.item["region"], s.item["asn"]) for s in seed_day.sightings.values()}
    assert flagged == {(r, a) for r in SEED_REGIONS for a in SEED_CARRIERS}
