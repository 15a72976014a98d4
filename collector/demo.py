"""``vantage demo``: the seed event in miniature, on loopback, in a few seconds.

Two provinces, two carriers. The mobile carrier "MobiNet" (AS64500) in province XA-NORTH runs a
censoring resolver: international names get NXDOMAIN, REFUSED or a sinkhole address, domestic names
resolve. Its fixed-line neighbour and MobiNet in XA-EAST are untouched. Three real agents (separate
processes, real keys, real signed uploads) measure the same list; the collector's aggregate shows the
international cut on one carrier in one province, and one pass of the collector's disruption detector
names it (``international_cut``) and nothing elsewhere.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import aiohttp

from protocol import utc_now
from protocol.tables import render_table

from .app import CollectorConfig
from .backends import open_storage
from .control import ControlSettings
from .detector import DetectorSettings
from .disruptions import detect
from .labnet import LabDns, LabWeb, Site, Zone
from .server import start_collector

DOMESTIC = {
    "news.domestic.test": "Domestic News",
    "bank.domestic.test": "National Bank",
    "gov.domestic.test": "Government Portal",
}
INTERNATIONAL = {
    "news.world.test": "World News",
    "video.world.test": "Video Sharing",
    "social.world.test": "Social Network",
}
# How the censor answers for each international name: three techniques seen in the field.
CENSOR: dict[str, str | list[str]] = {
    "news.world.test": "NXDOMAIN",
    "video.world.test": ["127.0.0.66"],  # a sinkhole: nothing listens there
    "social.world.test": "REFUSED",
}
#: Real public sites for --internet (measured with the system resolver).
PUBLIC_TARGETS = [
    ("https://www.wikipedia.org/", "international", "CULTR"),
    ("https://www.bbc.com/", "international", "NEWS"),
    ("https://www.torproject.org/", "international", "ANON"),
]


@dataclass(frozen=True)
class DemoAgent:
    name: str
    region: str
    asn: int
    carrier: str
    network_type: str
    censored: bool


AGENTS = [
    DemoAgent("north-mobile", "XA-NORTH", 64500, "MobiNet", "mobile", censored=True),
    DemoAgent("north-fixed", "XA-NORTH", 64501, "FiberLine", "wired", censored=False),
    DemoAgent("east-mobile", "XA-EAST", 64500, "MobiNet", "mobile", censored=False),
]


async def _vantage(*argv: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "vantagepoint",
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def _targets_csv(web_port: int, internet: bool) -> str:
    lines = ["url,category_code,category_description,date_added,source,notes,scope"]
    for host in DOMESTIC:
        lines.append(f"http://{host}:{web_port}/,NEWS,,2026-11-28,demo,,domestic")
    for host in INTERNATIONAL:
        lines.append(f"http://{host}:{web_port}/,NEWS,,2026-11-28,demo,,international")
    if internet:
        lines.extend(
            f"{url},{cat},,2026-11-28,demo,public site,{scope}"
            for url, scope, cat in PUBLIC_TARGETS
        )
    return "\n".join(lines) + "\n"


#: One agent per (province, carrier) here, so the detector's "3 distinct agents" rule would flag
#: nothing: the demo lowers it to 1 (never do that in production: one volunteer is not a province).
DEMO_DETECTOR = DetectorSettings(min_agents=1)


def describe_disruption(item: dict[str, Any]) -> str:
    where = f"{item['region']} AS{item['asn']} {item['carrier']} ({item['network_type']})"
    what = item["pattern"] + (f" of {item['domain']}" if item.get("domain") else "")
    baseline = "" if item["baseline"] is None else f" vs baseline {item['baseline']:.0%}"
    current = "" if item["current"] is None else f"{item['current']:.0%}"
    source = item["evidence"].get("baseline_source", "")
    return (
        f"{where}: {what}, {item['severity']} — {item['scope']} success {current}{baseline}"
        f" ({source}), since {item['started_at']}, {item['agents']} agent(s)"
    )


async def run_demo(
    *,
    workdir: Path | None,
    as_json: bool,
    internet: bool,
    out: TextIO,
    serve: bool = False,
    port: int = 0,
) -> int:

    root = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="vantage-demo-"))
    root.mkdir(parents=True, exist_ok=True)

    def say(text: str) -> None:
        if not as_json:
            print(text, file=out, flush=True)

    web_sites = {host: Site(title) for host, title in {**DOMESTIC, **INTERNATIONAL}.items()}
    records = {host: ["127.0.0.1"] for host in web_sites}
    web = await LabWeb(web_sites).start()
    honest = await LabDns(Zone(records)).start()
    censoring = await LabDns(Zone(records, {**CENSOR})).start()
    # The control helper measures from "outside" the censored network: the honest resolver, and
    # loopback targets allowed because this whole internet lives on 127.0.0.1.
    control = ControlSettings(lab=True, resolver=None if internet else honest.address)
    collector = await start_collector(
        CollectorConfig(
            db_path=root / "collector.db",
            control=control,
            detector=DEMO_DETECTOR,
            detect_interval=0,  # the demo runs its one pass itself, right after the uploads
        ),
        port=port,
    )
    try:
        say(f"collector    {collector.url}  (SQLite: {root / 'collector.db'})")
        say(f"web sites    127.0.0.1:{web.port}  domestic: {', '.join(DOMESTIC)}")
        say(f"                             international: {', '.join(INTERNATIONAL)}")
        say(
            f"resolvers    honest {honest.address}; censoring {censoring.address}"
            " (NXDOMAIN / sinkhole / REFUSED for international names)"
        )
        targets = root / "targets.csv"
        targets.write_text(_targets_csv(web.port, internet), encoding="utf-8")

        async def run_agent(agent: DemoAgent) -> tuple[DemoAgent, int, str, str]:
            config = root / agent.name / "agent.toml"
            resolver = censoring.address if agent.censored else honest.address
            if internet:
                resolver = "system"
            if not config.exists():
                code, _, err = await _vantage(
                    "agent",
                    "init",
                    "--config",
                    str(config),
                    "--collector",
                    collector.url,
                    "--country",
                    "XA",
                    "--region",
                    agent.region,
                    "--asn",
                    str(agent.asn),
                    "--carrier",
                    agent.carrier,
                    "--network-type",
                    agent.network_type,
                    "--resolver",
                    resolver,
                    # The simulated web lives on loopback, a bogon range for real agents.
                    "--routable-prefix",
                    "127.0.0.0/8",
                    "--accept-risks",  # the demo's agents are simulated volunteers
                )
                if code != 0:
                    return agent, code, "", err
            code, output, err = await _vantage(
                "agent", "once", "--config", str(config), "--targets", str(targets)
            )
            return agent, code, output, err

        say("\nrunning 3 agents (separate processes, own Ed25519 keys, signed uploads) ...")
        results = await asyncio.gather(*(run_agent(agent) for agent in AGENTS))
        failed = False
        for agent, code, output, err in results:
            where = f"{agent.region} AS{agent.asn} {agent.carrier} ({agent.network_type})"
            say(
                f"\n== agent {agent.name}: {where}"
                + (" — behind the censoring resolver" if agent.censored else "")
            )
            if code != 0:
                failed = True
                say(f"agent exited {code}: {err.strip() or output.strip()}")
            else:
                say(output.rstrip())

        async with aiohttp.ClientSession() as session:
            url = f"{collector.url}/api/v1/aggregate?by=region,carrier,scope"
            async with session.get(url) as response:
                document = await response.json()
        rows = document["rows"]
        storage = open_storage(root / "collector.db")
        await storage.open()
        try:
            await detect(storage, utc_now(), DEMO_DETECTOR)
        finally:
            await storage.close()
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{collector.url}/api/v1/disruptions") as response,
        ):
            disruptions = (await response.json())["disruptions"]
        if as_json:
            print(json.dumps({**document, "disruptions": disruptions}, indent=2), file=out)
        else:
            say("\n== collector: GET /api/v1/aggregate?by=region,carrier,scope\n")
            table_rows = [
                [
                    r["region"],
                    f"AS{r['asn']}",
                    r["carrier"],
                    r["scope"],
                    r["measurements"],
                    r["ok"],
                    r["anomaly"],
                    r["agents"],
                    f"{100 * r['ok'] / r['measurements']:.0f}%",
                ]
                for r in rows
            ]
            say(
                render_table(
                    [
                        "region",
                        "asn",
                        "carrier",
                        "scope",
                        "measured",
                        "ok",
                        "anomaly",
                        "agents",
                        "reachable",
                    ],
                    table_rows,
                )
            )
            say(
                "\n== collector: one detection pass (`vantage collector detect`), then"
                " GET /api/v1/disruptions"
            )
            say(
                "   (the detector wants 3 distinct agents per network before it flags anything;\n"
                "    the demo has one per network, so it runs with --min-agents 1. With no history\n"
                "    yet, each network is compared with its peers in the same country.)\n"
            )
            for item in disruptions:
                say("  " + describe_disruption(item))
            if not disruptions:
                say("  no disruption detected")
            say(
                f"Every row is backed by signed measurements stored verbatim in {root / 'collector.db'}."
            )
        expected = len(AGENTS) * (
            len(DOMESTIC) + len(INTERNATIONAL) + (len(PUBLIC_TARGETS) if internet else 0)
        )
        total = sum(int(r["measurements"]) for r in rows)
        if failed or total != expected:
            say(f"\ndemo incomplete: {total} of {expected} measurements reached the collector")
            return 1
        if serve:
            # On stderr in --json mode, so stdout stays one JSON document.
            print(
                f"\ndashboard    {collector.url}/  (open it in a browser; Ctrl-C stops the demo)",
                file=sys.stderr if as_json else out,
                flush=True,
            )
            await asyncio.Event().wait()
        return 0
    finally:
        await collector.stop()
        await web.stop()
        await honest.stop()
        await censoring.stop()
        if workdir is None:
            shutil.rmtree(root, ignore_errors=True)
