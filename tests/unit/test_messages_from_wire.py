"""protocol.messages: ``from_wire`` builds messages without re-running their constructors' checks,
so here every message it accepts must pass those checks again, field for field, and every value in
every field of a measurement that uses all the optional parts must still give a message or a
``SchemaError`` (never a half-built object or another exception)."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_messages import paths, replaced, through_the_wire

from protocol.errors import SchemaError
from protocol.fingerprints import Hit
from protocol.messages import (
    Batch,
    ControlResult,
    DnsQuery,
    HttpHop,
    Measurement,
    TlsResult,
    from_peer,
)

import builders as b

FAST = settings(max_examples=300, deadline=None)


def full_measurement() -> Measurement:
    """Every optional part present and non-empty, so each of from_wire's paths is taken."""
    query = DnsQuery("A", "NOERROR", (("93.184.215.14", 300),), None, 0.01)
    return b.measurement(
        dns=b.dns(queries=(query, DnsQuery("AAAA", None, (), "generic_timeout_error", 1.0))),
        http=b.http(
            redirects=(HttpHop("http://www.example.org/", 301, "https://www.example.org/"),),
            headers=(("server", "nginx"), ("content-type", "text/html")),
            header_names=("server", "content-type", "date"),
            body_truncated=True,
        ),
        tls=TlsResult(
            "93.184.215.14",
            443,
            "www.example.org",
            "TLSv1.3",
            "TLS_AES_128_GCM_SHA256",
            "ab" * 32,
            None,
            0.02,
        ),
        control=ControlResult(
            ("93.184.215.14",),
            None,
            (b.tcp(),),
            None,
            200,
            1256,
            "Example Domain",
            ("server",),
            None,
            (("93.184.215.14", 15133),),
        ),
        dns_extra=(b.dns(resolver="198.18.0.53:53"),),
        fingerprints=(Hit("example-blockpage", "body"),),
    )


FULL_WIRE = full_measurement().to_wire()


ALL_PATHS = sorted(paths(FULL_WIRE), key=repr)


def state(obj: Any) -> Any:
    """Every field of a message, including those the constructor works out (``init=False``), and
    of its parts; reading a field that was never set raises AttributeError."""
    if isinstance(obj, tuple):
        return tuple(state(item) for item in obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        fields = dataclasses.fields(obj)
        return (type(obj), tuple((f.name, state(getattr(obj, f.name))) for f in fields))
    return (type(obj), obj)


def rebuilt(obj: Any) -> Any:
    """``obj`` made again through its constructors, parts first: every check runs."""
    if isinstance(obj, tuple):
        return tuple(rebuilt(item) for item in obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        fields = dataclasses.fields(obj)
        return type(obj)(**{f.name: rebuilt(getattr(obj, f.name)) for f in fields if f.init})
    return obj


def assert_as_if_constructed(message: Any) -> None:
    assert state(rebuilt(message)) == state(message)
    assert hash(rebuilt(message)) == hash(message)


def test_the_full_measurement_takes_every_optional_path() -> None:
    message = Measurement.from_wire(FULL_WIRE)
    assert message == full_measurement()
    assert message.to_wire() == FULL_WIRE
    assert_as_if_constructed(message)


def test_a_batch_read_from_the_wire_is_as_if_constructed() -> None:
    """Targets and network contexts are shared between the measurements of a batch."""
    wire = b.batch(count=5).to_wire()
    batch = Batch.from_wire(wire)
    assert batch == b.batch(count=5)
    assert len({id(m.target) for m in batch.measurements}) == 1
    assert_as_if_constructed(batch)


@FAST
@given(st.sampled_from(ALL_PATHS), b.WIRE_VALUES)
def test_anything_anywhere_is_a_checked_message_or_a_schema_error(
    path: tuple[Any, ...], value: Any
) -> None:
    wire = through_the_wire(replaced(FULL_WIRE, path, value))
    try:
        message = from_peer(lambda: Measurement.from_wire(wire))
    except SchemaError:
        return
    assert_as_if_constructed(message)


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("fingerprints", 0, "name"), "", "measurement.fingerprints[].name must not be empty"),
        (
            ("fingerprints", 0, "location"),
            7,
            "measurement.fingerprints[].location must be a string",
        ),
        (("http", "body_truncated"), 1, "http.body_truncated must be true or false"),
        (("http", "headers", "server"), 1, "http.headers[server] must be a string"),
        (("http", "header_names", 0), "Server", "http.header_names[] must be a lowercase"),
        (("http", "redirects", 0, "status"), 200, "http.redirects[].status must be an integer"),
        (("dns", "queries", 0, "type"), "MX", "dns.queries[].type must be A or AAAA"),
        (("dns", "answers", 0), "nowhere", "dns.answers[] is not an address"),
        (("dns_extra", 0, "runtime"), -1.0, "dns.runtime must be between 0 and 86400"),
        (("tcp", 0, "port"), 0, "tcp.port must be an integer in [1, 65535]"),
        (("tls", "version"), None, "tls.version is required"),
        (("control", "asns"), [], "control.asns must be a map"),
        (("verdict",), "blocked", "measurement.verdict has unknown value"),
        (("blocking",), "carrier pigeon", "measurement.blocking has unknown value"),
        (("test",), "ndt", "measurement.test 'ndt' is not a known test"),
    ],
)
def test_each_part_keeps_its_message(path: tuple[Any, ...], value: Any, message: str) -> None:
    wire = through_the_wire(replaced(FULL_WIRE, path, value))
    with pytest.raises(SchemaError, match=re.escape(message)):
        from_peer(lambda: Measurement.from_wire(wire))
