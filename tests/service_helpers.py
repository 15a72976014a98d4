"""Shared helpers for the agent-service tests (test_service_*, test_spool_*, test_uploader_*, ...).

Everything runs on 127.0.0.1: a real collector (SQLite), a real DNS server and a real web server from
``collector.labnet``, and agents configured the way ``vantage agent init`` configures them.
"""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from agent.config import AgentConfig, load_config, write_config
from agent.keyfile import create_key
from agent.probes.dns_probe import ResolverSpec
from agent.web_connectivity import ProbeSettings
from collector.labnet import LabDns, LabWeb, Site, Zone
from protocol import NetworkContext, SigningKey

SITES = {
    "news.domestic.test": "Domestic News",
    "bank.domestic.test": "National Bank",
    "news.world.test": "World News",
    "video.world.test": "Video Sharing",
}


@dataclass
class Lab:
    web: LabWeb
    dns: LabDns

    @property
    def resolver(self) -> str:
        return self.dns.address

    def targets_csv(self, path: Path) -> Path:
        lines = ["url,category_code,category_description,date_added,source,notes,scope"]
        for host in SITES:
            scope = "domestic" if host.endswith(".domestic.test") else "international"
            lines.append(f"http://{host}:{self.web.port}/,NEWS,,2026-11-28,test,,{scope}")
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path

    async def stop(self) -> None:
        await self.web.stop()
        await self.dns.stop()


async def start_lab() -> Lab:
    web = await LabWeb({host: Site(title) for host, title in SITES.items()}).start()
    dns = await LabDns(Zone({host: ["127.0.0.1"] for host in SITES})).start()
    return Lab(web, dns)


def free_port() -> int:
    """A port nothing listens on (for a dead collector, or one that starts later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_agent(
    root: Path,
    collector_url: str,
    resolver: str,
    *,
    mirrors: tuple[str, ...] = (),
    proxy: str | None = None,
    targets_file: Path | None = None,
    extra_toml: str = "",
) -> tuple[AgentConfig, SigningKey]:
    """An agent config and key as ``vantage agent init --accept-risks --no-register`` writes them."""
    config = AgentConfig(
        path=root / "agent.toml",
        collector_url=collector_url,
        key_file=root / "agent.key",
        spool_dir=root / "spool",
        network=NetworkContext("XA", "XA-NORTH", 64500, "MobiNet", "mobile"),  # type: ignore[arg-type]
        probe=ProbeSettings(resolver=ResolverSpec.parse(resolver), timeout=2.0),
        collector_urls=mirrors,
        proxy=proxy,
        targets_file=targets_file,
        detect_network_type=False,
    )
    root.mkdir(parents=True, exist_ok=True)
    key = create_key(config.key_file)
    write_config(config)
    if extra_toml:
        with config.path.open("a", encoding="utf-8") as handle:
            handle.write(extra_toml)
    return load_config(config.path), key


def with_context(config: AgentConfig, whoami: bool) -> AgentConfig:
    return replace(
        config,
        service=replace(config.service, context=replace(config.service.context, whoami=whoami)),
    )


def quick(config: AgentConfig, interval: float = 0.05, pulse: float = 0.0) -> AgentConfig:
    """A schedule for tests: rounds back to back, no jitter, pulse off unless asked for."""
    schedule = replace(
        config.service.schedule, interval=interval, jitter=0.0, pulse_interval=pulse,
        upload_interval=0.2,
    )  # fmt: skip
    return replace(config, service=replace(config.service, schedule=schedule))


def stored_measurements(db_path: Path) -> dict[str, str]:
    """uid -> measured_at of every measurement the collector stored (read straight from SQLite)."""
    with sqlite3.connect(db_path) as db:
        return dict(db.execute("SELECT uid, measured_at FROM measurements").fetchall())


def batch_measurement_total(db_path: Path) -> int:
    """How many measurements the stored batches carried in all (counts repeats across batches)."""
    with sqlite3.connect(db_path) as db:
        (total,) = db.execute("SELECT COALESCE(SUM(measurements), 0) FROM batches").fetchone()
    return int(total)


def stored_payloads(db_path: Path) -> list[bytes]:
    with sqlite3.connect(db_path) as db:
        return [row[0] for row in db.execute("SELECT payload FROM batches")]


async def vantage(
    *argv: str, stdin: Any = asyncio.subprocess.DEVNULL
) -> asyncio.subprocess.Process:
    """Start ``vantage ...`` as a real process (stdout and stderr piped)."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "vantagepoint",
        *argv,
        stdin=stdin,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
