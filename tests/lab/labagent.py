"""Real agents in the lab: ``vantage agent init|once|upload`` run as processes in subscriber namespaces."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labtopo import BLOCKPAGE_IP, COLLECTOR_URL, ISP_RESOLVER, LAB_PREFIX, ClientNet, Lab

PROBE_TIMEOUT = 2.0  # seconds per step: short, so blackholes cost little time
#: What the lab's operator knows about its censor, in OONI's fingerprint format (as OONI's DB knows
#: Iran's 10.10.34.34): a DNS answer pointing at the censor's blockpage host proves DNS blocking.
FINGERPRINTS = (
    "name,scope,other_names,location_found,pattern_type,pattern,confidence_no_fp,"
    "expected_countries,source,exp_url,notes\n"
    f"dns_lab_censor,nat,,dns,full,{BLOCKPAGE_IP},10,XA,vantage lab,,the lab censor's blockpage host\n"
)


@dataclass(frozen=True)
class LabAgent:
    name: str
    client: ClientNet
    ns: str
    config: Path


@dataclass(frozen=True)
class AgentRun:
    agent: LabAgent
    code: int
    document: dict[str, Any]
    stderr: str

    def by_url(self) -> dict[str, dict[str, Any]]:
        return {m["target"]["url"]: m for m in self.document.get("measurements", [])}


def _finish(process: subprocess.Popen[str], timeout: float) -> tuple[str, str]:
    try:
        return process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()  # a hung agent must not outlive the test (the sweep would get it anyway)
        out, err = process.communicate()
        return out, err + f"\n(killed after {timeout} s)"


def _vantage(
    ns: str, args: Sequence[str], env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, "-m", "vantagepoint", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def init_agents(lab: Lab, client: ClientNet, group: str, count: int = 1) -> list[LabAgent]:
    """``vantage agent init`` for ``count`` agents in one subscriber network (registers them);
    ``group`` names the test that owns them, so each test has agents of its own."""
    fingerprints = lab.workdir / "lab-fingerprints.csv"
    fingerprints.write_text(FINGERPRINTS)
    agents, started = [], []
    for n in range(count):
        name = f"{group}-{client.key}-{n}"
        config = lab.workdir / "agents" / name / "agent.toml"
        args = ["agent", "init", "--accept-risks", "--config", str(config)]
        args += ["--collector", COLLECTOR_URL]
        args += ["--country", client.country, "--region", client.region]
        args += ["--asn", str(client.asn), "--carrier", client.carrier]
        args += ["--network-type", client.network_type, "--resolver", ISP_RESOLVER]
        args += ["--routable-prefix", LAB_PREFIX, "--ca-file", str(lab.ca_file), "--json"]
        # The lab's settings a volunteer would not touch: a short step timeout and the operator's
        # fingerprints of this censor.
        args += ["--timeout", str(PROBE_TIMEOUT), "--fingerprints", str(fingerprints)]
        agents.append(LabAgent(name, client, lab.client_ns(client), config))
        started.append(_vantage(lab.client_ns(client), args))
    for agent, process in zip(agents, started, strict=True):
        out, err = _finish(process, 60)
        if process.returncode != 0:
            raise RuntimeError(f"agent init {agent.name} failed: {err or out}")
    return agents


def run_agents(
    agents: Sequence[LabAgent],
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 120,
) -> list[AgentRun]:
    """Run one ``vantage agent ...`` command in every agent at once; ``--json`` output parsed."""
    started = [
        _vantage(a.ns, ["agent", *args, "--config", str(a.config), "--json"], env) for a in agents
    ]
    runs = []
    for agent, process in zip(agents, started, strict=True):
        out, err = _finish(process, timeout)
        try:
            document = json.loads(out) if out.strip() else {}
        except json.JSONDecodeError:
            document = {"unparsed": out}
        runs.append(AgentRun(agent, process.returncode, document, err))
    return runs


def write_targets(path: Path, urls: Sequence[tuple[str, str]]) -> Path:
    """A target list in the CLI's CSV format: (url, scope) pairs."""
    path.write_text("url,scope\n" + "".join(f"{url},{scope}\n" for url, scope in urls))
    return path
