"""The research API beyond ``/api/v1/aggregate``: time series, measurement search, exports, disruptions.

Every parameter is whitelisted and parsed here; an unknown parameter or a bad value is a 400 with a
message saying what was expected. Values reach SQL only as bound parameters.

Export format (``GET /api/v1/export``, JSON Lines, ``application/x-ndjson``): one JSON object per line.
``{"type": "measurement", ...row..., "proof": {"batch_id", "uid"}}`` for each measurement, and, before
the first measurement of each batch, ``{"type": "batch", "batch_id", "agent_id", "agent_public_key",
"payload", "signature", "payload_sha256", "received_at"}`` with the batch's exact signed bytes (base64).
To re-verify a measurement: Ed25519-verify ``signature`` over ``b"vantage/batch/v1\\x00" + payload``
with ``agent_public_key``, check that ``agent_id`` derives from that key, decode ``payload`` (canonical
msgpack) and find the measurement whose ``uid`` is ``proof.uid``. With ``proof=inline`` the batch
fields sit inside every measurement's ``proof`` instead (self-contained lines, larger). ``format=csv``
exports the rows without proofs.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import json
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from protocol import format_time, utc_now

from .aggregate import FILTERS, parse_time_param
from .detector import PATTERNS
from .errors import BadRequest
from .storage import AggregateQuery, Storage

#: Measurement search filters: the aggregate's, plus what only makes sense row by row.
SEARCH_FILTERS: dict[str, tuple[str, Callable[[str], Any]]] = {
    **FILTERS,
    "agent_id": ("agent_id", lambda v: _hex(v, "agent_id")),
    "batch_id": ("batch_id", lambda v: _hex(v, "batch_id")),
}

MEASUREMENT_FIELDS = (
    "uid",
    "batch_id",
    "agent_id",
    "measured_at",
    "received_at",
    "test",
    "country",
    "region",
    "asn",
    "carrier",
    "network_type",
    "network_source",
    "url",
    "host",
    "scope",
    "category",
    "verdict",
    "blocking",
    "failure",
    "dns_failure",
    "tcp_failure",
    "http_failure",
    "http_status",
    "runtime",
)
MAX_PAGE = 1000
EXPORT_PAGE = 1000


def _hex(value: str, name: str) -> str:
    if len(value) != 32 or any(c not in "0123456789abcdef" for c in value):
        raise BadRequest(f"{name} must be 32 lowercase hex characters")
    return value


def check_known(params: Mapping[str, str], known: set[str]) -> None:
    unknown = sorted(set(params) - known)
    if unknown:
        raise BadRequest(
            f"unknown query parameter(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )


def parse_int(params: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    text = params.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise BadRequest(f"{name} must be an integer, got {text!r}") from None
    if not low <= value <= high:
        raise BadRequest(f"{name} must be between {low} and {high}, got {value}")
    return value


def parse_window(params: Mapping[str, str]) -> tuple[datetime | None, datetime | None]:
    since = parse_time_param("since", params.get("since"))
    until = parse_time_param("until", params.get("until"))
    if since and until and since >= until:
        raise BadRequest("since must be before until")
    return since, until


def parse_choice(params: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    value = params.get(name, choices[0])
    if value not in choices:
        raise BadRequest(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def to_csv(rows: list[dict[str, Any]], columns: list[str]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


# --- /api/v1/timeseries ------------------------------------------------------------------------------

TIMESERIES_FILTERS = ("country", "region", "asn", "network_type", "test")


async def timeseries(storage: Storage, params: Mapping[str, str]) -> dict[str, Any]:
    """Success ratio per bucket, domestic and international side by side (read from the rollups)."""
    check_known(params, {"interval", "since", "until", "format", *TIMESERIES_FILTERS})
    interval = parse_choice(params, "interval", ("hour", "day"))
    parse_choice(params, "format", ("json", "csv"))
    filters = {
        name: FILTERS[name][1](params[name]) for name in TIMESERIES_FILTERS if name in params
    }
    since, until = parse_window(params)
    step = timedelta(hours=1) if interval == "hour" else timedelta(days=1)
    if until is None:
        until = _floor(utc_now(), interval) + step
    if since is None:
        since = until - (timedelta(days=7) if interval == "hour" else timedelta(days=90))
    since, until = _floor(since, interval), _ceil(until, interval, step)
    if (until - since) / step > 24 * 400:
        raise BadRequest("too many buckets: narrow since/until or use interval=day")
    rows = await storage.aggregate(AggregateQuery((interval, "scope"), filters, since, until))
    points: dict[str, dict[str, Any]] = {}
    moment = since
    while moment < until:
        key = moment.strftime("%Y-%m-%dT%H:00:00Z")
        points[key] = {"bucket": key, "domestic": None, "international": None}
        moment += step
    for row in rows:
        point = points.setdefault(
            row[interval], {"bucket": row[interval], "domestic": None, "international": None}
        )
        n, ok = int(row["measurements"]), int(row["ok"] or 0)
        point[row["scope"]] = {
            "measurements": n,
            "ok": ok,
            "ratio": round(ok / n, 4) if n else None,
            "agents": int(row["agents"]),
        }
    return {
        "interval": interval,
        "filters": filters,
        "since": format_time(since),
        "until": format_time(until),
        "points": [points[key] for key in sorted(points)],
    }


def _floor(moment: datetime, interval: str) -> datetime:
    hour = moment.replace(minute=0, second=0, microsecond=0)
    return hour if interval == "hour" else hour.replace(hour=0)


def _ceil(moment: datetime, interval: str, step: timedelta) -> datetime:
    floor = _floor(moment, interval)
    return floor if floor == moment else floor + step


def timeseries_csv(document: Mapping[str, Any]) -> str:
    columns = ["bucket"] + [
        f"{scope}_{name}"
        for scope in ("domestic", "international")
        for name in ("ratio", "measurements", "ok", "agents")
    ]
    rows = []
    for point in document["points"]:
        row: dict[str, Any] = {"bucket": point["bucket"]}
        for scope in ("domestic", "international"):
            for name, value in (point[scope] or {}).items():
                row[f"{scope}_{name}"] = value
        rows.append(row)
    return to_csv(rows, columns)


# --- /api/v1/measurements and /api/v1/export ------------------------------------------------------------


def encode_cursor(measured_at: str, uid: str, order: str) -> str:
    raw = json.dumps([measured_at, uid, order], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str, order: str) -> tuple[str, str]:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        measured_at, uid, cursor_order = json.loads(raw)
        if not (isinstance(measured_at, str) and isinstance(uid, str)):
            raise ValueError("bad types")
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise BadRequest("cursor is not one this API returned") from None
    if cursor_order != order:
        raise BadRequest("cursor was made for the other order; pass the same order parameter")
    return measured_at, uid


def search_sql(
    params: Mapping[str, str], *, extra: tuple[str, ...] = ()
) -> tuple[str, list[Any], str]:
    """``(WHERE clause, args, order)`` for a measurement search; also used by the export."""
    check_known(params, {*SEARCH_FILTERS, "since", "until", "order", *extra})
    order = parse_choice(params, "order", ("desc", "asc"))
    where: list[str] = []
    args: list[Any] = []
    for name, (column, parse) in SEARCH_FILTERS.items():
        if name in params:
            where.append(f"{column} = ?")
            args.append(parse(params[name]))
    since, until = parse_window(params)
    if since is not None:
        where.append("measured_at >= ?")
        args.append(format_time(since))
    if until is not None:
        where.append("measured_at < ?")
        args.append(format_time(until))
    return " AND ".join(where) or "1 = 1", args, order


async def search_page(
    storage: Storage,
    where: str,
    args: list[Any],
    order: str,
    limit: int,
    after: tuple[str, str] | None,
) -> list[dict[str, Any]]:
    """One page in the stable order (measured_at, uid), strictly after ``after``."""
    sql_args = list(args)
    clause = where
    if after is not None:
        op = "<" if order == "desc" else ">"
        clause += f" AND (measured_at {op} ? OR (measured_at = ? AND uid {op} ?))"
        sql_args += [after[0], after[0], after[1]]
    direction = "DESC" if order == "desc" else "ASC"
    sql = (
        f"SELECT {', '.join(MEASUREMENT_FIELDS)} FROM measurements WHERE {clause}"
        f" ORDER BY measured_at {direction}, uid {direction} LIMIT {int(limit)}"
    )
    rows = await storage.fetch(sql, sql_args)
    return [dict(zip(MEASUREMENT_FIELDS, row, strict=True)) for row in rows]


async def search(storage: Storage, params: Mapping[str, str]) -> dict[str, Any]:
    where, args, order = search_sql(params, extra=("limit", "cursor"))
    limit = parse_int(params, "limit", 100, 1, MAX_PAGE)
    after = decode_cursor(params["cursor"], order) if params.get("cursor") else None
    rows = await search_page(storage, where, args, order, limit + 1, after)
    more = len(rows) > limit
    rows = rows[:limit]
    cursor = encode_cursor(rows[-1]["measured_at"], rows[-1]["uid"], order) if more else None
    return {"measurements": rows, "next_cursor": cursor}


async def _batch_proofs(storage: Storage, batch_ids: list[str]) -> dict[str, dict[str, Any]]:
    rows = await storage.fetch(
        "SELECT b.batch_id, b.agent_id, a.public_key, b.payload, b.signature, b.payload_sha256,"
        " b.received_at FROM batches b JOIN agents a ON a.agent_id = b.agent_id"
        f" WHERE b.batch_id IN ({', '.join('?' * len(batch_ids))})",
        batch_ids,
    )
    return {
        row[0]: {
            "batch_id": row[0],
            "agent_id": row[1],
            "agent_public_key": base64.b64encode(bytes(row[2])).decode(),
            "payload": base64.b64encode(bytes(row[3])).decode(),
            "signature": base64.b64encode(bytes(row[4])).decode(),
            "payload_sha256": row[5],
            "received_at": row[6],
        }
        for row in rows
    }


async def export_lines(
    storage: Storage, params: Mapping[str, str]
) -> tuple[str, AsyncIterator[bytes]]:
    """``(content type, body chunks)``; parameters are checked before the first byte is sent."""
    where, args, _ = search_sql(params, extra=("format", "proof"))
    if "order" in params:
        raise BadRequest("export is always oldest first; drop the order parameter")
    fmt = parse_choice(params, "format", ("jsonl", "csv"))
    proof = parse_choice(params, "proof", ("batch", "inline"))

    async def pages() -> AsyncIterator[list[dict[str, Any]]]:
        after: tuple[str, str] | None = None
        while True:
            rows = await search_page(storage, where, args, "asc", EXPORT_PAGE, after)
            if not rows:
                return
            yield rows
            after = (rows[-1]["measured_at"], rows[-1]["uid"])

    async def jsonl() -> AsyncIterator[bytes]:
        sent: set[str] = set()
        async for rows in pages():
            wanted = sorted({r["batch_id"] for r in rows} - (set() if proof == "inline" else sent))
            proofs = await _batch_proofs(storage, wanted) if wanted else {}
            lines = []
            for row in rows:
                batch_id = row["batch_id"]
                if proof == "batch" and batch_id not in sent:
                    sent.add(batch_id)
                    lines.append(json.dumps({"type": "batch", **proofs[batch_id]}))
                item_proof = {"batch_id": batch_id, "uid": row["uid"]}
                if proof == "inline":
                    item_proof.update(proofs[batch_id])
                lines.append(json.dumps({"type": "measurement", **row, "proof": item_proof}))
            yield ("\n".join(lines) + "\n").encode()

    async def csv_body() -> AsyncIterator[bytes]:
        first = True
        async for rows in pages():
            text = to_csv(rows, list(MEASUREMENT_FIELDS))
            yield (text if first else text.split("\n", 1)[1]).encode()
            first = False
        if first:
            yield to_csv([], list(MEASUREMENT_FIELDS)).encode()

    if fmt == "csv":
        return "text/csv", csv_body()
    return "application/x-ndjson", jsonl()


# --- /api/v1/disruptions ---------------------------------------------------------------------------------

DISRUPTION_FILTERS = ("country", "region", "asn", "network_type", "scope")


def parse_disruption_query(params: Mapping[str, str]) -> tuple[dict[str, Any], int]:
    check_known(
        params, {"active", "pattern", "domain", "since", "until", "limit", *DISRUPTION_FILTERS}
    )
    filters: dict[str, Any] = {
        name: FILTERS[name][1](params[name])
        for name in DISRUPTION_FILTERS
        if name in params and name != "scope"
    }
    if "scope" in params:
        filters["scope"] = parse_choice(params, "scope", ("international", "domestic", "all"))
    if "active" in params:
        filters["active"] = parse_choice(params, "active", ("true", "false")) == "true"
    if "pattern" in params:
        filters["pattern"] = parse_choice(params, "pattern", PATTERNS)
    if "domain" in params:
        filters["domain"] = FILTERS["domain"][1](params["domain"])
    since, until = parse_window(params)
    if since is not None:
        filters["since"] = since.strftime("%Y-%m-%dT%H:%M:%SZ")
    if until is not None:
        filters["until"] = until.strftime("%Y-%m-%dT%H:%M:%SZ")
    return filters, parse_int(params, "limit", 1000, 1, 10000)
