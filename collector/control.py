"""The control helper: measure a URL from the collector's vantage point, for the agents' verdicts.

``POST /api/v1/control {"url": ..., "addrs": [...]}`` answers with a ``ControlResult``: DNS answers
(with AS numbers when an ASN database is configured; the agent's own ``addrs`` are looked up too, so
the verdict can tell a CDN's other server from a lie), TCP connects, the TLS handshake, and the HTTP
status, body length, title and header names. Like OONI's test helper it is open to any agent, so:

- results are cached briefly per URL, and concurrent requests for one URL share one measurement;
- fresh measurements are rate-limited (a token bucket for the whole helper: no client address is
  ever looked at, let alone kept);
- targets that resolve to private, loopback or otherwise non-public addresses are refused (no probing
  the collector's own network), unless the collector is configured for a lab.

The measuring code is deliberately small and separate from the agent's probes (the collector never
imports agent code); what both sides must agree on (failure strings, titles, header names, bogons)
comes from ``protocol``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import math
import socket
import ssl
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import dns.asyncquery
import dns.exception
import dns.message
import dns.rcode
import dns.rdatatype
import dns.resolver
from aiohttp.abc import AbstractResolver, ResolveResult

from protocol import TcpResult
from protocol import failures as F
from protocol.bogons import is_bogon
from protocol.messages import MAX_URL_LEN, ControlResult
from protocol.webpage import extract_title, header_names

from .errors import BadRequest, Forbidden, TooManyRequests

MAX_BODY_BYTES = 1024 * 1024
MAX_ENDPOINTS = 4
USER_AGENT = "Mozilla/5.0 (compatible; Vantage-control/0.1)"

AsnLookup = Callable[[str], int | None]


@dataclass(frozen=True, slots=True)
class ControlSettings:
    enabled: bool = True
    lab: bool = False  # allow private and loopback targets (tests, demos, research labs)
    resolver: str | None = None  # "address[:port]" over UDP; None: the system's nameservers
    ca_file: str | None = None
    timeout: float = 5.0
    cache_seconds: float = 60.0
    cache_entries: int = 1024
    rate_per_second: float = 5.0  # fresh measurements, for the whole helper
    burst: int = 30
    mmdb: str | None = None  # an ASN database (GeoLite2-ASN / ipinfo format), read with maxminddb


def mmdb_asn_lookup(path: str) -> AsnLookup:
    """An ASN lookup over an MMDB file; needs the ``maxminddb`` package (collector extra)."""
    try:
        import maxminddb  # type: ignore[import-not-found,unused-ignore]
    except ImportError as exc:
        raise RuntimeError("an ASN database needs `pip install maxminddb`") from exc
    reader = maxminddb.open_database(path)

    def lookup(ip: str) -> int | None:
        record = reader.get(ip)
        if isinstance(record, dict):
            asn = record.get("autonomous_system_number") or record.get("asn")
            if isinstance(asn, int):
                return asn
            if isinstance(asn, str) and asn.upper().removeprefix("AS").isdigit():
                return int(asn.upper().removeprefix("AS"))
        return None

    return lookup


def parse_resolver(text: str) -> tuple[str, int]:
    """``address[:port]`` → (address, port); raises ``ValueError`` with a readable message."""
    host, sep, port = text.rpartition(":")
    if not sep or "]" in port or (":" in host and not host.endswith("]")):
        host, port = text, "53"  # no port, or a bare IPv6 address
    try:
        address = str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        raise ValueError(f"control resolver must be an IP address[:port], got {text!r}") from None
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"control resolver port must be 1-65535, got {port!r}")
    return address, int(port)


def _failure(exc: BaseException) -> str:
    """Failure string for what the control's own steps can raise (see agent/failure_map.py)."""
    if isinstance(exc, TimeoutError | dns.exception.Timeout | aiohttp.ServerTimeoutError):
        return F.GENERIC_TIMEOUT
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return _failure(exc.certificate_error)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return F.cert_failure(exc.verify_code)
    if isinstance(exc, ssl.SSLEOFError | aiohttp.ServerDisconnectedError | EOFError):
        return F.EOF_ERROR
    if isinstance(exc, ssl.SSLError):
        return F.SSL_FAILED_HANDSHAKE
    if isinstance(exc, aiohttp.ClientConnectorError):
        return _failure(exc.os_error)
    if isinstance(exc, _Refused):
        return exc.failure
    errno = getattr(exc, "errno", None)
    if isinstance(exc, OSError | aiohttp.ClientOSError) and F.errno_failure(errno):
        return F.errno_failure(errno) or ""
    if isinstance(exc, ConnectionResetError):  # no errno: asyncio saw EOF mid-handshake
        return F.CONNECTION_RESET if exc.errno else F.EOF_ERROR
    return F.unknown_failure(f"{type(exc).__name__}: {exc}")


class _Refused(OSError):
    def __init__(self, failure: str) -> None:
        super().__init__(failure)
        self.failure = failure


@dataclass(frozen=True, slots=True)
class _Dns:
    answers: tuple[str, ...]
    failure: str | None


class ControlHelper:
    """Measures URLs; owns the cache, the token bucket and the in-flight table."""

    def __init__(self, settings: ControlSettings, asn_lookup: AsnLookup | None = None) -> None:
        self.settings = settings
        self.asn_lookup = asn_lookup
        if asn_lookup is None and settings.mmdb:
            self.asn_lookup = mmdb_asn_lookup(settings.mmdb)
        self.ssl_context = ssl.create_default_context()
        if settings.ca_file:
            self.ssl_context.load_verify_locations(cafile=settings.ca_file)
        self._cache: OrderedDict[str, tuple[float, ControlResult]] = OrderedDict()
        self._inflight: dict[str, asyncio.Future[ControlResult]] = {}
        self._tokens = float(settings.burst)
        self._refilled = time.monotonic()
        self.measured = 0  # fresh measurements made (for tests and metrics)

    # --- admission --------------------------------------------------------------------------------

    def _take_token(self) -> None:
        now = time.monotonic()
        rate, burst = self.settings.rate_per_second, self.settings.burst
        self._tokens = min(float(burst), self._tokens + (now - self._refilled) * rate)
        self._refilled = now
        if self._tokens < 1.0:
            wait = (1.0 - self._tokens) / rate if rate > 0 else 60.0
            raise TooManyRequests(
                f"control helper is busy; retry in {wait:.1f} s",
                retry_after=str(max(1, math.ceil(wait))),
                code="rate_limited",
            )
        self._tokens -= 1.0

    def _check_public(self, addresses: Sequence[str]) -> None:
        if self.settings.lab:
            return
        for ip in addresses:
            if is_bogon(ip):
                raise Forbidden(
                    "the control helper does not measure private or loopback addresses",
                    code="private_target",
                )

    # --- the request ---------------------------------------------------------------------------------

    async def control(self, url: str, addrs: Sequence[str] = ()) -> tuple[ControlResult, bool]:
        """The control for ``url`` and whether it came from the cache."""
        now = time.monotonic()
        cached = self._cache.get(url)
        hit = cached is not None and cached[0] > now
        if cached is not None and hit:
            result = cached[1]
        elif url in self._inflight:
            result, hit = await asyncio.shield(self._inflight[url]), True
        else:
            self._take_token()
            future: asyncio.Future[ControlResult] = asyncio.get_running_loop().create_future()
            self._inflight[url] = future
            try:
                result = await self.measure(url)
            except BaseException as exc:
                future.set_exception(exc)
                future.exception()  # retrieved: waiters re-raise it, nobody logs it twice
                raise
            else:
                future.set_result(result)
                self._remember(url, result)
            finally:
                del self._inflight[url]
        return self._with_asns(result, addrs), hit

    def _remember(self, url: str, result: ControlResult) -> None:
        self._cache[url] = (time.monotonic() + self.settings.cache_seconds, result)
        self._cache.move_to_end(url)
        while len(self._cache) > self.settings.cache_entries:
            self._cache.popitem(last=False)

    def _with_asns(self, result: ControlResult, addrs: Sequence[str]) -> ControlResult:
        if self.asn_lookup is None:
            return result
        asns = {}
        for ip in (*result.dns_answers, *addrs):
            asn = self.asn_lookup(ip)
            if asn:
                asns[ip] = asn
        values = {key: getattr(result, key) for key in ControlResult._KEYS}
        values["asns"] = tuple(asns.items())
        return ControlResult(**values)

    # --- measuring ---------------------------------------------------------------------------------

    def _servers(self) -> list[tuple[str, int]]:
        if self.settings.resolver:
            return [parse_resolver(self.settings.resolver)]
        system = dns.resolver.Resolver(configure=True)
        return [(str(ns), int(system.port)) for ns in system.nameservers]

    async def _ask(self, host: str, rdtype: str) -> tuple[list[str], str | None]:
        query = dns.message.make_query(host, rdtype)
        failure: str | None = F.GENERIC_TIMEOUT
        for address, port in self._servers():
            try:
                response = await dns.asyncquery.udp(
                    query, address, timeout=self.settings.timeout / 2, port=port
                )
            except Exception as exc:
                failure = _failure(exc)
                continue
            wanted = dns.rdatatype.from_text(rdtype)
            found = [
                rr.address for rrset in response.answer if rrset.rdtype == wanted for rr in rrset
            ]
            failure = F.rcode_failure(dns.rcode.to_text(response.rcode()))
            return found, failure or (None if found else F.DNS_NO_ANSWER)
        return [], failure

    async def resolve(self, host: str) -> _Dns:
        with contextlib.suppress(ValueError):
            return _Dns((str(ipaddress.ip_address(host.strip("[]"))),), None)
        (a, fa), (aaaa, faaaa) = await asyncio.gather(self._ask(host, "A"), self._ask(host, "AAAA"))
        answers = tuple(dict.fromkeys(a + aaaa))[:32]
        if answers:
            return _Dns(answers, None)
        failures = [f for f in (fa, faaaa) if f is not None]
        return _Dns((), next((f for f in failures if f != F.DNS_NO_ANSWER), F.DNS_NO_ANSWER))

    async def _connect(self, ip: str, port: int) -> TcpResult:
        started = time.monotonic()
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(ip, port), self.settings.timeout
            )
        except Exception as exc:
            return TcpResult(ip, port, _failure(exc), time.monotonic() - started)
        writer.close()
        return TcpResult(ip, port, None, time.monotonic() - started)

    async def _tls(self, ip: str, port: int, host: str) -> str | None:
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(ip, port, ssl=self.ssl_context, server_hostname=host),
                self.settings.timeout,
            )
        except Exception as exc:
            return _failure(exc)
        writer.close()
        return None

    async def measure(self, url: str) -> ControlResult:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        resolved = await self.resolve(host)
        self._check_public(resolved.answers)
        self.measured += 1
        tcp = await asyncio.gather(
            *(self._connect(ip, port) for ip in resolved.answers[:MAX_ENDPOINTS])
        )
        working = tuple(item.ip for item in tcp if item.success)
        tls_failure = None
        http: dict[str, Any] = {"failure": resolved.failure or (tcp[0].failure if tcp else None)}
        if working and parts.scheme == "https":
            tls_failure = await self._tls(working[0], port, host)
            http["failure"] = tls_failure
        if working and tls_failure is None:
            http = await self._http(url, host, working)
        return ControlResult(
            dns_answers=resolved.answers,
            dns_failure=resolved.failure,
            tcp=tuple(tcp),
            tls_failure=tls_failure,
            http_status=http.get("status"),
            http_body_length=http.get("body_length"),
            http_title=http.get("title"),
            http_header_names=http.get("header_names", ()),
            http_failure=http["failure"],
        )

    async def _http(self, url: str, host: str, addresses: tuple[str, ...]) -> dict[str, Any]:
        resolver = _PinnedResolver(self, {host.lower(): addresses})
        connector = aiohttp.TCPConnector(resolver=resolver, ssl=self.ssl_context, force_close=True)
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout * 2)
        try:
            async with (
                aiohttp.ClientSession(
                    connector=connector, timeout=timeout, headers={"User-Agent": USER_AGENT}
                ) as session,
                session.get(url, max_redirects=10) as response,
            ):
                body = b""
                while len(body) <= MAX_BODY_BYTES:
                    chunk = await response.content.readany()
                    if not chunk:
                        break
                    body += chunk
                body = body[:MAX_BODY_BYTES]
                return {
                    "status": response.status,
                    "body_length": len(body),
                    "title": extract_title(body),
                    "header_names": header_names(response.headers.keys()),
                    "failure": None,
                }
        except Exception as exc:
            cause = exc.__cause__ if isinstance(exc, aiohttp.ClientConnectorError) else None
            return {"failure": _failure(cause if isinstance(cause, _Refused) else exc)}


class _PinnedResolver(AbstractResolver):
    """aiohttp resolves through the control's own DNS step (and its private-address rule)."""

    def __init__(self, helper: ControlHelper, pinned: dict[str, tuple[str, ...]]) -> None:
        self.helper, self.pinned = helper, pinned

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        addresses = self.pinned.get(host.lower())
        if addresses is None:  # a redirect to another host
            resolved = await self.helper.resolve(host)
            if resolved.failure is not None:
                raise _Refused(resolved.failure)
            if not self.helper.settings.lab and any(is_bogon(ip) for ip in resolved.answers):
                raise _Refused(F.unknown_failure("redirect to a private address"))
            addresses = resolved.answers
        return [
            ResolveResult(
                hostname=host,
                host=ip,
                port=port,
                family=socket.AF_INET6 if ":" in ip else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for ip in addresses
        ]

    async def close(self) -> None:
        return None


def parse_control_request(document: object) -> tuple[str, tuple[str, ...]]:
    """Validate ``{"url": ..., "addrs": [...]}``; raises ``BadRequest`` naming the problem."""
    if not isinstance(document, dict):
        raise BadRequest("control request must be a JSON object {url, addrs}", code="invalid")
    extra = set(document) - {"url", "addrs"}
    if extra:
        raise BadRequest(f"unknown field(s): {', '.join(sorted(extra))}", code="invalid")
    url = document.get("url")
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LEN:
        raise BadRequest(
            "url must be a non-empty string of at most 2048 characters", code="invalid"
        )
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 -- raises on a bad port
    except ValueError:
        raise BadRequest(f"url has an invalid port: {url!r}", code="invalid") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadRequest(f"url must be an http(s) URL with a host: {url!r}", code="invalid")
    addrs = document.get("addrs", [])
    if not isinstance(addrs, list) or len(addrs) > 16:
        raise BadRequest("addrs must be a list of at most 16 addresses", code="invalid")
    clean = []
    for item in addrs:
        try:
            clean.append(str(ipaddress.ip_address(str(item))))
        except ValueError:
            raise BadRequest(f"addrs has a non-address: {item!r}", code="invalid") from None
    return url, tuple(clean)
