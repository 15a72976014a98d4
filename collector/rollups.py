"""Hourly rollups: the counts aggregates read instead of raw rows, updated in the ingest transaction.

Four tables, each keyed by some of the measurement's dimensions:

* ``rollup_hourly`` (hour, place, carrier, network type, scope, test, verdict, blocking, agent) -> n:
  answers any grouping of those columns, distinct agents included, but the agent in its key (beside
  test, verdict and blocking) keeps it large: it grows with the fleet;
* ``rollup_counts`` (hour, place, carrier, network type, scope) -> n, one count per verdict, and
  ``agents``, the number of distinct agents there: the size of the answer, whatever the fleet;
* ``rollup_agents`` (the same + agent) -> n: which agents measured where, for distinct agents over
  groups that merge hours or scopes (``COUNT(DISTINCT agent_id)``);
* ``rollup_roamers``: the ``rollup_agents`` rows of every agent that measured from two or more places
  within one hour and scope (it changed network). Summing ``rollup_counts.agents`` over a group that
  keeps hour and scope counts such an agent once per place; these rows say exactly how much to take
  off, so distinct agents come out exact without reading ``rollup_agents``.

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
    "agents": "COUNT(DISTINCT agent_id)",
}

RollupKey = tuple[str, str, str, int, str, str, str, str, str, str, str]


@dataclass(frozen=True, slots=True)
class Rollup:
    """One rollup table: its name, key columns (a subset of ``ROLLUP_COLUMNS``, in that order) and
    value columns (counts, added up on every write)."""

    table: str
    columns: tuple[str, ...]
    values: tuple[str, ...] = ("n",)
    raw: str = ""  # the recomputation, when it is not one GROUP BY of the raw rows

    @property
    def from_raw(self) -> str:
        """SELECT of ``(key..., values...)`` recomputed from raw rows."""
        if self.raw:
            return self.raw
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
            f" ON CONFLICT ({keys}) DO " + (f"UPDATE SET {adds}" if adds else "NOTHING")
        )

    def backfill_sql(self) -> str:
        return (
            f"INSERT INTO {self.table} ({', '.join(self.columns + self.values)}) {self.from_raw};"
        )


PLACE: Final = ROLLUP_COLUMNS[:7]  # hour, place, carrier, network type, scope
_AGENT_PLACES_FROM_RAW = (
    f"SELECT DISTINCT {HOUR_OF_MEASURED_AT} AS bucket, {', '.join(PLACE[1:])}, agent_id"
    " FROM measurements"
)
_ROAMERS_FROM_RAW = (
    f"WITH p AS ({_AGENT_PLACES_FROM_RAW}) SELECT {', '.join(f'p.{c}' for c in PLACE)}, p.agent_id"
    " FROM p JOIN (SELECT bucket, scope, agent_id FROM p GROUP BY bucket, scope, agent_id"
    " HAVING COUNT(*) > 1) r ON r.bucket = p.bucket AND r.scope = p.scope"
    " AND r.agent_id = p.agent_id"
)

HOURLY: Final = Rollup("rollup_hourly", ROLLUP_COLUMNS)
#: Counts per place, hour and scope with the verdicts side by side. Every aggregate also reports
#: distinct agents, which only rollup_hourly can split by test, verdict or blocking, so this table
#: never needs those in its key.
COUNTS: Final = Rollup("rollup_counts", PLACE, ("n", *VERDICTS, "agents"))
AGENTS: Final = Rollup("rollup_agents", (*PLACE, "agent_id"))
ROAMERS: Final = Rollup("rollup_roamers", (*PLACE, "agent_id"), (), _ROAMERS_FROM_RAW)
#: Also the order every writer updates them in (the same lock order for concurrent writers).
ROLLUPS: Final = (AGENTS, COUNTS, HOURLY, ROAMERS)

#: The places an agent already has in one hour and scope (indexed by ``rollup_agents_by_agent``).
PLACES_OF_AGENT: Final = (
    f"SELECT {', '.join(AGENTS.columns)} FROM rollup_agents"
    " WHERE bucket = ? AND scope = ? AND agent_id = ?"
)
_SCOPE, _AGENT = PLACE.index("scope"), len(PLACE)  # positions in a rollup_agents key

ROLLUP_FROM_RAW: Final = HOURLY.from_raw

# Where each rollup's key columns sit in the hourly key, to derive the narrower keys from it.
_POSITIONS: Final = {
    rollup.table: tuple(ROLLUP_COLUMNS.index(c) for c in rollup.columns)
    for rollup in (HOURLY, COUNTS, AGENTS)
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


AgentTriple = tuple[str, str, str]  # (bucket, scope, agent_id)


@dataclass(frozen=True, slots=True)
class Increments:
    """What one batch adds to the rollups: ``(key..., values...)`` rows per table, sorted, so that
    concurrent writers take row locks in the same order (no deadlock between two collectors on one
    PostgreSQL). ``rollup_counts.agents`` and ``rollup_roamers`` depend on the places each agent
    already has in the database: ``settle`` fills them in from those."""

    rows: dict[Rollup, list[tuple[Any, ...]]]

    @property
    def agent_triples(self) -> list[AgentTriple]:
        """Each (hour, scope, agent) of the batch: look up its known places with PLACES_OF_AGENT."""
        return sorted({(k[0], k[_SCOPE], k[_AGENT]) for k in self.rows[AGENTS]})

    def settle(
        self, known: dict[AgentTriple, list[tuple[Any, ...]]]
    ) -> list[tuple[Rollup, list[tuple[Any, ...]]]]:
        """The writes, in ``ROLLUPS`` order, given each triple's known places (rollup_agents keys
        as stored before this batch). Read under the write lock for the agent: single writer on
        SQLite, an advisory lock per agent on PostgreSQL."""
        width = len(AGENTS.columns)
        new_places: Counter[tuple[Any, ...]] = Counter()
        roamers: set[tuple[Any, ...]] = set()
        for triple in self.agent_triples:
            before = {tuple(key) for key in known.get(triple, [])}
            mine = {
                row[:width]
                for row in self.rows[AGENTS]
                if (row[0], row[_SCOPE], row[_AGENT]) == triple
            }
            new_places.update(key[:_AGENT] for key in mine - before)
            if len(before | mine) > 1:
                roamers |= before | mine
        counts = [(*row[:-1], row[-1] + new_places[row[: len(PLACE)]]) for row in self.rows[COUNTS]]
        writes = {**self.rows, COUNTS: counts, ROAMERS: sorted(roamers)}
        return [(rollup, writes[rollup]) for rollup in ROLLUPS if writes[rollup]]


def increments(keys: Iterable[RollupKey]) -> Increments:
    """The increments of a batch, given the hourly keys of the rows just stored."""
    hourly: Counter[tuple[Any, ...]] = Counter(keys)
    out: dict[Rollup, list[tuple[Any, ...]]] = {}
    for rollup in (HOURLY, COUNTS, AGENTS):
        positions = _POSITIONS[rollup.table]
        sums: dict[tuple[Any, ...], list[int]] = {}
        for key, n in hourly.items():
            row = sums.setdefault(tuple(key[i] for i in positions), [0] * len(rollup.values))
            for slot, value in enumerate(rollup.values):
                if value == "n" or value == key[_VERDICT]:
                    row[slot] += n  # ("agents" stays 0 here: settle() knows it)
        out[rollup] = [(*key, *values) for key, values in sorted(sums.items())]
    return Increments(out)


_VERDICT: Final = ROLLUP_COLUMNS.index("verdict")
