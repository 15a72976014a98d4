"""End to end through the real ``vantage`` CLI in subprocesses, against servers on 127.0.0.1.

The collector, LabDns and LabWeb run in the test's event loop; the CLI runs via
``asyncio.create_subprocess_exec`` so the loop keeps serving while the agent talks to them.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import stat
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

from collector.app import CollectorConfig
from collector.control import ControlSettings
from collector.server import RunningCollector, start_collector
from protocol import SignedBatch, SigningKey, make_registration, utc_now
from protocol import failures as F

DOMESTIC = ["news.domestic.test", "bank.domestic.test"]
INTERNATIONAL_OK = ["news.world.test"]
INTERNATIONAL_NX = ["blocked.world.test"]

AGENT_ARGS = [
    "--country",
    "XA",
    "--region",
    "XA-1",
    "--asn",
    "64500",
    "--carrier",
    "Test",
    "--network-type",
    "mobile",
]


def targets_csv(path: Path, labnet: Any) -> Path:
    lines = ["url,category_code,category_description,date_added,source,notes,scope"]
    lines += [f"{labnet.url(h)},NEWS,News,2026-11-28,test,,domestic" for h in DOMESTIC]
    lines += [
        f"{labnet.url(h)},NEWS,News,2026-11-28,test,,international"
        for h in INTERNATIONAL_OK + INTERNATIONAL_NX
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


EXPECTED_ROWS = [
    {"region": "XA-1", "asn": 64500, "carrier": "Test", "scope": "domestic",
     "measurements": 2, "ok": 2, "anomaly": 0, "confirmed": 0, "failure": 0, "agents": 1},
    {"region": "XA-1", "asn": 64500, "carrier": "Test", "scope": "international",
     "measurements": 2, "ok": 1, "anomaly": 1, "confirmed": 0, "failure": 0, "agents": 1},
]  # fmt: skip


async def aggregate_rows(collector_url: str) -> list[dict[str, Any]]:
    url = f"{collector_url}/api/v1/aggregate?by=region,carrier,scope"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        return (await response.json())["rows"]


@pytest.fixture
def collector_config(db_path, labnet) -> CollectorConfig:
    # The control helper looks from "outside": the honest resolver, loopback targets allowed.
    control = ControlSettings(lab=True, resolver=labnet.honest.address, timeout=2.0)
    return CollectorConfig(db_path=db_path, control=control)


@pytest.fixture
async def collector(collector_config):
    running = await start_collector(collector_config)
    holder = {"running": running}
    try:
        yield holder
    finally:
        if holder["running"] is not None:
            await holder["running"].stop()


async def init_agent(vantage, tmp_path: Path, collector_url: str, labnet: Any) -> tuple[Path, Any]:
    config = tmp_path / "agent" / "agent.toml"
    result = await vantage(
        "agent",
        "init",
        "--accept-risks",
        "--config",
        str(config),
        "--collector",
        collector_url,
        *AGENT_ARGS,
        "--resolver",
        f"127.0.0.1:{labnet.dns.port}",
        # The lab's web lives on loopback, a bogon range for real agents.
        "--routable-prefix",
        "127.0.0.0/8",
        "--json",
    )
    assert result.code == 0, result
    return config, result.json()


def check_measurements(document: dict[str, Any], labnet: Any, *, control: bool) -> None:
    by_host = {urlsplit(m["target"]["url"]).hostname: m for m in document["measurements"]}
    for m in by_host.values():
        # With the collector up, each verdict had the control helper's view to compare with.
        assert (m["control"] is not None) is control, m
    if control:
        # The control resolved the censored name truly, so NXDOMAIN here is an anomaly, not "down".
        assert by_host[INTERNATIONAL_NX[0]]["control"]["dns_answers"] == ["127.0.0.1"]
    assert set(by_host) == set(DOMESTIC + INTERNATIONAL_OK + INTERNATIONAL_NX)
    for host in DOMESTIC + INTERNATIONAL_OK:
        m = by_host[host]
        assert (m["verdict"], m["blocking"], m["failure"]) == ("ok", None, None), m
        assert m["dns"]["answers"] == ["127.0.0.1"]
        assert [t["failure"] for t in m["tcp"]] == [None]
        assert m["http"]["status"] == 200
        assert m["http"]["title"] == labnet.sites[host].title
    for host in INTERNATIONAL_NX:
        m = by_host[host]
        assert (m["verdict"], m["blocking"], m["failure"]) == ("anomaly", "dns", F.DNS_NXDOMAIN)
        assert m["dns"]["failure"] == F.DNS_NXDOMAIN
        assert (m["tcp"], m["http"]) == ([], None)
    for m in document["measurements"]:
        assert m["agent_id"] == document["agent_id"]
        assert m["network"] == {
            "country": "XA",
            "region": "XA-1",
            "asn": 64500,
            "carrier": "Test",
            "network_type": "mobile",
            "source": "self-reported",
        }
        assert m["target"]["scope"] == (
            "domestic" if urlsplit(m["target"]["url"]).hostname in DOMESTIC else "international"
        )


async def test_init_once_and_aggregate(vantage, labnet, collector, tmp_path, db):
    url = collector["running"].url
    config, init = await init_agent(vantage, tmp_path, url, labnet)
    assert init["registered"] == "registered"
    key_file = Path(init["key_file"])
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(key_file.read_bytes()) == 32
    assert SigningKey.from_raw(key_file.read_bytes()).agent_id == init["agent_id"]
    assert db.query("SELECT agent_id FROM agents") == [(init["agent_id"],)]

    targets = targets_csv(tmp_path / "targets.csv", labnet)
    result = await vantage(
        "agent", "once", "--config", str(config), "--targets", str(targets), "--json"
    )
    assert result.code == 0, result
    assert "Traceback" not in result.err
    document = result.json()
    assert document["agent_id"] == init["agent_id"]
    check_measurements(document, labnet, control=True)
    upload = document["upload"]
    assert {k: upload[k] for k in ("batches", "stored", "duplicates", "left", "errors")} == {
        "batches": 1,
        "stored": 4,
        "duplicates": 0,
        "left": 0,
        "errors": [],
    }
    assert upload["rejected"] == 0 and upload["collector"] == url

    assert await aggregate_rows(url) == EXPECTED_ROWS
    assert db.counts() == {"agents": 1, "batches": 1, "measurements": 4}
    stored = {row[0] for row in db.query("SELECT uid FROM measurements")}
    assert stored == {m["uid"] for m in document["measurements"]}

    # Human-readable output of the same command: a table, and a summary line.
    result = await vantage("agent", "once", "--config", str(config), "--targets", str(targets))
    assert result.code == 0, result
    assert "blocked.world.test" in result.out and F.DNS_NXDOMAIN in result.out
    assert "4 stored" in result.out
    rows = await aggregate_rows(url)
    assert [r["measurements"] for r in rows] == [4, 4]
    assert [r["ok"] for r in rows] == [4, 2]


async def test_collector_down_keeps_the_batch_then_upload_dedupes(
    vantage, labnet, collector, collector_config, tmp_path, db
):
    running: RunningCollector = collector["running"]
    url = running.url
    config, init = await init_agent(vantage, tmp_path, url, labnet)
    outbox = tmp_path / "agent" / "spool" / "outbox"
    targets = targets_csv(tmp_path / "targets.csv", labnet)

    await running.stop()
    collector["running"] = None

    result = await vantage(
        "agent", "once", "--config", str(config), "--targets", str(targets), "--json"
    )
    assert result.code == 3, result
    assert "Traceback" not in result.err
    document = result.json()
    assert document["agent_id"] == init["agent_id"]
    check_measurements(document, labnet, control=False)  # no collector, no control helper
    assert document["upload"]["batches"] == 0
    assert document["upload"]["left"] == 1
    assert any("cannot reach collector" in error for error in document["upload"]["errors"])
    spooled = list(outbox.glob("*.b"))
    assert len(spooled) == 1
    assert list((tmp_path / "agent" / "spool" / "pending").glob("*.m")) == []
    assert db.counts()["measurements"] == 0

    status = await vantage("agent", "status", "--config", str(config), "--json")
    assert status.code == 0, status
    spool = status.json()["spool"]
    assert (spool["pending"], spool["outbox"], spool["corrupt"]) == (0, 1, 0)

    backup = tmp_path / "backup.b"
    shutil.copy(spooled[0], backup)

    # The same collector (same database) comes back on the same address.
    port = urlsplit(url).port
    collector["running"] = await start_collector(collector_config, port=port)
    result = await vantage("agent", "upload", "--config", str(config), "--json")
    assert result.code == 0, result
    report = result.json()
    assert {k: report[k] for k in ("batches", "stored", "duplicates", "left", "errors")} == {
        "batches": 1,
        "stored": 4,
        "duplicates": 0,
        "left": 0,
        "errors": [],
    }
    assert list(outbox.glob("*.b")) == []
    assert await aggregate_rows(url) == EXPECTED_ROWS

    # The very same signed bytes again (a lost acknowledgement): nothing is stored twice.
    shutil.copy(backup, outbox / backup.name)
    result = await vantage("agent", "upload", "--config", str(config), "--json")
    assert result.code == 0, result
    report = result.json()
    assert {k: report[k] for k in ("batches", "stored", "duplicates", "left", "errors")} == {
        "batches": 1,
        "stored": 0,
        "duplicates": 4,
        "left": 0,
        "errors": [],
    }
    assert await aggregate_rows(url) == EXPECTED_ROWS
    assert db.counts() == {"agents": 1, "batches": 1, "measurements": 4}

    # Nothing left: upload is a no-op.
    result = await vantage("agent", "upload", "--config", str(config), "--json")
    assert (result.code, result.json()["batches"]) == (0, 0)


async def test_no_upload_then_upload_registers_an_unknown_agent(
    vantage, labnet, collector, tmp_path, db
):
    """``init --no-register`` then ``once --no-upload``; ``upload`` registers on first contact."""
    url = collector["running"].url
    config = tmp_path / "agent.toml"
    result = await vantage(
        "agent", "init", "--accept-risks", "--config", str(config), "--collector", url, *AGENT_ARGS,
        "--resolver", f"127.0.0.1:{labnet.dns.port}", "--routable-prefix", "127.0.0.0/8",
        "--no-register", "--json",
    )  # fmt: skip
    assert result.code == 0, result
    assert result.json()["registered"] is None
    assert db.counts()["agents"] == 0
    targets = targets_csv(tmp_path / "targets.csv", labnet)
    result = await vantage(
        "agent", "once", "--config", str(config), "--targets", str(targets), "--no-upload", "--json"
    )
    assert result.code == 0, result
    assert result.json()["upload"] is None
    check_measurements(result.json(), labnet, control=True)
    assert len(list((tmp_path / "spool" / "pending").glob("*.m"))) == 4

    result = await vantage("agent", "upload", "--config", str(config), "--json")
    assert result.code == 0, result
    assert result.json()["stored"] == 4
    assert db.counts() == {"agents": 1, "batches": 1, "measurements": 4}
    assert await aggregate_rows(url) == EXPECTED_ROWS


async def test_collector_serve_and_revoke_cli(vantage, build, tmp_path):
    db_file = tmp_path / "served.db"
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        process = await vantage.spawn(
            "collector", "serve", "--db", str(db_file), "--port", "0",
            stdout=asyncio.subprocess.PIPE, stderr=log,
        )  # fmt: skip
        try:
            line = (await asyncio.wait_for(process.stdout.readline(), 20)).decode()
            assert line.startswith("vantage collector listening on http://127.0.0.1:"), line
            url = line.split()[4]
            async with aiohttp.ClientSession() as session:
                async with session.get(f"{url}/healthz") as response:
                    assert (response.status, await response.json()) == (200, {"status": "ok"})

                key = SigningKey.generate()
                body = make_registration(key, utc_now())
                async with session.post(f"{url}/api/v1/agents", json=body) as response:
                    assert response.status == 201

                async def upload(signed: SignedBatch) -> tuple[int, Any]:
                    async with session.post(
                        f"{url}/api/v1/batches",
                        data=signed.to_bytes(),
                        headers={"Content-Type": "application/msgpack"},
                    ) as response:
                        return response.status, await response.json()

                status, document = await upload(build.signed(key, [build.measurement(key)]))
                assert (status, document["status"], document["stored"]) == (200, "stored", 1)

                revoke = await vantage(
                    "collector", "revoke", key.agent_id, "--db", str(db_file), "--json"
                )
                assert revoke.code == 0, revoke
                assert revoke.json() == {"agent_id": key.agent_id, "revoked": True}
                again = await vantage("collector", "revoke", key.agent_id, "--db", str(db_file))
                assert again.code == 1 and "already revoked" in again.out

                status, document = await upload(build.signed(key, [build.measurement(key)]))
                assert status == 403 and document["error"]["code"] == "revoked"
        finally:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGINT)
            code = await asyncio.wait_for(process.wait(), 20)
    assert code == 0
    log_text = log_path.read_text()
    assert "POST /api/v1/batches" in log_text  # the access log works ...
    assert "127.0.0.1" not in log_text  # ... and never names the client
    assert "Traceback" not in log_text


async def test_demo_json(vantage):
    result = await vantage("demo", "--json", timeout=60)
    assert result.code == 0, result
    document = result.json()
    assert document["axes"] == ["region", "carrier", "scope"]
    rows = {(r["region"], r["asn"], r["scope"]): r for r in document["rows"]}
    assert len(rows) == 6
    censored = rows[("XA-NORTH", 64500, "international")]
    assert (censored["measurements"], censored["ok"], censored["anomaly"]) == (3, 0, 3)
    for place, row in rows.items():
        if place != ("XA-NORTH", 64500, "international"):
            assert row["measurements"] == 3 and row["ok"] == 3, row
        assert row["agents"] == 1
