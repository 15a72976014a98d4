"""Ingest benchmark: signed batches over HTTP on loopback vs a raw executemany of the same rows.

For each backend, in the same run:

* end to end: a collector process (``vantage collector serve``) receives pre-signed batches over HTTP
  from this process (``--concurrency`` uploads in flight): decode under limits, agent lookup, Ed25519
  verify, schema validation, time window, dedupe, rows + rollups in one transaction, signed receipt;
* baseline: the same measurement rows (plus their batch rows, which the foreign key needs) written with
  ``executemany`` into a fresh database of the same kind and schema, one transaction per batch, from
  this process, with nothing else (no HTTP, no verification, no rollups).

The ratio end-to-end / baseline says how much of the database's raw write speed ingest keeps.
The collector is a separate process so that the client's own work does not count against it.

    python bench/ingest.py                     # ~20k measurements per backend, well under a minute
    python bench/ingest.py --measurements 200000 --concurrency 8
    python bench/ingest.py --backends sqlite --pg-dsn postgresql://user@host/db
    python bench/ingest.py --profile /tmp/ingest.txt   # py-spy raw stacks of the collector
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from ingest_support import NETWORKS, TARGETS, batch_of, measurement

from collector.backends import open_storage
from collector.sqlite_store import MEASUREMENT_COLUMNS, SqliteStorage, measurement_row
from protocol import Batch, SignedBatch, SigningKey, make_registration, sign_batch, utc_now

VERDICTS = ("ok", "anomaly", "confirmed", "failure")


def make_batches(
    total: int, batch_size: int, agents: int
) -> tuple[list[SigningKey], list[tuple[Batch, SignedBatch]]]:
    keys = [SigningKey.generate() for _ in range(agents)]
    now = utc_now()
    out = []
    for n in range(0, total, batch_size):
        key = keys[(n // batch_size) % agents]
        items = [
            measurement(
                key,
                at=now - timedelta(minutes=1 + (n + j) % 600),
                network=NETWORKS[(n // batch_size) % len(NETWORKS)],
                target=TARGETS[j % 2],
                verdict=VERDICTS[j % 4],
            )
            for j in range(min(batch_size, total - n))
        ]
        batch = batch_of(key, items)
        out.append((batch, sign_batch(key, batch)))
    return keys, out


#: ``--profile``: py-spy (``pip install py-spy``) samples the collector process into this file.
PROFILE: Path | None = None


@contextlib.asynccontextmanager
async def collector(db: str, workdir: Path) -> AsyncIterator[tuple[str, psutil.Process]]:
    wrap = []
    if PROFILE is not None:
        name = PROFILE.with_name(f"{PROFILE.stem}-{db.split(':', 1)[0]}{PROFILE.suffix}")
        wrap = ["py-spy", "record", "--rate", "200", "--format", "raw", "-o", str(name), "--"]
    process = await asyncio.create_subprocess_exec(
        *wrap, sys.executable, "-m", "vantagepoint", "collector", "serve", "--db", db,
        "--port", "0", "--migrate", "--key", str(workdir / "collector.key"),
        "--rate-per-agent", "0", "--rate-per-address", "0", "--log-format", "json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        while True:  # (py-spy prints a line of its own first)
            line = (await asyncio.wait_for(process.stdout.readline(), 60)).decode()
            match = re.search(r"listening on (http://\S+)", line)
            if match or not line:
                break
        if not match:
            raise SystemExit(f"collector did not start: {line!r}")
        served = psutil.Process(process.pid)
        yield match.group(1), (served.children()[0] if wrap else served)
    finally:
        # SIGINT: the collector stops cleanly, and py-spy (if any) writes its profile
        process.send_signal(signal.SIGINT if wrap else signal.SIGTERM)
        await process.wait()


async def end_to_end(
    db: str,
    workdir: Path,
    keys: list[SigningKey],
    batches: list[tuple[Batch, SignedBatch]],
    concurrency: int,
) -> tuple[float, float]:
    """Measurements per second (wall clock), and per second of the collector's CPU time (all its
    threads: the "per core" figure, unaffected by other load on the machine)."""
    bodies = [signed.to_bytes() for _, signed in batches]
    async with collector(db, workdir) as (url, served), aiohttp.ClientSession() as http:
        for key in keys:
            body = json.dumps(make_registration(key, utc_now())).encode()
            async with http.post(
                f"{url}/api/v1/agents", data=body, headers={"Content-Type": "application/json"}
            ) as r:
                r.raise_for_status()
        queue = list(reversed(bodies))

        async def worker() -> int:
            stored = 0
            while queue:
                body = queue.pop()
                async with http.post(
                    f"{url}/api/v1/batches",
                    data=body,
                    headers={"Content-Type": "application/msgpack"},
                ) as r:
                    answer = await r.json()
                    if r.status != 200:
                        raise SystemExit(f"upload refused: {answer}")
                    stored += int(answer["stored"])
            return stored

        cpu_before = served.cpu_times()
        started = time.perf_counter()
        stored = sum(await asyncio.gather(*(worker() for _ in range(concurrency))))
        elapsed = time.perf_counter() - started
        cpu_after = served.cpu_times()
    assert stored == sum(len(b.measurements) for b, _ in batches), stored
    cpu = (cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system)
    return stored / elapsed, stored / cpu


def rows_of(
    batches: list[tuple[Batch, SignedBatch]],
) -> list[tuple[tuple[Any, ...], list[tuple[Any, ...]]]]:
    received = "2026-01-01T00:00:00.000000Z"
    return [
        (
            (
                b.batch_id,
                b.agent_id,
                received,
                s.payload,
                s.signature,
                s.payload_sha256,
                len(b.measurements),
            ),
            [measurement_row(m, b.batch_id, received) for m in b.measurements],
        )
        for b, s in batches
    ]


async def baseline_sqlite(
    path: Path, keys: list[SigningKey], batches: list[tuple[Batch, SignedBatch]]
) -> float:
    storage = SqliteStorage(path)
    await storage.open()
    for key in keys:
        await storage.register_agent(key.agent_id, key.public_key, utc_now())
    await storage.close()
    conn = SqliteStorage(path)._connect()  # the same pragmas as the collector's writer
    prepared = rows_of(batches)
    insert = f"INSERT INTO measurements ({MEASUREMENT_COLUMNS}) VALUES ({', '.join('?' * 24)})"
    started = time.perf_counter()
    for batch_row, rows in prepared:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO batches VALUES (?, ?, ?, ?, ?, ?, ?)", batch_row)
        conn.executemany(insert, rows)
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return sum(len(rows) for _, rows in prepared) / elapsed


async def baseline_pg(
    dsn: str, keys: list[SigningKey], batches: list[tuple[Batch, SignedBatch]]
) -> float:
    storage = open_storage(dsn, migrate=True)
    await storage.open()
    for key in keys:
        await storage.register_agent(key.agent_id, key.public_key, utc_now())
    await storage.close()
    conn = await asyncpg.connect(dsn)
    prepared = rows_of(batches)
    insert = f"INSERT INTO measurements ({MEASUREMENT_COLUMNS}) VALUES ({', '.join(f'${i}' for i in range(1, 25))})"
    started = time.perf_counter()
    for batch_row, rows in prepared:
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO batches VALUES ($1, $2, $3, $4, $5, $6, $7)", *batch_row
            )
            await conn.executemany(insert, rows)
    elapsed = time.perf_counter() - started
    await conn.close()
    return sum(len(rows) for _, rows in prepared) / elapsed


async def fresh_pg_database(admin_dsn: str, name: str) -> str:
    conn = await asyncpg.connect(admin_dsn)
    await conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    return admin_dsn.rsplit("/", 1)[0] + "/" + name


def report(backend: str, e2e: tuple[float, float], raw: float) -> None:
    wall, per_cpu = e2e
    print(
        f"{backend:<11} end-to-end {wall:>9,.0f} measurements/s   raw executemany {raw:>9,.0f} /s"
        f"   ratio {wall / raw:.2f}   collector: {per_cpu:,.0f} measurements per CPU-second"
    )


async def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--measurements", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--pg-dsn", help="an existing server (admin DSN); default: a throwaway one")
    parser.add_argument(
        "--profile", type=Path, help="sample the collector with py-spy into FILE-<backend> (raw)"
    )
    args = parser.parse_args()
    global PROFILE
    PROFILE = args.profile
    print(
        f"preparing {args.measurements:,} measurements in batches of {args.batch_size} ...",
        flush=True,
    )
    keys, batches = make_batches(args.measurements, args.batch_size, args.agents)
    with tempfile.TemporaryDirectory(prefix="vantage-bench-") as tmp:
        work = Path(tmp)
        if "sqlite" in args.backends:
            e2e = await end_to_end(f"sqlite://{work}/e2e.db", work, keys, batches, args.concurrency)
            raw = await baseline_sqlite(work / "raw.db", keys, batches)
            report("sqlite", e2e, raw)
        if "postgresql" in args.backends:
            server = None
            admin = args.pg_dsn
            if admin is None:
                import pg_server

                if not pg_server.available():
                    print(
                        "postgresql  skipped: no PostgreSQL binaries (apt-get install postgresql)"
                    )
                    return 0
                server = pg_server.PostgresServer()
                server.start()
                admin = server.dsn()
            try:
                e2e = await end_to_end(
                    await fresh_pg_database(admin, "bench_e2e"),
                    work,
                    keys,
                    batches,
                    args.concurrency,
                )
                raw = await baseline_pg(await fresh_pg_database(admin, "bench_raw"), keys, batches)
                report("postgresql", e2e, raw)
            finally:
                if server is not None:
                    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
