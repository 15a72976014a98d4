"""``vantage query ...``: the researcher's client for a collector's research API (aiohttp client only).

Each subcommand maps to one endpoint; filters become query parameters and the collector validates them
(a 400 becomes exit code 2 with its message). Output is a table, ``--json`` (the API's document) or
``--csv``. ``export`` streams to stdout or ``--out FILE`` without holding the data in memory.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from protocol.tables import render_table

EXAMPLES = """examples:
  vantage query aggregate --collector http://127.0.0.1:8080 --by region,carrier,scope --since 2026-11-27
  vantage query timeseries --collector URL --region IR-07 --asn 44244 --interval hour --csv
  vantage query disruptions --collector URL --active --pattern international_cut
  vantage query measurements --collector URL --domain www.bbc.com --verdict anomaly --limit 50 --json
  vantage query export --collector URL --country IR --since 2026-11-01 --out ir.jsonl

exit codes: 0 ok, 1 collector unreachable or failing, 2 bad parameters (the collector's message)
"""

FILTERS = ("country", "region", "asn", "network_type", "scope", "test", "domain", "category")


class QueryError(Exception):
    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    query = subparsers.add_parser(
        "query",
        help="query a collector's research API (researchers)",
        description="Aggregates, time series, disruptions, measurements and exports from a collector.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = query.add_subparsers(dest="query_command", metavar="COMMAND", required=True)

    def command(name: str, help_text: str, filters: Sequence[str]) -> argparse.ArgumentParser:
        parser = commands.add_parser(
            name,
            help=help_text,
            epilog=EXAMPLES,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        parser.add_argument("--collector", required=True, help="collector base URL")
        for flag in filters:
            parser.add_argument(f"--{flag.replace('_', '-')}", dest=flag, help=f"filter: {flag}")
        parser.add_argument("--since", help="start (ISO 8601, UTC)")
        parser.add_argument("--until", help="end, exclusive (ISO 8601, UTC)")
        out = parser.add_mutually_exclusive_group()
        out.add_argument("--json", action="store_true", help="print the API's JSON document")
        out.add_argument("--csv", action="store_true", help="print CSV")
        parser.set_defaults(handler=cmd_query, endpoint=name)
        return parser

    aggregate = command("aggregate", "counts by axes", [*FILTERS, "verdict", "blocking"])
    aggregate.add_argument("--by", default="region,carrier,scope", help="comma-separated axes")
    timeseries = command(
        "timeseries", "success ratio per bucket, domestic and international", FILTERS[:4]
    )
    timeseries.add_argument("--interval", choices=("hour", "day"), default="hour")
    disruptions = command(
        "disruptions", "detected disruptions", ("country", "region", "asn", "network_type")
    )
    state = disruptions.add_mutually_exclusive_group()
    state.add_argument("--active", action="store_const", const="true", dest="active")
    state.add_argument("--past", action="store_const", const="false", dest="active")
    disruptions.add_argument("--pattern", help="international_cut, full_outage, ...")
    measurements = command("measurements", "search measurements", [*FILTERS, "verdict", "blocking"])
    measurements.add_argument("--limit", type=int, default=100)
    measurements.add_argument("--cursor", help="next_cursor from a previous page")
    measurements.add_argument("--order", choices=("desc", "asc"))
    export = command(
        "export", "stream measurements (JSONL with proofs, or CSV)", [*FILTERS, "verdict"]
    )
    export.add_argument("--out", type=Path, help="write here instead of stdout")
    export.add_argument("--proof", choices=("batch", "inline"))


_EXTRA = ("by", "interval", "active", "pattern", "verdict", "blocking", "limit", "cursor", "order")
_PATHS = {
    "aggregate": "/api/v1/aggregate",
    "timeseries": "/api/v1/timeseries",
    "disruptions": "/api/v1/disruptions",
    "measurements": "/api/v1/measurements",
    "export": "/api/v1/export",
}


def params_of(args: argparse.Namespace) -> dict[str, str]:
    params = {}
    for name in (*FILTERS, "since", "until", *_EXTRA, "proof"):
        value = getattr(args, name, None)
        if value is not None:
            params[name] = str(value)
    if args.endpoint == "export":
        params["format"] = "csv" if args.csv else "jsonl"
    return params


async def _fetch(url: str, params: dict[str, str], out: Any = None) -> Any:
    import aiohttp

    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_read=120)) as http,
            http.get(url, params=params) as response,
        ):
            if response.status >= 400:
                try:
                    message = (await response.json())["error"]["message"]
                except (ValueError, KeyError, TypeError, aiohttp.ContentTypeError):
                    message = (await response.text())[:200]
                raise QueryError(
                    f"collector answered {response.status}: {message}",
                    2 if response.status == 400 else 1,
                )
            if out is None:
                return await response.json()
            async for chunk in response.content.iter_chunked(64 * 1024):
                out.write(chunk)
            return None
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise QueryError(f"cannot reach collector at {url}: {exc}", 1) from exc


DISRUPTION_COLUMNS = [
    *("pattern", "country", "region", "asn", "carrier", "network_type", "scope", "domain"),
    *("started_at", "ended_at", "severity", "baseline", "current", "agents"),
]
MEASUREMENT_COLUMNS = (
    "measured_at",
    "country",
    "region",
    "asn",
    "network_type",
    "host",
    "scope",
    "verdict",
    "blocking",
    "failure",
    "uid",
)


def _rows(endpoint: str, document: dict[str, Any]) -> list[dict[str, Any]]:
    if endpoint == "aggregate":
        return list(document["rows"])
    if endpoint == "timeseries":
        rows = []
        for point in document["points"]:
            row: dict[str, Any] = {"bucket": point["bucket"]}
            for scope in ("domestic", "international"):
                cell = point[scope] or {}
                row[f"{scope}_ratio"] = cell.get("ratio")
                row[f"{scope}_n"] = cell.get("measurements")
                row[f"{scope}_agents"] = cell.get("agents")
            rows.append(row)
        return rows
    if endpoint == "disruptions":
        return [{k: item.get(k) for k in DISRUPTION_COLUMNS} for item in document["disruptions"]]
    return [{k: m.get(k) for k in MEASUREMENT_COLUMNS} for m in document["measurements"]]


def render(endpoint: str, document: dict[str, Any], as_csv: bool) -> str:
    rows = _rows(endpoint, document)
    columns = list(rows[0]) if rows else []
    if as_csv:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
        if columns:
            writer.writeheader()
            writer.writerows(rows)
        return out.getvalue().rstrip("\n")
    if not rows:
        return "(nothing)"
    text = render_table(columns, [["" if r[c] is None else r[c] for c in columns] for r in rows])
    if endpoint == "measurements" and document.get("next_cursor"):
        text += f"\nmore: --cursor {document['next_cursor']}"
    return text


def cmd_query(args: argparse.Namespace) -> int:
    url = args.collector.rstrip("/") + _PATHS[args.endpoint]
    params = params_of(args)
    try:
        if args.endpoint == "export":
            if args.out is None:
                asyncio.run(_fetch(url, params, sys.stdout.buffer))
            else:
                with args.out.open("wb") as handle:
                    asyncio.run(_fetch(url, params, handle))
            return 0
        document = asyncio.run(_fetch(url, params))
    except QueryError as exc:
        print(f"vantage: error: {exc}", file=sys.stderr)
        return exc.exit_code
    if args.json:
        print(json.dumps(document, indent=2))
    else:
        print(render(args.endpoint, document, args.csv))
    return 0
