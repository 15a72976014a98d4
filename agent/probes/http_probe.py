"""HTTP step: GET the URL through the addresses the DNS step measured, not a second lookup.

A ``PinnedResolver`` hands aiohttp the measured addresses for the target's host, so what we fetch is
what we measured. Hosts reached by redirects are resolved with the same resolver settings.
"""

from __future__ import annotations

import hashlib
import html
import re
import socket
import ssl
import time

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from protocol import HttpResult

from ..failure_map import dns_failure, network_failure
from .dns_probe import ResolverSpec, measure_dns

MAX_BODY_BYTES = 1024 * 1024
USER_AGENT = "Mozilla/5.0 (compatible; Vantage/0.1; +https://vantage.invalid/about)"
_TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)


class ResolutionFailed(OSError):
    """A redirect led to a host our DNS step could not resolve."""

    def __init__(self, failure: str) -> None:
        super().__init__(failure)
        self.failure = failure


class PinnedResolver(AbstractResolver):
    def __init__(self, pinned: dict[str, tuple[str, ...]], spec: ResolverSpec, timeout: float):
        self.pinned = {host.lower(): addrs for host, addrs in pinned.items()}
        self.spec = spec
        self.timeout = timeout

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        addresses = self.pinned.get(host.lower())
        if addresses is None:
            result = await measure_dns(host, self.spec, self.timeout)
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


def extract_title(body: bytes) -> str | None:
    match = _TITLE.search(body[:65536])
    if not match:
        return None
    text = html.unescape(match.group(1).decode("utf-8", "replace"))
    return " ".join(text.split())[:256] or None


async def measure_http(
    url: str,
    host: str,
    addresses: tuple[str, ...],
    *,
    spec: ResolverSpec,
    timeout: float,
    ssl_context: ssl.SSLContext,
) -> HttpResult:
    started = time.monotonic()
    resolver = PinnedResolver({host: addresses}, spec, timeout)
    connector = aiohttp.TCPConnector(resolver=resolver, ssl=ssl_context, force_close=True)
    client_timeout = aiohttp.ClientTimeout(total=timeout * 2, sock_connect=timeout)
    try:
        async with (
            aiohttp.ClientSession(
                connector=connector, timeout=client_timeout, headers={"User-Agent": USER_AGENT}
            ) as session,
            session.get(url, max_redirects=10, allow_redirects=True) as response,
        ):
            body = await response.content.read(MAX_BODY_BYTES)
            return HttpResult(
                url=str(response.url),
                status=response.status,
                body_length=len(body),
                body_sha256=hashlib.sha256(body).hexdigest(),
                title=extract_title(body),
                failure=None,
                runtime=time.monotonic() - started,
            )
    except Exception as exc:  # a failed fetch is a result
        cause = exc.__cause__ if isinstance(exc, aiohttp.ClientConnectorError) else None
        if isinstance(exc, ResolutionFailed):
            failure = exc.failure
        elif isinstance(cause, ResolutionFailed):
            failure = cause.failure
        elif isinstance(exc, aiohttp.ClientConnectorDNSError):
            failure = dns_failure(exc)
        else:
            failure = network_failure(exc)
        return HttpResult(url, None, None, None, None, failure, time.monotonic() - started)
