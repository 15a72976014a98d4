"""The agent's probes against real DNS and HTTP servers on loopback (``collector.labnet``)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
import ssl
from collections.abc import AsyncIterator, Iterator

import pytest
from aiohttp import web

from agent.probes.dns_probe import DnsOptions, ResolverSpec, measure_dns
from agent.probes.http_probe import measure_http
from agent.probes.tcp_probe import measure_tcp
from agent.web_connectivity import ProbeSettings, measure_target, measure_targets, open_run
from protocol import Blocking, DnsResult, NetworkContext, Target, Verdict
from protocol import failures as F
from protocol.classify import classify

TIMEOUT = 2.0
SSL = ssl.create_default_context()
LAB = ("127.0.0.0/8",)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def silent_resolver() -> Iterator[ResolverSpec]:
    """A UDP socket that is bound (so no ICMP port-unreachable) but never answers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield ResolverSpec("127.0.0.1", sock.getsockname()[1])
    finally:
        sock.close()


@pytest.fixture
async def hangup_server() -> AsyncIterator[int]:
    """A TCP server that accepts, reads the request and closes without answering."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            await reader.read(1024)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture
async def redirector(labnet) -> AsyncIterator[int]:
    """An HTTP server redirecting /to/<host> to that host on the LabWeb port."""

    async def handle(request: web.Request) -> web.Response:
        raise web.HTTPFound(labnet.url(request.match_info["host"]))

    app = web.Application()
    app.router.add_get("/to/{host}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


async def fetch(labnet, url: str, host: str, addresses=("127.0.0.1",)):
    fetched = await measure_http(
        url,
        host,
        addresses,
        spec=labnet.resolver,
        timeout=TIMEOUT,
        ssl_context=SSL,
        options=labnet.options,
    )
    return fetched.result


# --- DNS ------------------------------------------------------------------------------------------


async def test_dns_a_answer(labnet):
    result = await measure_dns("news.domestic.test", labnet.resolver, TIMEOUT, labnet.options)
    assert result.failure is None
    assert result.answers == ("127.0.0.1",)
    assert result.resolver == f"127.0.0.1:{labnet.dns.port}"
    assert result.runtime >= 0  # recorded; how long it took is bench/'s business


async def test_dns_loopback_answer_is_a_bogon_outside_a_lab(labnet):
    result = await measure_dns("news.domestic.test", labnet.resolver, TIMEOUT, DnsOptions())
    assert (result.answers, result.failure) == (("127.0.0.1",), F.DNS_BOGON)


async def test_dns_sinkhole_answer_is_just_an_answer_in_the_lab(labnet):
    result = await measure_dns("sinkhole.world.test", labnet.resolver, TIMEOUT, labnet.options)
    assert (result.answers, result.failure) == (("127.0.0.66",), None)


async def test_dns_name_is_case_insensitive(labnet):
    result = await measure_dns("NEWS.Domestic.TEST", labnet.resolver, TIMEOUT, labnet.options)
    assert result.answers == ("127.0.0.1",)


@pytest.mark.parametrize(
    ("host", "failure"),
    [
        ("blocked.world.test", F.DNS_NXDOMAIN),
        ("never-heard-of.test", F.DNS_NXDOMAIN),
        ("refused.world.test", F.DNS_REFUSED),
        ("servfail.world.test", F.DNS_SERVFAIL),
    ],
)
async def test_dns_failures(labnet, host, failure):
    result = await measure_dns(host, labnet.resolver, TIMEOUT, labnet.options)
    assert result.answers == ()
    assert result.failure == failure
    assert result.runtime >= 0


async def test_dns_unresponsive_resolver_times_out(silent_resolver):
    result = await measure_dns("news.domestic.test", silent_resolver, 0.5)
    assert result.failure == F.GENERIC_TIMEOUT
    assert result.answers == ()


async def test_dns_address_literal_needs_no_query(silent_resolver):
    result = await measure_dns("192.0.2.7", silent_resolver, 0.5)
    assert (result.resolver, result.answers, result.failure) == ("none", ("192.0.2.7",), None)


# --- TCP ------------------------------------------------------------------------------------------


async def test_tcp_closed_port_is_refused():
    port = free_port()
    [result] = await measure_tcp(("127.0.0.1",), port, TIMEOUT, 4)
    assert (result.ip, result.port) == ("127.0.0.1", port)
    assert result.failure == F.CONNECTION_REFUSED
    assert not result.success


async def test_tcp_open_port_and_endpoint_cap(labnet):
    results = await measure_tcp(
        ("127.0.0.66", "127.0.0.1", "127.0.0.2"), labnet.web.port, TIMEOUT, 2
    )
    assert [r.ip for r in results] == ["127.0.0.66", "127.0.0.1"]
    assert results[0].failure == F.CONNECTION_REFUSED
    assert results[1].failure is None and results[1].success
    assert results[1].runtime >= 0


# --- HTTP -----------------------------------------------------------------------------------------


async def test_http_fetch_from_labweb(labnet):
    host = "news.domestic.test"
    url = labnet.url(host)
    result = await fetch(labnet, url, host)
    page = labnet.page(host)
    assert result.failure is None
    assert result.status == 200
    assert result.url == url
    assert result.title == "Domestic News"
    assert result.body_length == len(page)
    assert result.body_sha256 == hashlib.sha256(page).hexdigest()


async def test_http_unknown_site_is_a_404_not_a_failure(labnet):
    host = "nobody.domestic.test"
    result = await fetch(labnet, labnet.url(host), host)
    assert (result.status, result.failure, result.title) == (404, None, None)


async def test_http_server_hanging_up_is_a_failure(hangup_server, labnet):
    result = await fetch(labnet, f"http://hangup.test:{hangup_server}/", "hangup.test")
    assert result.status is None
    assert result.failure == F.EOF_ERROR


async def test_http_redirect_is_resolved_with_the_same_resolver(labnet, redirector):
    url = f"http://start.test:{redirector}/to/bank.domestic.test"
    result = await fetch(labnet, url, "start.test")
    assert (result.status, result.failure) == (200, None)
    assert result.url == labnet.url("bank.domestic.test")
    assert result.title == "National Bank"


async def test_http_redirect_to_a_censored_name_reports_the_dns_failure(labnet, redirector):
    url = f"http://start.test:{redirector}/to/blocked.world.test"
    result = await fetch(labnet, url, "start.test")
    assert result.status is None
    assert result.failure == F.DNS_NXDOMAIN


# --- the whole web test and its local verdict -----------------------------------------------------

NETWORK = NetworkContext("XA", "XA-1", 64500, "Test", "mobile")
AGENT_ID = "0123456789abcdef0123456789abcdef"


def lab_settings(labnet, **kwargs) -> ProbeSettings:
    return ProbeSettings(
        resolver=labnet.resolver, timeout=TIMEOUT, routable_prefixes=LAB, control_url=None, **kwargs
    )


async def test_measure_target_verdicts_without_a_control(labnet, hangup_server):
    cases = {
        labnet.url("news.domestic.test"): (Verdict.OK, None, None),
        labnet.url("blocked.world.test"): (Verdict.ANOMALY, Blocking.DNS, F.DNS_NXDOMAIN),
        labnet.url("refused.world.test"): (Verdict.ANOMALY, Blocking.DNS, F.DNS_REFUSED),
        labnet.url("servfail.world.test"): (Verdict.ANOMALY, Blocking.DNS, F.DNS_SERVFAIL),
        labnet.url("sinkhole.world.test"): (Verdict.ANOMALY, Blocking.TCP_IP, F.CONNECTION_REFUSED),
        f"http://127.0.0.1:{hangup_server}/": (Verdict.ANOMALY, Blocking.HTTP_FAILURE, F.EOF_ERROR),
    }
    async with open_run(lab_settings(labnet)) as run:
        for url, (verdict, blocking, failure) in cases.items():
            m = await measure_target(Target(url, "international"), AGENT_ID, NETWORK, run)
            assert (m.verdict, m.blocking, m.failure) == (verdict, blocking, failure), url
            assert m.agent_id == AGENT_ID and m.network == NETWORK and m.control is None
            # Steps after a failed one are not attempted.
            if blocking is Blocking.DNS:
                assert m.tcp == () and m.http is None
            if blocking is Blocking.TCP_IP:
                assert m.dns.answers == ("127.0.0.66",) and m.http is None
            if verdict is Verdict.OK:
                assert m.http.status == 200 and m.http.title == "Domestic News"


async def test_bogon_answer_stops_before_connecting(labnet):
    settings = ProbeSettings(resolver=labnet.resolver, timeout=TIMEOUT, control_url=None)
    async with open_run(settings) as run:
        target = Target(labnet.url("news.domestic.test"), "domestic")
        m = await measure_target(target, AGENT_ID, NETWORK, run)
    assert (m.verdict, m.blocking, m.failure) == (Verdict.ANOMALY, Blocking.DNS, F.DNS_BOGON)
    assert m.tcp == () and m.http is None


async def test_local_verdict_from_real_results_and_own_failure(labnet, silent_resolver):
    ok_dns = await measure_dns("news.domestic.test", labnet.resolver, TIMEOUT, labnet.options)
    tcp = await measure_tcp(ok_dns.answers, labnet.web.port, TIMEOUT, 4)
    http = await fetch(labnet, labnet.url("news.domestic.test"), "news.domestic.test")
    assert classify(dns=ok_dns, tcp=tcp, http=http).verdict is Verdict.OK

    timed_out = await measure_dns("news.domestic.test", silent_resolver, 0.3)
    found = classify(dns=timed_out)
    assert (found.verdict, found.blocking, found.failure) == (
        Verdict.ANOMALY,
        Blocking.DNS,
        F.GENERIC_TIMEOUT,
    )

    refused = await measure_tcp(ok_dns.answers, free_port(), TIMEOUT, 4)
    found = classify(dns=ok_dns, tcp=refused)
    assert (found.verdict, found.blocking, found.failure) == (
        Verdict.ANOMALY,
        Blocking.TCP_IP,
        F.CONNECTION_REFUSED,
    )
    # One working endpoint is a working TCP step.
    assert classify(dns=ok_dns, tcp=(*refused, *tcp), http=http).verdict is Verdict.OK

    # The agent's own set-up failing is a failed measurement, not censorship.
    broken = DnsResult("system", (), F.unknown_failure("no DNS resolver is configured"), 0.0)
    found = classify(dns=broken)
    assert (found.verdict, found.blocking, found.failure) == (
        Verdict.FAILURE,
        None,
        broken.failure,
    )


async def test_measure_targets_reports_each_result(labnet):
    hosts = ["news.domestic.test", "bank.domestic.test", "news.world.test", "blocked.world.test"]
    targets = [Target(labnet.url(h), "domestic") for h in hosts]
    seen = []
    results = await measure_targets(
        targets, AGENT_ID, NETWORK, lab_settings(labnet, concurrency=2), seen.append
    )
    assert [m.target for m in results] == targets
    assert sorted(m.uid for m in seen) == sorted(m.uid for m in results)
    assert len({m.uid for m in results}) == 4
    verdicts = {m.target.host: m.verdict for m in results}
    assert verdicts == {
        "news.domestic.test": Verdict.OK,
        "bank.domestic.test": Verdict.OK,
        "news.world.test": Verdict.OK,
        "blocked.world.test": Verdict.ANOMALY,
    }
