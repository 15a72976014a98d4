"""Fleet simulator: thousands of signed agents against a real collector process on loopback.

Three parts, each against a real ``vantage collector serve`` subprocess on 127.0.0.1:

1. scenario: a fleet of virtual agents (real Ed25519 keys, registered over HTTP) in two countries,
   eight provinces, five carriers and three network types plays ten simulated days (the last ten
   before today's midnight, UTC) as fast as the collector takes it: a warm-up day, a quiet week with a
   kill -9 of the collector mid-ingest and a 30-minute collector outage, the seed event (international
   cut on the mobile carriers of four provinces, two drops in one morning), a full regional outage with
   backfill, and DNS blocking of one domain on one carrier. Measured: sustained ingest with latency
   percentiles, detection latency and correctness per event, false alarms, exactly-once storage, RSS;
2. capacity: real-time open-loop load of N agents at a 5-minute round, ramped until p99 upload latency
   reaches 200 ms (fresh collector);
3. burst: 500 uploads started at the same instant (the collector of 2, before its ramp).

A summary table is printed and the full result written to bench/results/fleet-<timestamp>.json.

    .venv/bin/python bench/fleet.py                          # default: a few minutes on 2 cores
    .venv/bin/python bench/fleet.py --agents-per-network 20 --ramp-max 1000000   # bigger
    .venv/bin/python bench/fleet.py --skip-capacity --quiet-days 3   # detection only, shorter
    .venv/bin/python bench/fleet.py --db postgresql://user@127.0.0.1/fleet   # scenario on PostgreSQL

Exit status: 0 when every check passed (exactly once, nothing lost, every event detected with the
right pattern, provinces and carriers, no false alarm in the quiet week, no burst error), 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fleetsim.agents import Uploader, collector_key, new_session
from fleetsim.audit import Ledger, audit
from fleetsim.capacity import P99_BUDGET_MS, AgentPool, burst, ramp
from fleetsim.collector import CollectorProcess, RssSampler
from fleetsim.evaluate import detection_table, false_alarms
from fleetsim.events import quiet_week, standard_calendar
from fleetsim.report import format_summary, write_json
from fleetsim.scenario import ScenarioConfig, ScenarioResult, last_midnight, run_scenario

from collector.backends import open_storage, parse_storage_url
from collector.detector import DetectorSettings

RESULTS = Path(__file__).resolve().parent / "results"


def scenario_json(result: ScenarioResult, db: str, quiet_days: int) -> dict[str, Any]:
    cfg = result.config
    quiet = quiet_week(cfg.day0, quiet_days)
    return {
        "agents": result.agents,
        "days": cfg.days,
        "day0": cfg.day0.isoformat(),
        "round_minutes": cfg.round_minutes,
        "step_minutes": cfg.step_minutes,
        "detect_every_minutes": cfg.detect_every_minutes,
        "concurrency": cfg.concurrency,
        "db": parse_storage_url(db).display,
        "wall_s": round(result.wall_seconds, 1),
        "ingest": result.stats.summary(result.ingest_seconds),
        "passes": result.passes,
        "skipped_passes": result.skipped_passes,
        "detect_s": round(result.detect_seconds, 2),
        "detection": detection_table(cfg.events, result.sightings),
        "false_alarms": {
            "quiet_week": false_alarms(cfg.events, result.sightings, quiet),
            "all": false_alarms(cfg.events, result.sightings, None),
        },
        "audit": result.audit.to_json(),
        "faults": result.faults,
        "rss": result.rss,
        "disruptions": [  # everything the API listed, to re-score old runs with new rules
            {
                "first_seen": seen.first_seen.isoformat(),
                "retracted_at": seen.retracted_at.isoformat() if seen.retracted_at else None,
                "patterns": [(at.isoformat(), pattern) for at, pattern in seen.history],
                "item": seen.item,
            }
            for seen in result.sightings.values()
        ],
    }


async def capacity_part(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    db = args.capacity_db or f"sqlite://{work}/capacity.db"
    collector = CollectorProcess(db, work / "capacity")
    collector.workdir.mkdir(parents=True, exist_ok=True)
    await collector.start()
    out: dict[str, Any] = {"db": parse_storage_url(db).display}
    try:
        async with new_session(limit=0) as http:
            key = await collector_key(http, collector.url)
            ledger = Ledger()
            uploader = Uploader(http, lambda: collector.url, key, ledger)
            pool = AgentPool(http, collector.url)
            if args.burst:  # first, on a fresh process, so its memory is measured clean
                print(f"burst: {args.burst} concurrent uploads ...", flush=True)
                out["burst"] = await burst(pool, uploader, collector, args.burst)
            with RssSampler(collector) as sampler:
                print("capacity ramp (agents at a 5-minute round, real time):", flush=True)
                best, steps = await ramp(
                    pool,
                    uploader,
                    sampler,
                    start=args.ramp_start,
                    factor=args.ramp_factor,
                    limit=args.ramp_max,
                    seconds=args.step_seconds,
                    refine=args.refine,
                )
            out |= {
                "largest_fleet": best,
                "step_seconds": args.step_seconds,
                "p99_budget_ms": P99_BUDGET_MS,
                "steps": [s.to_json() for s in steps],
            }
            storage = open_storage(db, migrate=False)
            await storage.open()
            try:
                out["audit"] = (await audit(storage, ledger)).to_json()
            finally:
                await storage.close()
    finally:
        await collector.stop()
    return out


def verdict(result: dict[str, Any]) -> bool:
    checks = []
    scenario = result.get("scenario")
    if scenario:
        checks += [
            scenario["audit"]["exactly_once"],
            scenario["audit"]["nothing_lost"],
            all(row["correct"] for row in scenario["detection"]),
            not scenario["false_alarms"]["quiet_week"],
            not scenario["ingest"]["refused"],
        ]
    if "burst" in result:
        checks.append(result["burst"]["errors"] == 0)
    if "capacity" in result:
        checks.append(result["capacity"]["audit"]["exactly_once"])
    return all(checks)


async def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sim = parser.add_argument_group("scenario")
    sim.add_argument("--agents-per-network", type=int, default=4, help="(22 networks; default 4)")
    sim.add_argument("--quiet-days", type=int, default=7, help="length of the quiet week")
    sim.add_argument("--round-minutes", type=float, default=30, help="simulated minutes per round")
    sim.add_argument("--step-minutes", type=float, default=5, help="simulated clock step")
    sim.add_argument(
        "--detect-every",
        type=float,
        default=60,
        help="simulated minutes between detection passes (default 60: passes on the hour)",
    )
    sim.add_argument("--concurrency", type=int, default=8, help="uploads in flight")
    sim.add_argument("--seed", type=int, default=1)
    sim.add_argument("--db", help="collector database URL (default: SQLite in the work dir)")
    sim.add_argument("--skip-scenario", action="store_true")
    cap = parser.add_argument_group("capacity")
    cap.add_argument("--ramp-start", type=int, default=2000, help="agents in the first step")
    cap.add_argument("--ramp-factor", type=float, default=2.0)
    cap.add_argument("--ramp-max", type=int, default=256_000)
    cap.add_argument("--step-seconds", type=float, default=10, help="real seconds per step")
    cap.add_argument("--refine", type=int, default=2, help="bisection steps after the ramp")
    cap.add_argument("--burst", type=int, default=500, help="concurrent uploads (0: skip)")
    cap.add_argument("--capacity-db", help="database URL for the capacity collector")
    cap.add_argument("--skip-capacity", action="store_true")
    parser.add_argument("--workdir", type=Path, help="keep databases and logs here")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the JSON goes")
    args = parser.parse_args()
    if args.quiet_days + 3 > 28:
        parser.error("--quiet-days: the run must fit in the collector's 30-day --max-age-days")

    result: dict[str, Any] = {
        "started_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "command": " ".join(sys.argv),
    }
    with tempfile.TemporaryDirectory(prefix="vantage-fleet-") as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        if not args.skip_scenario:
            day0 = last_midnight() - timedelta(days=args.quiet_days + 3)
            events, days = standard_calendar(day0, args.quiet_days)
            config = ScenarioConfig(
                days=days,
                events=events,
                day0=day0,
                agents_per_network=args.agents_per_network,
                round_minutes=args.round_minutes,
                step_minutes=args.step_minutes,
                detect_every_minutes=args.detect_every,
                concurrency=args.concurrency,
                seed=args.seed,
                detector=DetectorSettings(),
            )
            db = args.db or f"sqlite://{work}/fleet.db"
            print(f"scenario: {days} simulated days, {len(events)} scripted events ...", flush=True)
            outcome = await run_scenario(config, work / "scenario", db)
            result["scenario"] = scenario_json(outcome, db, args.quiet_days)
        if not args.skip_capacity:
            result["capacity"] = await capacity_part(args, work)
            if "burst" in result["capacity"]:
                result["burst"] = result["capacity"].pop("burst")
    result["verdict"] = verdict(result)
    print()
    print(format_summary(result))
    path = write_json(result, args.results)
    print(f"\nresult written to {path}")
    return 0 if result["verdict"] else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
