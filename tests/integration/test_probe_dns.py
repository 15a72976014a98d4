"""The DNS probe on its own: transports (UDP, TCP, DoH), rcodes, TTLs, silence, bogons."""

from __future__ import annotations

import ssl
from pathlib import Path

import trustme

from agent.probes.dns_probe import DnsOptions, ResolverSpec, measure_dns
from collector.labnet import LabDns, LabWeb, Zone
from protocol import failures as F
from protocol.bogons import parse_prefixes

ZONE = {"both.test": ["127.0.0.1", "::1"], "v4.test": ["127.0.0.9"]}
LOOPBACK = DnsOptions(routable=parse_prefixes(["127.0.0.0/8", "::1/128"]))


async def test_udp_and_tcp_give_answers_rcodes_and_ttls() -> None:
    server = await LabDns(Zone(dict(ZONE))).start()
    try:
        for spec in (f"udp://{server.address}", f"tcp://{server.address}", server.address):
            result = await measure_dns("both.test", ResolverSpec.parse(spec), 1.0, LOOPBACK)
            assert result.failure is None, spec
            assert result.answers == ("127.0.0.1", "::1")
            assert [(q.rdtype, q.rcode, q.answers) for q in result.queries] == [
                ("A", "NOERROR", (("127.0.0.1", 60),)),
                ("AAAA", "NOERROR", (("::1", 60),)),
            ]
        assert ResolverSpec.parse(f"tcp://{server.address}").label == f"tcp://{server.address}"
    finally:
        await server.stop()


async def test_name_with_only_an_a_record_is_not_a_failure() -> None:
    server = await LabDns(Zone(dict(ZONE))).start()
    try:
        result = await measure_dns("v4.test", ResolverSpec.parse(server.address), 1.0, LOOPBACK)
    finally:
        await server.stop()
    assert result.failure is None and result.answers == ("127.0.0.9",)
    assert result.queries[1].failure == F.DNS_NO_ANSWER and result.queries[1].rcode == "NOERROR"


async def test_loopback_answers_are_bogons_unless_listed_as_routable() -> None:
    server = await LabDns(Zone(dict(ZONE))).start()
    try:
        result = await measure_dns("v4.test", ResolverSpec.parse(server.address), 1.0)
    finally:
        await server.stop()
    assert result.failure == F.DNS_BOGON and result.answers == ("127.0.0.9",)


async def test_silence_over_tcp_times_out() -> None:
    server = await LabDns(Zone(dict(ZONE), {"both.test": "SILENT"})).start()
    try:
        spec = ResolverSpec.parse(f"tcp://{server.address}")
        result = await measure_dns("both.test", spec, 0.5, LOOPBACK)
    finally:
        await server.stop()
    assert result.failure == F.GENERIC_TIMEOUT and result.queries[0].rcode is None


async def test_nothing_listening_over_tcp_is_connection_refused() -> None:
    server = await LabDns(Zone({})).start()
    await server.stop()  # the port is now closed
    result = await measure_dns("x.test", ResolverSpec.parse(f"tcp://{server.address}"), 1.0)
    assert result.failure == F.CONNECTION_REFUSED


async def test_dns_over_https(tmp_path: Path) -> None:
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    doh = await LabWeb(
        {}, ssl_context=context, doh_zone=Zone(dict(ZONE), {"gone.test": "NXDOMAIN"})
    ).start()
    client = ssl.create_default_context()
    ca.configure_trust(client)
    options = DnsOptions(routable=LOOPBACK.routable, ssl_context=client)
    try:
        spec = ResolverSpec.parse(f"https://127.0.0.1:{doh.port}/dns-query")
        found = await measure_dns("both.test", spec, 2.0, options)
        gone = await measure_dns("gone.test", spec, 2.0, options)
        untrusted = await measure_dns("both.test", spec, 2.0, DnsOptions())
    finally:
        await doh.stop()
    assert found.failure is None and found.answers == ("127.0.0.1", "::1")
    assert found.resolver == f"https://127.0.0.1:{doh.port}/dns-query"
    assert gone.failure == F.DNS_NXDOMAIN and gone.queries[0].rcode == "NXDOMAIN"
    assert untrusted.failure == F.SSL_UNKNOWN_AUTHORITY


async def test_address_literal_needs_no_query() -> None:
    result = await measure_dns("[::1]", ResolverSpec(), 1.0)
    assert result.resolver == "none" and result.answers == ("::1",) and result.failure is None


def test_resolver_spec_parsing() -> None:
    assert ResolverSpec.parse("system").label == "system"
    assert ResolverSpec.parse("198.18.0.53").label == "198.18.0.53:53"
    assert ResolverSpec.parse("tcp://[2001:db8::1]:5353").label == "tcp://[2001:db8::1]:5353"
    for bad in ("dns.example", "198.18.0.53:99999", "https://"):
        try:
            ResolverSpec.parse(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad!r} was accepted")
