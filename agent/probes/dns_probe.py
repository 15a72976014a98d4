"""DNS step: resolve A and AAAA with dnspython's async resolver, record answers or a failure string."""

from __future__ import annotations

import asyncio
import ipaddress
import time
from dataclasses import dataclass

import dns.asyncresolver
import dns.rdatatype
import dns.resolver

from protocol import DnsResult
from protocol import failures as F

from ..failure_map import dns_failure


@dataclass(frozen=True, slots=True)
class ResolverSpec:
    """``system`` (the OS's resolver configuration) or an explicit ``address:port`` over UDP."""

    address: str | None = None
    port: int = 53

    @classmethod
    def parse(cls, text: str) -> ResolverSpec:
        if text in ("", "system"):
            return cls()
        host, sep, port = text.rpartition(":")
        if not sep or "]" in port:  # no port, or a bare IPv6 address
            host, port = text, "53"
        host = host.strip("[]")
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(
                f"resolver must be 'system' or an IP address[:port], got {text!r}"
            ) from None
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"resolver port must be 1-65535, got {port!r}")
        return cls(host, int(port))

    @property
    def label(self) -> str:
        if self.address is None:
            return "system"
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port}"

    def make_resolver(self, timeout: float) -> dns.asyncresolver.Resolver:
        if self.address is None:
            resolver = dns.asyncresolver.Resolver(configure=True)
        else:
            resolver = dns.asyncresolver.Resolver(configure=False)
            resolver.nameservers = [self.address]
            resolver.port = self.port
        resolver.lifetime = timeout
        resolver.timeout = min(timeout, 2.0)
        resolver.cache = None  # every measurement asks the network
        return resolver


SYSTEM_RESOLVER = ResolverSpec()


async def _query(resolver: dns.asyncresolver.Resolver, host: str, rdtype: str) -> list[str]:
    answer = await resolver.resolve(host, rdtype, search=False)
    return [rr.address for rr in answer if rr.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA)]


async def measure_dns(host: str, spec: ResolverSpec, timeout: float) -> DnsResult:
    """Resolve ``host``; an address literal is its own answer (no query is made)."""
    started = time.monotonic()
    try:
        ipaddress.ip_address(host.strip("[]"))
        return DnsResult("none", (host.strip("[]"),), None, 0.0)
    except ValueError:
        pass
    try:
        resolver = spec.make_resolver(timeout)
    except dns.resolver.NoResolverConfiguration as exc:
        return DnsResult(spec.label, (), dns_failure(exc), time.monotonic() - started)
    results = await asyncio.gather(
        _query(resolver, host, "A"), _query(resolver, host, "AAAA"), return_exceptions=True
    )
    answers: list[str] = []
    failures: list[BaseException] = []
    for result in results:
        if isinstance(result, BaseException):
            if not isinstance(result, Exception):
                raise result  # cancellation and the like are not measurement results
            failures.append(result)
        else:
            answers.extend(result)
    runtime = time.monotonic() - started
    if answers:
        return DnsResult(spec.label, tuple(dict.fromkeys(answers)), None, runtime)
    # A name with no A and no AAAA is "no answer"; otherwise report the A query's failure.
    mapped = [dns_failure(exc) for exc in failures]
    if mapped and all(item == F.DNS_NO_ANSWER for item in mapped):
        failure = F.DNS_NO_ANSWER
    else:
        failure = next((item for item in mapped if item != F.DNS_NO_ANSWER), F.DNS_NO_ANSWER)
    return DnsResult(spec.label, (), failure, runtime)
