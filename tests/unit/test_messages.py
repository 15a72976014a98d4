"""protocol.messages: frozen, self-checking messages; from_wire refuses anything a peer got wrong."""

from __future__ import annotations

import copy
import dataclasses
import re
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.canonical import canonical_decode, canonical_encode
from protocol.errors import LocalProtocolError, SchemaError
from protocol.messages import (
    MAX_BATCH_MEASUREMENTS,
    MAX_DNS_ANSWERS,
    MAX_TCP_ENDPOINTS,
    SCHEMA_VERSION,
    TEST_WEB,
    Batch,
    DnsResult,
    HttpResult,
    Measurement,
    NetworkContext,
    Target,
    TcpResult,
    from_peer,
    new_uid,
)
from protocol.verdicts import Blocking, NetworkType, Scope, Verdict

import builders as b

FAST = settings(max_examples=200, deadline=None)
SOME = settings(max_examples=50, deadline=None)

Wire = dict[str, Any]


def through_the_wire(wire: Wire) -> Any:
    """What a peer would receive: the canonical bytes, decoded."""
    return canonical_decode(canonical_encode(wire))


def paths(obj: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path to a value inside a wire map (``("tcp", 0, "port")``), the root excluded."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield (*prefix, key)
            yield from paths(value, (*prefix, key))
    elif isinstance(obj, list):
        for index, value in enumerate(obj):
            yield (*prefix, index)
            yield from paths(value, (*prefix, index))


def replaced(wire: Wire, path: tuple[Any, ...], value: Any) -> Wire:
    out = copy.deepcopy(wire)
    parent = out
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    return out


def deleted(wire: Wire, path: tuple[Any, ...]) -> Wire:
    out = copy.deepcopy(wire)
    parent = out
    for key in path[:-1]:
        parent = parent[key]
    del parent[path[-1]]
    return out


MEASUREMENT_WIRE = b.measurement().to_wire()
MAP_PATHS = [
    path
    for path in paths(MEASUREMENT_WIRE)
    if not isinstance(path[-1], int)  # a key inside a map, not a list index
]

#: Fields the measurement engine added after schema 1 shipped: a measurement without them still decodes.
OPTIONAL_PATHS = {
    ("dns", "queries"),
    ("http", "redirects"),
    ("http", "headers"),
    ("http", "header_names"),
    ("http", "body_truncated"),
    ("tls",),
    ("control",),
    ("dns_extra",),
    ("fingerprints",),
}


# --- valid messages round trip ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "cls"),
    [
        (b.network, NetworkContext),
        (b.target, Target),
        (b.dns, DnsResult),
        (b.tcp, TcpResult),
        (b.http, HttpResult),
        (b.measurement, Measurement),
        (b.batch, Batch),
    ],
)
def test_to_wire_from_wire_round_trip(build: Callable[[], Any], cls: Any) -> None:
    message = build()
    wire = message.to_wire()
    assert cls.from_wire(wire) == message
    assert cls.from_wire(through_the_wire(wire)) == message
    assert cls.from_wire(through_the_wire(wire)).to_wire() == wire


def test_a_minimal_measurement_round_trips() -> None:
    message = b.measurement(dns=None, tcp=(), http=None, verdict="failure", failure="eof_error")
    wire = message.to_wire()
    assert wire["dns"] is None and wire["http"] is None and wire["tcp"] == []
    assert Measurement.from_wire(through_the_wire(wire)) == message


@pytest.mark.parametrize("path", sorted(OPTIONAL_PATHS), ids=lambda path: ".".join(map(str, path)))
def test_fields_added_later_may_be_missing(path: tuple[Any, ...]) -> None:
    message = from_peer(lambda: Measurement.from_wire(deleted(MEASUREMENT_WIRE, path)))
    assert isinstance(message, Measurement)


def test_measurement_wire_shape_is_pinned() -> None:
    wire = b.measurement(verdict="anomaly", blocking="dns", failure="dns_nxdomain_error").to_wire()
    assert set(wire) == {
        "schema",
        "uid",
        "agent_id",
        "measured_at",
        "runtime",
        "network",
        "target",
        "test",
        "verdict",
        "blocking",
        "failure",
        "dns",
        "tcp",
        "http",
        # added by the measurement engine; optional on the wire so older measurements still decode
        "tls",
        "control",
        "dns_extra",
        "fingerprints",
    }
    assert wire["schema"] == SCHEMA_VERSION
    assert wire["test"] == TEST_WEB
    assert wire["measured_at"] == "2026-01-31T12:00:00.123456Z"
    assert wire["verdict"] == "anomaly" and type(wire["verdict"]) is str
    assert wire["blocking"] == "dns" and type(wire["blocking"]) is str
    assert wire["network"] == {
        "country": "IR",
        "region": "IR-07",
        "asn": 197207,
        "carrier": "MCI",
        "network_type": "mobile",
        "source": "self-reported",
    }
    assert wire["target"] == {
        "url": "https://www.example.org/news?id=1",
        "host": "www.example.org",
        "scope": "international",
        "category": "NEWS",
    }
    assert type(wire["runtime"]) is float
    assert set(wire["dns"]) == {"resolver", "answers", "failure", "runtime", "queries"}
    assert set(wire["tcp"][0]) == {"ip", "port", "failure", "runtime"}
    assert set(wire["http"]) == {
        "url",
        "status",
        "body_length",
        "body_sha256",
        "title",
        "failure",
        "runtime",
        "redirects",
        "headers",
        "header_names",
        "body_truncated",
    }


def test_integer_runtimes_are_sent_as_floats() -> None:
    message = b.measurement(runtime=3, dns=b.dns(runtime=0), tcp=(b.tcp(runtime=1),))
    wire = message.to_wire()
    assert type(wire["runtime"]) is float
    assert type(wire["dns"]["runtime"]) is float
    assert type(wire["tcp"][0]["runtime"]) is float


@FAST
@given(b.measurements())
def test_any_valid_measurement_round_trips_through_canonical_bytes(message: Measurement) -> None:
    data = canonical_encode(message.to_wire())
    again = Measurement.from_wire(canonical_decode(data))
    assert again == message
    assert canonical_encode(again.to_wire()) == data


@SOME
@given(st.lists(b.measurements(), min_size=1, max_size=4, unique_by=lambda m: m.uid), b.AWARE_TIMES)
def test_any_valid_batch_round_trips(items: list[Measurement], created: datetime) -> None:
    batch = Batch(b.uid(-1), b.KEY_A.agent_id, created, tuple(items))
    data = canonical_encode(batch.to_wire())
    assert from_peer(lambda: Batch.from_wire(canonical_decode(data))) == batch


@FAST
@given(
    country=b.COUNTRIES,
    asn=b.ASNS,
    region=b.LINE_TEXT,
    carrier=b.LINE_TEXT,
    network_type=st.sampled_from(NetworkType),
)
def test_network_context_variations_round_trip(**fields: Any) -> None:
    context = b.network(**fields)
    assert NetworkContext.from_wire(through_the_wire(context.to_wire())) == context


@FAST
@given(title=st.none() | b.LINE_TEXT, failure=b.FAILURES, status=st.integers(100, 599))
def test_http_variations_round_trip(title: str | None, failure: str | None, status: int) -> None:
    result = b.http(title=title, failure=failure, status=status)
    assert HttpResult.from_wire(through_the_wire(result.to_wire())) == result


@pytest.mark.parametrize("title", ["Проверка", "سانسور", "检查 🚫", "", "x" * 256])
def test_unicode_titles_round_trip(title: str) -> None:
    result = b.http(title=title)
    assert HttpResult.from_wire(through_the_wire(result.to_wire())) == result


def test_string_enum_values_are_coerced() -> None:
    message = b.measurement(verdict="anomaly", blocking="http-diff")
    assert message.verdict is Verdict.ANOMALY
    assert message.blocking is Blocking.HTTP_DIFF
    assert b.network(network_type="wifi").network_type is NetworkType.WIFI
    assert b.target(scope="domestic").scope is Scope.DOMESTIC


def test_messages_are_frozen() -> None:
    message = b.measurement()
    with pytest.raises(dataclasses.FrozenInstanceError):
        message.verdict = Verdict.ANOMALY  # type: ignore[misc]
    assert isinstance(message.tcp, tuple)
    assert isinstance(b.dns(answers=["1.1.1.1"]).answers, tuple)


def test_tcp_success_follows_failure() -> None:
    assert b.tcp().success
    assert not b.tcp(failure="connection_refused").success


# --- targets --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "host", "port"),
    [
        ("https://www.example.org/", "www.example.org", 443),
        ("http://www.example.org/", "www.example.org", 80),
        ("https://Example.ORG/Path", "example.org", 443),
        ("http://example.org:8080/x?y=1#z", "example.org", 8080),
        ("https://user:pw@example.org:8443/", "example.org", 8443),
        ("http://192.0.2.1/", "192.0.2.1", 80),
        ("https://[2001:db8::1]:4443/", "2001:db8::1", 4443),
        ("HTTPS://example.org", "example.org", 443),
    ],
)
def test_target_host_and_port(url: str, host: str, port: int) -> None:
    target = b.target(url=url)
    assert target.host == host
    assert target.port == port
    assert target.to_wire()["host"] == host


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.org/",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "example.org",
        "//example.org/",
        "http://",
        "https:///path",
        "",
        "https://example.org/" + "x" * 2048,
        "https://example.org/\n",
    ],
)
def test_target_refuses_non_http_urls(url: str) -> None:
    with pytest.raises(LocalProtocolError):
        b.target(url=url)


@pytest.mark.parametrize("url", ["http://[::1/", "https://[example.org]/", "http://]x[/"])
def test_target_refuses_malformed_ipv6_literals(url: str) -> None:
    with pytest.raises(LocalProtocolError):
        b.target(url=url)


@pytest.mark.parametrize("url", ["http://example.org:99999/", "https://example.org:https/"])
def test_target_refuses_invalid_ports(url: str) -> None:
    with pytest.raises(LocalProtocolError):
        b.target(url=url)


def test_target_from_wire_checks_the_host() -> None:
    wire = b.target().to_wire()
    with pytest.raises(LocalProtocolError, match="host"):
        Target.from_wire({**wire, "host": "evil.example"})
    with pytest.raises(LocalProtocolError, match="host"):
        Target.from_wire({key: value for key, value in wire.items() if key != "host"})


# --- invalid messages cannot be built -------------------------------------------------------------


INVALID: list[tuple[Callable[..., Any], dict[str, Any]]] = [
    (b.network, {"country": "ir"}),
    (b.network, {"country": "IRN"}),
    (b.network, {"country": ""}),
    (b.network, {"country": 98}),
    (b.network, {"country": None}),
    (b.network, {"asn": -1}),
    (b.network, {"asn": 2**32}),
    (b.network, {"asn": True}),
    (b.network, {"asn": "197207"}),
    (b.network, {"asn": 1.0}),
    (b.network, {"region": "x" * 65}),
    (b.network, {"region": None}),
    (b.network, {"carrier": "x" * 129}),
    (b.network, {"carrier": "MCI\x00"}),
    (b.network, {"network_type": "satellite"}),
    (b.network, {"source": "gps"}),
    (b.target, {"scope": "local"}),
    (b.target, {"category": ""}),
    (b.target, {"category": "X" * 17}),
    (b.target, {"url": 42}),
    (b.dns, {"resolver": ""}),
    (b.dns, {"answers": "1.1.1.1"}),
    (b.dns, {"answers": ("1.1.1.1",) * (MAX_DNS_ANSWERS + 1)}),
    (b.dns, {"answers": ("example.org",)}),
    (b.dns, {"answers": ("",)}),
    (b.dns, {"failure": "nxdomain"}),
    (b.dns, {"runtime": -0.1}),
    (b.dns, {"runtime": 86_400.5}),
    (b.dns, {"runtime": True}),
    (b.dns, {"runtime": "1"}),
    (b.tcp, {"ip": "example.org"}),
    (b.tcp, {"port": 0}),
    (b.tcp, {"port": 65536}),
    (b.tcp, {"port": True}),
    (b.tcp, {"failure": ""}),
    (b.http, {"status": 99}),
    (b.http, {"status": 600}),
    (b.http, {"body_length": -1}),
    (b.http, {"body_sha256": "AB" * 32}),
    (b.http, {"body_sha256": "ab" * 31}),
    (b.http, {"title": "x" * 257}),
    (b.http, {"title": "line\nbreak"}),
    (b.http, {"failure": "Connection refused"}),
    (b.http, {"status": None, "failure": None}),
    (b.http, {"url": ""}),
    (b.measurement, {"uid": "A" * 32}),
    (b.measurement, {"uid": "a" * 31}),
    (b.measurement, {"uid": "g" * 32}),
    (b.measurement, {"uid": None}),
    (b.measurement, {"uid": "0190a5b2-7c3d-7e4f-8a1b-2c3d4e5f6a7b"}),
    (b.measurement, {"agent_id": "a" * 33}),
    (b.measurement, {"measured_at": datetime(2026, 1, 31, 12, 0)}),
    (b.measurement, {"runtime": -1}),
    (b.measurement, {"network": b.network().to_wire()}),
    (b.measurement, {"target": b.target().to_wire()}),
    (b.measurement, {"test": "telegram"}),
    (b.measurement, {"verdict": "blocked"}),
    (b.measurement, {"verdict": None}),
    (b.measurement, {"blocking": "firewall"}),
    (b.measurement, {"failure": "it broke"}),
    (b.measurement, {"failure": "unknown_failure: "}),
    (b.measurement, {"tcp": (b.tcp(),) * (MAX_TCP_ENDPOINTS + 1)}),
    (b.measurement, {"schema": 2}),
    (b.batch, {"batch_id": "B" * 32}),
    (b.batch, {"agent_id": "not-hex"}),
    (b.batch, {"created_at": datetime(2026, 1, 31)}),
    (b.batch, {"measurements": ()}),
    (b.batch, {"schema": 0}),
]


@pytest.mark.parametrize(
    ("build", "overrides"),
    INVALID,
    ids=[
        f"{build.__name__}-{'-'.join(overrides)}-{i}"
        for i, (build, overrides) in enumerate(INVALID)
    ],
)
def test_invalid_values_are_refused(build: Callable[..., Any], overrides: dict[str, Any]) -> None:
    with pytest.raises(LocalProtocolError):
        build(**overrides)


@pytest.mark.parametrize("failure", [None, "generic_timeout_error", "unknown_failure: boom"])
def test_failures_are_none_or_failure_strings(failure: str | None) -> None:
    assert b.measurement(failure=failure).failure == failure


def test_an_http_failure_needs_no_status() -> None:
    assert b.http(status=None, failure="connection_reset").status is None


def test_limits_are_inclusive() -> None:
    b.measurement(tcp=(b.tcp(),) * MAX_TCP_ENDPOINTS)
    b.dns(answers=("192.0.2.1",) * MAX_DNS_ANSWERS)
    b.network(asn=2**32 - 1)
    b.network(asn=0, country="ZZ", region="", carrier="")
    b.tcp(port=65535, runtime=86_400)
    b.http(status=599, body_length=0, title="")


@pytest.mark.parametrize(
    "overrides",
    [{"dns": {"resolver": "system"}}, {"http": "200 OK"}, {"tcp": ({"ip": "192.0.2.1"},)}],
)
def test_per_test_keys_must_be_message_objects(overrides: dict[str, Any]) -> None:
    with pytest.raises(LocalProtocolError):
        b.measurement(**overrides)


# --- batches -------------------------------------------------------------------------------------


def test_batch_refuses_another_agents_measurement() -> None:
    mine = b.measurement(uid=b.uid(1))
    theirs = b.measurement(uid=b.uid(2), agent_id=b.KEY_B.agent_id)
    with pytest.raises(LocalProtocolError, match="agent"):
        Batch(b.uid(-1), b.KEY_A.agent_id, b.MOMENT, (mine, theirs))


def test_batch_refuses_duplicate_uids() -> None:
    item = b.measurement(uid=b.uid(1))
    with pytest.raises(LocalProtocolError, match="twice"):
        Batch(b.uid(-1), b.KEY_A.agent_id, b.MOMENT, (item, b.measurement(uid=b.uid(2)), item))


def test_batch_size_limits() -> None:
    items = tuple(b.measurement(uid=b.uid(i)) for i in range(MAX_BATCH_MEASUREMENTS + 1))
    full = Batch(b.uid(-1), b.KEY_A.agent_id, b.MOMENT, items[:MAX_BATCH_MEASUREMENTS])
    assert len(full.measurements) == MAX_BATCH_MEASUREMENTS
    assert Batch.from_wire(through_the_wire(full.to_wire())) == full
    with pytest.raises(LocalProtocolError, match="1 to 500"):
        Batch(b.uid(-1), b.KEY_A.agent_id, b.MOMENT, items)
    with pytest.raises(LocalProtocolError, match="1 to 500"):
        Batch(b.uid(-1), b.KEY_A.agent_id, b.MOMENT, ())
    wire = {**full.to_wire(), "measurements": [item.to_wire() for item in items]}
    with pytest.raises(SchemaError):
        from_peer(lambda: Batch.from_wire(wire))


def test_batch_accepts_a_list_of_measurements() -> None:
    items = [b.measurement(uid=b.uid(1))]
    assert Batch(b.uid(-1), b.KEY_A.agent_id, b.MOMENT, items).measurements == tuple(items)  # type: ignore[arg-type]


# --- from_wire: what a peer sends ----------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [p for p in MAP_PATHS if p not in OPTIONAL_PATHS],
    ids=lambda path: ".".join(map(str, path)),
)
def test_every_field_is_required(path: tuple[Any, ...]) -> None:
    wire = deleted(MEASUREMENT_WIRE, path)
    with pytest.raises(LocalProtocolError):
        Measurement.from_wire(wire)
    with pytest.raises(SchemaError) as info:
        from_peer(lambda: Measurement.from_wire(wire))
    assert isinstance(info.value.__cause__, LocalProtocolError)
    assert info.value.reason == "schema"


@pytest.mark.parametrize(
    "where",
    [(), ("network",), ("target",), ("dns",), ("tcp", 0), ("http",)],
    ids=lambda where: ".".join(map(str, where)) or "measurement",
)
def test_unknown_fields_are_refused(where: tuple[Any, ...]) -> None:
    wire = copy.deepcopy(MEASUREMENT_WIRE)
    inner = wire
    for key in where:
        inner = inner[key]
    inner["extra"] = None
    with pytest.raises(LocalProtocolError, match="unknown fields: extra"):
        Measurement.from_wire(wire)
    with pytest.raises(SchemaError, match="unknown fields"):
        from_peer(lambda: Measurement.from_wire(wire))


@pytest.mark.parametrize("field", ["schema", "batch_id", "agent_id", "created_at", "measurements"])
def test_batch_fields_are_required(field: str) -> None:
    wire = b.batch().to_wire()
    del wire[field]
    with pytest.raises(SchemaError, match=field):
        from_peer(lambda: Batch.from_wire(wire))


@pytest.mark.parametrize("odd", [True, 1.0])
@pytest.mark.parametrize("odd_first", [False, True])
def test_a_batch_validates_each_network_context_even_when_they_compare_equal(
    odd: Any, odd_first: bool
) -> None:
    """Identical contexts in one batch are validated once; ``True`` and ``1.0`` equal ``1`` in
    Python, yet they are not an ASN, wherever they sit in the batch."""
    wire = b.batch(count=3).to_wire()
    for item in wire["measurements"]:
        item["network"]["asn"] = 1
    wire["measurements"][0 if odd_first else 2]["network"]["asn"] = odd
    with pytest.raises(SchemaError, match=r"network\.asn"):
        from_peer(lambda: Batch.from_wire(wire))
    wire["measurements"][0 if odd_first else 2]["network"]["asn"] = 1
    batch = from_peer(lambda: Batch.from_wire(wire))
    assert {m.network.asn for m in batch.measurements} == {1}


def test_batch_refuses_unknown_fields() -> None:
    wire = {**b.batch().to_wire(), "signature": b"x"}
    with pytest.raises(SchemaError, match="unknown fields: signature"):
        from_peer(lambda: Batch.from_wire(wire))


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("measured_at",), "2026-01-31T12:00:00Z"),
        (("measured_at",), 1769860800),
        (("network",), ["IR"]),
        (("target",), "https://example.org/"),
        (("tcp",), {"0": {}}),
        (("tcp",), [b.tcp().to_wire()] * (MAX_TCP_ENDPOINTS + 1)),
        (("dns", "answers"), "1.1.1.1"),
        (("dns", "answers"), ["192.0.2.1"] * (MAX_DNS_ANSWERS + 1)),
        (("http",), []),
        (("verdict",), "OK"),
        (("blocking",), ""),
        (("runtime",), None),
        (("network", "asn"), -5),
        (("network", "asn"), False),
        (("tcp", 0, "port"), 70000),
        (("target", "url"), "gopher://example.org/"),
        (("failure",), "unknown_failure: a\nb"),
    ],
)
def test_bad_wire_values_are_schema_errors(path: tuple[Any, ...], value: Any) -> None:
    wire = replaced(MEASUREMENT_WIRE, path, value)
    with pytest.raises(SchemaError):
        from_peer(lambda: Measurement.from_wire(wire))


@pytest.mark.parametrize("wire", [None, [], "measurement", b"", 1])
def test_from_wire_needs_a_map(wire: Any) -> None:
    for cls in (Measurement, Batch, NetworkContext, Target, DnsResult, TcpResult, HttpResult):
        with pytest.raises(LocalProtocolError, match="must be a map"):
            cls.from_wire(wire)


def test_from_peer_passes_values_and_other_errors_through() -> None:
    assert from_peer(lambda: 42) == 42

    def boom() -> None:
        raise KeyError("not a protocol error")

    with pytest.raises(KeyError):
        from_peer(boom)


@FAST
@given(st.sampled_from(MAP_PATHS), b.WIRE_VALUES)
def test_any_field_replaced_by_anything_is_a_message_or_a_schema_error(
    path: tuple[Any, ...], value: Any
) -> None:
    wire = through_the_wire(replaced(MEASUREMENT_WIRE, path, value))
    try:
        message = from_peer(lambda: Measurement.from_wire(wire))
    except SchemaError:
        return
    assert isinstance(message, Measurement)
    assert through_the_wire(message.to_wire()) == message.to_wire()


@pytest.mark.parametrize("value", [[], {}, ["web_connectivity"]])
def test_an_unhashable_test_name_is_a_schema_error(value: Any) -> None:
    wire = replaced(MEASUREMENT_WIRE, ("test",), value)
    with pytest.raises(SchemaError):
        from_peer(lambda: Measurement.from_wire(wire))


# --- uids ----------------------------------------------------------------------------------------


def test_new_uid_is_32_hex_version_7_and_unique() -> None:
    uids = [new_uid() for _ in range(1000)]
    assert len(set(uids)) == len(uids)
    for value in uids:
        assert re.fullmatch(r"[0-9a-f]{32}", value)
        assert value[12] == "7"
    b.measurement(uid=uids[0])  # a valid measurement uid


def test_new_uid_is_time_ordered() -> None:
    import time

    first = new_uid()
    time.sleep(0.003)
    second = new_uid()
    assert first[:12] < second[:12]


@pytest.mark.parametrize("value", [True, 1.0])
@pytest.mark.parametrize("kind", ["measurement", "batch"])
def test_schema_must_be_the_integer_version(kind: str, value: Any) -> None:
    if kind == "measurement":
        wire = replaced(MEASUREMENT_WIRE, ("schema",), value)
        build: Callable[[], Any] = lambda: Measurement.from_wire(wire)  # noqa: E731
    else:
        wire = {**b.batch().to_wire(), "schema": value}
        build = lambda: Batch.from_wire(wire)  # noqa: E731
    with pytest.raises(SchemaError):
        from_peer(build)
