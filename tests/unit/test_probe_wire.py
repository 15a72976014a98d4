"""The measurement's new parts on the wire: TLS, control, DNS queries, redirects, headers, hits.

Strict (unknown keys and bad values are the peer's fault) and round-tripping through the canonical
bytes that get signed; a measurement written before these fields existed still decodes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from protocol import (
    Blocking,
    DnsResult,
    HttpResult,
    LocalProtocolError,
    Measurement,
    NetworkContext,
    SchemaError,
    SigningKey,
    Target,
    TcpResult,
    Verdict,
    canonical_decode,
    canonical_encode,
    new_uid,
)
from protocol import failures as F
from protocol.envelope import sign_batch
from protocol.fingerprints import Hit
from protocol.messages import (
    TEST_PULSE,
    Batch,
    ControlResult,
    DnsQuery,
    HttpHop,
    TlsResult,
    from_peer,
)

KEY = SigningKey.generate()


def full_measurement() -> Measurement:
    dns = DnsResult(
        "tcp://198.18.0.53:53",
        ("198.51.100.7",),
        None,
        0.02,
        (
            DnsQuery("A", "NOERROR", (("198.51.100.7", 300),), None, 0.01),
            DnsQuery("AAAA", "NOERROR", (), F.DNS_NO_ANSWER, 0.01),
        ),
    )
    http = HttpResult(
        "https://www.site.example/",
        200,
        1234,
        "ab" * 32,
        "A Title",
        None,
        0.3,
        redirects=(HttpHop("https://site.example/", 301, "https://www.site.example/"),),
        headers=(("server", "nginx"), ("content-type", "text/html")),
        header_names=("server", "content-type", "x-thing"),
        body_truncated=True,
    )
    control = ControlResult(
        ("198.51.100.7",), None, (TcpResult("198.51.100.7", 443, None, 0.01),), None,
        200, 1200, "A Title", ("content-type", "server"), None, {"198.51.100.7": 64496},
    )  # fmt: skip
    return Measurement(
        uid=new_uid(),
        agent_id=KEY.agent_id,
        measured_at=datetime(2026, 11, 28, 12, 0, tzinfo=UTC),
        runtime=0.5,
        network=NetworkContext("XA", "XA-NORTH", 64500, "MobiNet", "mobile"),
        target=Target("https://site.example/", "international", "NEWS"),
        verdict=Verdict.CONFIRMED,
        blocking=Blocking.HTTP_DIFF,
        dns=dns,
        tcp=(TcpResult("198.51.100.7", 443, None, 0.01),),
        http=http,
        tls=TlsResult(
            "198.51.100.7",
            443,
            "site.example",
            "TLSv1.3",
            "TLS_AES_256_GCM_SHA384",
            "cd" * 32,
            None,
            0.05,
        ),
        control=control,
        dns_extra=(DnsResult("https://dns.example/dns-query", (), F.DNS_NXDOMAIN, 0.1),),
        fingerprints=(Hit("ir_iframe_10_10", "body"),),
    )


def test_full_measurement_round_trips_through_canonical_bytes_and_a_signed_batch() -> None:
    m = full_measurement()
    wire = canonical_decode(canonical_encode(m.to_wire()))
    assert Measurement.from_wire(wire) == m
    assert wire["http"]["headers"] == {"content-type": "text/html", "server": "nginx"}
    assert wire["control"]["asns"] == {"198.51.100.7": 64496}
    batch = Batch(new_uid(), KEY.agent_id, m.measured_at, (m,))
    assert sign_batch(KEY, batch).verify(KEY.public_key).measurements == (m,)


def test_measurement_without_the_new_fields_still_decodes() -> None:
    wire = full_measurement().to_wire()
    for key in ("tls", "control", "dns_extra", "fingerprints"):
        del wire[key]
    for key in ("redirects", "headers", "header_names", "body_truncated"):
        del wire["http"][key]
    del wire["dns"]["queries"]
    old = Measurement.from_wire(wire)
    assert old.tls is None and old.control is None and old.http is not None
    assert old.http.redirects == () and old.dns is not None and old.dns.queries == ()


def _mutated(change: Any) -> dict[str, Any]:
    wire = full_measurement().to_wire()
    change(wire)
    return wire


@pytest.mark.parametrize(
    "change",
    [
        lambda w: w["tls"].update(extra=1),
        lambda w: w["tls"].update(failure="tls_sad"),
        lambda w: w["control"].update(asns={"not-an-ip": 1}),
        lambda w: w["control"].update(http_status=99),
        lambda w: w["http"]["redirects"][0].update(status=200),
        lambda w: w["http"].update(headers={"Server": "x"}),  # names are lowercase
        lambda w: w["http"].update(header_names=["x"] * 49),
        lambda w: w["http"].update(body_truncated=1),
        lambda w: w["dns"]["queries"][0].update(type="MX"),
        lambda w: w["dns"]["queries"][0]["answers"][0].update(ttl=-1),
        lambda w: w["fingerprints"].append({"name": "x"}),
        lambda w: w.update(test="port_scan"),
    ],
)
def test_bad_new_fields_are_the_peers_fault(change: Any) -> None:
    with pytest.raises(SchemaError):
        from_peer(lambda: Measurement.from_wire(_mutated(change)))


def test_tls_success_needs_a_version() -> None:
    with pytest.raises(LocalProtocolError):
        TlsResult("198.51.100.7", 443, "site.example", None, None, None, None, 0.1)


def test_pulse_is_a_known_test() -> None:
    m = full_measurement()
    pulse = Measurement(
        m.uid, m.agent_id, m.measured_at, 0.1, m.network, m.target, Verdict.OK, test=TEST_PULSE
    )
    assert Measurement.from_wire(pulse.to_wire()) == pulse
