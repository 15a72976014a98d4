"""Frozen, self-checking message types: a measurement and a batch of them.

An invalid message cannot exist: every constructor validates and raises ``LocalProtocolError``
(building one is *producing* it). ``from_wire`` turns a decoded map from a peer into a message and
re-raises the same problems as ``SchemaError`` (the peer's fault). The envelope (uid, agent, time,
runtime, network context, target) is kept apart from the per-test keys (``dns``, ``tcp``, ``tls``,
``http``, ``control``), as in OONI's data format.

Fields added after the first release (``queries``, ``tls``, ``control``, redirects and headers, ...)
may be absent on the wire, so older agents' measurements still decode; ``to_wire`` always writes them.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Final, TypeVar, cast
from urllib.parse import urlsplit

from .errors import LocalProtocolError, SchemaError
from .failures import is_failure_string
from .fingerprints import Hit
from .signing import AGENT_ID_LEN
from .timefmt import format_time, parse_time
from .verdicts import Blocking, NetworkType, Scope, Verdict

SCHEMA_VERSION: Final = 1
MAX_BATCH_MEASUREMENTS: Final = 500
MAX_TCP_ENDPOINTS: Final = 16
MAX_DNS_ANSWERS: Final = 32
MAX_URL_LEN: Final = 2048
MAX_TEXT_LEN: Final = 256
MAX_REDIRECTS: Final = 10
MAX_HEADERS: Final = 32
MAX_HEADER_NAMES: Final = 48
MAX_EXTRA_RESOLVERS: Final = 4
MAX_FINGERPRINT_HITS: Final = 8

TEST_WEB: Final = "web_connectivity"
TEST_PULSE: Final = "pulse"  # connectivity pulse: one DNS query + TCP connects to an anchor
KNOWN_TESTS: Final = frozenset({TEST_WEB, TEST_PULSE})
MAX_CONTEXT_TOKEN_LEN: Final = 1024

_HEX32 = re.compile(r"^[0-9a-f]{32}$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_-]{1,63})*\.?$"
)
_IP_ISH = re.compile(r"^[0-9A-Fa-f:.]{2,45}$")

T = TypeVar("T")


_CONTROL_CHARS = re.compile(r"[\x00-\x1f]")


def _fail(message: str) -> None:
    raise LocalProtocolError(message)


def _check_text(
    name: str, value: object, max_len: int = MAX_TEXT_LEN, *, empty: bool = True
) -> None:
    if not isinstance(value, str):
        _fail(f"{name} must be a string")
    assert isinstance(value, str)
    if len(value) > max_len:
        _fail(f"{name} is longer than {max_len} characters")
    if not empty and not value:
        _fail(f"{name} must not be empty")
    if _CONTROL_CHARS.search(value):
        _fail(f"{name} contains control characters")


def _check_failure(name: str, value: object) -> None:
    if value is not None and not (isinstance(value, str) and is_failure_string(value)):
        _fail(f"{name} is not a known failure string: {value!r}")


def _check_seconds(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        _fail(f"{name} must be a number of seconds")
    assert isinstance(value, int | float)
    if not 0 <= value <= 86_400:
        _fail(f"{name} must be between 0 and 86400 seconds")


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        _fail(f"{name} must be an integer in [{low}, {high}]")


def _check_host(name: str, value: object) -> None:
    _check_text(name, value, 253, empty=False)
    assert isinstance(value, str)
    if not (_HOSTNAME.match(value) or _IP_ISH.match(value.strip("[]"))):
        _fail(f"{name} is not a host name or address: {value!r}")


def _enum(kind: type[T], name: str, value: object) -> T:
    # The value map first: Enum's own lookup costs microseconds, and this runs several times per
    # measurement. A miss (or an unhashable value) takes the ordinary path and its error.
    try:
        member = kind._value2member_map_.get(value)  # type: ignore[attr-defined]
    except TypeError:
        member = None
    if member is not None:
        return cast(T, member)
    try:
        return kind(value)  # type: ignore[call-arg]
    except ValueError:
        raise LocalProtocolError(f"{name} has unknown value {value!r}") from None


def _field(wire: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in wire:
        raise LocalProtocolError(f"{where}.{key} is missing")
    return wire[key]


def _as_map(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise LocalProtocolError(f"{where} must be a map")
    return value


def _as_list(value: object, where: str, max_len: int) -> Sequence[Any]:
    kind = type(value)
    if (kind is list or kind is tuple) and len(value) <= max_len:  # type: ignore[arg-type]
        return value  # type: ignore[return-value]  # the common case: nothing to convert
    if not isinstance(value, list | tuple):
        raise LocalProtocolError(f"{where} must be a list")
    if len(value) > max_len:
        raise LocalProtocolError(f"{where} has more than {max_len} items")
    return list(value)


def _no_extra_keys(wire: Mapping[str, Any], allowed: frozenset[str], where: str) -> None:
    extra = wire.keys() - allowed
    if extra:
        raise LocalProtocolError(f"{where} has unknown fields: {', '.join(sorted(extra))}")


def _require(wire: Mapping[str, Any], keys: frozenset[str], where: str) -> None:
    """Every key of ``keys`` is present (one set operation; the message names the first missing)."""
    missing = keys - wire.keys()
    if missing:
        raise LocalProtocolError(f"{where}.{min(missing)} is missing")


def _opt(wire: Mapping[str, Any], key: str, default: Any) -> Any:
    """A field added after the first release: absent means its default."""
    return wire.get(key, default)


def _check_optional_text(name: str, value: object, max_len: int = MAX_TEXT_LEN) -> None:
    if value is not None:
        _check_text(name, value, max_len)


def _check_ip(name: str, value: object) -> None:
    _check_text(name, value, 45, empty=False)
    assert isinstance(value, str)
    if not _IP_ISH.match(value):
        _fail(f"{name} is not an address: {value!r}")


def _check_header_name(name: str, value: object) -> None:
    _check_text(name, value, 64, empty=False)
    assert isinstance(value, str)
    if value != value.lower() or not _HEADER_NAME.match(value):
        _fail(f"{name} must be a lowercase header name: {value!r}")


_HEADER_NAME = re.compile(r"^[a-z0-9!#$%&'*+.^_`|~-]+$")


def _once(shared: dict[Any, Any] | None, build: Callable[[Any], T], wire: object) -> T:
    """``build(wire)``, or the object already built from an identical flat map. The key holds each
    value's type beside it: ``1``, ``1.0`` and ``True`` are equal in Python but not on the wire, and
    the one that is invalid must still be refused. Maps with unhashable values are not shared."""
    if shared is None or type(wire) is not dict:
        return build(wire)
    try:
        key = (build, tuple([(k, v.__class__, v) for k, v in wire.items()]))
        found = shared.get(key)
    except TypeError:
        return build(wire)
    if found is None:
        found = shared[key] = build(wire)
    return cast(T, found)


_new = object.__new__
_set = object.__setattr__


def _build(cls: type[T], **values: Any) -> T:
    """A message made from values its ``from_wire`` has already checked, without running the
    constructor's checks a second time (they cost as much as the reading). Only ``from_wire`` calls
    this, after applying exactly the checks ``__post_init__`` would; every field must be given."""
    obj = _new(cls)
    for key, value in values.items():
        _set(obj, key, value)
    return obj


def from_peer(build: Callable[[], T]) -> T:
    """Run a ``from_wire`` body and turn validation errors into the peer's fault (``SchemaError``)."""
    try:
        return build()
    except LocalProtocolError as exc:
        raise SchemaError(str(exc)) from exc


def new_uid() -> str:
    """A measurement or batch id: 32 hex characters, time-ordered like UUIDv7 (ms time + random)."""
    import os
    import time

    millis = int(time.time() * 1000) & ((1 << 48) - 1)
    rand = int.from_bytes(os.urandom(10), "big")
    value = (millis << 80) | (0x7 << 76) | (rand & ((1 << 76) - 1))
    return uuid.UUID(int=value).hex


# --- the envelope --------------------------------------------------------------------------------

_NETWORK_KEYS: Final = frozenset(
    {"country", "region", "asn", "carrier", "network_type", "source", "token"}
)


@dataclass(frozen=True, slots=True)
class NetworkContext:
    """Where the agent measured from. Never holds the agent's IP address."""

    country: str  # ISO 3166-1 alpha-2, "ZZ" when unknown
    region: str  # province / state, ideally ISO 3166-2 ("IR-07"); "" when unknown
    asn: int  # carrier's autonomous system number, 0 when unknown
    carrier: str  # carrier name as a human reads it
    network_type: NetworkType = NetworkType.UNKNOWN
    source: str = "self-reported"  # "self-reported" | "collector" (a signed whoami token)
    # The collector-signed whoami token backing country/region/asn/carrier (protocol.context_token);
    # present exactly when source == "collector". Optional on the wire: older messages lack it.
    token: bytes | None = None

    _FIELDS: ClassVar[frozenset[str]] = frozenset(
        {"country", "region", "asn", "carrier", "network_type", "source"}
    )

    def __post_init__(self) -> None:
        if not isinstance(self.country, str) or not _COUNTRY.match(self.country):
            _fail(f"network.country must be two capital letters, got {self.country!r}")
        _check_text("network.region", self.region, 64)
        _check_int("network.asn", self.asn, 0, 2**32 - 1)
        _check_text("network.carrier", self.carrier, 128)
        object.__setattr__(
            self, "network_type", _enum(NetworkType, "network.network_type", self.network_type)
        )
        if self.source not in ("self-reported", "collector"):
            _fail(f"network.source has unknown value {self.source!r}")
        if self.token is not None and (
            not isinstance(self.token, bytes) or not 0 < len(self.token) <= MAX_CONTEXT_TOKEN_LEN
        ):
            _fail(f"network.token must be 1 to {MAX_CONTEXT_TOKEN_LEN} bytes of binary")
        if (self.source == "collector") != (self.token is not None):
            _fail('network.token is required with source "collector" and only then')

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "country": self.country,
            "region": self.region,
            "asn": self.asn,
            "carrier": self.carrier,
            "network_type": self.network_type.value,
            "source": self.source,
        }
        if self.token is not None:  # absent rather than None: older messages keep their bytes
            wire["token"] = self.token
        return wire

    @classmethod
    def from_wire(cls, wire: object) -> NetworkContext:
        m = _as_map(wire, "network")
        _no_extra_keys(m, _NETWORK_KEYS, "network")
        _require(m, cls._FIELDS, "network")
        return cls(
            m["country"],
            m["region"],
            m["asn"],
            m["carrier"],
            m["network_type"],
            m["source"],
            m.get("token"),
        )


@dataclass(frozen=True, slots=True)
class Target:
    url: str
    scope: Scope
    category: str = "MISC"
    # The URL's host, worked out once here (``host`` is read for every stored row and wire form).
    _host: str = field(default="", init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_text("target.url", self.url, MAX_URL_LEN, empty=False)
        try:
            parts = urlsplit(self.url)
            parts.port  # noqa: B018  (raises ValueError for a non-numeric or out-of-range port)
        except ValueError as exc:
            raise LocalProtocolError(
                f"target.url is not a valid URL ({exc}): {self.url!r}"
            ) from None
        host = parts.hostname
        if parts.scheme not in ("http", "https") or not host:
            _fail(f"target.url must be an http(s) URL with a host: {self.url!r}")
        object.__setattr__(self, "_host", host)
        object.__setattr__(self, "scope", _enum(Scope, "target.scope", self.scope))
        _check_text("target.category", self.category, 16, empty=False)

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        parts = urlsplit(self.url)
        return parts.port or (443 if parts.scheme == "https" else 80)

    def to_wire(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "host": self.host,
            "scope": self.scope.value,
            "category": self.category,
        }

    @classmethod
    def from_wire(cls, wire: object) -> Target:
        m = _as_map(wire, "target")
        _no_extra_keys(m, frozenset({"url", "host", "scope", "category"}), "target")
        target = cls(
            _field(m, "url", "target"),
            _field(m, "scope", "target"),
            _field(m, "category", "target"),
        )
        if m.get("host") != target.host:
            _fail("target.host does not match the URL's host")
        return target


# --- per-test keys -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DnsQuery:
    """One question (A or AAAA) and what came back: the response code, addresses with TTLs."""

    rdtype: str  # "A" | "AAAA"
    rcode: str | None  # "NOERROR", "NXDOMAIN", ...; None when no response arrived
    answers: tuple[tuple[str, int], ...]  # (address, TTL in seconds)
    failure: str | None
    runtime: float

    _KEYS: ClassVar[frozenset[str]] = frozenset({"type", "rcode", "answers", "failure", "runtime"})

    def __post_init__(self) -> None:
        if self.rdtype not in ("A", "AAAA"):
            _fail(f"dns.queries[].type must be A or AAAA, got {self.rdtype!r}")
        if self.rcode is not None:
            _check_text("dns.queries[].rcode", self.rcode, 16, empty=False)
        pairs = []
        for item in _as_list(self.answers, "dns.queries[].answers", MAX_DNS_ANSWERS):
            if not isinstance(item, list | tuple) or len(item) != 2:
                _fail("dns.queries[].answers[] must be (address, ttl)")
            _check_ip("dns.queries[].answers[].ip", item[0])
            _check_int("dns.queries[].answers[].ttl", item[1], 0, 2**31 - 1)
            pairs.append((item[0], item[1]))
        object.__setattr__(self, "answers", tuple(pairs))
        _check_failure("dns.queries[].failure", self.failure)
        _check_seconds("dns.queries[].runtime", self.runtime)

    def to_wire(self) -> dict[str, Any]:
        return {
            "type": self.rdtype,
            "rcode": self.rcode,
            "answers": [{"ip": ip, "ttl": ttl} for ip, ttl in self.answers],
            "failure": self.failure,
            "runtime": float(self.runtime),
        }

    @classmethod
    def from_wire(cls, wire: object) -> DnsQuery:
        m = _as_map(wire, "dns.queries[]")
        _no_extra_keys(m, cls._KEYS, "dns.queries[]")
        answers = []
        for item in _as_list(_field(m, "answers", "dns.queries[]"), "answers", MAX_DNS_ANSWERS):
            a = _as_map(item, "dns.queries[].answers[]")
            _no_extra_keys(a, frozenset({"ip", "ttl"}), "dns.queries[].answers[]")
            answers.append((_field(a, "ip", "answers[]"), _field(a, "ttl", "answers[]")))
        return cls(
            _field(m, "type", "dns.queries[]"),
            _field(m, "rcode", "dns.queries[]"),
            tuple(answers),
            _field(m, "failure", "dns.queries[]"),
            _field(m, "runtime", "dns.queries[]"),
        )


@dataclass(frozen=True, slots=True)
class DnsResult:
    resolver: str  # "system", or the resolver asked ("198.18.0.53:53", "tcp://...", "https://...")
    answers: tuple[str, ...]  # A and AAAA addresses, in answer order (also when they are bogons)
    failure: str | None
    runtime: float
    queries: tuple[DnsQuery, ...] = ()  # per question: rcode, TTLs, timing

    _KEYS: ClassVar[frozenset[str]] = frozenset(
        {"resolver", "answers", "failure", "runtime", "queries"}
    )

    def __post_init__(self) -> None:
        _check_text("dns.resolver", self.resolver, 128, empty=False)
        object.__setattr__(
            self, "answers", tuple(_as_list(self.answers, "dns.answers", MAX_DNS_ANSWERS))
        )
        _check_dns_values(self.answers, self.failure, self.runtime)
        object.__setattr__(self, "queries", tuple(_as_list(self.queries, "dns.queries", 4)))
        if not all(isinstance(q, DnsQuery) for q in self.queries):
            _fail("dns.queries must hold DnsQuery objects")

    def to_wire(self) -> dict[str, Any]:
        return {
            "resolver": self.resolver,
            "answers": list(self.answers),
            "failure": self.failure,
            "runtime": float(self.runtime),
            "queries": [q.to_wire() for q in self.queries],
        }

    @classmethod
    def from_wire(cls, wire: object) -> DnsResult:
        m = _as_map(wire, "dns")
        _no_extra_keys(m, cls._KEYS, "dns")
        resolver = _field(m, "resolver", "dns")
        answers = tuple(_as_list(_field(m, "answers", "dns"), "dns.answers", MAX_DNS_ANSWERS))
        failure, runtime = _field(m, "failure", "dns"), _field(m, "runtime", "dns")
        queries = _as_list(_opt(m, "queries", ()), "dns.queries", 4)
        queries = tuple([DnsQuery.from_wire(q) for q in queries]) if queries else ()
        # __post_init__'s checks, less the ones the reading above already made
        _check_text("dns.resolver", resolver, 128, empty=False)
        _check_dns_values(answers, failure, runtime)
        return _build(
            cls,
            resolver=resolver,
            answers=answers,
            failure=failure,
            runtime=runtime,
            queries=queries,
        )


def _check_dns_values(answers: tuple[str, ...], failure: object, runtime: object) -> None:
    for answer in answers:
        _check_ip("dns.answers[]", answer)
    _check_failure("dns.failure", failure)
    _check_seconds("dns.runtime", runtime)


@dataclass(frozen=True, slots=True)
class TcpResult:
    ip: str
    port: int
    failure: str | None
    runtime: float  # the connect time on success (the RTT), time to failure otherwise

    def __post_init__(self) -> None:
        _check_tcp(self.ip, self.port, self.failure, self.runtime)

    @property
    def success(self) -> bool:
        return self.failure is None

    def to_wire(self) -> dict[str, Any]:
        return {
            "ip": self.ip,
            "port": self.port,
            "failure": self.failure,
            "runtime": float(self.runtime),
        }

    @classmethod
    def from_wire(cls, wire: object) -> TcpResult:
        m = _as_map(wire, "tcp[]")
        _no_extra_keys(m, _TCP_KEYS, "tcp[]")
        ip, port, failure, runtime = [_field(m, key, "tcp[]") for key in _TCP_FIELDS]
        _check_tcp(ip, port, failure, runtime)
        return _build(cls, ip=ip, port=port, failure=failure, runtime=runtime)


_TCP_FIELDS: Final = ("ip", "port", "failure", "runtime")
_TCP_KEYS: Final = frozenset(_TCP_FIELDS)


def _check_tcp(ip: object, port: object, failure: object, runtime: object) -> None:
    """Everything ``TcpResult`` requires (its constructor and ``from_wire`` both run this)."""
    _check_text("tcp.ip", ip, 45, empty=False)
    assert isinstance(ip, str)
    if not _IP_ISH.match(ip):
        _fail(f"tcp.ip is not an address: {ip!r}")
    _check_int("tcp.port", port, 1, 65535)
    _check_failure("tcp.failure", failure)
    _check_seconds("tcp.runtime", runtime)


@dataclass(frozen=True, slots=True)
class TlsResult:
    """The TLS handshake (SNI = the target's host) on one endpoint whose TCP connect worked."""

    ip: str
    port: int
    server_name: str
    version: str | None  # "TLSv1.3", ...
    cipher: str | None
    cert_sha256: str | None  # of the leaf certificate, when the handshake verified it
    failure: str | None
    runtime: float

    _KEYS: ClassVar[tuple[str, ...]] = (
        "ip",
        "port",
        "server_name",
        "version",
        "cipher",
        "cert_sha256",
        "failure",
        "runtime",
    )

    def __post_init__(self) -> None:
        _check_ip("tls.ip", self.ip)
        _check_int("tls.port", self.port, 1, 65535)
        _check_host("tls.server_name", self.server_name)
        _check_optional_text("tls.version", self.version, 32)
        _check_optional_text("tls.cipher", self.cipher, 128)
        if self.cert_sha256 is not None and not _SHA256.match(str(self.cert_sha256)):
            _fail("tls.cert_sha256 must be 64 lowercase hex characters")
        _check_failure("tls.failure", self.failure)
        _check_seconds("tls.runtime", self.runtime)
        if self.failure is None and self.version is None:
            _fail("tls.version is required when tls.failure is empty")

    @property
    def success(self) -> bool:
        return self.failure is None

    def to_wire(self) -> dict[str, Any]:
        wire = {key: getattr(self, key) for key in self._KEYS}
        wire["runtime"] = float(self.runtime)
        return wire

    @classmethod
    def from_wire(cls, wire: object) -> TlsResult:
        m = _as_map(wire, "tls")
        _no_extra_keys(m, frozenset(cls._KEYS), "tls")
        return cls(*(_field(m, key, "tls") for key in cls._KEYS))


_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True, slots=True)
class HttpHop:
    """One redirect on the way: the URL asked, the status it answered, where it pointed."""

    url: str
    status: int
    location: str

    def __post_init__(self) -> None:
        _check_text("http.redirects[].url", self.url, MAX_URL_LEN, empty=False)
        _check_int("http.redirects[].status", self.status, 300, 399)
        _check_text("http.redirects[].location", self.location, MAX_URL_LEN)

    def to_wire(self) -> dict[str, Any]:
        return {"url": self.url, "status": self.status, "location": self.location}

    @classmethod
    def from_wire(cls, wire: object) -> HttpHop:
        m = _as_map(wire, "http.redirects[]")
        _no_extra_keys(m, frozenset({"url", "status", "location"}), "http.redirects[]")
        return cls(*(_field(m, key, "http.redirects[]") for key in ("url", "status", "location")))


def _check_headers(name: str, value: object) -> tuple[tuple[str, str], ...]:
    items = value.items() if isinstance(value, Mapping) else _as_list(value, name, MAX_HEADERS)
    pairs = []
    for item in items:
        if not isinstance(item, list | tuple) or len(item) != 2:
            _fail(f"{name} must be (name, value) pairs")
        _check_header_name(f"{name} name", item[0])
        _check_text(f"{name}[{item[0]}]", item[1], MAX_TEXT_LEN)
        pairs.append((item[0], item[1]))
    if len(pairs) > MAX_HEADERS:
        _fail(f"{name} has more than {MAX_HEADERS} entries")
    if len({key for key, _ in pairs}) != len(pairs):
        _fail(f"{name} repeats a header name")
    return tuple(sorted(pairs))


def _check_header_names(name: str, value: object) -> tuple[str, ...]:
    names = _as_list(value, name, MAX_HEADER_NAMES)
    for item in names:
        _check_header_name(f"{name}[]", item)
    return tuple(sorted(set(names)))


@dataclass(frozen=True, slots=True)
class HttpResult:
    url: str  # the URL finally fetched (after redirects)
    status: int | None
    body_length: int | None  # bytes read (at most the agent's cap: see body_truncated)
    body_sha256: str | None
    title: str | None
    failure: str | None
    runtime: float
    redirects: tuple[HttpHop, ...] = ()  # hop by hop, before the final response
    headers: tuple[tuple[str, str], ...] = ()  # selected headers of the final response
    header_names: tuple[str, ...] = ()  # every header name of the final response (lowercase)
    body_truncated: bool = False

    def __post_init__(self) -> None:
        _check_http_values(
            self.url,
            self.status,
            self.body_length,
            self.body_sha256,
            self.title,
            self.failure,
            self.runtime,
        )
        hops = tuple(_as_list(self.redirects, "http.redirects", MAX_REDIRECTS))
        if not all(isinstance(hop, HttpHop) for hop in hops):
            _fail("http.redirects must hold HttpHop objects")
        object.__setattr__(self, "redirects", hops)
        object.__setattr__(self, "headers", _check_headers("http.headers", self.headers))
        object.__setattr__(
            self, "header_names", _check_header_names("http.header_names", self.header_names)
        )
        _check_bool("http.body_truncated", self.body_truncated)

    _KEYS: ClassVar[tuple[str, ...]] = (
        "url",
        "status",
        "body_length",
        "body_sha256",
        "title",
        "failure",
        "runtime",
    )
    _NEW_KEYS: ClassVar[tuple[str, ...]] = (
        "redirects",
        "headers",
        "header_names",
        "body_truncated",
    )

    def to_wire(self) -> dict[str, Any]:
        wire = {key: getattr(self, key) for key in self._KEYS}
        wire["runtime"] = float(self.runtime)
        wire["redirects"] = [hop.to_wire() for hop in self.redirects]
        wire["headers"] = dict(self.headers)
        wire["header_names"] = list(self.header_names)
        wire["body_truncated"] = self.body_truncated
        return wire

    @classmethod
    def from_wire(cls, wire: object) -> HttpResult:
        m = _as_map(wire, "http")
        _no_extra_keys(m, frozenset(cls._KEYS + cls._NEW_KEYS), "http")
        headers = _opt(m, "headers", {})
        if not isinstance(headers, Mapping):
            _fail("http.headers must be a map")
        values = {key: _field(m, key, "http") for key in cls._KEYS}
        hops = _as_list(_opt(m, "redirects", ()), "http.redirects", MAX_REDIRECTS)
        redirects = tuple([HttpHop.from_wire(hop) for hop in hops]) if hops else ()
        names = _as_list(_opt(m, "header_names", ()), "http.header_names", MAX_HEADER_NAMES)
        truncated = _opt(m, "body_truncated", False)
        # __post_init__'s checks, less the ones the reading above already made
        _check_http_values(**values)
        values["redirects"] = redirects
        values["headers"] = _check_headers("http.headers", tuple(headers.items()))
        values["header_names"] = _check_header_names("http.header_names", tuple(names))
        _check_bool("http.body_truncated", truncated)
        return _build(cls, **values, body_truncated=truncated)


def _check_http_values(
    url: object,
    status: object,
    body_length: object,
    body_sha256: object,
    title: object,
    failure: object,
    runtime: object,
) -> None:
    _check_text("http.url", url, MAX_URL_LEN, empty=False)
    if status is not None:
        _check_int("http.status", status, 100, 599)
    if body_length is not None:
        _check_int("http.body_length", body_length, 0, 2**40)
    if body_sha256 is not None and not _SHA256.match(str(body_sha256)):
        _fail("http.body_sha256 must be 64 lowercase hex characters")
    if title is not None:
        _check_text("http.title", title, MAX_TEXT_LEN)
    _check_failure("http.failure", failure)
    _check_seconds("http.runtime", runtime)
    if failure is None and status is None:
        _fail("http.status is required when http.failure is empty")


def _check_bool(name: str, value: object) -> None:
    if type(value) is not bool:
        _fail(f"{name} must be true or false")


@dataclass(frozen=True, slots=True)
class ControlResult:
    """What the collector's control helper saw for the same URL from its own vantage point.

    Also the JSON answer of ``POST /api/v1/control``. ``asns`` maps addresses (the control's answers
    and the ones the agent sent along) to their AS numbers, when the collector has an ASN database.
    """

    dns_answers: tuple[str, ...]
    dns_failure: str | None
    tcp: tuple[TcpResult, ...]
    tls_failure: str | None
    http_status: int | None
    http_body_length: int | None
    http_title: str | None
    http_header_names: tuple[str, ...]
    http_failure: str | None
    asns: tuple[tuple[str, int], ...] = ()

    _KEYS: ClassVar[tuple[str, ...]] = (
        "dns_answers",
        "dns_failure",
        "tcp",
        "tls_failure",
        "http_status",
        "http_body_length",
        "http_title",
        "http_header_names",
        "http_failure",
        "asns",
    )

    def __post_init__(self) -> None:
        answers = tuple(_as_list(self.dns_answers, "control.dns_answers", MAX_DNS_ANSWERS))
        for answer in answers:
            _check_ip("control.dns_answers[]", answer)
        object.__setattr__(self, "dns_answers", answers)
        _check_failure("control.dns_failure", self.dns_failure)
        tcp = tuple(_as_list(self.tcp, "control.tcp", MAX_TCP_ENDPOINTS))
        if not all(isinstance(item, TcpResult) for item in tcp):
            _fail("control.tcp must hold TcpResult objects")
        object.__setattr__(self, "tcp", tcp)
        _check_failure("control.tls_failure", self.tls_failure)
        if self.http_status is not None:
            _check_int("control.http_status", self.http_status, 100, 599)
        if self.http_body_length is not None:
            _check_int("control.http_body_length", self.http_body_length, 0, 2**40)
        _check_optional_text("control.http_title", self.http_title)
        object.__setattr__(
            self,
            "http_header_names",
            _check_header_names("control.http_header_names", self.http_header_names),
        )
        _check_failure("control.http_failure", self.http_failure)
        items = self.asns.items() if isinstance(self.asns, Mapping) else self.asns
        pairs = []
        for item in _as_list(list(items), "control.asns", 2 * MAX_DNS_ANSWERS):
            if not isinstance(item, list | tuple) or len(item) != 2:
                _fail("control.asns must map addresses to AS numbers")
            _check_ip("control.asns key", item[0])
            _check_int("control.asns value", item[1], 0, 2**32 - 1)
            pairs.append((item[0], item[1]))
        object.__setattr__(self, "asns", tuple(sorted(dict(pairs).items())))

    @property
    def http_success(self) -> bool:
        return self.http_failure is None and self.http_status is not None

    def to_wire(self) -> dict[str, Any]:
        wire = {key: getattr(self, key) for key in self._KEYS}
        wire["dns_answers"] = list(self.dns_answers)
        wire["tcp"] = [item.to_wire() for item in self.tcp]
        wire["http_header_names"] = list(self.http_header_names)
        wire["asns"] = dict(self.asns)
        return wire

    @classmethod
    def from_wire(cls, wire: object) -> ControlResult:
        m = _as_map(wire, "control")
        _no_extra_keys(m, frozenset(cls._KEYS), "control")
        values = {key: _field(m, key, "control") for key in cls._KEYS}
        values["tcp"] = tuple(
            TcpResult.from_wire(item)
            for item in _as_list(values["tcp"], "control.tcp", MAX_TCP_ENDPOINTS)
        )
        asns = values["asns"]
        if not isinstance(asns, Mapping):
            _fail("control.asns must be a map")
        values["asns"] = tuple(asns.items())
        return cls(**values)


# --- one measurement and a batch -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Measurement:
    uid: str
    agent_id: str
    measured_at: datetime
    runtime: float
    network: NetworkContext
    target: Target
    verdict: Verdict
    blocking: Blocking | None = None
    failure: str | None = None  # the first failure seen, for quick filtering
    dns: DnsResult | None = None
    tcp: tuple[TcpResult, ...] = ()
    http: HttpResult | None = None
    test: str = TEST_WEB
    schema: int = field(default=SCHEMA_VERSION)
    tls: TlsResult | None = None
    control: ControlResult | None = None
    dns_extra: tuple[DnsResult, ...] = ()  # the same name asked of other resolvers, to compare
    fingerprints: tuple[Hit, ...] = ()  # blockpage fingerprints matched: the verdict is "confirmed"

    _KEYS: ClassVar[frozenset[str]] = frozenset(
        {
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
            "tls",
            "control",
            "dns_extra",
            "fingerprints",
        }
    )

    def __post_init__(self) -> None:
        _check_measurement_ids(self.schema, self.uid, self.agent_id)
        format_time(self.measured_at)  # checks it is timezone-aware
        _check_seconds("measurement.runtime", self.runtime)
        network, target = cast(object, self.network), cast(object, self.target)
        if not isinstance(network, NetworkContext) or not isinstance(target, Target):
            _fail("measurement.network and .target must be message objects")
        verdict, blocking = _check_measurement_outcome(
            self.test, self.verdict, self.blocking, self.failure
        )
        object.__setattr__(self, "verdict", verdict)
        object.__setattr__(self, "blocking", blocking)
        object.__setattr__(
            self, "tcp", tuple(_as_list(self.tcp, "measurement.tcp", MAX_TCP_ENDPOINTS))
        )
        if not all(isinstance(cast(object, item), TcpResult) for item in self.tcp):
            _fail("measurement.tcp must hold TcpResult objects")
        dns, http = cast(object, self.dns), cast(object, self.http)
        if dns is not None and not isinstance(dns, DnsResult):
            _fail("measurement.dns must be a DnsResult or None")
        if http is not None and not isinstance(http, HttpResult):
            _fail("measurement.http must be an HttpResult or None")
        extra = tuple(_as_list(self.dns_extra, "measurement.dns_extra", MAX_EXTRA_RESOLVERS))
        if not all(isinstance(item, DnsResult) for item in extra):
            _fail("measurement.dns_extra must hold DnsResult objects")
        object.__setattr__(self, "dns_extra", extra)
        hits = []
        for hit in _as_list(self.fingerprints, "measurement.fingerprints", MAX_FINGERPRINT_HITS):
            if not isinstance(hit, Hit):
                _fail("measurement.fingerprints must hold fingerprint hits")
            _check_hit(hit)
            hits.append(hit)
        object.__setattr__(self, "fingerprints", tuple(hits))

    def to_wire(self) -> dict[str, Any]:
        return {
            "schema": self.schema,
            "uid": self.uid,
            "agent_id": self.agent_id,
            "measured_at": format_time(self.measured_at),
            "runtime": float(self.runtime),
            "network": self.network.to_wire(),
            "target": self.target.to_wire(),
            "test": self.test,
            "verdict": self.verdict.value,
            "blocking": self.blocking.value if self.blocking else None,
            "failure": self.failure,
            "dns": self.dns.to_wire() if self.dns else None,
            "tcp": [item.to_wire() for item in self.tcp],
            "http": self.http.to_wire() if self.http else None,
            "tls": self.tls.to_wire() if self.tls else None,
            "control": self.control.to_wire() if self.control else None,
            "dns_extra": [item.to_wire() for item in self.dns_extra],
            "fingerprints": [{"name": h.name, "location": h.location} for h in self.fingerprints],
        }

    @classmethod
    def from_wire(cls, wire: object, shared: dict[Any, Any] | None = None) -> Measurement:
        """``shared``: one dict for a whole batch, where identical network contexts and targets (an
        agent's context is the same in nearly every measurement of a batch, and its test list is
        short) are validated once."""
        m = _as_map(wire, "measurement")
        _no_extra_keys(m, cls._KEYS, "measurement")
        _require(m, _MEASUREMENT_REQUIRED, "measurement")
        get = m.__getitem__
        dns, http = get("dns"), get("http")
        tls, control = _opt(m, "tls", None), _opt(m, "control", None)
        hits = []
        for item in _as_list(
            _opt(m, "fingerprints", ()), "measurement.fingerprints", MAX_FINGERPRINT_HITS
        ):
            h = _as_map(item, "measurement.fingerprints[]")
            _no_extra_keys(h, frozenset({"name", "location"}), "measurement.fingerprints[]")
            hits.append(
                Hit(_field(h, "name", "fingerprints[]"), _field(h, "location", "fingerprints[]"))
            )
        schema, uid, agent_id = get("schema"), get("uid"), get("agent_id")
        measured_at = parse_time(get("measured_at"))  # aware UTC: no format_time check needed
        runtime = get("runtime")
        network = _once(shared, NetworkContext.from_wire, get("network"))
        target = _once(shared, Target.from_wire, get("target"))
        test, verdict, blocking, failure = (
            get("test"),
            get("verdict"),
            get("blocking"),
            get("failure"),
        )
        dns = None if dns is None else DnsResult.from_wire(dns)
        tcp = _as_list(get("tcp"), "measurement.tcp", MAX_TCP_ENDPOINTS)
        tcp = tuple([TcpResult.from_wire(item) for item in tcp]) if tcp else ()
        http = None if http is None else HttpResult.from_wire(http)
        tls = None if tls is None else TlsResult.from_wire(tls)
        control = None if control is None else ControlResult.from_wire(control)
        extra = _as_list(_opt(m, "dns_extra", ()), "measurement.dns_extra", MAX_EXTRA_RESOLVERS)
        extra = tuple([DnsResult.from_wire(item) for item in extra]) if extra else ()
        # __post_init__'s checks, less the ones the reading above already made (the types of the
        # parts, which it built, and the lengths of the lists, which _as_list bounded)
        _check_measurement_ids(schema, uid, agent_id)
        _check_seconds("measurement.runtime", runtime)
        verdict, blocking = _check_measurement_outcome(test, verdict, blocking, failure)
        for hit in hits:
            _check_hit(hit)
        return _build(
            cls,
            uid=uid,
            agent_id=agent_id,
            measured_at=measured_at,
            runtime=runtime,
            network=network,
            target=target,
            verdict=verdict,
            blocking=blocking,
            failure=failure,
            dns=dns,
            tcp=tcp,
            http=http,
            test=test,
            schema=schema,
            tls=tls,
            control=control,
            dns_extra=extra,
            fingerprints=tuple(hits),
        )


def _check_measurement_ids(schema: object, uid: object, agent_id: object) -> None:
    if type(schema) is not int or schema != SCHEMA_VERSION:
        _fail(f"measurement schema {schema!r} is not supported (expected {SCHEMA_VERSION})")
    if not isinstance(uid, str) or not _HEX32.match(uid):
        _fail("measurement.uid must be 32 lowercase hex characters")
    if not isinstance(agent_id, str) or not _HEX32.match(agent_id):
        _fail(f"measurement.agent_id must be {AGENT_ID_LEN} lowercase hex characters")


def _check_measurement_outcome(
    test: object, verdict: object, blocking: object, failure: object
) -> tuple[Verdict, Blocking | None]:
    """The test's name, and verdict and blocking as enum members."""
    if not isinstance(test, str) or test not in KNOWN_TESTS:
        _fail(f"measurement.test {test!r} is not a known test")
    checked = _enum(Verdict, "measurement.verdict", verdict)
    how = None if blocking is None else _enum(Blocking, "measurement.blocking", blocking)
    _check_failure("measurement.failure", failure)
    return checked, how


def _check_hit(hit: Hit) -> None:
    _check_text("measurement.fingerprints[].name", hit.name, 128, empty=False)
    _check_text("measurement.fingerprints[].location", hit.location, 80, empty=False)


#: Keys every measurement carries; the others were added later and may be absent (``_opt``).
_MEASUREMENT_REQUIRED: Final = Measurement._KEYS - {"tls", "control", "dns_extra", "fingerprints"}


@dataclass(frozen=True, slots=True)
class Batch:
    """What an agent signs and uploads: a batch id (for idempotent re-sends) and its measurements."""

    batch_id: str
    agent_id: str
    created_at: datetime
    measurements: tuple[Measurement, ...]
    schema: int = SCHEMA_VERSION
    # How many measurements this agent's spool has dropped unsent since it was created (cumulative,
    # so a lost or repeated batch cannot skew the count). 0 is sent as an absent key (one form only).
    dropped_total: int = 0

    def __post_init__(self) -> None:
        if type(self.schema) is not int or self.schema != SCHEMA_VERSION:
            _fail(f"batch schema {self.schema!r} is not supported (expected {SCHEMA_VERSION})")
        _check_int("batch.dropped_total", self.dropped_total, 0, 2**53)
        if not isinstance(self.batch_id, str) or not _HEX32.match(self.batch_id):
            _fail("batch.batch_id must be 32 lowercase hex characters")
        if not isinstance(self.agent_id, str) or not _HEX32.match(self.agent_id):
            _fail("batch.agent_id must be 32 lowercase hex characters")
        format_time(self.created_at)
        object.__setattr__(self, "measurements", tuple(self.measurements))
        if not 1 <= len(self.measurements) <= MAX_BATCH_MEASUREMENTS:
            _fail(f"a batch holds 1 to {MAX_BATCH_MEASUREMENTS} measurements")
        uids = set()
        for item in self.measurements:
            if item.agent_id != self.agent_id:
                _fail("every measurement in a batch must belong to the batch's agent")
            if item.uid in uids:
                _fail(f"measurement {item.uid} appears twice in the batch")
            uids.add(item.uid)

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "schema": self.schema,
            "batch_id": self.batch_id,
            "agent_id": self.agent_id,
            "created_at": format_time(self.created_at),
            "measurements": [item.to_wire() for item in self.measurements],
        }
        if self.dropped_total:
            wire["dropped_total"] = self.dropped_total
        return wire

    @classmethod
    def from_wire(cls, wire: object) -> Batch:
        m = _as_map(wire, "batch")
        _no_extra_keys(
            m,
            frozenset(
                {"schema", "batch_id", "agent_id", "created_at", "measurements", "dropped_total"}
            ),
            "batch",
        )
        if "dropped_total" in m and m["dropped_total"] == 0:
            _fail("batch.dropped_total is sent only when it is positive")
        items = _as_list(
            _field(m, "measurements", "batch"), "batch.measurements", MAX_BATCH_MEASUREMENTS
        )
        shared: dict[Any, Any] = {}
        return cls(
            schema=_field(m, "schema", "batch"),
            batch_id=_field(m, "batch_id", "batch"),
            agent_id=_field(m, "agent_id", "batch"),
            created_at=parse_time(_field(m, "created_at", "batch")),
            measurements=tuple(Measurement.from_wire(item, shared) for item in items),
            dropped_total=m.get("dropped_total", 0),
        )
