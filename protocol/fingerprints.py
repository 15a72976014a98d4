"""Blockpage fingerprints: patterns that prove a DNS answer or an HTTP response came from a censor.

Pure matching on strings and bytes (no I/O). The data format is OONI's blocking-fingerprints CSV::

    name,scope,other_names,location_found,pattern_type,pattern,confidence_no_fp,expected_countries,source,exp_url,notes

``location_found`` is ``dns`` (an answer address), ``body`` or ``header.<name>``; ``pattern_type`` is
``full``, ``prefix`` or ``contains``. A built-in set (``protocol/fingerprints.csv``) carries
public facts such as Iran's 10.10.34.34-36 / d0::11 DNS answers and its blockpage markers; operators
import more with :func:`parse_fingerprints_csv`, which loads the good rows and reports each bad row
with its line number instead of failing the whole file.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Final

COLUMNS: Final = (
    "name",
    "scope",
    "other_names",
    "location_found",
    "pattern_type",
    "pattern",
    "confidence_no_fp",
    "expected_countries",
    "source",
    "exp_url",
    "notes",
)
REQUIRED_COLUMNS: Final = ("name", "location_found", "pattern_type", "pattern")
PATTERN_TYPES: Final = frozenset({"full", "prefix", "contains"})
#: How much of a body is searched: blockpages are small, and this bounds the work per response.
BODY_SCAN_BYTES: Final = 256 * 1024
_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
_HEADER = re.compile(r"^header\.[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$")


class FingerprintError(ValueError):
    """A fingerprint row that cannot be used; the message says which field and why."""


@dataclass(frozen=True, slots=True)
class Fingerprint:
    name: str
    location: str  # "dns", "body" or "header.<lowercase name>"
    pattern_type: str  # "full" | "prefix" | "contains"
    pattern: str
    scope: str = ""
    confidence: int | None = None  # OONI's confidence_no_fp (0-10)
    expected_countries: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise FingerprintError(f"name {self.name!r} is empty or has odd characters")
        location = self.location.strip().lower()
        if location not in ("dns", "body") and not _HEADER.match(location):
            raise FingerprintError(
                f"location_found {self.location!r} must be dns, body or header.<name>"
            )
        object.__setattr__(self, "location", location)
        if self.pattern_type not in PATTERN_TYPES:
            raise FingerprintError(
                f"pattern_type {self.pattern_type!r} must be one of full, prefix, contains"
            )
        if not self.pattern:
            raise FingerprintError("pattern is empty")
        if self.confidence is not None and not 0 <= self.confidence <= 10:
            raise FingerprintError("confidence_no_fp must be an integer from 0 to 10")

    def matches(self, text: str) -> bool:
        if self.pattern_type == "full":
            return text == self.pattern
        if self.pattern_type == "prefix":
            return text.startswith(self.pattern)
        return self.pattern in text


@dataclass(frozen=True, slots=True)
class Hit:
    """Which fingerprint matched, and where (``dns``, ``body``, ``header.<name>``)."""

    name: str
    location: str


@dataclass(frozen=True, slots=True)
class RowProblem:
    line: int  # 1-based line in the CSV text where the row starts
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


class FingerprintSet:
    """An immutable collection of fingerprints, indexed by where they look."""

    def __init__(self, fingerprints: Iterable[Fingerprint] = ()) -> None:
        self.fingerprints = tuple(fingerprints)
        self._dns = tuple(fp for fp in self.fingerprints if fp.location == "dns")
        self._body = tuple(fp for fp in self.fingerprints if fp.location == "body")
        self._headers = tuple(fp for fp in self.fingerprints if fp.location.startswith("header."))

    def __len__(self) -> int:
        return len(self.fingerprints)

    def __add__(self, other: FingerprintSet) -> FingerprintSet:
        return FingerprintSet(self.fingerprints + other.fingerprints)

    def match_dns(self, answers: Iterable[str]) -> list[Hit]:
        """Fingerprints matched by any DNS answer (addresses compared in their canonical text)."""
        found: list[Hit] = []
        normalized = [_canonical_ip(answer) for answer in answers]
        for fp in self._dns:
            pattern = _canonical_ip(fp.pattern) if fp.pattern_type == "full" else fp.pattern
            for answer in normalized:
                if (answer == pattern) if fp.pattern_type == "full" else fp.matches(answer):
                    found.append(Hit(fp.name, "dns"))
                    break
        return found

    def match_http(
        self, body: bytes, headers: Mapping[str, str] | Sequence[tuple[str, str]]
    ) -> list[Hit]:
        """Fingerprints matched by a response body (decoded leniently) or one of its headers."""
        found: list[Hit] = []
        if self._body:
            text = body[:BODY_SCAN_BYTES].decode("utf-8", "replace")
            found.extend(Hit(fp.name, "body") for fp in self._body if fp.matches(text))
        items = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
        lowered = [(name.lower(), value) for name, value in items]
        for fp in self._headers:
            wanted = fp.location[len("header.") :]
            if any(name == wanted and fp.matches(value) for name, value in lowered):
                found.append(Hit(fp.name, fp.location))
        return found


def _canonical_ip(text: str) -> str:
    import ipaddress

    try:
        return str(ipaddress.ip_address(text.strip().strip("[]")))
    except ValueError:
        return text.strip()


def _row_to_fingerprint(row: Mapping[str, str | None]) -> Fingerprint:
    for column in REQUIRED_COLUMNS:
        if not (row.get(column) or "").strip():
            raise FingerprintError(f"{column} is empty")
    confidence_text = (row.get("confidence_no_fp") or "").strip()
    confidence = None
    if confidence_text:
        if not confidence_text.isdigit():
            raise FingerprintError(f"confidence_no_fp {confidence_text!r} is not an integer")
        confidence = int(confidence_text)
    countries = tuple(
        code.strip().upper()
        for code in re.split(r"[;,\s]+", row.get("expected_countries") or "")
        if code.strip()
    )
    for code in countries:
        if not re.match(r"^[A-Z]{2}$", code):
            raise FingerprintError(f"expected_countries has {code!r}, not a country code")
    return Fingerprint(
        name=(row.get("name") or "").strip(),
        location=(row.get("location_found") or "").strip(),
        pattern_type=(row.get("pattern_type") or "").strip(),
        pattern=row.get("pattern") or "",  # patterns may legitimately start or end with spaces
        scope=(row.get("scope") or "").strip(),
        confidence=confidence,
        expected_countries=countries,
    )


def parse_fingerprints_csv(text: str) -> tuple[FingerprintSet, list[RowProblem]]:
    """Parse OONI's fingerprint CSV. Good rows load; each bad row becomes a ``RowProblem``.

    A header that lacks a required column is a problem for the whole file (line 1) and loads nothing.
    """
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = reader.fieldnames or []
    missing = [column for column in REQUIRED_COLUMNS if column not in header]
    if missing:
        return FingerprintSet(), [RowProblem(1, f"header lacks column(s): {', '.join(missing)}")]
    good: list[Fingerprint] = []
    problems: list[RowProblem] = []
    seen: dict[tuple[str, str, str, str], int] = {}
    line = reader.line_num
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            problems.append(RowProblem(line + 1, f"not valid CSV: {exc}"))
            break
        start, line = line + 1, reader.line_num
        if None in row:  # DictReader puts surplus fields under the key None
            problems.append(RowProblem(start, f"has more fields than the {len(header)} columns"))
            continue
        if any(value is None for value in row.values()):
            problems.append(RowProblem(start, f"has fewer fields than the {len(header)} columns"))
            continue
        try:
            fingerprint = _row_to_fingerprint(row)
        except FingerprintError as exc:
            problems.append(RowProblem(start, str(exc)))
            continue
        key = (
            fingerprint.name,
            fingerprint.location,
            fingerprint.pattern_type,
            fingerprint.pattern,
        )
        if key in seen:
            problems.append(RowProblem(start, f"duplicates the row on line {seen[key]}"))
            continue
        seen[key] = start
        good.append(fingerprint)
    return FingerprintSet(good), problems


def builtin_fingerprints() -> FingerprintSet:
    """The fingerprints shipped with Vantage (public facts; see ``protocol/fingerprints.csv``)."""
    text = resources.files("protocol").joinpath("fingerprints.csv").read_text("utf-8")
    fingerprints, problems = parse_fingerprints_csv(text)
    if problems:  # shipped data is ours: a bad row is a bug here, not user input
        raise FingerprintError("built-in fingerprints: " + "; ".join(map(str, problems)))
    return fingerprints
