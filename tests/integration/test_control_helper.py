"""``POST /api/v1/control``: validation, the private-address rule, cache, shared work, rate limit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from collector.app import CollectorConfig, create_app
from collector.control import ControlHelper, ControlSettings
from collector.labnet import LabDns, LabWeb, Site, Zone
from protocol import failures as F
from protocol.messages import ControlResult

Client = TestClient[Any, Any]
MakeClient = Callable[..., Awaitable[Client]]


@pytest.fixture
async def lab_servers() -> AsyncIterator[tuple[LabWeb, LabDns]]:
    web = await LabWeb({"site.test": Site("Hello World Example")}).start()
    dns = await LabDns(Zone({"site.test": ["127.0.0.1"]})).start()
    yield web, dns
    await web.stop()
    await dns.stop()


def client_for(
    aiohttp_client: MakeClient, tmp_path: Path, helper: ControlHelper
) -> Awaitable[Client]:
    config = CollectorConfig(db_path=tmp_path / "c.db", control=helper.settings)
    return aiohttp_client(create_app(config, control_helper=helper))


async def test_measures_a_lab_url_and_caches_it(
    aiohttp_client: MakeClient, tmp_path: Path, lab_servers: tuple[LabWeb, LabDns]
) -> None:
    web, dns = lab_servers
    asns = {"127.0.0.1": 64496, "198.18.0.9": 64497}
    helper = ControlHelper(ControlSettings(lab=True, resolver=dns.address), asns.get)
    client = await client_for(aiohttp_client, tmp_path, helper)
    url = web.url("site.test")
    response = await client.post("/api/v1/control", json={"url": url, "addrs": ["198.18.0.9"]})
    assert response.status == 200 and response.headers["X-Vantage-Control-Cache"] == "miss"
    result = ControlResult.from_wire(await response.json())
    assert result.dns_answers == ("127.0.0.1",) and result.dns_failure is None
    assert [(t.ip, t.failure) for t in result.tcp] == [("127.0.0.1", None)]
    assert (result.http_status, result.http_title, result.http_failure) == (
        200,
        "Hello World Example",
        None,
    )
    assert result.http_body_length and "content-type" in result.http_header_names
    assert dict(result.asns) == asns  # the agent's address is looked up too
    again = await client.post("/api/v1/control", json={"url": url})
    assert again.headers["X-Vantage-Control-Cache"] == "hit"
    assert dict(ControlResult.from_wire(await again.json()).asns) == {"127.0.0.1": 64496}
    assert helper.measured == 1


async def test_concurrent_requests_share_one_measurement(
    aiohttp_client: MakeClient, tmp_path: Path, lab_servers: tuple[LabWeb, LabDns]
) -> None:
    web, dns = lab_servers
    helper = ControlHelper(ControlSettings(lab=True, resolver=dns.address))
    client = await client_for(aiohttp_client, tmp_path, helper)
    body = {"url": web.url("site.test")}
    answers = await asyncio.gather(*(client.post("/api/v1/control", json=body) for _ in range(5)))
    assert [a.status for a in answers] == [200] * 5
    assert helper.measured == 1


async def test_reports_failures_as_data(
    aiohttp_client: MakeClient, tmp_path: Path, lab_servers: tuple[LabWeb, LabDns]
) -> None:
    _, dns = lab_servers
    helper = ControlHelper(ControlSettings(lab=True, resolver=dns.address, timeout=1.0))
    client = await client_for(aiohttp_client, tmp_path, helper)
    response = await client.post("/api/v1/control", json={"url": "http://gone.test/"})
    result = ControlResult.from_wire(await response.json())
    assert (result.dns_failure, result.http_failure) == (F.DNS_NXDOMAIN, F.DNS_NXDOMAIN)


async def test_refuses_private_targets_outside_a_lab(
    aiohttp_client: MakeClient, tmp_path: Path, lab_servers: tuple[LabWeb, LabDns]
) -> None:
    web, dns = lab_servers
    helper = ControlHelper(ControlSettings(lab=False, resolver=dns.address))
    client = await client_for(aiohttp_client, tmp_path, helper)
    for url in (web.url("site.test"), f"http://127.0.0.1:{web.port}/", "http://[::1]/"):
        response = await client.post("/api/v1/control", json={"url": url})
        assert response.status == 403, url
        assert (await response.json())["error"]["code"] == "private_target"
    assert helper.measured == 0


async def test_rate_limit_answers_429(
    aiohttp_client: MakeClient, tmp_path: Path, lab_servers: tuple[LabWeb, LabDns]
) -> None:
    web, dns = lab_servers
    settings = ControlSettings(lab=True, resolver=dns.address, rate_per_second=0.001, burst=1)
    client = await client_for(aiohttp_client, tmp_path, ControlHelper(settings))
    first = await client.post("/api/v1/control", json={"url": web.url("site.test")})
    second = await client.post("/api/v1/control", json={"url": web.url("site.test", "/other")})
    assert first.status == 200
    assert second.status == 429 and (await second.json())["error"]["code"] == "rate_limited"
    cached = await client.post("/api/v1/control", json={"url": web.url("site.test")})
    assert cached.status == 200  # the cache still answers


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"not json", 400, "undecodable"),
        (b"[1, 2]", 400, "invalid"),
        (b'{"addrs": []}', 400, "invalid"),
        (b'{"url": "ftp://x.test/"}', 400, "invalid"),
        (b'{"url": "http://x.test:99999/"}', 400, "invalid"),
        (b'{"url": "http://x.test/", "addrs": ["nope"]}', 400, "invalid"),
        (b'{"url": "http://x.test/", "extra": 1}', 400, "invalid"),
    ],
)
async def test_bad_requests_get_precise_errors(
    aiohttp_client: MakeClient, tmp_path: Path, body: bytes, status: int, code: str
) -> None:
    client = await client_for(aiohttp_client, tmp_path, ControlHelper(ControlSettings(lab=True)))
    response = await client.post(
        "/api/v1/control", data=body, headers={"Content-Type": "application/json"}
    )
    assert response.status == status
    assert (await response.json())["error"]["code"] == code


async def test_disabled_helper_is_404(aiohttp_client: MakeClient, tmp_path: Path) -> None:
    client = await client_for(
        aiohttp_client, tmp_path, ControlHelper(ControlSettings(enabled=False))
    )
    response = await client.post("/api/v1/control", json={"url": "http://x.test/"})
    assert response.status == 404 and (await response.json())["error"]["code"] == "control_disabled"
