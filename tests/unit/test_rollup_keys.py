"""The rollup keys ingest derives from stored rows are the keys the measurements define."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ingest_support import NETWORKS, TARGETS, measurement

from collector.rollups import (
    AGENTS,
    COUNTS,
    HOURLY,
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
    keys = [
        (*base, "web_connectivity", "ok", "", "a" * 32),
        (*base, "web_connectivity", "ok", "", "a" * 32),
        (*base, "web_connectivity", "ok", "", "b" * 32),
        (*base, "web_connectivity", "anomaly", "dns", "a" * 32),
    ]
    out = increments(keys)
    assert set(out) == set(ROLLUPS)
    assert out[HOURLY] == [
        (*base, "web_connectivity", "anomaly", "dns", "a" * 32, 1),
        (*base, "web_connectivity", "ok", "", "a" * 32, 2),
        (*base, "web_connectivity", "ok", "", "b" * 32, 1),
    ]
    assert out[COUNTS] == [(*base, 4, 3, 1, 0, 0)]  # n, ok, anomaly, confirmed, failure
    place = ("2026-11-20T10:00:00Z", "XA", "XA-NORTH", 64500, "mobile", "domestic")
    assert out[AGENTS] == [(*place, "a" * 32, 3), (*place, "b" * 32, 1)]
