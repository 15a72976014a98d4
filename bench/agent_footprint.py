"""Agent footprint: peak RSS and CPU per target over a 1,000-target round, and spool throughput.

Everything on loopback: a LabDns zone with N names, one LabWeb answering them all, and a collector
(SQLite) taking the uploads. The agent is a real ``vantage agent run --max-rounds 1`` process;
its peak RSS and CPU come from ``getrusage(RUSAGE_CHILDREN)`` after it exits. Baselines measured in
the same run: a bare interpreter that only imports the agent (RSS), and plain unsynced file writes
(spool throughput).

    .venv/bin/python bench/agent_footprint.py             # 1,000 targets, ~30 s
    .venv/bin/python bench/agent_footprint.py --targets 200 --spool 500
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from agent.config import AgentConfig, write_config
from agent.keyfile import create_key
from agent.probes.dns_probe import ResolverSpec
from agent.spool import Spool
from agent.web_connectivity import ProbeSettings
from collector.app import CollectorConfig
from collector.labnet import LabDns, LabWeb, Site, Zone
from collector.server import start_collector
from protocol import Measurement, NetworkContext, SigningKey, Target, Verdict, new_uid, utc_now


def child_usage() -> tuple[float, float]:
    """(peak RSS of the largest finished child in MB, CPU seconds of all finished children)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


def baseline_rss() -> float:
    subprocess.run([sys.executable, "-c", "import agent.service, agent.cli"], check=True)
    return child_usage()[0]


async def agent_round(root: Path, count: int) -> dict[str, float]:
    names = {f"t{i}.domestic.test": ["127.0.0.1"] for i in range(count)}
    web = await LabWeb({name: Site(f"site {name}") for name in names}).start()
    dns = await LabDns(Zone(names)).start()
    collector = await start_collector(CollectorConfig(db_path=root / "collector.db"))
    try:
        targets = root / "targets.csv"
        rows = [f"http://{name}:{web.port}/,NEWS,,,,,domestic" for name in names]
        targets.write_text("url,category_code,category_description,date_added,source,notes,scope\n"
                           + "\n".join(rows) + "\n")  # fmt: skip
        config = AgentConfig(
            path=root / "agent" / "agent.toml",
            collector_url=collector.url,
            key_file=root / "agent" / "agent.key",
            spool_dir=root / "agent" / "spool",
            network=NetworkContext("XA", "XA-NORTH", 64500, "MobiNet", "mobile"),  # type: ignore[arg-type]
            probe=ProbeSettings(resolver=ResolverSpec.parse(dns.address)),
            detect_network_type=False,
        )
        config.path.parent.mkdir(parents=True)
        create_key(config.key_file)
        write_config(config)
        _, cpu_before = child_usage()
        started = time.monotonic()
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "vantagepoint", "agent", "run", "--config", str(config.path),
            "--targets", str(targets), "--interval", "1", "--jitter", "0", "--pulse-interval", "0",
            "--max-rounds", "1", "--quiet",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await process.communicate()
        wall = time.monotonic() - started
        if process.returncode != 0:
            raise SystemExit(f"agent failed ({process.returncode}): {err.decode()[-2000:]}")
        rss, cpu_after = child_usage()
        return {"rss_mb": rss, "cpu_s": cpu_after - cpu_before, "wall_s": wall}
    finally:
        await collector.stop()
        await web.stop()
        await dns.stop()


def spool_throughput(root: Path, count: int) -> dict[str, float]:
    key = SigningKey.generate()
    items = [
        Measurement(
            uid=new_uid(),
            agent_id=key.agent_id,
            measured_at=utc_now(),
            runtime=0.1,
            network=NetworkContext("XA", "XA-NORTH", 64500, "MobiNet"),
            target=Target(f"https://site{i}.example/", "international"),  # type: ignore[arg-type]
            verdict=Verdict.OK,
        )
        for i in range(count)
    ]
    spool = Spool(root / "spool")
    started = time.perf_counter()
    for m in items:
        spool.add(m)
    write_s = time.perf_counter() - started
    started = time.perf_counter()
    read = sum(1 for _ in spool.pending_measurements())
    read_s = time.perf_counter() - started
    started = time.perf_counter()
    spool.pack(key)
    pack_s = time.perf_counter() - started
    assert read == count
    plain = root / "plain"
    plain.mkdir()
    started = time.perf_counter()
    from protocol import canonical_encode

    for m in items:
        (plain / m.uid).write_bytes(canonical_encode(m.to_wire()))
    plain_s = time.perf_counter() - started
    return {"write_per_s": count / write_s, "read_per_s": count / read_s,
            "pack_per_s": count / pack_s, "plain_write_per_s": count / plain_s}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--spool", type=int, default=2000, help="measurements for the spool test")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vantage-bench-") as tmp:
        root = Path(tmp)
        base = baseline_rss()
        run = asyncio.run(agent_round(root, args.targets))
        spool = spool_throughput(root, args.spool)
    print(f"agent round over {args.targets} loopback targets (measure + spool + upload):")
    print(f"  peak RSS          {run['rss_mb']:7.1f} MB   (baseline: import only {base:.1f} MB;"
          f" ratio {run['rss_mb'] / base:.2f}x; goal <= 60 MB)")  # fmt: skip
    print(f"  CPU               {run['cpu_s']:7.2f} s    = {1000 * run['cpu_s'] / args.targets:.2f} ms"
          f" per target (wall {run['wall_s']:.1f} s)")  # fmt: skip
    print(f"spool, {args.spool} measurements (each fsynced and renamed):")
    print(f"  write             {spool['write_per_s']:7.0f} /s   (plain unsynced writes"
          f" {spool['plain_write_per_s']:.0f} /s; ratio"
          f" {spool['write_per_s'] / spool['plain_write_per_s']:.2f}x)")  # fmt: skip
    print(f"  read + validate   {spool['read_per_s']:7.0f} /s")
    print(f"  pack + sign       {spool['pack_per_s']:7.0f} /s")


if __name__ == "__main__":
    main()
