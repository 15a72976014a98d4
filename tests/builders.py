"""Builders and hypothesis strategies for valid (and nearly valid) protocol messages.

Importable as ``builders`` from any test module: ``tests/conftest.py`` makes pytest put ``tests/`` on
``sys.path`` (rootdir-relative "prepend" import mode, no ``__init__.py`` files).

Every builder returns a *valid* object and takes keyword overrides, so a test states only the field it
is about: ``measurement(agent_id=other, verdict="anomaly")``.
"""

from __future__ import annotations

import hashlib
import math
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import strategies as st

from protocol.failures import KNOWN_FAILURES, unknown_failure
from protocol.messages import (
    Batch,
    DnsResult,
    HttpResult,
    Measurement,
    NetworkContext,
    Target,
    TcpResult,
)
from protocol.signing import SigningKey
from protocol.verdicts import Blocking, NetworkType, Scope, Verdict

#: One fixed moment, so builders are deterministic.
MOMENT = datetime(2026, 1, 31, 12, 0, 0, 123456, tzinfo=UTC)

#: Two fixed identities (Ed25519 seeds), so failures reproduce byte for byte.
KEY_A = SigningKey.from_raw(bytes(range(32)))
KEY_B = SigningKey.from_raw(bytes(range(100, 132)))


def uid(n: int) -> str:
    """The n-th deterministic 32-hex uid."""
    return hashlib.sha256(f"uid-{n}".encode()).hexdigest()[:32]


def network(**overrides: Any) -> NetworkContext:
    fields: dict[str, Any] = {
        "country": "IR",
        "region": "IR-07",
        "asn": 197207,
        "carrier": "MCI",
        "network_type": NetworkType.MOBILE,
        "source": "self-reported",
    }
    fields.update(overrides)
    return NetworkContext(**fields)


def target(**overrides: Any) -> Target:
    fields: dict[str, Any] = {
        "url": "https://www.example.org/news?id=1",
        "scope": Scope.INTERNATIONAL,
        "category": "NEWS",
    }
    fields.update(overrides)
    return Target(**fields)


def dns(**overrides: Any) -> DnsResult:
    fields: dict[str, Any] = {
        "resolver": "system",
        "answers": ("93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"),
        "failure": None,
        "runtime": 0.012,
    }
    fields.update(overrides)
    return DnsResult(**fields)


def tcp(**overrides: Any) -> TcpResult:
    fields: dict[str, Any] = {"ip": "93.184.215.14", "port": 443, "failure": None, "runtime": 0.05}
    fields.update(overrides)
    return TcpResult(**fields)


def http(**overrides: Any) -> HttpResult:
    fields: dict[str, Any] = {
        "url": "https://www.example.org/news?id=1",
        "status": 200,
        "body_length": 1256,
        "body_sha256": hashlib.sha256(b"body").hexdigest(),
        "title": "Example Domain",
        "failure": None,
        "runtime": 0.3,
    }
    fields.update(overrides)
    return HttpResult(**fields)


def measurement(**overrides: Any) -> Measurement:
    fields: dict[str, Any] = {
        "uid": uid(0),
        "agent_id": KEY_A.agent_id,
        "measured_at": MOMENT,
        "runtime": 0.42,
        "network": network(),
        "target": target(),
        "verdict": Verdict.OK,
        "blocking": None,
        "failure": None,
        "dns": dns(),
        "tcp": (tcp(), tcp(ip="2606:2800:21f:cb07:6820:80da:af6b:8b2c")),
        "http": http(),
    }
    fields.update(overrides)
    return Measurement(**fields)


def batch(count: int = 2, **overrides: Any) -> Batch:
    agent_id = overrides.get("agent_id", KEY_A.agent_id)
    fields: dict[str, Any] = {
        "batch_id": uid(-1),
        "agent_id": agent_id,
        "created_at": MOMENT + timedelta(minutes=5),
        "measurements": tuple(measurement(uid=uid(i), agent_id=agent_id) for i in range(count)),
    }
    fields.update(overrides)
    return Batch(**fields)


# --- hypothesis strategies ---------------------------------------------------------------------------

MSGPACK_INTS = st.integers(min_value=-(2**63), max_value=2**64 - 1)
FINITE_FLOATS = st.floats(allow_nan=False, allow_infinity=False)

#: Anything ``canonical_encode`` accepts: str-keyed dicts, lists, and msgpack scalars. Hypothesis
#: applies ``extend`` at most log2(max_leaves) + 1 times, so values nest at most 5 containers deep.
WIRE_VALUES = st.recursive(
    st.none() | st.booleans() | MSGPACK_INTS | FINITE_FLOATS | st.text() | st.binary(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=20,
)

KNOWN_FAILURE_STRINGS = st.sampled_from(sorted(KNOWN_FAILURES))
FAILURES = st.none() | KNOWN_FAILURE_STRINGS | st.text(min_size=1).map(unknown_failure)
COUNTRIES = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=2, max_size=2)
ASNS = st.integers(min_value=0, max_value=2**32 - 1)
#: Printable one-line text (no C0 control characters, which message text fields refuse).
LINE_TEXT = st.text(
    alphabet=st.characters(min_codepoint=0x20, exclude_categories=("Cs",)), max_size=64
)
SECONDS = st.floats(min_value=0, max_value=86_400, allow_nan=False)
AWARE_TIMES = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)


@st.composite
def measurements(draw: st.DrawFn, agent_id: str = KEY_A.agent_id) -> Measurement:
    """A valid measurement whose every free field is drawn by hypothesis."""
    http_failure = draw(FAILURES)
    return measurement(
        uid=draw(st.text(alphabet="0123456789abcdef", min_size=32, max_size=32)),
        agent_id=agent_id,
        measured_at=draw(AWARE_TIMES),
        runtime=draw(SECONDS),
        network=network(
            country=draw(COUNTRIES),
            region=draw(LINE_TEXT),
            asn=draw(ASNS),
            carrier=draw(LINE_TEXT),
            network_type=draw(st.sampled_from(NetworkType)),
            **draw(
                st.just({"source": "self-reported"})
                | st.builds(
                    lambda token: {"source": "collector", "token": token},
                    st.binary(min_size=1, max_size=64),
                )
            ),
        ),
        target=target(scope=draw(st.sampled_from(Scope))),
        verdict=draw(st.sampled_from(Verdict)),
        blocking=draw(st.none() | st.sampled_from(Blocking)),
        failure=draw(FAILURES),
        dns=draw(st.none() | st.builds(lambda f, r: dns(failure=f, runtime=r), FAILURES, SECONDS)),
        tcp=tuple(
            tcp(port=port, failure=failure, runtime=runtime)
            for port, failure, runtime in draw(
                st.lists(
                    st.tuples(st.integers(1, 65535), FAILURES, SECONDS),
                    max_size=16,
                )
            )
        ),
        http=None
        if not draw(st.booleans())
        else http(
            status=draw(st.none() if http_failure else st.integers(100, 599)),
            title=draw(st.none() | LINE_TEXT),
            failure=http_failure,
            body_length=draw(st.none() | st.integers(0, 2**40)),
        ),
    )


def same_wire(a: Any, b: Any) -> bool:
    """Equality that also tells ``True`` from ``1`` and ``1.0`` from ``1``, and -0.0 from 0.0."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same_wire(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_wire(a[k], b[k]) for k in a)
    if isinstance(a, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    return bool(a == b)
