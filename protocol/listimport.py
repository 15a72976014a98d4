"""Turn Citizen Lab test-list CSVs and plain URL lists into test-list entries (a *draft*).

Citizen Lab's columns are ``url,category_code,category_description,date_added,source,notes``; a
``scope`` column (``domestic`` | ``international``) and a ``tests`` column (``web_connectivity;...``) are
honoured when present. Otherwise scope comes from ``ScopeRules``, first match wins:

1. the host is, or is under, one of ``domestic_domains``            → domestic
2. the host ends in one of ``domestic_tlds`` (country-code TLDs)    → domestic
3. the host is an address inside one of ``domestic_networks``       → domestic
4. ``default`` (usually ``international``); ``None`` makes it an error to leave scope unknown.

Every row is checked; every bad one is reported with its file and line, and none is silently dropped.
Duplicates (same URL after lower-casing scheme and host) keep the first and are counted.

A draft is JSON, ``{"type": "vantage-testlist-draft", "entries": [...]}``, meant for review
(``vantage testlist show|diff``) before ``vantage testlist sign`` turns it into a signed list.
"""

from __future__ import annotations

import csv
import io
import ipaddress
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

from .errors import LocalProtocolError, SchemaError
from .testlist import DEFAULT_TESTS, Entry
from .verdicts import Scope

DRAFT_TYPE: Final = "vantage-testlist-draft"
CITIZEN_LAB_COLUMNS: Final = (
    "url", "category_code", "category_description", "date_added", "source", "notes",
)  # fmt: skip


def _names(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(v.strip().lower().strip(".") for v in values if v.strip())


@dataclass(frozen=True, slots=True)
class ScopeRules:
    domestic_domains: tuple[str, ...] = ()
    domestic_tlds: tuple[str, ...] = ()
    domestic_networks: tuple[str, ...] = ()
    default: Scope | None = Scope.INTERNATIONAL

    def __post_init__(self) -> None:
        object.__setattr__(self, "domestic_domains", _names(self.domestic_domains))
        object.__setattr__(self, "domestic_tlds", _names(self.domestic_tlds))
        self.networks()  # validates

    def networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        try:
            return [ipaddress.ip_network(n.strip(), strict=False) for n in self.domestic_networks]
        except ValueError as exc:
            raise LocalProtocolError(f"bad domestic network: {exc}") from exc

    def scope_of(self, host: str) -> Scope | None:
        host = host.lower().rstrip(".")
        if any(host == d or host.endswith("." + d) for d in self.domestic_domains):
            return Scope.DOMESTIC
        if any(host.endswith("." + t) for t in self.domestic_tlds):
            return Scope.DOMESTIC
        try:
            address = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            address = None
        if address is not None and any(address in net for net in self.networks()):
            return Scope.DOMESTIC
        return self.default


@dataclass(frozen=True, slots=True)
class RowProblem:
    source: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.message}"


@dataclass
class ImportResult:
    entries: list[Entry] = field(default_factory=list)
    problems: list[RowProblem] = field(default_factory=list)
    duplicates: int = 0
    _seen: set[str] = field(default_factory=set, repr=False)

    def add(self, entry: Entry) -> None:
        parts = urlsplit(entry.url)
        key = parts._replace(scheme=parts.scheme.lower(), netloc=parts.netloc.lower()).geturl()
        if key in self._seen:
            self.duplicates += 1
            return
        self._seen.add(key)
        self.entries.append(entry)


def _looks_like_csv(text: str) -> bool:
    first = next((line for line in text.splitlines() if line.strip()), "")
    return (
        first.lstrip("\ufeff").strip().lower().startswith("url,") or first.strip().lower() == "url"
    )


def _entry(url: str, category: str, scope_text: str, tests_text: str, rules: ScopeRules) -> Entry:
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        hint = "; add http:// or https://" if "://" not in url else ""
        raise LocalProtocolError(f"not an http(s) URL with a host: {url!r}{hint}")
    if scope_text:
        if scope_text.lower() not in ("domestic", "international"):
            raise LocalProtocolError(f"scope must be domestic or international, got {scope_text!r}")
        scope: Scope | None = Scope(scope_text.lower())
    else:
        scope = rules.scope_of(parts.hostname)
    if scope is None:
        raise LocalProtocolError(
            f"cannot tell whether {parts.hostname} is domestic or international;"
            " add a scope column or a rule (--domestic-domain, --domestic-tld)"
        )
    tests = tuple(t.strip() for t in tests_text.replace(",", ";").split(";") if t.strip())
    return Entry(url, scope, category.upper() or "MISC", tests or DEFAULT_TESTS)


def _import_csv(text: str, source: str, rules: ScopeRules, result: ImportResult) -> None:
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    header: list[str] | None = None
    for row in reader:
        line = reader.line_num
        if not row or not any(cell.strip() for cell in row):
            continue
        if header is None:
            header = [cell.strip().lower() for cell in row]
            if "url" not in header:
                result.problems.append(RowProblem(source, line, "header has no url column"))
                return
            continue
        if row[0].strip().startswith("#"):
            continue
        if len(row) != len(header):
            result.problems.append(
                RowProblem(source, line, f"has {len(row)} fields, the header has {len(header)}")
            )
            continue
        cells = {name: value.strip() for name, value in zip(header, row, strict=True)}
        try:
            entry = _entry(
                cells.get("url", ""),
                cells.get("category_code", ""),
                cells.get("scope", ""),
                cells.get("tests", ""),
                rules,
            )
        except LocalProtocolError as exc:
            result.problems.append(RowProblem(source, line, str(exc)))
            continue
        result.add(entry)


def _import_plain(text: str, source: str, rules: ScopeRules, result: ImportResult) -> None:
    for number, raw in enumerate(text.splitlines(), start=1):
        url = raw.strip()
        if not url or url.startswith("#"):
            continue
        try:
            result.add(_entry(url, "", "", "", rules))
        except LocalProtocolError as exc:
            result.problems.append(RowProblem(source, number, str(exc)))


def import_lists(sources: Iterable[tuple[str, str]], rules: ScopeRules) -> ImportResult:
    """Read ``(name, text)`` sources (CSV if the first line is a header with ``url``, else URLs)."""
    result = ImportResult()
    for source, text in sources:
        if _looks_like_csv(text):
            _import_csv(text, source, rules, result)
        else:
            _import_plain(text, source, rules, result)
    return result


# --- drafts ---------------------------------------------------------------------------------------


def draft_json(entries: Sequence[Entry]) -> str:
    document = {"type": DRAFT_TYPE, "entries": [e.to_wire() for e in entries]}
    return json.dumps(document, indent=1, ensure_ascii=False) + "\n"


def entries_from_draft(text: str, source: str = "<draft>") -> list[Entry]:
    try:
        document: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SchemaError(f"{source}: not JSON: {exc}") from exc
    if not isinstance(document, dict) or document.get("type") != DRAFT_TYPE:
        raise SchemaError(f"{source}: not a test-list draft (type {DRAFT_TYPE!r})")
    entries = document.get("entries")
    if not isinstance(entries, list):
        raise SchemaError(f"{source}: entries must be a list")
    out = []
    for index, item in enumerate(entries):
        try:
            out.append(Entry.from_wire(item))
        except LocalProtocolError as exc:
            raise SchemaError(f"{source}: entries[{index}]: {exc}") from exc
    return out
