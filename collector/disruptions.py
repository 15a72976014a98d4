"""One detection pass over the database, and the stored disruptions it keeps up to date.

``detect(storage, at, settings)`` reads the hourly rollups (and, for targeted blocking, the raw rows of
the recent horizon), runs ``detector.py`` over ``window + horizon`` hours ending at ``at`` and reconciles
the episodes it finds with the ``disruptions`` table: an episode that overlaps a stored disruption of the
same network (and domain) updates it, whatever it was named before (a ``silence`` becomes a
``full_outage`` once backfilled failures arrive); a new one is inserted; a stored disruption within the
horizon that no episode supports any more (a silence whose backfill was all ok) is retracted. Every
change is logged in ``disruption_events`` (kind ``open``, ``update``, ``close`` or ``retract``) for the
Atom feed and webhooks. The pass is idempotent: run it twice at the same ``at`` and the second changes
nothing, which is why late measurements only need the next pass to reshape a closed event.

Buckets are the rollups' hours; the bucket that contains ``at`` is judged on what it has so far (so a
pass every minute sees a cut before the hour ends), except for silence, which waits for the bucket to end.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from protocol import format_time, new_uid

from .detector import (
    TAMPERING,
    Cell,
    DetectorSettings,
    DomainCell,
    Episode,
    Network,
    Series,
    blocking_episodes,
    hour_buckets,
    reachability_episodes,
    split_targeted,
)
from .storage import Storage

COLUMNS = (
    "id, pattern, country, region, asn, carrier, network_type, scope, domain, started_at, ended_at,"
    " severity, baseline, current, agents, confirmed, evidence, opened_at, updated_at"
)


#: What every item of ``GET /api/v1/disruptions`` carries: a contract other tools rely on.
CONTRACT_FIELDS = (
    "id",
    "pattern",
    "country",
    "region",
    "asn",
    "carrier",
    "network_type",
    "scope",
    "started_at",
    "ended_at",
    "severity",
    "baseline",
    "current",
    "agents",
    "evidence",
    "updated_at",
)


def floor_hour(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def row_to_item(row: Sequence[Any]) -> dict[str, Any]:
    """A ``disruptions`` row as the API's JSON item (the contract of ``GET /api/v1/disruptions``)."""
    (id_, pattern, country, region, asn, carrier, network_type, scope, domain, started, ended) = (
        row[:11]
    )
    severity, baseline, current, agents, confirmed, evidence, opened, updated = row[11:]
    return {
        "id": id_,
        "pattern": pattern,
        "country": country,
        "region": region,
        "asn": int(asn),
        "carrier": carrier,
        "network_type": network_type,
        "scope": scope,
        "domain": domain or None,
        "started_at": started,
        "ended_at": ended,
        "severity": severity,
        "baseline": None if baseline is None else round(float(baseline), 4),
        "current": None if current is None else round(float(current), 4),
        "agents": int(agents),
        "confirmed": bool(confirmed),
        "evidence": json.loads(evidence),
        "opened_at": opened,
        "updated_at": updated,
    }


async def load_series(storage: Storage, start: str, end: str) -> dict[Network, Series]:
    # Counts from rollup_counts, distinct agents from rollup_agents: both far smaller than
    # rollup_hourly, which holds one row per agent and test and verdict and blocking.
    rows = await storage.fetch(
        "WITH c AS (SELECT bucket, country, region, asn, network_type, scope,"
        " MAX(carrier) AS carrier, SUM(n) AS n, SUM(ok) AS ok"
        " FROM rollup_counts WHERE bucket >= ? AND bucket <= ?"
        " GROUP BY bucket, country, region, asn, network_type, scope),"
        " a AS (SELECT bucket, country, region, asn, network_type, scope,"
        " COUNT(DISTINCT agent_id) AS agents"
        " FROM rollup_agents WHERE bucket >= ? AND bucket <= ?"
        " GROUP BY bucket, country, region, asn, network_type, scope)"
        " SELECT bucket, country, region, asn, network_type, scope, carrier, n, ok, agents"
        " FROM c JOIN a USING (bucket, country, region, asn, network_type, scope)",
        [start, end, start, end],
    )
    series: dict[Network, Series] = {}
    for bucket, country, region, asn, network_type, scope, carrier, n, ok, agents in rows:
        s = series.setdefault((country, region, int(asn), network_type), Series())
        s.carrier = s.carrier or carrier
        s.cells.setdefault(bucket, {})[scope] = Cell(int(n), int(ok), int(agents))
    agent_rows = await storage.fetch(
        "SELECT bucket, country, region, asn, network_type, COUNT(DISTINCT agent_id)"
        " FROM rollup_agents WHERE bucket >= ? AND bucket <= ?"
        " GROUP BY bucket, country, region, asn, network_type",
        [start, end],
    )
    for bucket, country, region, asn, network_type, agents in agent_rows:
        series[(country, region, int(asn), network_type)].agents[bucket] = int(agents)
    return series


async def load_domains(
    storage: Storage, start: str, end: str
) -> dict[tuple[Network, str], dict[str, DomainCell]]:
    """Per network, domain and hour: counts and tampering, from the raw rows of the horizon only."""
    hour = "substr(measured_at, 1, 13)"
    tamper = f"blocking IN ({', '.join(repr(t) for t in sorted(TAMPERING))})"
    rows = await storage.fetch(
        f"SELECT {hour}, country, region, asn, network_type, host, MAX(scope), COUNT(*),"
        " SUM(CASE WHEN verdict = 'ok' THEN 1 ELSE 0 END),"
        f" SUM(CASE WHEN {tamper} THEN 1 ELSE 0 END),"
        f" COUNT(DISTINCT CASE WHEN {tamper} THEN agent_id END),"
        f" SUM(CASE WHEN blocking = 'dns' THEN 1 ELSE 0 END),"
        f" SUM(CASE WHEN blocking = 'http-diff' THEN 1 ELSE 0 END),"
        f" SUM(CASE WHEN blocking = 'http-failure' THEN 1 ELSE 0 END)"
        " FROM measurements WHERE measured_at >= ? AND measured_at < ?"
        f" GROUP BY {hour}, country, region, asn, network_type, host",
        [start, end],
    )
    out: dict[tuple[Network, str], dict[str, DomainCell]] = {}
    for hr, country, region, asn, nt, host, scope, n, ok, tampered, agents, dns, diff, fail in rows:
        techniques = {"dns": int(dns), "http-diff": int(diff), "http-failure": int(fail)}
        out.setdefault(((country, region, int(asn), nt), host), {})[hr + ":00:00Z"] = DomainCell(
            scope,
            int(n),
            int(ok),
            int(tampered),
            int(agents),
            {k: v for k, v in techniques.items() if v},
        )
    return out


@dataclass(frozen=True, slots=True)
class PassResult:
    events: list[tuple[str, dict[str, Any]]]  # (kind, disruption item) in the order they happened
    episodes: int


def _identity(net: Network, domain: str) -> tuple[str, str, int, str, str]:
    return (*net, domain)


def _overlaps(start: str, end: str | None, other_start: str, other_end: str | None) -> bool:
    return (end is None or other_start <= end) and (other_end is None or start <= other_end)


def _values(ep: Episode) -> dict[str, Any]:
    evidence: dict[str, Any] = {**ep.evidence, "baseline_source": ep.baseline_source}
    return {
        "pattern": ep.pattern,
        "carrier": ep.carrier,
        "scope": ep.scope,
        "started_at": ep.started_at,
        "ended_at": ep.ended_at,
        "severity": ep.severity,
        "baseline": None if ep.baseline is None else round(ep.baseline, 4),
        "current": None if ep.current is None else round(ep.current, 4),
        "agents": ep.agents,
        "confirmed": ep.confirmed,
        "evidence": evidence,
    }


#: Changes that make an ``update`` event; the rest (growing counts) only rewrite the row.
_NOTEWORTHY = frozenset({"pattern", "scope", "started_at", "ended_at", "severity", "confirmed"})


async def detect(
    storage: Storage, at: datetime, settings: DetectorSettings | None = None
) -> PassResult:
    """One pass at ``at``: find episodes, reconcile them with the stored disruptions, log events.

    Passes are serialised across every collector sharing the database: two passes reading the same
    stored disruptions at once would each open the same new one."""
    async with storage.exclusive("detector"):
        return await _detect(storage, at, settings)


async def _detect(
    storage: Storage, at: datetime, settings: DetectorSettings | None = None
) -> PassResult:
    settings = settings or DetectorSettings()
    now = floor_hour(at)
    first = now - timedelta(hours=settings.window + settings.horizon_hours)
    horizon = format_time(now - timedelta(hours=settings.horizon_hours))[:13] + ":00:00Z"
    buckets = hour_buckets(first, now)
    complete = [True] * (len(buckets) - 1) + [False]
    series = await load_series(storage, buckets[0], buckets[-1])
    domain_cells = await load_domains(
        storage, horizon.replace("Z", ".000000Z"), format_time(now + timedelta(hours=1))
    )
    targeted = split_targeted(series, domain_cells, settings)
    episodes = reachability_episodes(series, buckets, complete, settings)
    carriers = {net: s.carrier for net, s in series.items()}
    horizon_buckets = [b for b in buckets if b >= horizon]
    episodes += blocking_episodes(domain_cells, carriers, horizon_buckets, targeted, settings)
    live = [ep for ep in episodes if ep.ended_at is None or ep.ended_at > horizon]

    stored_rows = await storage.fetch(
        f"SELECT {COLUMNS} FROM disruptions WHERE ended_at IS NULL OR ended_at > ?", [horizon]
    )
    stored = [row_to_item(row) for row in stored_rows]
    stamp = format_time(at)
    statements: list[tuple[str, list[Any]]] = []
    events: list[tuple[str, dict[str, Any]]] = []
    matched: set[str] = set()
    for ep in sorted(live, key=lambda e: (e.started_at, e.network, e.domain)):
        ident = _identity(ep.network, ep.domain)
        candidates = [
            item
            for item in stored
            if item["id"] not in matched
            and _identity(
                (item["country"], item["region"], item["asn"], item["network_type"]),
                item["domain"] or "",
            )
            == ident
            and _overlaps(item["started_at"], item["ended_at"], ep.started_at, ep.ended_at)
        ]
        values = _values(ep)
        if ep.started_at <= buckets[0] and candidates:
            # The episode runs past the start of what this pass read: keep the older start.
            values["started_at"] = min(values["started_at"], candidates[0]["started_at"])
        if not candidates:
            item = {
                "id": new_uid(),
                "country": ep.network[0],
                "region": ep.network[1],
                "asn": ep.network[2],
                "network_type": ep.network[3],
                "domain": ep.domain or None,
                **values,
                "opened_at": stamp,
                "updated_at": stamp,
            }
            statements.append(_insert(item))
            events.append(("open", item))
            if item["ended_at"] is not None:
                events.append(("close", item))
            continue
        keep, *merged = sorted(candidates, key=lambda item: item["started_at"])
        matched.update(item["id"] for item in candidates)
        for other in merged:
            statements.append(("DELETE FROM disruptions WHERE id = ?", [other["id"]]))
            events.append(("retract", other))
        changed = {k: v for k, v in values.items() if keep[k] != v}
        if not changed:
            continue
        updated = {**keep, **values, "updated_at": stamp}
        statements.append(_update(updated))
        if not changed.keys() & _NOTEWORTHY:
            continue  # counts grew: the row says so, but it is not news for the feed or webhooks
        kind = "close" if keep["ended_at"] is None and updated["ended_at"] is not None else "update"
        if keep["ended_at"] is not None and updated["ended_at"] is None:
            kind = "open"  # it came back within the horizon: the same event, going on again
        events.append((kind, updated))
    for item in stored:
        if item["id"] not in matched and item["started_at"] >= horizon:
            statements.append(("DELETE FROM disruptions WHERE id = ?", [item["id"]]))
            events.append(("retract", item))
    if events:
        seq = await storage.fetch("SELECT COALESCE(MAX(seq), 0) FROM disruption_events")
        next_seq = int(seq[0][0]) + 1
        for offset, (kind, item) in enumerate(events):
            statements.append(
                (
                    "INSERT INTO disruption_events (seq, disruption_id, kind, at, document)"
                    " VALUES (?, ?, ?, ?, ?)",
                    [next_seq + offset, item["id"], kind, stamp, json.dumps(item, sort_keys=True)],
                )
            )
    if statements:
        await storage.execute(statements)
    return PassResult(events, len(live))


def _db_values(item: Mapping[str, Any]) -> list[Any]:
    return [
        item["pattern"],
        item["country"],
        item["region"],
        item["asn"],
        item["carrier"],
        item["network_type"],
        item["scope"],
        item["domain"] or "",
        item["started_at"],
        item["ended_at"],
        item["severity"],
        item["baseline"],
        item["current"],
        item["agents"],
        int(item["confirmed"]),
        json.dumps(item["evidence"], sort_keys=True),
        item["opened_at"],
        item["updated_at"],
    ]


def _insert(item: Mapping[str, Any]) -> tuple[str, list[Any]]:
    return (
        f"INSERT INTO disruptions ({COLUMNS}) VALUES ({', '.join('?' * 19)})",
        [item["id"], *_db_values(item)],
    )


def _update(item: Mapping[str, Any]) -> tuple[str, list[Any]]:
    names = [c.strip() for c in COLUMNS.split(",")][1:]
    return (
        f"UPDATE disruptions SET {', '.join(f'{n} = ?' for n in names)} WHERE id = ?",
        [*_db_values(item), item["id"]],
    )


async def list_disruptions(
    storage: Storage, filters: Mapping[str, Any], limit: int = 1000
) -> list[dict[str, Any]]:
    """Stored disruptions, newest first; ``filters`` as parsed by ``research.parse_disruption_query``."""
    where: list[str] = []
    args: list[Any] = []
    for name in ("pattern", "country", "region", "asn", "network_type", "scope", "domain"):
        if name in filters:
            where.append(f"{name} = ?")
            args.append(filters[name])
    if "active" in filters:
        where.append("ended_at IS NULL" if filters["active"] else "ended_at IS NOT NULL")
    if "since" in filters:  # overlaps [since, until)
        where.append("(ended_at IS NULL OR ended_at > ?)")
        args.append(filters["since"])
    if "until" in filters:
        where.append("started_at < ?")
        args.append(filters["until"])
    sql = f"SELECT {COLUMNS} FROM disruptions"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += f" ORDER BY started_at DESC, id LIMIT {int(limit)}"
    return [row_to_item(row) for row in await storage.fetch(sql, args)]


async def recent_events(
    storage: Storage, limit: int = 100
) -> list[tuple[str, str, dict[str, Any]]]:
    """The latest ``(kind, at, disruption item)`` events, newest first (the Atom feed)."""
    rows = await storage.fetch(
        f"SELECT kind, at, document FROM disruption_events ORDER BY seq DESC LIMIT {int(limit)}"
    )
    return [(kind, at, json.loads(document)) for kind, at, document in rows]
