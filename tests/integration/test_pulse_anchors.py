"""The connectivity pulse: one DNS query and one TCP connect per anchor, as a function and a command."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from agent.probes.dns_probe import ResolverSpec
from agent.pulse import measure_pulse
from agent.web_connectivity import ProbeSettings, measure_targets
from collector.labnet import LabDns, LabWeb, Zone
from protocol import Blocking, NetworkContext, Target, Verdict
from protocol import failures as F
from protocol.messages import TEST_PULSE

NETWORK = NetworkContext("XA", "XA-NORTH", 64500, "MobiNet", "mobile")


async def _lab() -> tuple[LabWeb, LabDns]:
    web = await LabWeb({}).start()
    zone = Zone({"anchor.domestic.test": ["127.0.0.1"], "anchor.world.test": ["127.0.0.1"]})
    zone.overrides["anchor.world.test"] = "SILENT"  # the international cut: queries vanish
    return web, await LabDns(zone).start()


async def test_pulse_measures_dns_and_one_connect_per_anchor() -> None:
    web, dns = await _lab()
    settings = ProbeSettings(
        resolver=ResolverSpec.parse(dns.address), timeout=0.5, routable_prefixes=("127.0.0.0/8",)
    )
    anchors = [
        Target(f"https://anchor.domestic.test:{web.port}/", "domestic"),
        Target(f"https://anchor.world.test:{web.port}/", "international"),
    ]
    try:
        domestic, world = await measure_targets(
            anchors, "cd" * 16, NETWORK, settings, measure=measure_pulse
        )
    finally:
        await web.stop()
        await dns.stop()
    assert domestic.test == world.test == TEST_PULSE
    assert domestic.verdict == Verdict.OK and [t.success for t in domestic.tcp] == [True]
    assert domestic.dns is not None and [q.rdtype for q in domestic.dns.queries] == ["A"]
    assert domestic.http is None and domestic.tls is None
    assert (world.verdict, world.blocking, world.failure) == (
        Verdict.ANOMALY,
        Blocking.DNS,
        F.GENERIC_TIMEOUT,
    )


async def test_pulse_command(tmp_path: Path) -> None:
    web, dns = await _lab()
    anchors = tmp_path / "anchors.csv"
    anchors.write_text(
        "url,scope\n"
        f"https://anchor.domestic.test:{web.port}/,domestic\n"
        f"https://anchor.world.test:{web.port}/,international\n"
    )
    config = tmp_path / "agent.toml"

    async def vantage(*argv: str) -> tuple[int, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "vantagepoint", *argv, stdout=asyncio.subprocess.PIPE
        )
        out, _ = await process.communicate()
        assert process.returncode is not None
        return process.returncode, out.decode()

    try:
        code, _ = await vantage(
            "agent", "init", "--accept-risks", "--config", str(config), "--collector", "http://127.0.0.1:9",
            "--resolver", dns.address, "--routable-prefix", "127.0.0.0/8", "--no-register",
        )  # fmt: skip
        assert code == 0
        text = config.read_text()
        assert 'routable_prefixes = ["127.0.0.0/8"]' in text
        config.write_text(text.replace("timeout = 5.0", "timeout = 0.5"))  # silence: quick
        code, out = await vantage(
            "agent", "pulse", "--config", str(config), "--anchors", str(anchors), "--no-upload", "--json"
        )  # fmt: skip
    finally:
        await web.stop()
        await dns.stop()
    assert code == 0
    measurements = json.loads(out)["measurements"]
    assert {(m["target"]["scope"], m["test"], m["verdict"]) for m in measurements} == {
        ("domestic", "pulse", "ok"),
        ("international", "pulse", "anomaly"),
    }
