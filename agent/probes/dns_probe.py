"""DNS step: ask A and AAAA of the system resolver or an explicit one (UDP, TCP or DoH).

Each question is sent with dnspython's async query functions (DoH over aiohttp, since dnspython's own
DoH needs httpx), so the response code, TTLs and timing of every answer are recorded, not just the
addresses. Answers that are bogons for a public name (private, loopback, reserved, ...) turn the
result into ``dns_bogon_error`` unless the prefix is listed as routable (labs and research networks).
"""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.resolver

from protocol import DnsResult
from protocol import failures as F
from protocol.bogons import Network, is_bogon
from protocol.messages import DnsQuery

from ..failure_map import dns_failure

#: The longest one UDP attempt waits before trying again (or the next system nameserver).
ATTEMPT_TIMEOUT = 2.0
DOH_TYPE = "application/dns-message"


@dataclass(frozen=True, slots=True)
class ResolverSpec:
    """``system`` (the OS's resolver configuration), ``udp``/``tcp`` to an address, or ``doh`` (a URL).

    Written as ``system``, ``198.18.0.53[:53]`` (UDP), ``udp://198.18.0.53:53``,
    ``tcp://198.18.0.53:53`` or ``https://dns.example/dns-query``.
    """

    address: str | None = None
    port: int = 53
    transport: str = "udp"  # "udp" | "tcp" | "doh"; ignored for the system resolver
    url: str | None = None  # for DoH

    @classmethod
    def parse(cls, text: str) -> ResolverSpec:
        if text in ("", "system"):
            return cls()
        if text.startswith("https://"):
            if not urlsplit(text).hostname:
                raise ValueError(f"DoH resolver URL has no host: {text!r}")
            return cls(transport="doh", url=text)
        transport = "udp"
        for scheme in ("udp", "tcp"):
            if text.startswith(scheme + "://"):
                transport, text = scheme, text[len(scheme) + 3 :]
        try:  # a bare address, IPv6 included: the default port
            return cls(str(ipaddress.ip_address(text.strip("[]"))), 53, transport)
        except ValueError:
            pass
        host, sep, port = text.rpartition(":")
        if not sep or "]" in port:  # no port, or a bare IPv6 address
            host, port = text, "53"
        host = host.strip("[]")
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(
                "resolver must be 'system', an IP address[:port] (optionally udp:// or tcp://),"
                f" or an https:// DoH URL; got {text!r}"
            ) from None
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"resolver port must be 1-65535, got {port!r}")
        return cls(host, int(port), transport)

    @property
    def label(self) -> str:
        if self.transport == "doh" and self.url:
            return self.url
        if self.address is None:
            return "system"
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port}" if self.transport == "udp" else f"tcp://{host}:{self.port}"

    def servers(self) -> list[tuple[str, int]]:
        """Addresses to ask in order; the system's come from its resolver configuration."""
        if self.address is not None:
            return [(self.address, self.port)]
        system = dns.resolver.Resolver(configure=True)  # raises NoResolverConfiguration
        return [(str(ns), int(system.port)) for ns in system.nameservers]


SYSTEM_RESOLVER = ResolverSpec()


@dataclass(frozen=True, slots=True)
class DnsOptions:
    """Run-wide DNS settings: what counts as routable, TLS trust and a session for DoH."""

    routable: Sequence[Network] = ()
    ssl_context: ssl.SSLContext | None = None
    session: aiohttp.ClientSession | None = None


async def _doh(
    query: dns.message.Message, spec: ResolverSpec, timeout: float, options: DnsOptions
) -> dns.message.Message:
    assert spec.url is not None
    owned = options.session is None
    session = options.session or aiohttp.ClientSession()
    try:
        async with session.post(
            spec.url,
            data=query.to_wire(),
            headers={"Content-Type": DOH_TYPE, "Accept": DOH_TYPE},
            timeout=aiohttp.ClientTimeout(total=timeout),
            ssl=options.ssl_context if options.ssl_context is not None else True,
        ) as response:
            if response.status != 200 or response.content_type != DOH_TYPE:
                raise dns.exception.DNSException(  # type: ignore[no-untyped-call]
                    f"DoH server answered HTTP {response.status}"
                )
            return dns.message.from_wire(await response.read())
    finally:
        if owned:
            await session.close()


async def _exchange(
    query: dns.message.Message, spec: ResolverSpec, deadline: float, options: DnsOptions
) -> dns.message.Message:
    """Send ``query`` until a server answers or the deadline passes (then dnspython's Timeout)."""
    if spec.transport == "doh":
        return await _doh(query, spec, max(deadline - time.monotonic(), 0.01), options)
    servers = spec.servers()
    while True:
        for address, port in servers:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no DNS server answered in time")
            wait = min(left, ATTEMPT_TIMEOUT)
            if spec.transport == "tcp":
                return await dns.asyncquery.tcp(query, address, timeout=wait, port=port)
            try:
                response = await dns.asyncquery.udp(
                    query, address, timeout=wait, port=port, ignore_unexpected=True
                )
            except dns.exception.Timeout:
                continue  # next server, or another round while time is left
            if response.flags & dns.flags.TC:  # truncated: the full answer needs TCP
                return await dns.asyncquery.tcp(query, address, timeout=wait, port=port)
            return response


async def ask(
    host: str, rdtype: str, spec: ResolverSpec, timeout: float, options: DnsOptions
) -> DnsQuery:
    """One question; every outcome (answer, rcode, silence, refusal) becomes a ``DnsQuery``."""
    started = time.monotonic()
    query = dns.message.make_query(host, rdtype)
    try:
        response = await _exchange(query, spec, started + timeout, options)
    except Exception as exc:  # every failure is data
        return DnsQuery(rdtype, None, (), dns_failure(exc), time.monotonic() - started)
    runtime = time.monotonic() - started
    rcode = dns.rcode.to_text(response.rcode())
    wanted = dns.rdatatype.from_text(rdtype)
    answers = tuple(
        (rr.address, rrset.ttl)
        for rrset in response.answer
        if rrset.rdtype == wanted
        for rr in rrset
    )[:32]
    failure = F.rcode_failure(rcode)
    if failure is None and not answers:
        failure = F.DNS_NO_ANSWER
    return DnsQuery(rdtype, rcode, answers, failure, runtime)


def summarize(
    label: str, queries: Sequence[DnsQuery], runtime: float, routable: Sequence[Network]
) -> DnsResult:
    """Combine the per-question results: addresses, and the one failure that describes them."""
    answers = tuple(dict.fromkeys(ip for q in queries for ip, _ in q.answers))[:32]
    failure: str | None = None
    if answers:
        if any(is_bogon(ip, routable) for ip in answers):
            failure = F.DNS_BOGON
    else:
        # No address at all: "no answer" only if every question said so; else the first real failure.
        failures = [q.failure for q in queries if q.failure is not None]
        failure = next((f for f in failures if f != F.DNS_NO_ANSWER), F.DNS_NO_ANSWER)
    return DnsResult(label, answers, failure, runtime, tuple(queries))


async def measure_dns(
    host: str,
    spec: ResolverSpec,
    timeout: float,
    options: DnsOptions | None = None,
    rdtypes: Sequence[str] = ("A", "AAAA"),
) -> DnsResult:
    """Resolve ``host``; an address literal is its own answer (no query is made)."""
    options = options or DnsOptions()
    started = time.monotonic()
    try:
        literal = ipaddress.ip_address(host.strip("[]"))
        return DnsResult("none", (str(literal),), None, 0.0)
    except ValueError:
        pass
    try:
        if spec.transport != "doh":
            spec.servers()  # a system without resolver configuration fails here, once
    except dns.resolver.NoResolverConfiguration as exc:
        return DnsResult(spec.label, (), dns_failure(exc), time.monotonic() - started)
    queries = await asyncio.gather(*(ask(host, t, spec, timeout, options) for t in rdtypes))
    return summarize(spec.label, queries, time.monotonic() - started, options.routable)
