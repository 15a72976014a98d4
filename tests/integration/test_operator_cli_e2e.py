"""End to end with real processes: an operator signs and publishes, an agent fetches, verifies and
measures the list, the operator lists and revokes the agent. A real collector on 127.0.0.1, real CLI
subprocesses, a simulated web and resolver on loopback."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

from collector.labnet import LabDns, LabWeb, Site, Zone

SITES = {"news.domestic.test": "News", "video.world.test": "Video"}


async def vantage(*argv: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "vantagepoint", *argv,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def vantage_json(*argv: str, expect: int = 0) -> Any:
    code, out, err = await vantage(*argv, "--json")
    assert code == expect, (argv, code, out, err)
    return json.loads(out)


async def test_publish_fetch_measure_list_revoke(tmp_path: Path) -> None:
    web = await LabWeb({host: Site(title) for host, title in SITES.items()}).start()
    dns = await LabDns(Zone({host: ["127.0.0.1"] for host in SITES})).start()
    code, out, err = await vantage("operator", "keygen", "--out", str(tmp_path / "ops.key"))
    assert code == 0, err
    assert stat.S_IMODE(os.stat(tmp_path / "ops.key").st_mode) == 0o600
    collector = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "vantagepoint", "collector", "serve", "--db", str(tmp_path / "c.db"),
        "--port", "0", "--operator-keys", str(tmp_path / "ops.key.pub"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        collector_url = await read_url(collector, tmp_path)

        csv = tmp_path / "xa.csv"
        csv.write_text(
            "url,category_code,category_description,date_added,source,notes\n"
            f"http://news.domestic.test:{web.port}/,NEWS,News,2026-01-01,ops,\n"
            f"http://video.world.test:{web.port}/,MMED,Media,2026-01-01,ops,\n"
            "video.world.test,MMED,Media,2026-01-01,ops,no scheme\n",
            encoding="utf-8",
        )
        draft = tmp_path / "draft.json"
        imported = await vantage_json(
            "testlist",
            "import",
            str(csv),
            "--domestic-domain",
            "domestic.test",
            "--out",
            str(draft),
            expect=2,
        )
        assert [p["line"] for p in imported["problems"]] == [4] and imported["written"] is None
        imported = await vantage_json(
            "testlist",
            "import",
            str(csv),
            "--domestic-domain",
            "domestic.test",
            "--out",
            str(draft),
            "--skip-bad",
        )
        assert imported["scopes"] == {"domestic": 1, "international": 1}

        signed = tmp_path / "xa-north-v1.vtl"
        sign = ["testlist", "sign", str(draft), "--key", str(tmp_path / "ops.key"), "--id", "xa-north",
                "--region", "XA-NORTH", "--asn", "64500", "--out", str(signed)]  # fmt: skip
        assert (await vantage_json(*sign))["version"] == 1
        await vantage_json("testlist", "publish", str(signed), "--collector", collector_url)
        code, _, err = await vantage(
            "testlist", "publish", str(signed), "--collector", collector_url
        )
        assert code == 1 and "version_not_newer" in err
        code, out, _ = await vantage("testlist", "diff", str(draft), str(signed))
        assert code == 0 and "0 added, 0 removed, 0 changed" in out

        config = tmp_path / "agent" / "agent.toml"
        await vantage_json(
            "agent", "init", "--accept-risks", "--config", str(config), "--collector", collector_url, "--country", "XA",
            "--region", "XA-NORTH", "--asn", "64500", "--carrier", "MobiNet", "--network-type", "mobile",
            "--resolver", dns.address, "--operator-key", str(tmp_path / "ops.key.pub"),
            "--routable-prefix", "127.0.0.0/8", "--no-control",
        )  # fmt: skip
        fetched = await vantage_json("agent", "fetch-list", "--config", str(config))
        assert fetched["accepted"] == ["xa-north v1"] and fetched["refused"] == []
        assert fetched["usable"] == [{"list_id": "xa-north", "version": 1, "entries": 2}]
        again = await vantage_json("agent", "fetch-list", "--config", str(config))
        assert again["status"] == "not_modified"

        measured = await vantage_json("agent", "once", "--config", str(config), "--list")
        urls = sorted(m["target"]["url"] for m in measured["measurements"])
        assert urls == sorted(f"http://{h}:{web.port}/" for h in SITES)
        assert {m["verdict"] for m in measured["measurements"]} == {"ok"}
        assert measured["upload"]["stored"] == 2

        listing = await vantage_json(
            "operator", "agents", "--collector", collector_url, "--key", str(tmp_path / "ops.key")
        )
        (row,) = listing["agents"]
        assert (row["measurements"], row["region"], row["asn"]) == (2, "XA-NORTH", 64500)
        agent_id = row["agent_id"]
        revoked = await vantage_json(
            "operator",
            "revoke-agent",
            agent_id,
            "--collector",
            collector_url,
            "--key",
            str(tmp_path / "ops.key"),
        )
        assert revoked["status"] == "revoked"
        # The collector refuses the revoked agent's uploads; its results stay in its spool (exit 3).
        code, out, err = await vantage(
            "agent", "once", "--config", str(config), "--list", "--no-fetch"
        )
        assert code == 3 and "revoked" in out

        # Collector gone: the agent still measures its last good list (and says so: exit 4 on fetch).
        collector.terminate()
        await collector.wait()
        code, out, _ = await vantage("agent", "fetch-list", "--config", str(config))
        assert code == 4 and "unreachable" in out and "using xa-north v1" in out
    finally:
        if collector.returncode is None:
            collector.terminate()
            await collector.wait()
        await web.stop()
        await dns.stop()


async def read_url(collector: asyncio.subprocess.Process, tmp_path: Path) -> str:
    assert collector.stdout is not None
    line = await asyncio.wait_for(collector.stdout.readline(), timeout=30)
    text = line.decode()
    assert "listening on" in text, text
    return text.split("listening on ", 1)[1].split()[0]
