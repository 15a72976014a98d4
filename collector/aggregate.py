"""``/api/v1/aggregate``: parse the query string, and build the one SQL query that answers it.

Axes and filters are whitelisted here, so no text from the request ever reaches SQL except as a bound
parameter. Counts follow OONI's aggregation API (``measurement_count``, ``ok_count``, ...) but are named
without the suffix; ``anomaly`` excludes ``confirmed`` (they are disjoint verdicts), and ``agents`` is the
number of distinct agents, the figure that says whether a result is one volunteer or a province.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from protocol import Blocking, NetworkType, Scope, Verdict

from .errors import BadRequest
from .storage import AggregateQuery, AggregateSource


@dataclass(frozen=True, slots=True)
class Axis:
    columns: tuple[tuple[str, str], ...]  # (output name, SQL expression) grouped on
    extra: tuple[tuple[str, str], ...] = ()  # (output name, aggregate expression) shown alongside


def _bucket(width: int) -> str:
    # measured_at is fixed-width ISO text: its prefix is the bucket, in any SQL dialect with substr.
    suffix = {10: "T00:00:00Z", 13: ":00:00Z"}[width]
    return f"substr(measured_at, 1, {width}) || '{suffix}'"


AXES: dict[str, Axis] = {
    "country": Axis((("country", "country"),)),
    "region": Axis((("region", "region"),)),
    "carrier": Axis((("asn", "asn"),), (("carrier", "MAX(carrier)"),)),
    "network_type": Axis((("network_type", "network_type"),)),
    "scope": Axis((("scope", "scope"),)),
    "test": Axis((("test", "test"),)),
    "verdict": Axis((("verdict", "verdict"),)),
    "blocking": Axis((("blocking", "blocking"),)),
    "category": Axis((("category", "category"),)),
    "domain": Axis((("domain", "host"),)),
    "hour": Axis((("hour", _bucket(13)),)),
    "day": Axis((("day", _bucket(10)),)),
}


def _text(value: str) -> str:
    if len(value) > 256:
        raise BadRequest("filter value too long")
    return value


def _choice(kind: type[Any]) -> Callable[[str], str]:
    def parse(value: str) -> str:
        try:
            return str(kind(value).value)
        except ValueError:
            allowed = ", ".join(item.value for item in kind)
            raise BadRequest(f"unknown value {value!r}; expected one of {allowed}") from None

    return parse


def _asn(value: str) -> int:
    text = value.upper().removeprefix("AS")
    if not text.isdigit() or int(text) >= 2**32:
        raise BadRequest(f"asn must be a number like 64500 or AS64500, got {value!r}")
    return int(text)


#: filter parameter -> (column, parser)
FILTERS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "country": ("country", lambda v: _text(v).upper()),
    "region": ("region", _text),
    "asn": ("asn", _asn),
    "network_type": ("network_type", _choice(NetworkType)),
    "scope": ("scope", _choice(Scope)),
    "verdict": ("verdict", _choice(Verdict)),
    "test": ("test", _text),
    "category": ("category", _text),
    "domain": ("host", _text),
    "blocking": ("blocking", _choice(Blocking)),
}


def parse_time_param(name: str, value: str | None) -> datetime | None:
    """Accept ``2026-11-28``, ``2026-11-28T10:00``, ``2026-11-28T10:00:00Z`` and the like (UTC)."""
    if value is None or value == "":
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"{name} must be an ISO 8601 date or time, got {value!r}") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def parse_aggregate_query(params: Mapping[str, str]) -> AggregateQuery:
    known = {"by", "axis_x", "axis_y", "since", "until", "format", *FILTERS}
    unknown = sorted(set(params) - known)
    if unknown:
        raise BadRequest(f"unknown query parameter(s): {', '.join(unknown)}")
    raw_axes = [
        part.strip()
        for source in (params.get("by", ""), params.get("axis_x", ""), params.get("axis_y", ""))
        for part in source.split(",")
        if part.strip()
    ]
    axes: list[str] = []
    for axis in raw_axes:
        if axis not in AXES:
            raise BadRequest(f"unknown axis {axis!r}; axes are: {', '.join(AXES)}")
        if axis not in axes:
            axes.append(axis)
    filters = {name: parse(params[name]) for name, (_, parse) in FILTERS.items() if name in params}
    since = parse_time_param("since", params.get("since"))
    until = parse_time_param("until", params.get("until"))
    if since and until and since >= until:
        raise BadRequest("since must be before until")
    return AggregateQuery(tuple(axes), filters, since, until)


def default_window(now: datetime) -> tuple[datetime, datetime]:
    return now - timedelta(days=30), now + timedelta(minutes=10)


#: How each axis reads from the rollup tables. Axes absent here (domain, category) are not rollup
#: dimensions (their cardinality would make the rollups as big as the raw table), so a query grouping or
#: filtering on them falls back to the raw ``measurements`` rows.
ROLLUP_AXES: dict[str, str | None] = {
    "country": None,  # None: the same column as in the raw rows
    "region": None,
    "carrier": None,
    "network_type": None,
    "scope": None,
    "test": None,
    "verdict": None,
    "blocking": "NULLIF(blocking, '')",
    "hour": "bucket",
    "day": "substr(bucket, 1, 10) || 'T00:00:00Z'",
}
ROLLUP_FILTERS = frozenset({"country", "region", "asn", "network_type", "scope", "verdict", "test"})
#: What ``rollup_agents`` can split distinct agents by (it has no test, verdict or blocking).
AGENT_AXES = frozenset({"country", "region", "carrier", "network_type", "scope", "hour", "day"})
AGENT_FILTERS = frozenset({"country", "region", "asn", "network_type", "scope"})


def _on_the_hour(moment: datetime | None) -> bool:
    return moment is None or (moment.minute, moment.second, moment.microsecond) == (0, 0, 0)


def answerable_from_rollups(query: AggregateQuery) -> bool:
    """True when every axis and filter is a rollup dimension and the window falls on hour bounds."""
    return (
        all(axis in ROLLUP_AXES for axis in query.axes)
        and all(name in ROLLUP_FILTERS for name in query.filters)
        and _on_the_hour(query.since)
        and _on_the_hour(query.until)
    )


def cheapest_source(query: AggregateQuery) -> AggregateSource:
    """The cheapest table(s) that can answer ``query`` exactly:

    * ``places``: rollup_counts alone (+ the few rollup_roamers rows), when groups keep hour and
      scope apart, the only case where its per-place agent counts add up (collector/rollups.py);
    * ``split``: rollup_counts joined with distinct agents from rollup_agents, for any other grouping
      by place, hour, day and scope;
    * ``hourly``: rollup_hourly, for test, verdict and blocking;
    * ``raw``: the measurement rows (domain, category, windows off the hour)."""
    if not answerable_from_rollups(query):
        return "raw"
    if not (set(query.axes) <= AGENT_AXES and set(query.filters) <= AGENT_FILTERS):
        return "hourly"
    if "hour" in query.axes and ("scope" in query.axes or "scope" in query.filters):
        return "places"
    return "split"


@dataclass(frozen=True, slots=True)
class AggregatePlan:
    """The SQL that answers a query: ``sql`` gives the rows; for the ``places`` source, ``correction``
    (SQL and its arguments) gives, per group, how many agents ``sql`` counted more than once."""

    sql: str
    args: list[Any]
    names: list[str]
    correction: tuple[str, list[Any]] | None = None
    keys: tuple[int, ...] = ()  # where the correction's group keys are in a row of ``sql``

    def rows(
        self, fetched: Iterable[Sequence[Any]], extra: Iterable[Sequence[Any]] = ()
    ) -> list[dict[str, Any]]:
        """The answer's rows from what ``sql`` and ``correction`` returned."""
        names = self.names
        if self.correction is None:
            return [dict(zip(names, row, strict=True)) for row in fetched]
        minus = {tuple(row[:-1]): int(row[-1]) for row in extra}  # (group keys..., extra)
        out = []
        for row in fetched:
            answer = dict(zip(names, row, strict=True))
            if minus:
                answer["agents"] -= minus.get(tuple(row[i] for i in self.keys), 0)
            out.append(answer)
        return out


def build_aggregate_sql(
    query: AggregateQuery,
    placeholder: Callable[[int], str],
    *,
    source: AggregateSource | None = None,
) -> tuple[str, list[Any], list[str]]:
    """The main statement of ``plan_aggregate``: ``(sql, args, output columns)``."""
    plan = plan_aggregate(query, placeholder, source=source)
    return plan.sql, plan.args, plan.names


def plan_aggregate(
    query: AggregateQuery,
    placeholder: Callable[[int], str],
    *,
    source: AggregateSource | None = None,
) -> AggregatePlan:
    """The SQL for ``query``; ``placeholder(n)`` renders the n-th bound parameter.

    Reads from ``cheapest_source(query)`` unless ``source`` names another; every source gives the
    same rows, in the same order, with the same types (a property the storage tests check on both
    backends). ``ValueError`` if ``source`` cannot answer the query.
    """
    best = cheapest_source(query)
    source = source or best
    if _RANK[source] < _RANK[best]:
        raise ValueError(f"the {source} source cannot answer this query")
    if source == "raw":
        return AggregatePlan(*_grouped(query, "measurements", False, _RAW_COUNTS, placeholder, []))
    if source == "hourly":
        return AggregatePlan(
            *_grouped(query, "rollup_hourly", True, _ROLLUP_COUNTS, placeholder, [])
        )
    if source == "places":
        # Summed per-place agents from rollup_counts; an agent with k places inside one output
        # group was counted k times, and the correction (from the few rollup_roamers rows) says
        # by how much to lower each such group.
        sql, args, names = _grouped(query, "rollup_counts", True, _PLACES_COLUMNS, placeholder, [])
        per_agent, extra_args, agent_names = _grouped(
            query, "rollup_roamers", True, [("k", "COUNT(*)")], placeholder, [], order=False,
            extras=False, extra_group=("agent_id",),
        )  # fmt: skip
        keys = [name for name in agent_names if name != "k"]
        listed = ", ".join(keys)
        correction = (
            f"SELECT {listed}, SUM(k - 1) FROM ({per_agent}) x"
            f" GROUP BY {listed} HAVING SUM(k - 1) > 0"
        )
        positions = tuple(names.index(key) for key in keys)
        return AggregatePlan(sql, args, names, (correction, extra_args), positions)
    # Two small grouped reads joined on the output columns: counts without agents, distinct agents
    # without counts. Every rollup_agents row has rollup_counts rows in the same group (both are
    # written from the same measurements), so the inner join loses nothing.
    shared: list[Any] = []  # both halves bind the same filters, in order
    counts_sql, _, names = _grouped(
        query, "rollup_counts", True, _COUNTS_COLUMNS, placeholder, shared, order=False
    )
    agents_sql, _, agent_names = _grouped(
        query, "rollup_agents", True, _ROLLUP_COUNTS[-1:], placeholder, shared, order=False,
        extras=False,
    )  # fmt: skip
    keys = [name for name in agent_names if name != "agents"]
    join = f"JOIN a USING ({', '.join(keys)})" if keys else "CROSS JOIN a"
    outputs = [*names, "agents"]
    sql = f"WITH c AS ({counts_sql}), a AS ({agents_sql}) SELECT {', '.join(outputs)} FROM c {join}"
    if keys:
        sql += " ORDER BY " + ", ".join(keys)
    return AggregatePlan(sql, shared, outputs)


def _grouped(
    query: AggregateQuery,
    table: str,
    rollup: bool,
    counts: list[tuple[str, str]],
    placeholder: Callable[[int], str],
    args: list[Any],
    *,
    order: bool = True,
    extras: bool = True,
    extra_group: tuple[str, ...] = (),
) -> tuple[str, list[Any], list[str]]:
    """One grouped SELECT over ``table`` (raw rows, or a rollup when ``rollup``); appends its bound
    parameters to ``args``."""
    select: list[str] = []
    group: list[str] = []
    names: list[str] = []
    for axis_name in query.axes:
        axis = AXES[axis_name]
        for out, raw in axis.columns:
            expr = (ROLLUP_AXES[axis_name] or raw) if rollup else raw
            select.append(f"{expr} AS {out}")
            group.append(expr)
            names.append(out)
        for out, expr in axis.extra if extras else ():
            select.append(f"{expr} AS {out}")
            names.append(out)
    for out, expr in counts:
        select.append(f"{expr} AS {out}")
        names.append(out)
    where: list[str] = []
    for name, value in query.filters.items():
        args.append(value)
        where.append(f"{FILTERS[name][0]} = {placeholder(len(args))}")
    time_column = "bucket" if rollup else "measured_at"
    if query.since is not None:
        args.append(query.since.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
        where.append(f"{time_column} >= {placeholder(len(args))}")
    if query.until is not None:
        args.append(query.until.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
        where.append(f"{time_column} < {placeholder(len(args))}")
    sql = f"SELECT {', '.join(select)} FROM {table}"
    if where:
        sql += " WHERE " + " AND ".join(where)
    group += extra_group
    if group:
        sql += " GROUP BY " + ", ".join(group)
        if order:
            sql += " ORDER BY " + ", ".join(group)
    return sql, args, names


_RANK: dict[AggregateSource, int] = {"places": 0, "split": 1, "hourly": 2, "raw": 3}


def _verdict_sum(verdict: str, weight: str) -> str:
    # COALESCE: an empty selection counts 0, not null (SUM over no rows is NULL in SQL).
    return f"COALESCE(SUM(CASE WHEN verdict = '{verdict}' THEN {weight} ELSE 0 END), 0)"


_VERDICTS = ("ok", "anomaly", "confirmed", "failure")
_RAW_COUNTS = [
    ("measurements", "COUNT(*)"),
    *((v, _verdict_sum(v, "1")) for v in _VERDICTS),
    ("agents", "COUNT(DISTINCT agent_id)"),
]
# rollup_counts holds each verdict's count in a column of its own.
_COUNTS_COLUMNS = [
    (out, f"CAST(COALESCE(SUM({column}), 0) AS BIGINT)")
    for out, column in (("measurements", "n"), *((v, v) for v in _VERDICTS))
]
_PLACES_COLUMNS = [*_COUNTS_COLUMNS, ("agents", "CAST(COALESCE(SUM(agents), 0) AS BIGINT)")]
# The same figures from rollups: the CASTs keep PostgreSQL's SUM(bigint) an integer (not numeric),
# and an empty table answers 0 for every count, exactly like raw rows.
_ROLLUP_COUNTS = [
    ("measurements", "COALESCE(CAST(SUM(n) AS BIGINT), 0)"),
    *((v, f"CAST({_verdict_sum(v, 'n')} AS BIGINT)") for v in _VERDICTS),
    ("agents", "COUNT(DISTINCT agent_id)"),
]
# rollup_counts holds each verdict's count in a column of its own.
_COUNTS_COLUMNS = [
    (out, f"CAST(COALESCE(SUM({column}), 0) AS BIGINT)")
    for out, column in (("measurements", "n"), *((v, v) for v in _VERDICTS))
]
_PLACES_COLUMNS = [*_COUNTS_COLUMNS, ("agents", "CAST(COALESCE(SUM(agents), 0) AS BIGINT)")]
