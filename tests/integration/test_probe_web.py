"""One scenario per censorship technique, end to end: agent probes + the collector's control helper.

Each asserts the exact failure string and the verdict, against real DNS, TCP, TLS and HTTP servers on
127.0.0.1/127.0.0.2 (see probe_lab.py for the two views of the lab internet).
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trustme
from probe_lab import MIDDLEBOX_IP, PAGE, SITE, TRUE_IP, Lab, full_backlog, lab, server_context

from collector.labnet import LabTrap, LabWeb, Site
from protocol import Blocking, Measurement, Verdict
from protocol import failures as F
from protocol.classify import classify_measurement


@pytest.fixture
async def net(tmp_path: Path) -> AsyncIterator[Lab]:
    async with lab(tmp_path) as running:
        yield running


def assert_verdict(
    m: Measurement, verdict: Verdict, blocking: Blocking | None, failure: str | None
) -> None:
    assert (m.verdict, m.blocking, m.failure) == (verdict, blocking, failure)
    again = classify_measurement(m)  # what the collector computes from the signed record
    assert (again.verdict, again.blocking, again.failure) == (verdict, blocking, failure)


# --- clean and down --------------------------------------------------------------------------------


async def test_clean_https_site_is_ok_with_every_step_recorded(net: Lab) -> None:
    m = await net.measure(net.web.url(SITE))
    assert_verdict(m, Verdict.OK, None, None)
    assert m.dns is not None and m.dns.answers == (TRUE_IP,)
    assert [q.rdtype for q in m.dns.queries] == ["A", "AAAA"]
    assert m.dns.queries[0].rcode == "NOERROR" and m.dns.queries[0].answers == ((TRUE_IP, 60),)
    assert (
        m.tls is not None
        and m.tls.failure is None
        and m.tls.version
        and m.tls.version.startswith("TLS")
    )
    assert m.tls.server_name == SITE and m.tls.cert_sha256 and len(m.tls.cert_sha256) == 64
    assert m.http is not None and m.http.status == 200 and m.http.title == PAGE.title
    assert "content-type" in m.http.header_names and dict(m.http.headers)[
        "content-type"
    ].startswith("text/html")
    assert (
        m.control is not None
        and m.control.http_status == 200
        and m.control.http_title == PAGE.title
    )
    assert dict(m.control.asns) == {TRUE_IP: 64496}


async def test_site_down_for_agent_and_control_is_down_not_censorship(net: Lab) -> None:
    with socket.socket() as probe:  # a port nothing listens on, for both views
        probe.bind((TRUE_IP, 0))
        port = probe.getsockname()[1]
    m = await net.measure(f"http://{SITE}:{port}/")
    assert_verdict(m, Verdict.FAILURE, Blocking.DOWN, F.CONNECTION_REFUSED)
    assert m.control is not None and m.control.http_failure == F.CONNECTION_REFUSED


async def test_name_that_does_not_exist_anywhere_is_down(net: Lab) -> None:
    m = await net.measure(f"http://gone.test:{net.plain.port}/")
    assert_verdict(m, Verdict.FAILURE, Blocking.DOWN, F.DNS_NXDOMAIN)


# --- DNS -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("behaviour", "failure"),
    [
        ("NXDOMAIN", F.DNS_NXDOMAIN),
        ("SERVFAIL", F.DNS_SERVFAIL),
        ("REFUSED", F.DNS_REFUSED),
        ("SILENT", F.GENERIC_TIMEOUT),
        (
            ["198.18.7.7"],
            F.DNS_BOGON,
        ),  # a benchmarking-range address: not routable for a public name
    ],
)
async def test_dns_tampering_is_dns_blocking(
    net: Lab, behaviour: str | list[str], failure: str
) -> None:
    net.censor_answers(SITE, behaviour)
    m = await net.measure(net.plain.url(SITE))
    assert_verdict(m, Verdict.ANOMALY, Blocking.DNS, failure)
    assert m.tcp == () and m.http is None  # nothing was fetched from a lie
    assert m.control is not None and m.control.dns_answers == (TRUE_IP,)


async def test_bogon_answer_keeps_the_answer_as_evidence(net: Lab) -> None:
    net.censor_answers(SITE, ["198.18.7.7"])
    m = await net.measure(net.plain.url(SITE), control=False)
    assert_verdict(m, Verdict.ANOMALY, Blocking.DNS, F.DNS_BOGON)
    assert m.dns is not None and m.dns.answers == ("198.18.7.7",)


async def test_known_blockpage_ip_is_confirmed(net: Lab) -> None:
    net.censor_answers(SITE, ["10.10.34.34"])  # Iran's injector: data only, never connected to
    m = await net.measure(net.plain.url(SITE))
    assert_verdict(m, Verdict.CONFIRMED, Blocking.DNS, F.DNS_BOGON)
    assert [(h.name, h.location) for h in m.fingerprints] == [("dns_ir_10_10_34_34", "dns")]


async def test_sinkhole_on_another_network_is_dns_even_though_tcp_failed(net: Lab) -> None:
    net.helper.asn_lookup = {TRUE_IP: 64496}.get  # the sinkhole is not the site's AS
    net.censor_answers(SITE, [MIDDLEBOX_IP])
    m = await net.measure(net.plain.url(SITE))
    assert_verdict(m, Verdict.ANOMALY, Blocking.DNS, F.CONNECTION_REFUSED)


async def test_dns_failure_without_control_is_a_candidate_anomaly(net: Lab) -> None:
    net.censor_answers(SITE, "NXDOMAIN")
    m = await net.measure(net.plain.url(SITE), control=False)
    assert_verdict(m, Verdict.ANOMALY, Blocking.DNS, F.DNS_NXDOMAIN)
    assert m.control is None


# --- TCP -----------------------------------------------------------------------------------------


async def test_tcp_refused_is_tcp_ip(net: Lab) -> None:
    net.censor_answers(SITE, [MIDDLEBOX_IP])  # same AS as the site: DNS is consistent
    m = await net.measure(net.plain.url(SITE))
    assert_verdict(m, Verdict.ANOMALY, Blocking.TCP_IP, F.CONNECTION_REFUSED)
    assert [t.failure for t in m.tcp] == [F.CONNECTION_REFUSED]


async def test_tcp_timeout_is_tcp_ip(net: Lab) -> None:
    held = full_backlog(MIDDLEBOX_IP, net.plain.port)
    try:
        net.censor_answers(SITE, [MIDDLEBOX_IP])
        m = await net.measure(net.plain.url(SITE))
    finally:
        for sock in held:
            sock.close()
    assert_verdict(m, Verdict.ANOMALY, Blocking.TCP_IP, F.GENERIC_TIMEOUT)


async def test_reset_after_connect_is_http_failure(net: Lab) -> None:
    trap = await LabTrap("reset", MIDDLEBOX_IP, net.plain.port).start()
    try:
        net.censor_answers(SITE, [MIDDLEBOX_IP])
        m = await net.measure(net.plain.url(SITE))
    finally:
        await trap.stop()
    assert m.tcp and m.tcp[0].success
    assert_verdict(m, Verdict.ANOMALY, Blocking.HTTP_FAILURE, F.CONNECTION_RESET)


# --- TLS -----------------------------------------------------------------------------------------


async def _middlebox_tls(net: Lab, context: object) -> Measurement:
    box = await LabWeb({SITE: PAGE}, MIDDLEBOX_IP, net.web.port, ssl_context=context).start()  # type: ignore[arg-type]
    try:
        net.censor_answers(SITE, [MIDDLEBOX_IP])
        return await net.measure(net.web.url(SITE))
    finally:
        await box.stop()


async def test_tls_wrong_name_certificate(net: Lab) -> None:
    m = await _middlebox_tls(net, server_context(net.ca, "wrong.test"))
    assert_verdict(m, Verdict.ANOMALY, Blocking.HTTP_FAILURE, F.SSL_INVALID_HOSTNAME)
    assert m.tls is not None and m.tls.failure == F.SSL_INVALID_HOSTNAME and m.http is None


async def test_tls_unknown_authority(net: Lab) -> None:
    m = await _middlebox_tls(net, server_context(trustme.CA(), SITE))
    assert_verdict(m, Verdict.ANOMALY, Blocking.HTTP_FAILURE, F.SSL_UNKNOWN_AUTHORITY)


@pytest.mark.parametrize(
    ("mode", "failure"),
    [("reset", F.CONNECTION_RESET), ("silent", F.GENERIC_TIMEOUT), ("close", F.EOF_ERROR)],
)
async def test_tls_interference_after_client_hello(net: Lab, mode: str, failure: str) -> None:
    trap = await LabTrap(mode, MIDDLEBOX_IP, net.web.port).start()
    try:
        net.censor_answers(SITE, [MIDDLEBOX_IP])
        m = await net.measure(net.web.url(SITE))
    finally:
        await trap.stop()
    assert m.tcp and m.tcp[0].success  # TCP worked: this is what SNI filtering looks like
    assert_verdict(m, Verdict.ANOMALY, Blocking.HTTP_FAILURE, failure)


# --- HTTP ----------------------------------------------------------------------------------------


async def _middlebox_page(net: Lab, site: Site) -> Measurement:
    box = await LabWeb({SITE: site}, MIDDLEBOX_IP, net.plain.port).start()
    try:
        net.censor_answers(SITE, [MIDDLEBOX_IP])
        return await net.measure(net.plain.url(SITE))
    finally:
        await box.stop()


async def test_iranian_blockpage_is_confirmed(net: Lab) -> None:
    blockpage = Site("M", '<iframe src="http://10.10.34.34?type=Invalid Site&policy=MainPolicy">')
    m = await _middlebox_page(net, blockpage)
    assert_verdict(m, Verdict.CONFIRMED, Blocking.HTTP_DIFF, None)
    assert [(h.name, h.location) for h in m.fingerprints] == [("ir_iframe_10_10", "body")]


async def test_different_page_is_http_diff(net: Lab) -> None:
    # A filter's page: its own title, a short body, and a header the real site never sends.
    notice = Site("Access Restricted Notice", "Unavailable.", headers={"X-Filtered-By": "policy"})
    m = await _middlebox_page(net, notice)
    assert_verdict(m, Verdict.ANOMALY, Blocking.HTTP_DIFF, None)
    assert (
        m.http is not None and m.http.status == 200 and m.http.title == "Access Restricted Notice"
    )


async def test_redirects_are_recorded_hop_by_hop(net: Lab) -> None:
    port = net.plain.port
    net.plain.sites["start.test"] = Site(
        "", status=302, headers={"Location": f"http://hop.test:{port}/two"}
    )
    net.plain.sites["hop.test"] = Site(
        "", status=301, headers={"Location": f"http://{SITE}:{port}/"}
    )
    for name in ("start.test", "hop.test"):
        net.censor.zone.records[name] = [TRUE_IP]
        net.honest.zone.records[name] = [TRUE_IP]
    m = await net.measure(f"http://start.test:{port}/")
    assert m.http is not None and m.http.failure is None
    assert [(h.url, h.status, h.location) for h in m.http.redirects] == [
        (f"http://start.test:{port}/", 302, f"http://hop.test:{port}/two"),
        (f"http://hop.test:{port}/two", 301, f"http://{SITE}:{port}/"),
    ]
    assert m.http.url == f"http://{SITE}:{port}/" and m.http.title == PAGE.title
    assert_verdict(m, Verdict.OK, None, None)


async def test_redirect_loop_stops_after_ten_hops(net: Lab) -> None:
    port = net.plain.port
    net.plain.sites["loop.test"] = Site("", status=302, headers={"Location": "/again"})
    net.censor.zone.records["loop.test"] = [TRUE_IP]
    m = await net.measure(f"http://loop.test:{port}/", control=False)
    assert m.http is not None and len(m.http.redirects) == 10
    assert m.http.failure == F.unknown_failure("too many redirects")


async def test_body_read_is_capped(net: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    import agent.probes.http_probe as http_probe

    monkeypatch.setattr(http_probe, "MAX_BODY_BYTES", 100)
    m = await net.measure(net.plain.url(SITE), control=False)
    assert m.http is not None and m.http.body_length == 100 and m.http.body_truncated


async def test_extra_resolvers_are_recorded_for_comparison(net: Lab) -> None:
    from agent.probes.dns_probe import ResolverSpec

    net.censor_answers(SITE, "NXDOMAIN")
    honest = ResolverSpec.parse(f"tcp://{net.honest.address}")
    m = await net.measure(net.plain.url(SITE), extra_resolvers=(honest,))
    assert m.dns is not None and m.dns.failure == F.DNS_NXDOMAIN
    assert [(d.resolver, d.answers, d.failure) for d in m.dns_extra] == [
        (f"tcp://{net.honest.address}", (TRUE_IP,), None)
    ]
