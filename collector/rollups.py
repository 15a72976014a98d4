"""Hourly rollups: the counts aggregates read instead of raw rows, updated in the ingest transaction.

A rollup row is keyed by ``ROLLUP_COLUMNS`` (hour bucket, place, carrier, network type, scope, test,
verdict, blocking, agent) and holds ``n``, the number of measurements with that key. Both backends
compute the increments of a batch here, in Python, from the rows they actually inserted (so a
duplicate never counts twice), and ``ROLLUP_FROM_RAW`` recomputes the whole table from raw rows (used
by the backfill migration and by the consistency check).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any, Final

from protocol import Measurement, format_time

ROLLUP_COLUMNS: Final = (
    "bucket",
    "country",
    "region",
    "asn",
    "carrier",
    "network_type",
    "scope",
    "test",
    "verdict",
    "blocking",
    "agent_id",
)

#: measured_at is fixed-width ISO text, so its first 13 characters name the hour in any SQL dialect.
HOUR_OF_MEASURED_AT: Final = "substr(measured_at, 1, 13) || ':00:00Z'"

ROLLUP_FROM_RAW: Final = (
    f"SELECT {HOUR_OF_MEASURED_AT}, country, region, asn, carrier, network_type, scope, test,"
    " verdict, COALESCE(blocking, ''), agent_id, COUNT(*) FROM measurements"
    " GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11"
)

RollupKey = tuple[str, str, str, int, str, str, str, str, str, str, str]


def hour_bucket(measured_at: str) -> str:
    return measured_at[:13] + ":00:00Z"


def rollup_key(m: Measurement) -> RollupKey:
    return (
        hour_bucket(format_time(m.measured_at)),
        m.network.country,
        m.network.region,
        m.network.asn,
        m.network.carrier,
        m.network.network_type.value,
        m.target.scope.value,
        m.test,
        m.verdict.value,
        m.blocking.value if m.blocking else "",
        m.agent_id,
    )


def rollup_increments(stored: Iterable[Measurement]) -> list[tuple[Any, ...]]:
    """``(key..., n)`` rows for the measurements just stored, sorted so that concurrent writers take
    row locks in the same order (no deadlock between two collectors on one PostgreSQL)."""
    counts = Counter(rollup_key(m) for m in stored)
    return [(*key, n) for key, n in sorted(counts.items())]


def rollup_upsert_sql(source: str) -> str:
    """Add ``source`` (a VALUES list or a SELECT of key columns and n) to the rollups."""
    return (
        f"INSERT INTO rollup_hourly ({', '.join(ROLLUP_COLUMNS)}, n) {source}"
        f" ON CONFLICT ({', '.join(ROLLUP_COLUMNS)}) DO UPDATE SET n = rollup_hourly.n + excluded.n"
    )
