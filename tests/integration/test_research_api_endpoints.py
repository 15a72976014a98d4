"""The research API through a real collector on 127.0.0.1, on both backends: search with cursors,
exports that re-verify offline, time series, disruptions with filters, the Atom feed, and 400s."""

from __future__ import annotations

import base64
import csv
import io
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import aiohttp
import pytest
from analysis_support import Stream, at_hour
from ingest_support import NETWORKS, TARGETS, measurement, registration_body, signed

from collector.app import CollectorConfig
from collector.backends import open_storage
from collector.disruptions import CONTRACT_FIELDS, detect
from collector.server import RunningCollector, start_collector
from protocol import Batch, SigningKey, agent_id_for, canonical_decode, utc_now, verify
from protocol.signing import DOMAIN_BATCH

NOW = utc_now().replace(minute=0, second=0, microsecond=0)


def z(moment: Any) -> str:
    return str(moment.strftime("%Y-%m-%dT%H:%M:%SZ"))


@pytest.fixture
async def collector(storage_url: str, tmp_path: Path) -> AsyncIterator[RunningCollector]:
    config = CollectorConfig(
        storage_url, key_path=tmp_path / "collector.key", migrate=True, detect_interval=0
    )
    running = await start_collector(config)
    yield running
    await running.stop()


async def upload(http: aiohttp.ClientSession) -> list[Any]:
    """Two agents, 3 networks, both scopes, some anomalies, in the two hours before the last one."""
    stored = []
    for k in range(2):
        key = SigningKey.generate()
        async with http.post("/api/v1/agents", data=registration_body(key)) as r:
            assert r.status == 201
        for hour in (2, 1):
            items = [
                measurement(
                    key,
                    at=NOW - timedelta(hours=hour, minutes=-i),
                    network=NETWORKS[i % 3],
                    target=TARGETS[i % 2],
                    verdict="anomaly" if (i + k) % 4 == 0 else "ok",
                )
                for i in range(6)
            ]
            body = signed(key, items).to_bytes()
            headers = {"Content-Type": "application/msgpack"}
            async with http.post("/api/v1/batches", data=body, headers=headers) as r:
                assert r.status == 200, await r.text()
            stored.extend(items)
    return stored


async def get_json(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def test_search_pages_with_cursors_and_filters(collector: RunningCollector) -> None:
    async with aiohttp.ClientSession(collector.url) as http:
        stored = await upload(http)
        for order in ("desc", "asc"):
            seen: list[dict[str, Any]] = []
            url = f"/api/v1/measurements?limit=5&order={order}"
            while url:
                page = await get_json(http, url)
                seen += page["measurements"]
                cursor = page["next_cursor"]
                url = (
                    f"/api/v1/measurements?limit=5&order={order}&cursor={cursor}" if cursor else ""
                )
            assert sorted(m["uid"] for m in seen) == sorted(m.uid for m in stored)
            keys = [(m["measured_at"], m["uid"]) for m in seen]
            assert keys == sorted(keys, reverse=order == "desc")
        page = await get_json(
            http, "/api/v1/measurements?region=XA-EAST&verdict=anomaly&limit=1000"
        )
        expected = [
            m for m in stored if m.network.region == "XA-EAST" and m.verdict.value == "anomaly"
        ]
        assert {m["uid"] for m in page["measurements"]} == {m.uid for m in expected}
        assert page["next_cursor"] is None


async def test_export_lines_carry_what_reverifies_them(collector: RunningCollector) -> None:
    async with aiohttp.ClientSession(collector.url) as http:
        stored = await upload(http)
        for proof in ("batch", "inline"):
            async with http.get(f"/api/v1/export?proof={proof}") as response:
                assert response.status == 200
                assert response.content_type == "application/x-ndjson"
                lines = [json.loads(line) for line in (await response.text()).splitlines()]
            batches = {line["batch_id"]: line for line in lines if line["type"] == "batch"}
            rows = [line for line in lines if line["type"] == "measurement"]
            assert sorted(r["uid"] for r in rows) == sorted(m.uid for m in stored)
            assert (len(batches) == 4) if proof == "batch" else not batches
            for row in rows:
                material = row["proof"] if proof == "inline" else batches[row["proof"]["batch_id"]]
                public_key = base64.b64decode(material["agent_public_key"])
                payload = base64.b64decode(material["payload"])
                verify(public_key, DOMAIN_BATCH, payload, base64.b64decode(material["signature"]))
                assert agent_id_for(public_key) == row["agent_id"]
                batch = Batch.from_wire(canonical_decode(payload))
                (signed_m,) = [m for m in batch.measurements if m.uid == row["proof"]["uid"]]
                assert signed_m.verdict.value == row["verdict"]
                assert signed_m.network.region == row["region"]
        async with http.get("/api/v1/export?format=csv&scope=domestic") as response:
            table = list(csv.DictReader(io.StringIO(await response.text())))
        assert {r["uid"] for r in table} == {m.uid for m in stored if m.target.scope == "domestic"}


async def test_timeseries_puts_both_scopes_side_by_side(collector: RunningCollector) -> None:
    async with aiohttp.ClientSession(collector.url) as http:
        stored = await upload(http)
        since = z(NOW - timedelta(hours=3))
        doc = await get_json(http, f"/api/v1/timeseries?since={since}&until={z(NOW)}")
        assert [p["bucket"][11:13] for p in doc["points"]] == [
            f"{(NOW - timedelta(hours=h)).hour:02d}" for h in (3, 2, 1)
        ]
        assert doc["points"][0]["domestic"] is None and doc["points"][0]["international"] is None
        for point, hour in zip(doc["points"][1:], (2, 1), strict=True):
            for scope in ("domestic", "international"):
                mine = [
                    m
                    for m in stored
                    if m.target.scope == scope and m.measured_at.hour == (NOW.hour - hour) % 24
                ]
                ok = sum(m.verdict.value == "ok" for m in mine)
                assert point[scope]["measurements"] == len(mine)
                assert point[scope]["ratio"] == round(ok / len(mine), 4)
        async with http.get(f"/api/v1/timeseries?since={since}&format=csv&asn=AS64500") as r:
            header = (await r.text()).splitlines()[0]
        assert header.startswith("bucket,domestic_ratio")


async def test_disruptions_filters_and_atom_feed(storage_url: str, tmp_path: Path) -> None:
    storage = open_storage(storage_url, migrate=True)
    await storage.open()
    stream = Stream(storage)
    await stream.register()
    cut = ("XA-01", 64500)
    for h in range(27):
        await stream.hour(
            h,
            lambda net, target, _i, h=h: (
                "cut" if net == cut and h >= 20 and target.scope == "international" else "ok"
            ),
            [cut, ("XA-01", 64501), ("XA-02", 64500)],
        )
    await detect(storage, at_hour(21))  # opens the cut
    await storage.close()
    config = CollectorConfig(
        storage_url, key_path=tmp_path / "collector.key", migrate=True, detect_interval=0
    )
    running = await start_collector(config)
    try:
        async with aiohttp.ClientSession(running.url) as http:
            doc = await get_json(http, "/api/v1/disruptions")
            (item,) = doc["disruptions"]
            contract = {"id", "pattern", "country", "region", "asn", "carrier", "network_type"}
            contract |= {"scope", "started_at", "ended_at", "severity", "baseline", "current"}
            contract |= {"agents", "evidence", "updated_at"}
            assert contract <= set(item)
            assert contract == set(CONTRACT_FIELDS)
            assert (item["pattern"], item["region"], item["asn"]) == ("international_cut", *cut)
            assert item["ended_at"] is None and item["carrier"] == "MobiNet"
            for query, count in [
                ("active=true", 1),
                ("active=false", 0),
                ("pattern=international_cut&country=XA&region=XA-01&asn=AS64500", 1),
                ("pattern=full_outage", 0),
                ("network_type=wired", 0),
                (f"since={z(at_hour(22))}", 1),
                (f"until={z(at_hour(20))}", 0),
            ]:
                found = await get_json(http, f"/api/v1/disruptions?{query}")
                assert len(found["disruptions"]) == count, query
            async with http.get("/api/v1/disruptions.atom") as response:
                assert response.content_type == "application/atom+xml"
                feed = ET.fromstring(await response.read())
            ns = {"a": "http://www.w3.org/2005/Atom"}
            titles = [e.findtext("a:title", namespaces=ns) for e in feed.findall("a:entry", ns)]
            assert titles == ["international_cut opened: XA XA-01 AS64500 MobiNet (mobile)"]
    finally:
        await running.stop()


BAD = [
    "/api/v1/aggregate?by=planet",
    "/api/v1/aggregate?format=xml",
    "/api/v1/aggregate?asn=ASX",
    "/api/v1/aggregate?since=yesterday",
    "/api/v1/aggregate?blocking=firewall",
    "/api/v1/timeseries?interval=minute",
    "/api/v1/timeseries?since=2026-01-02&until=2026-01-01",
    "/api/v1/timeseries?scope=domestic",
    "/api/v1/measurements?limit=0",
    "/api/v1/measurements?limit=many",
    "/api/v1/measurements?cursor=not-a-cursor",
    "/api/v1/measurements?order=sideways",
    "/api/v1/measurements?agent_id=xyz",
    "/api/v1/measurements?network_type=satellite",
    "/api/v1/measurements?colour=red",
    "/api/v1/export?format=xml",
    "/api/v1/export?proof=none",
    "/api/v1/export?order=desc",
    "/api/v1/disruptions?active=maybe",
    "/api/v1/disruptions?pattern=earthquake",
    "/api/v1/disruptions?limit=-1",
    "/api/v1/disruptions?until=soon",
    "/api/v1/disruptions.atom?limit=0",
]


async def test_every_bad_parameter_is_a_400_with_a_message(collector: RunningCollector) -> None:
    async with aiohttp.ClientSession(collector.url) as http:
        async with http.get("/api/v1/measurements?limit=1&order=asc") as r:
            cursor = (await r.json())["next_cursor"]
        for url in [*BAD, f"/api/v1/measurements?order=desc&cursor={cursor or 'x'}"]:
            async with http.get(url) as response:
                assert response.status == 400, url
                error = (await response.json())["error"]
                assert error["code"] and len(error["message"]) > 10, url
        async with http.get("/healthz") as response:  # and the service keeps serving
            assert response.status == 200
