"""``vantage collector ...`` and ``vantage demo``. Heavy imports happen inside the handlers."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from .detector import DetectorSettings
    from .storage import Storage

T = TypeVar("T")

DB_HELP = (
    "database: a SQLite path or sqlite:///PATH (default: %(default)s), or postgresql://USER@HOST/DB"
)

EXAMPLES = """examples:
  vantage collector serve --db /var/lib/vantage/collector.db --host 0.0.0.0 --port 8080
  vantage collector migrate --db postgresql://vantage@db.internal/vantage
  vantage collector serve --db postgresql://vantage@db.internal/vantage --rate-per-address 0 \\
      --key /etc/vantage/collector.key --log-format json
  vantage collector revoke 3f2a...e9 --db /var/lib/vantage/collector.db
  curl http://127.0.0.1:8080/api/v1/collector-key     # pin it in agents as collector_key
  curl 'http://127.0.0.1:8080/api/v1/aggregate?by=region,carrier,scope'
  vantage collector serve --db collector.db --webhook https://alerts.example.org/vantage
  vantage collector detect --db collector.db --at 2026-11-28T15:00Z --json
"""


def add_detector_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--min-agents",
        type=int,
        default=3,
        help="distinct agents a bucket needs before anything is flagged (default: %(default)s)",
    )
    parser.add_argument(
        "--min-baseline",
        type=int,
        default=12,
        help="hourly buckets of history before a series is judged on its own (default: %(default)s)",
    )
    parser.add_argument(
        "--baseline-hours",
        type=int,
        default=168,
        help="sliding baseline window in hours (default: %(default)s, 7 days)",
    )


def detector_settings(args: argparse.Namespace) -> DetectorSettings:
    from .detector import DetectorSettings

    for name in ("min_agents", "min_baseline", "baseline_hours"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1")
    return DetectorSettings(
        window=args.baseline_hours, min_baseline=args.min_baseline, min_agents=args.min_agents
    )


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    collector = subparsers.add_parser(
        "collector",
        help="run the central collector (operators)",
        description="Verify, store and aggregate signed measurements.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = collector.add_subparsers(dest="collector_command", metavar="COMMAND", required=True)
    serve = commands.add_parser(
        "serve",
        help="serve the HTTP API",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument("--db", default="vantage-collector.db", help=DB_HELP)
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8080, help="port to listen on (0: any free)")
    serve.add_argument("--max-body", type=int, default=8 * 1024 * 1024, help="upload size cap")
    serve.add_argument(
        "--operator-keys",
        type=Path,
        help="file of base64 operator public keys (one per line) trusted to publish test lists",
    )
    serve.add_argument(
        "--migrate",
        action="store_true",
        help="apply pending schema migrations on start (SQLite always does)",
    )
    serve.add_argument(
        "--key",
        "--key-file",
        dest="key",
        type=Path,
        help="collector signing key for receipts and whoami tokens (created if absent, mode 0600;"
        " default: beside the SQLite db). Collectors sharing a database share this file.",
    )
    serve.add_argument(
        "--max-age-days", type=float, default=30, help="oldest measurement accepted (days)"
    )
    serve.add_argument(
        "--max-future-minutes", type=float, default=10, help="clock skew tolerated (minutes)"
    )
    serve.add_argument(
        "--rate-per-agent",
        type=float,
        default=10,
        help="uploads per second per agent, burst 6x (0: no limit)",
    )
    serve.add_argument(
        "--rate-per-address",
        type=float,
        default=20,
        help="writes per second per client address, burst 5x (0: no limit, e.g. behind a proxy)",
    )
    serve.add_argument(
        "--max-inflight",
        type=int,
        default=256,
        help="uploads handled at once; more get 503 + Retry-After (back-pressure, bounded memory)",
    )
    serve.add_argument("--log-format", choices=("text", "json"), default="text")
    serve.add_argument(
        "--no-control", action="store_true", help="do not offer POST /api/v1/control"
    )
    serve.add_argument(
        "--control-lab",
        action="store_true",
        help="let the control helper measure private and loopback targets (labs only)",
    )
    serve.add_argument(
        "--control-resolver", help="DNS server address[:port] for the control helper"
    )
    serve.add_argument("--control-ca-file", help="extra CA bundle the control helper trusts")
    serve.add_argument("--mmdb", help="ASN database (MMDB) for the control helper's answers")
    serve.add_argument(
        "--geoip",
        type=Path,
        action="append",
        default=[],
        metavar="MMDB",
        help="MaxMind/DB-IP .mmdb file for GET /api/v1/whoami (repeat for City + ASN)",
    )
    serve.add_argument(
        "--detect-interval",
        type=float,
        default=60,
        metavar="SECONDS",
        help="run the disruption detector this often (default: %(default)s; 0: never)",
    )
    serve.add_argument(
        "--webhook",
        action="append",
        default=[],
        metavar="URL",
        help="POST signed alerts here when a disruption opens or closes (repeatable)",
    )
    add_detector_options(serve)
    serve.set_defaults(handler=cmd_serve)

    detect = commands.add_parser(
        "detect",
        help="run one disruption-detection pass and print what changed",
        description="Run the detector once over the database (what `serve` does every"
        " --detect-interval seconds): open, update and close disruptions. --at replays a moment.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    detect.add_argument("--db", default="vantage-collector.db", help=DB_HELP)
    detect.add_argument("--at", help="pretend it is this time (ISO 8601, UTC), default now")
    detect.add_argument("--json", action="store_true")
    add_detector_options(detect)
    detect.set_defaults(handler=cmd_detect)

    migrate = commands.add_parser(
        "migrate",
        help="apply pending schema migrations",
        description="Bring the database schema to this version's (safe to run repeatedly,"
        " and from several hosts at once).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    migrate.add_argument("--db", default="vantage-collector.db", help=DB_HELP)
    migrate.add_argument("--json", action="store_true")
    migrate.set_defaults(handler=cmd_migrate)

    revoke = commands.add_parser("revoke", help="refuse further uploads from an agent")
    revoke.add_argument("agent_id")
    revoke.add_argument("--db", default="vantage-collector.db", help=DB_HELP)
    revoke.add_argument("--json", action="store_true")
    revoke.set_defaults(handler=cmd_revoke)

    demo = subparsers.add_parser(
        "demo",
        help="run a collector and three agents on loopback and show the aggregate",
        description=(
            "Start a collector (SQLite in a temp dir), a simulated domestic and international web"
            " on 127.0.0.1 with a censoring resolver for one mobile carrier, three agents in two"
            " provinces, and print what the collector concludes. Needs no internet."
        ),
    )
    demo.add_argument("--json", action="store_true", help="print the aggregate as JSON")
    demo.add_argument("--workdir", type=Path, help="keep the demo's files here (default: temp)")
    demo.add_argument(
        "--internet",
        action="store_true",
        help="also measure a few real public sites with the system resolver (needs internet)",
    )
    demo.add_argument(
        "--serve",
        action="store_true",
        help="keep the demo collector running afterwards and print its dashboard URL (Ctrl-C stops)",
    )
    demo.add_argument(
        "--port", type=int, default=0, help="port for the demo collector (default: any free port)"
    )
    demo.set_defaults(handler=cmd_demo)


def cmd_serve(args: argparse.Namespace) -> int:
    from datetime import timedelta

    from .app import CollectorConfig
    from .backends import StorageUrlError, parse_storage_url
    from .control import ControlSettings, mmdb_asn_lookup, parse_resolver
    from .ingest import IngestPolicy
    from .logs import configure_logging
    from .migrations import SchemaMismatch
    from .ratelimit import Rate
    from .server import serve_forever
    from .storage import StorageUnavailable

    try:
        settings = detector_settings(args)
        if args.detect_interval < 0:
            raise ValueError("--detect-interval must be 0 or more seconds")
        for url in args.webhook:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"--webhook must be an http:// or https:// URL, got {url!r}")
        if args.control_resolver:
            parse_resolver(args.control_resolver)
        if args.mmdb:
            mmdb_asn_lookup(args.mmdb)  # fail now, not on the first control request
    except (ValueError, RuntimeError, OSError) as exc:
        print(f"vantage: error: {exc}", file=sys.stderr)
        return 2
    control = ControlSettings(
        enabled=not args.no_control,
        lab=args.control_lab,
        resolver=args.control_resolver,
        ca_file=args.control_ca_file,
        mmdb=args.mmdb,
    )
    configure_logging(args.log_format)
    try:
        url = parse_storage_url(args.db)
    except StorageUrlError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    operator_keys: tuple[bytes, ...] = ()
    if args.operator_keys is not None:
        from .testlists import load_operator_keys

        try:
            operator_keys = load_operator_keys(args.operator_keys)
        except ValueError as exc:
            print(f"vantage: error: {exc}", file=sys.stderr)
            return 2
    config = CollectorConfig(
        db_path=args.db,
        max_body_bytes=args.max_body,
        operator_keys=operator_keys,
        policy=IngestPolicy(
            max_age=timedelta(days=args.max_age_days),
            max_future_skew=timedelta(minutes=args.max_future_minutes),
        ),
        key_path=args.key,
        agent_rate=Rate(args.rate_per_agent, max(1, int(args.rate_per_agent * 6))),
        address_rate=Rate(args.rate_per_address, max(1, int(args.rate_per_address * 5))),
        migrate=True if args.migrate else None,
        max_inflight_uploads=max(1, args.max_inflight),
        control=control,
        geoip_paths=tuple(args.geoip),
        detect_interval=args.detect_interval,
        detector=settings,
        webhooks=tuple(args.webhook),
    )

    def announce(address: str) -> None:
        print(f"vantage collector listening on {address} (db: {url.display})", flush=True)

    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve_forever(config, args.host, args.port, announce))
    except (SchemaMismatch, StorageUnavailable, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def with_storage(db: str, work: Callable[[Storage], Awaitable[T]], migrate: bool | None) -> T:
    from .backends import open_storage

    async def run() -> T:
        storage = open_storage(db, migrate=migrate)
        await storage.open()
        try:
            return await work(storage)
        finally:
            await storage.close()

    return asyncio.run(run())


def cmd_migrate(args: argparse.Namespace) -> int:
    from .backends import StorageUrlError, parse_storage_url
    from .migrations import SchemaMismatch
    from .storage import StorageUnavailable

    async def version(storage: Storage) -> tuple[list[int], int]:
        return storage.applied_migrations, await storage.schema_version()

    try:
        display = parse_storage_url(args.db).display
        applied, current = with_storage(args.db, version, migrate=True)
    except (StorageUrlError, SchemaMismatch, StorageUnavailable, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"db": display, "applied": applied, "version": current}))
    elif applied:
        print(f"{display}: applied migrations {', '.join(map(str, applied))}; now at {current}")
    else:
        print(f"{display}: already at schema version {current}")
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    from protocol import utc_now

    from .backends import StorageUrlError
    from .migrations import SchemaMismatch
    from .storage import StorageUnavailable

    async def revoke(storage: Storage) -> bool:
        return await storage.revoke_agent(args.agent_id, utc_now())

    try:
        revoked = with_storage(args.db, revoke, migrate=None)
    except (StorageUrlError, SchemaMismatch, StorageUnavailable, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"agent_id": args.agent_id, "revoked": revoked}))
    else:
        print(
            f"agent {args.agent_id} "
            + ("revoked" if revoked else "was not found or already revoked")
        )
    return 0 if revoked else 1


def cmd_detect(args: argparse.Namespace) -> int:
    from protocol import utc_now

    from .aggregate import parse_time_param
    from .backends import StorageUrlError
    from .disruptions import PassResult, detect
    from .errors import BadRequest
    from .migrations import SchemaMismatch
    from .storage import StorageUnavailable

    try:
        settings = detector_settings(args)
        at = parse_time_param("--at", args.at) or utc_now()
    except (ValueError, BadRequest) as exc:
        print(f"vantage: error: {getattr(exc, 'message', exc)}", file=sys.stderr)
        return 2

    async def run(storage: Storage) -> PassResult:
        return await detect(storage, at, settings)

    try:
        result = with_storage(args.db, run, migrate=None)
    except (StorageUrlError, SchemaMismatch, StorageUnavailable, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        events = [{"event": kind, "disruption": item} for kind, item in result.events]
        print(json.dumps({"at": at.isoformat(), "episodes": result.episodes, "events": events}))
        return 0
    print(f"detection pass at {at.isoformat()}: {result.episodes} episode(s) in the horizon")
    for kind, item in result.events:
        where = f"{item['country']} {item['region']} AS{item['asn']} {item['carrier']}"
        domain = f" {item['domain']}" if item.get("domain") else ""
        print(
            f"  {kind:8} {item['pattern']}{domain} {where} ({item['network_type']})"
            f" since {item['started_at']}"
            + (f" until {item['ended_at']}" if item["ended_at"] else "")
        )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    demo = run_demo(
        workdir=args.workdir,
        as_json=args.json,
        internet=args.internet,
        out=sys.stdout,
        serve=args.serve,
        port=args.port,
    )
    try:
        return asyncio.run(demo)
    except KeyboardInterrupt:  # --serve ends with Ctrl-C: the demo cleaned up in its finally
        return 0
