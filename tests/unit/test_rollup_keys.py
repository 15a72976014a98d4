"""The rollup keys ingest derives from stored rows are the keys the measurements define."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ingest_support import NETWORKS, TARGETS, measurement

from collector.rollups import (
    AGENTS,
    COUNTS,
    HOURLY,
    ROAMERS,
    ROLLUPS,
    increments,
    rollup_key,
    row_rollup_key,
)
from collector.sqlite_store import measurement_row
from protocol import SigningKey


def test_row_keys_equal_measurement_keys() -> None:
    key = SigningKey.generate()
    at = datetime(2026, 11, 20, 10, 59, 59, 999999, tzinfo=UTC)
    items = [
        measurement(key, at=at + timedelta(minutes=j), network=NETWORKS[j % 3], target=TARGETS[j % 2],
                    verdict=("ok", "anomaly")[j % 2])
        for j in range(6)
    ]  # fmt: skip
    for m in items:
        assert row_rollup_key(measurement_row(m, "b" * 32, "2026-11-20T12:00:00.000000Z")) == (
            rollup_key(m)
        )
    assert rollup_key(items[0])[0] == "2026-11-20T10:00:00Z"
    assert rollup_key(items[1])[0] == "2026-11-20T11:00:00Z"


def test_narrow_rollups_sum_the_hourly_keys_they_merge() -> None:
    base = ("2026-11-20T10:00:00Z", "XA", "XA-NORTH", 64500, "MobiNet", "mobile", "domestic")
    a, b = "a" * 32, "b" * 32
    keys = [
        (*base, "web_connectivity", "ok", "", a),
        (*base, "web_connectivity", "ok", "", a),
        (*base, "web_connectivity", "ok", "", b),
        (*base, "web_connectivity", "anomaly", "dns", a),
    ]
    added = increments(keys)
    assert added.rows[HOURLY] == [
        (*base, "web_connectivity", "anomaly", "dns", a, 1),
        (*base, "web_connectivity", "ok", "", a, 2),
        (*base, "web_connectivity", "ok", "", b, 1),
    ]
    assert added.agent_triples == [(base[0], "domestic", a), (base[0], "domestic", b)]
    writes = dict(added.settle({}))  # nobody was here before: two new agents, no roaming
    assert list(writes) == [AGENTS, COUNTS, HOURLY]  # the lock order; nothing for ROAMERS
    assert writes[AGENTS] == [(*base, a, 3), (*base, b, 1)]
    # n, ok, anomaly, confirmed, failure, agents
    assert writes[COUNTS] == [(*base, 4, 3, 1, 0, 0, 2)]
    # b was already counted here; a was elsewhere (another network) in this hour and scope
    elsewhere = (base[0], "XA", "XA-EAST", 64501, "FiberLine", "wired", "domestic", a)
    writes = dict(
        added.settle(
            {(base[0], "domestic", a): [elsewhere], (base[0], "domestic", b): [(*base, b)]}
        )
    )
    assert writes[COUNTS] == [(*base, 4, 3, 1, 0, 0, 1)]  # only a is new to this place
    assert writes[ROAMERS] == sorted([elsewhere, (*base, a)])  # both of a's places


def test_rollups_are_written_in_one_order() -> None:
    assert ROLLUPS == (AGENTS, COUNTS, HOURLY, ROAMERS)
