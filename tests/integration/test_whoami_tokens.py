"""whoami context tokens: MMDB lookup at the collector, signed, checked again at ingest."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import aiohttp
import maxminddb
import pytest
from mmdb_writer import build_mmdb, city_asn_record, write_mmdb
from service_helpers import make_agent, stored_measurements

from agent.netcontext import ContextResolver, Interface, NetworkFacts
from agent.service import make_context_resolver
from agent.spool import Spool
from agent.uploader import drain
from collector.app import CollectorConfig
from collector.keyfile import load_or_create_key
from collector.server import start_collector
from protocol import Measurement, NetworkContext, SigningKey, Target, Verdict, new_uid, utc_now
from protocol.context_token import ContextClaims, issue_context_token, read_context_token
from protocol.mmdb import MmdbReader, geo_fields

FACTS = NetworkFacts((Interface("wlan0", True, ("192.0.2.10",)),), "wlan0")


def measurement(key: SigningKey, network: NetworkContext, when=None) -> Measurement:  # type: ignore[no-untyped-def]
    return Measurement(
        uid=new_uid(),
        agent_id=key.agent_id,
        measured_at=when or utc_now(),
        runtime=0.1,
        network=network,
        target=Target("http://a.test/", "international"),  # type: ignore[arg-type]
        verdict=Verdict.OK,
    )


@pytest.fixture
def geo_db(tmp_path: Path) -> Path:
    return write_mmdb(
        tmp_path / "geo.mmdb",
        {"127.0.0.0/8": city_asn_record("XA", "NORTH", 64500, "MobiNet")},
    )


def test_pure_reader_agrees_with_maxminddb(tmp_path: Path) -> None:
    networks = {
        "127.0.0.0/8": city_asn_record("XA", "NORTH", 64500, "MobiNet"),
        "198.18.0.0/15": city_asn_record("XB", "EAST", 64501, "FiberLine"),
        "2001:db8::/32": city_asn_record("XC", "WEST", 64502, "Sat"),
    }
    for version in (6, 4):
        nets = {k: v for k, v in networks.items() if version == 6 or ":" not in k}
        path = tmp_path / f"v{version}.mmdb"
        path.write_bytes(build_mmdb(nets, version))
        ours = MmdbReader(path.read_bytes())
        with maxminddb.open_database(str(path)) as theirs:
            for ip in ["127.0.0.1", "198.19.200.1", "192.0.2.1", "2001:db8::5", "::1"]:
                if version == 4 and ":" in ip:
                    continue
                assert ours.lookup(ip) == theirs.get(ip), ip
    assert geo_fields([ours.lookup("198.18.0.1")]) == {
        "country": "XB",
        "region": "XB-EAST",
        "asn": 64501,
        "carrier": "FiberLine",
    }


async def test_whoami_answers_a_signed_token_and_never_the_address(
    tmp_path: Path, geo_db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    collector = await start_collector(
        CollectorConfig(
            db_path=tmp_path / "c.db", key_path=tmp_path / "collector.key", geoip_paths=(geo_db,)
        ),
        access_log=True,
    )
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{collector.url}/api/v1/whoami?agent_id={'a' * 32}") as r:
                assert r.status == 200
                text = await r.text()
                document = await r.json()
            async with session.get(f"{collector.url}/api/v1/whoami?agent_id=nope") as r:
                assert r.status == 400
    finally:
        await collector.stop()
    assert document["context"] == {
        "country": "XA",
        "region": "XA-NORTH",
        "asn": 64500,
        "carrier": "MobiNet",
    }
    assert "127.0.0.1" not in text
    assert "127.0.0.1" not in caplog.text, "the caller's address must not be logged"
    key_file = tmp_path / "collector.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    import base64

    claims = read_context_token(base64.b64decode(document["token"]))
    assert claims.agent_id == "a" * 32 and claims.asn == 64500


async def test_whoami_without_geo_database_is_503(tmp_path: Path) -> None:
    collector = await start_collector(
        CollectorConfig(db_path=tmp_path / "c.db", key_path=tmp_path / "collector.key")
    )
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{collector.url}/api/v1/whoami") as r,
        ):
            assert r.status == 503
            assert (await r.json())["error"]["code"] == "geoip_unavailable"
    finally:
        await collector.stop()


async def test_token_backed_measurements_are_accepted_forged_and_expired_rejected(
    tmp_path: Path, geo_db: Path
) -> None:
    collector = await start_collector(
        CollectorConfig(
            db_path=tmp_path / "c.db", key_path=tmp_path / "collector.key", geoip_paths=(geo_db,)
        )
    )
    try:
        config, key = make_agent(tmp_path / "agent", collector.url, "127.0.0.1:9")
        resolver = make_context_resolver(config, key)
        resolver.facts = lambda: FACTS
        network = await resolver.current()
        assert network.source == "collector" and network.token is not None
        assert (network.country, network.region, network.asn) == ("XA", "XA-NORTH", 64500)
        spool = Spool(config.spool_dir)
        good = measurement(key, network)
        spool.add(good)
        ok = await drain(spool, key, collector.url, attempts=1)
        assert ok.stored == 1 and not ok.errors
        assert good.uid in stored_measurements(tmp_path / "c.db")

        collector_key = load_or_create_key(tmp_path / "collector.key")
        now = utc_now()

        async def refused(network: NetworkContext, when=None) -> str:  # type: ignore[no-untyped-def]
            spool.add(measurement(key, network, when))
            report = await drain(spool, key, collector.url, attempts=1)
            assert report.rejected == 1 and report.stored == 0
            return report.errors[0]

        claims = read_context_token(network.token)
        forged = issue_context_token(SigningKey.generate(), claims)  # same claims, wrong key
        assert "401 bad_context_token" in await refused(replace(network, token=forged))
        stale = ContextClaims(
            "XA", "XA-NORTH", 64500, "MobiNet", now - timedelta(hours=7), now - timedelta(hours=1)
        )
        expired = issue_context_token(collector_key, stale)
        assert "context_expired" in await refused(replace(network, token=expired))
        # Measured while the token was valid, uploaded after it expired: accepted (offline data).
        spool.add(measurement(key, replace(network, token=expired), now - timedelta(hours=2)))
        assert (await drain(spool, key, collector.url, attempts=1)).stored == 1
        other = ContextClaims(
            "XA", "XA-NORTH", 64500, "MobiNet", now, now + timedelta(hours=1), "b" * 32
        )
        stolen = issue_context_token(collector_key, other)
        assert "context_agent" in await refused(replace(network, token=stolen))
        assert "context_mismatch" in await refused(replace(network, asn=64501))
    finally:
        await collector.stop()


def test_context_resolver_prefers_token_then_local_mmdb_then_last_then_config(
    tmp_path: Path,
) -> None:
    import asyncio

    key = SigningKey.generate()
    now = utc_now()
    token = issue_context_token(
        key, ContextClaims("XA", "XA-NORTH", 64500, "MobiNet", now, now + timedelta(hours=6))
    )
    calls: list[int] = []
    answer: list[bytes | Exception] = [token]

    async def fetch() -> bytes:
        calls.append(1)
        item = answer[0]
        if isinstance(item, Exception):
            raise item
        return item

    facts = [FACTS]
    fallback = NetworkContext("ZZ", "", 0, "", "unknown")  # type: ignore[arg-type]
    mmdb = write_mmdb(
        tmp_path / "local.mmdb",
        {"198.18.0.0/15": city_asn_record("XB", "EAST", 64501, "FiberLine")},
    )
    resolver = ContextResolver(
        fallback,
        fetch_token=fetch,
        mmdb_paths=(mmdb,),
        routable=("198.18.0.0/15",),
        facts=lambda: facts[0],
    )

    async def scenario() -> None:
        from agent.errors import UploadError

        first = await resolver.current()
        assert first.source == "collector" and first.network_type == "wifi"
        await resolver.current()
        assert len(calls) == 1, "same network, fresh token: no new whoami"
        # The network changes and the collector is unreachable: the old token is not carried over.
        answer[0] = UploadError("down")
        facts[0] = NetworkFacts((Interface("wwan0", True, ("198.18.5.5",)),), "wwan0")
        local = await resolver.current()
        assert len(calls) == 2
        assert (local.source, local.country, local.asn, local.network_type) == (
            "self-reported", "XB", 64501, "mobile",
        )  # fmt: skip
        facts[0] = NetworkFacts((Interface("eth0", True, ("192.0.2.7",)),), "eth0")
        assert (await resolver.current()).country == "ZZ"

    asyncio.run(scenario())
