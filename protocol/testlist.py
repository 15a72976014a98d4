"""Signed test lists: what agents measure, for whom, until when.

A test list is a document signed by operator keys (``protocol.keyset``) in a ``signed_doc`` envelope of
kind ``testlist`` (signature domain ``vantage/testlist/v1``)::

    {"type": "vantage-testlist", "list_id": "xa-mobile", "version": 7,
     "issued": "...Z", "expires": "...Z", "description": "...",
     "targeting": {"countries": ["XA"], "regions": ["XA-NORTH"], "asns": [64500],
                   "network_types": ["mobile"]},          # empty list = any
     "schedule": {"interval": 3600, "priority": 50},       # hints: seconds between runs, 0..100
     "entries": [{"url": "...", "category": "NEWS", "scope": "international",
                  "tests": ["web_connectivity"]}]}

TUF's guarantees, per list id: a valid signature from the current key set (``verify_testlist``), an
expiry (freeze attacks), and a version that never goes down (``check_update``, rollback attacks). An
agent keeps the exact bytes it accepted and re-verifies them when it loads them.

The collector hands out a *bundle*: ``{"v": 1, "keysets": [bin], "lists": [bin]}``, each item the exact
envelope bytes an operator published, so an agent can walk key rotations and lists in one fetch.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from .canonical import DecodeLimits, canonical_decode, canonical_encode
from .errors import DecodeError, LocalProtocolError, SchemaError, TrustError
from .keyset import KeySet
from .messages import NetworkContext, Target
from .signed_doc import SignedDocument, decode_inner, decode_signed_document, sign_document
from .signing import SigningKey
from .timefmt import format_time, parse_time
from .verdicts import NetworkType, Scope

KIND: Final = "testlist"
DOC_TYPE: Final = "vantage-testlist"
MAX_ENTRIES: Final = 5000
MAX_TARGETING: Final = 256
DEFAULT_TESTS: Final = ("web_connectivity",)
_LIST_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_TEST_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")
BUNDLE_LIMITS: Final = DecodeLimits(max_bytes=32 * 1024 * 1024, max_bin_len=4 * 1024 * 1024)


def _strings(name: str, values: Iterable[Any]) -> tuple[str, ...]:
    out = tuple(values)
    if len(out) > MAX_TARGETING:
        raise LocalProtocolError(f"{name} lists more than {MAX_TARGETING} values")
    if not all(isinstance(v, str) and 0 < len(v) <= 64 for v in out):
        raise LocalProtocolError(f"{name} must hold short non-empty strings")
    return tuple(sorted(set(out)))


@dataclass(frozen=True, slots=True)
class Targeting:
    """Who a list is for. Each empty tuple means "any"; a context must match every non-empty one."""

    countries: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()
    asns: tuple[int, ...] = ()
    network_types: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "countries", _strings("targeting.countries", self.countries))
        if not all(_COUNTRY.match(c) for c in self.countries):
            raise LocalProtocolError("targeting.countries must be ISO 3166-1 codes like 'IR'")
        object.__setattr__(self, "regions", _strings("targeting.regions", self.regions))
        asns = tuple(self.asns)
        if len(asns) > MAX_TARGETING or not all(
            isinstance(a, int) and not isinstance(a, bool) and 0 < a < 2**32 for a in asns
        ):
            raise LocalProtocolError("targeting.asns must be AS numbers (1 .. 2^32-1)")
        object.__setattr__(self, "asns", tuple(sorted(set(asns))))
        types = _strings("targeting.network_types", self.network_types)
        unknown = set(types) - {t.value for t in NetworkType}
        if unknown:
            raise LocalProtocolError(f"targeting.network_types has unknown {sorted(unknown)}")
        object.__setattr__(self, "network_types", types)

    def matches(self, network: NetworkContext) -> bool:
        return (
            (not self.countries or network.country in self.countries)
            and (not self.regions or network.region in self.regions)
            and (not self.asns or network.asn in self.asns)
            and (not self.network_types or network.network_type.value in self.network_types)
        )

    def describe(self) -> str:
        parts = [
            ",".join(self.countries) or "any country",
            ",".join(self.regions) or "any region",
            ",".join(f"AS{a}" for a in self.asns) or "any carrier",
            ",".join(self.network_types) or "any network",
        ]
        return " / ".join(parts)

    def to_wire(self) -> dict[str, Any]:
        return {
            "countries": list(self.countries),
            "regions": list(self.regions),
            "asns": list(self.asns),
            "network_types": list(self.network_types),
        }

    @classmethod
    def from_wire(cls, wire: Any) -> Targeting:
        keys = {"countries", "regions", "asns", "network_types"}
        if not isinstance(wire, dict) or set(wire) != keys:
            raise LocalProtocolError(
                "targeting must be a map of countries, regions, asns, network_types"
            )
        if not all(isinstance(wire[k], list) for k in keys):
            raise LocalProtocolError("targeting values must be lists")
        return cls(wire["countries"], wire["regions"], wire["asns"], wire["network_types"])


@dataclass(frozen=True, slots=True)
class Schedule:
    """Hints, not orders: how often to run the list (seconds) and how it ranks against others."""

    interval: int = 3600
    priority: int = 50

    def __post_init__(self) -> None:
        for name, value, low, high in (
            ("schedule.interval", self.interval, 60, 7 * 86_400),
            ("schedule.priority", self.priority, 0, 100),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise LocalProtocolError(f"{name} must be an integer from {low} to {high}")


@dataclass(frozen=True, slots=True)
class Entry:
    url: str
    scope: Scope
    category: str = "MISC"
    tests: tuple[str, ...] = DEFAULT_TESTS

    def __post_init__(self) -> None:
        target = Target(self.url, self.scope, self.category)  # validates url, scope, category
        object.__setattr__(self, "scope", target.scope)
        tests = tuple(self.tests)
        if not 1 <= len(tests) <= 8 or not all(
            isinstance(t, str) and _TEST_NAME.match(t) for t in tests
        ):
            raise LocalProtocolError(f"entry {self.url}: tests must be 1 to 8 test names")
        object.__setattr__(self, "tests", tests)

    @property
    def target(self) -> Target:
        return Target(self.url, self.scope, self.category)

    def to_wire(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "category": self.category,
            "scope": self.scope.value,
            "tests": list(self.tests),
        }

    @classmethod
    def from_wire(cls, wire: Any) -> Entry:
        if not isinstance(wire, dict) or set(wire) != {"url", "category", "scope", "tests"}:
            raise LocalProtocolError("entries[] must be maps of url, category, scope, tests")
        if not isinstance(wire["tests"], list):
            raise LocalProtocolError("entries[].tests must be a list")
        return cls(wire["url"], wire["scope"], wire["category"], tuple(wire["tests"]))


@dataclass(frozen=True, slots=True)
class TestList:
    __test__ = False  # not a pytest class, despite the name

    list_id: str
    version: int
    issued: datetime
    expires: datetime
    entries: tuple[Entry, ...]
    targeting: Targeting = field(default_factory=Targeting)
    schedule: Schedule = field(default_factory=Schedule)
    description: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.list_id, str) or not _LIST_ID.match(self.list_id):
            raise LocalProtocolError(
                f"list_id must be 1-64 of a-z 0-9 . _ - (starting alphanumeric): {self.list_id!r}"
            )
        if (
            isinstance(self.version, bool)
            or not isinstance(self.version, int)
            or not 1 <= self.version < 2**53
        ):
            raise LocalProtocolError("version must be a positive integer")
        if self.expires <= self.issued:
            raise LocalProtocolError("expires must be after issued")
        if not 1 <= len(self.entries) <= MAX_ENTRIES:
            raise LocalProtocolError(f"a test list holds 1 to {MAX_ENTRIES} entries")
        urls = [e.url for e in self.entries]
        if len(set(urls)) != len(urls):
            raise LocalProtocolError("a test list lists the same URL twice")
        if not isinstance(self.description, str) or len(self.description) > 1024:
            raise LocalProtocolError("description must be a string of at most 1024 characters")

    def to_document(self) -> dict[str, Any]:
        return {
            "type": DOC_TYPE,
            "list_id": self.list_id,
            "version": self.version,
            "issued": format_time(self.issued),
            "expires": format_time(self.expires),
            "description": self.description,
            "targeting": self.targeting.to_wire(),
            "schedule": {"interval": self.schedule.interval, "priority": self.schedule.priority},
            "entries": [e.to_wire() for e in self.entries],
        }

    @classmethod
    def from_document(cls, wire: Any) -> TestList:
        fields = {
            "type", "list_id", "version", "issued", "expires", "description", "targeting",
            "schedule", "entries",
        }  # fmt: skip
        if not isinstance(wire, dict) or set(wire) != fields:
            raise LocalProtocolError(
                f"testlist must be a map of exactly {', '.join(sorted(fields))}"
            )
        if wire["type"] != DOC_TYPE:
            raise LocalProtocolError(f"testlist.type must be {DOC_TYPE!r}")
        schedule, entries = wire["schedule"], wire["entries"]
        if not isinstance(schedule, dict) or set(schedule) != {"interval", "priority"}:
            raise LocalProtocolError("schedule must be a map of interval, priority")
        if not isinstance(entries, list):
            raise LocalProtocolError("entries must be a list")
        return cls(
            list_id=wire["list_id"],
            version=wire["version"],
            issued=parse_time(wire["issued"]),
            expires=parse_time(wire["expires"]),
            entries=tuple(Entry.from_wire(e) for e in entries),
            targeting=Targeting.from_wire(wire["targeting"]),
            schedule=Schedule(schedule["interval"], schedule["priority"]),
            description=wire["description"],
        )


@dataclass(frozen=True, slots=True)
class VerifiedList:
    """A list that passed ``verify_testlist``, with the exact bytes that were verified."""

    data: bytes
    testlist: TestList

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def sign_testlist(testlist: TestList, signers: Iterable[SigningKey]) -> SignedDocument:
    return sign_document(KIND, testlist.to_document(), signers)


def decode_testlist(data: bytes) -> tuple[SignedDocument, TestList]:
    """Decode (not verify) a signed test list; for display and for the collector's index."""
    envelope = decode_signed_document(data, KIND)
    testlist: TestList = decode_inner(envelope, TestList.from_document)
    return envelope, testlist


def verify_testlist(data: bytes, keyset: KeySet, now: datetime) -> VerifiedList:
    """Signature by the current key set, then the document, then expiry. Raises with a reason."""
    envelope = decode_signed_document(data, KIND)
    keyset.check_fresh(now)
    envelope.verified_by(
        keyset.by_id, keyset.list_threshold, f"operator key set version {keyset.version}"
    )
    testlist: TestList = decode_inner(envelope, TestList.from_document)
    if now >= testlist.expires:
        raise TrustError(
            f"test list {testlist.list_id} v{testlist.version} expired on {format_time(testlist.expires)}",
            reason="expired",
        )
    return VerifiedList(bytes(data), testlist)


def check_update(previous: VerifiedList | None, candidate: VerifiedList) -> bool:
    """May ``candidate`` replace ``previous`` (same list id)? True if it is new, False if identical.

    Raises ``TrustError``: ``rollback`` for a lower version, ``equivocation`` for the same version with
    other content (someone signed two different lists under one version number, or a key is misused).
    """
    if previous is None:
        return True
    old, new = previous.testlist, candidate.testlist
    if new.list_id != old.list_id:
        raise LocalProtocolError("check_update compares versions of one list id")
    if new.version < old.version:
        raise TrustError(
            f"test list {new.list_id} v{new.version} is older than v{old.version}, accepted before"
            " (rollback)",
            reason="rollback",
        )
    if new.version == old.version:
        if candidate.data != previous.data:
            raise TrustError(
                f"test list {new.list_id} v{new.version} differs from the v{old.version} accepted"
                " before (two lists under one version)",
                reason="equivocation",
            )
        return False
    return True


# --- the collector's bundle -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Bundle:
    keysets: tuple[bytes, ...]
    lists: tuple[bytes, ...]

    def to_bytes(self) -> bytes:
        return canonical_encode({"v": 1, "keysets": list(self.keysets), "lists": list(self.lists)})


def decode_bundle(data: bytes) -> Bundle:
    try:
        wire = canonical_decode(data, BUNDLE_LIMITS)
    except DecodeError as exc:
        raise DecodeError(
            f"test-list bundle: {exc} (truncated or damaged?)", reason=exc.reason
        ) from exc
    if not isinstance(wire, dict) or set(wire) != {"v", "keysets", "lists"} or wire["v"] != 1:
        raise SchemaError("test-list bundle must be a map of v (1), keysets, lists")
    keysets, lists = wire["keysets"], wire["lists"]
    if not isinstance(keysets, list) or not all(isinstance(k, bytes) for k in keysets):
        raise SchemaError("bundle.keysets must be a list of binary documents")
    if not isinstance(lists, list) or not all(isinstance(x, bytes) for x in lists):
        raise SchemaError("bundle.lists must be a list of binary documents")
    return Bundle(tuple(keysets), tuple(lists))


def targets_of(lists: Sequence[TestList], test: str = "web_connectivity") -> list[Target]:
    """The targets that run ``test``, highest-priority list first, each URL once."""
    seen: set[str] = set()
    out: list[Target] = []
    for testlist in sorted(lists, key=lambda t: (-t.schedule.priority, t.list_id)):
        for entry in testlist.entries:
            if test in entry.tests and entry.url not in seen:
                seen.add(entry.url)
                out.append(entry.target)
    return out
