"""``vantage collector ...`` and ``vantage demo``. Heavy imports happen inside the handlers."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
from pathlib import Path

EXAMPLES = """examples:
  vantage collector serve --db /var/lib/vantage/collector.db --host 0.0.0.0 --port 8080
  vantage collector revoke 3f2a...e9 --db /var/lib/vantage/collector.db
  curl 'http://127.0.0.1:8080/api/v1/aggregate?by=region,carrier,scope'
"""


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
    serve.add_argument("--db", type=Path, default=Path("vantage-collector.db"), help="SQLite file")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8080, help="port to listen on (0: any free)")
    serve.add_argument("--max-body", type=int, default=8 * 1024 * 1024, help="upload size cap")
    serve.add_argument(
        "--geoip",
        type=Path,
        action="append",
        default=[],
        metavar="MMDB",
        help="MaxMind/DB-IP .mmdb file for GET /api/v1/whoami (repeat for City + ASN)",
    )
    serve.add_argument(
        "--key-file", type=Path, help="collector key (default: collector.key beside --db, 0600)"
    )
    serve.set_defaults(handler=cmd_serve)

    revoke = commands.add_parser("revoke", help="refuse further uploads from an agent")
    revoke.add_argument("agent_id")
    revoke.add_argument("--db", type=Path, default=Path("vantage-collector.db"))
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
    demo.set_defaults(handler=cmd_demo)


def cmd_serve(args: argparse.Namespace) -> int:
    from .app import CollectorConfig
    from .server import serve_forever

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    config = CollectorConfig(
        db_path=args.db,
        max_body_bytes=args.max_body,
        collector_key_path=args.key_file,
        geoip_paths=tuple(args.geoip),
    )

    def announce(url: str) -> None:
        print(f"vantage collector listening on {url} (db: {args.db})", flush=True)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_forever(config, args.host, args.port, announce))
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    from protocol import utc_now

    from .sqlite_store import SqliteStorage

    async def run() -> bool:
        storage = SqliteStorage(args.db)
        await storage.open()
        try:
            return await storage.revoke_agent(args.agent_id, utc_now())
        finally:
            await storage.close()

    revoked = asyncio.run(run())
    if args.json:
        print(json.dumps({"agent_id": args.agent_id, "revoked": revoked}))
    else:
        print(
            f"agent {args.agent_id} "
            + ("revoked" if revoked else "was not found or already revoked")
        )
    return 0 if revoked else 1


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return asyncio.run(
        run_demo(workdir=args.workdir, as_json=args.json, internet=args.internet, out=sys.stdout)
    )
