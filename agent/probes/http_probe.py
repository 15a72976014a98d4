"""HTTP step: GET the URL through the addresses the DNS step measured, not a second lookup.

A ``PinnedResolver`` hands aiohttp the measured addresses for the target's host, so what we fetch is
what we measured; hosts reached by redirects are resolved with the same resolver settings. Redirects
are followed by hand (up to 10) so each hop is recorded. The body read is capped; the body itself is
returned to the caller for fingerprint matching but only its length, hash and title are kept.
"""

from __future__ import annotations

import hashlib
import socket
import ssl
import time
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from protocol import HttpResult
from protocol import failures as F
from protocol.messages import MAX_REDIRECTS, MAX_URL_LEN, HttpHop
from protocol.webpage import extract_title, header_names, selected_headers

from ..failure_map import dns_failure, network_failure
from .dns_probe import DnsOptions, ResolverSpec, measure_dns

MAX_BODY_BYTES = 1024 * 1024
USER_AGENT = "Mozilla/5.0 (compatible; Vantage/0.1; +https://vantage.invalid/about)"
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


class ResolutionFailed(OSError):
    """A redirect led to a host our DNS step could not resolve."""

    def __init__(self, failure: str) -> None:
        super().__init__(failure)
        self.failure = failure


class PinnedResolver(AbstractResolver):
    def __init__(
        self,
        pinned: dict[str, tuple[str, ...]],
        spec: ResolverSpec,
        timeout: float,
        options: DnsOptions | None = None,
    ):
        self.pinned = {host.lower(): addrs for host, addrs in pinned.items()}
        self.spec = spec
        self.timeout = timeout
        self.options = options

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        addresses = self.pinned.get(host.lower())
        if addresses is None:
            result = await measure_dns(host, self.spec, self.timeout, self.options)
            if result.failure:
                raise ResolutionFailed(result.failure)
            addresses = result.answers
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


@dataclass(frozen=True, slots=True)
class HttpFetch:
    """The recorded result, plus what fingerprints are matched against (never uploaded as such)."""

    result: HttpResult
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)  # every hop's headers


async def read_capped(response: aiohttp.ClientResponse, cap: int) -> tuple[bytes, bool]:
    """Read at most ``cap`` bytes of the body; say whether there was more."""
    chunks: list[bytes] = []
    size = 0
    while size <= cap:
        chunk = await response.content.readany()
        if not chunk:
            return b"".join(chunks), False
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)[:cap], True


def _failure_of(exc: BaseException) -> str:
    cause = exc.__cause__ if isinstance(exc, aiohttp.ClientConnectorError) else None
    if isinstance(exc, ResolutionFailed):
        return exc.failure
    if isinstance(cause, ResolutionFailed):
        return cause.failure
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return dns_failure(exc)
    return network_failure(exc)


async def fetch(
    session: aiohttp.ClientSession, url: str, started: float, max_body: int | None = None
) -> HttpFetch:
    """GET ``url`` following redirects hop by hop; failures become the result's failure string."""
    cap = MAX_BODY_BYTES if max_body is None else max_body
    hops: list[HttpHop] = []
    seen_headers: list[tuple[str, str]] = []
    current = url
    try:
        while True:
            async with session.get(current, allow_redirects=False) as response:
                seen_headers.extend(response.headers.items())
                location = response.headers.get("Location")
                if response.status in REDIRECT_STATUSES and location is not None:
                    if len(hops) == MAX_REDIRECTS:
                        raise aiohttp.TooManyRedirects(response.request_info, ())
                    hops.append(HttpHop(current, response.status, location[:MAX_URL_LEN]))
                    nxt = urljoin(current, location)
                    if urlsplit(nxt).scheme not in ("http", "https") or len(nxt) > MAX_URL_LEN:
                        raise ValueError(f"redirect to an unusable URL: {nxt[:80]!r}")
                    current = nxt
                    continue
                body, truncated = await read_capped(response, cap)
                result = HttpResult(
                    url=current,
                    status=response.status,
                    body_length=len(body),
                    body_sha256=hashlib.sha256(body).hexdigest(),
                    title=extract_title(body),
                    failure=None,
                    runtime=time.monotonic() - started,
                    redirects=tuple(hops),
                    headers=selected_headers(response.headers.items()),
                    header_names=header_names(response.headers.keys()),
                    body_truncated=truncated,
                )
                return HttpFetch(result, body, seen_headers)
    except Exception as exc:  # a failed fetch is a result
        failure = F.unknown_failure(str(exc)) if isinstance(exc, ValueError) else _failure_of(exc)
        result = HttpResult(
            current, None, None, None, None, failure, time.monotonic() - started, tuple(hops)
        )
        return HttpFetch(result, b"", seen_headers)


async def measure_http(
    url: str,
    host: str,
    addresses: tuple[str, ...],
    *,
    spec: ResolverSpec,
    timeout: float,
    ssl_context: ssl.SSLContext,
    options: DnsOptions | None = None,
) -> HttpFetch:
    started = time.monotonic()
    resolver = PinnedResolver({host: addresses}, spec, timeout, options)
    connector = aiohttp.TCPConnector(resolver=resolver, ssl=ssl_context, force_close=True)
    client_timeout = aiohttp.ClientTimeout(total=timeout * 2, sock_connect=timeout)
    async with aiohttp.ClientSession(
        connector=connector, timeout=client_timeout, headers={"User-Agent": USER_AGENT}
    ) as session:
        return await fetch(session, url, started)
