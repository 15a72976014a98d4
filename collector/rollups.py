"""Hourly rollups: the counts aggregates read instead of raw rows, updated in the ingest transaction.

Three tables, each keyed by some of the measurement's dimensions and holding ``n``, the number of
measurements with that key:

* ``rollup_hourly`` (hour, place, carrier, network type, scope, test, verdict, blocking, agent): answers
  any grouping of those columns, distinct agents included, but the agent in its key keeps it large;
* ``rollup_counts``: the same without the agent, so it does not grow with the fleet (counts only);
* ``rollup_agents`` (hour, place, network type, scope, agent): which agents measured there, for
  distinct-agent counts beside ``rollup_counts`` when no test/verdict/blocking split is asked for.

Both backends compute the increments of a batch here, in Python, from the rows they actually inserted
(so a duplicate never counts twice), and ``Rollup.from_raw`` recomputes a table from raw rows (used by
the backfill migrations and by the consistency checks).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
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

#: How each rollup column is computed from a raw ``measurements`` row.
_RAW_EXPRESSIONS: Final = {"bucket": HOUR_OF_MEASURED_AT, "blocking": "COALESCE(blocking, '')"}

VERDICTS: Final = ("ok", "anomaly", "confirmed", "failure")
#: Value columns: ``n`` counts measurements, a verdict's name counts those with that verdict.
_RAW_VALUES: Final = {
    "n": "COUNT(*)",
    **{v: f"SUM(CASE WHEN verdict = '{v}' THEN 1 ELSE 0 END)" for v in VERDICTS},
}

RollupKey = tuple[str, str, str, int, str, str, str, str, str, str, str]


@dataclass(frozen=True, slots=True)
class Rollup:
    """One rollup table: its name, key columns (a subset of ``ROLLUP_COLUMNS``, in that order) and
    value columns (counts, added up on every write)."""

    table: str
    columns: tuple[str, ...]
    values: tuple[str, ...] = ("n",)

    @property
    def from_raw(self) -> str:
        """SELECT of ``(key..., values...)`` recomputed from raw rows."""
        exprs = [_RAW_EXPRESSIONS.get(c, c) for c in self.columns]
        exprs += [_RAW_VALUES[v] for v in self.values]
        groups = ", ".join(str(i) for i in range(1, len(self.columns) + 1))
        return f"SELECT {', '.join(exprs)} FROM measurements GROUP BY {groups}"

    @property
    def select_all(self) -> str:
        return f"SELECT {', '.join(self.columns + self.values)} FROM {self.table}"

    def upsert_sql(self, source: str) -> str:
        """Add ``source`` (a VALUES list or a SELECT of key and value columns) to the table."""
        keys = ", ".join(self.columns)
        adds = ", ".join(f"{v} = {self.table}.{v} + excluded.{v}" for v in self.values)
        return (
            f"INSERT INTO {self.table} ({', '.join(self.columns + self.values)}) {source}"
            f" ON CONFLICT ({keys}) DO UPDATE SET {adds}"
        )

    def backfill_sql(self) -> str:
        return (
            f"INSERT INTO {self.table} ({', '.join(self.columns + self.values)}) {self.from_raw};"
        )


HOURLY: Final = Rollup("rollup_hourly", ROLLUP_COLUMNS)
#: Counts per place, hour and scope with the verdicts side by side: every aggregate also reports
#: distinct agents, which only rollup_hourly can split by test, verdict or blocking, so this table
#: never needs those in its key; without them (and without the agent) it is the size of the answer.
COUNTS: Final = Rollup("rollup_counts", ROLLUP_COLUMNS[:7], ("n", *VERDICTS))
AGENTS: Final = Rollup(
    "rollup_agents",
    ("bucket", "country", "region", "asn", "network_type", "scope", "agent_id"),
)
ROLLUPS: Final = (HOURLY, COUNTS, AGENTS)

ROLLUP_FROM_RAW: Final = HOURLY.from_raw

# Where each rollup's key columns sit in the hourly key, to derive the narrower keys from it.
_POSITIONS: Final = {
    rollup.table: tuple(ROLLUP_COLUMNS.index(c) for c in rollup.columns) for rollup in ROLLUPS
}


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


def row_rollup_key(row: Sequence[Any]) -> RollupKey:
    """The hourly key of a ``measurements`` row (collector/sqlite_store.py ``measurement_row``);
    cheaper than ``rollup_key`` because the row has the time formatted already."""
    return (
        row[3][:13] + ":00:00Z",
        row[6],
        row[7],
        row[8],
        row[9],
        row[10],
        row[14],
        row[5],
        row[16],
        row[17] or "",
        row[2],
    )


def increments(keys: Iterable[RollupKey]) -> dict[Rollup, list[tuple[Any, ...]]]:
    """``(key..., values...)`` rows for every rollup table, given the hourly keys of the rows just
    stored.

    Each list is sorted, so concurrent writers take row locks in the same order (no deadlock between
    two collectors on one PostgreSQL); tables are always written in ``ROLLUPS`` order for the same
    reason."""
    hourly: Counter[tuple[Any, ...]] = Counter(keys)
    out: dict[Rollup, list[tuple[Any, ...]]] = {}
    for rollup in ROLLUPS:
        positions = _POSITIONS[rollup.table]
        sums: dict[tuple[Any, ...], list[int]] = {}
        for key, n in hourly.items():
            row = sums.setdefault(tuple(key[i] for i in positions), [0] * len(rollup.values))
            for slot, value in enumerate(rollup.values):
                if value == "n" or value == key[_VERDICT]:
                    row[slot] += n
        out[rollup] = [(*key, *values) for key, values in sorted(sums.items())]
    return out


_VERDICT: Final = ROLLUP_COLUMNS.index("verdict")
