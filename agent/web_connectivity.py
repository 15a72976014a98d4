"""The per-target web test: DNS → TCP → HTTP, and a local verdict.

Without a control measurement the verdict is provisional (METHODOLOGY.md): the first failing step names
the candidate blocking type; the collector can still compare with other vantage points.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from protocol import (
    Blocking,
    DnsResult,
    HttpResult,
    Measurement,
    NetworkContext,
    Target,
    TcpResult,
    Verdict,
    new_uid,
    utc_now,
)
from protocol import failures as F

from .probes.dns_probe import SYSTEM_RESOLVER, ResolverSpec, measure_dns
from .probes.http_probe import measure_http
from .probes.tcp_probe import measure_tcp


@dataclass(frozen=True, slots=True)
class ProbeSettings:
    resolver: ResolverSpec = SYSTEM_RESOLVER
    timeout: float = 5.0
    max_endpoints: int = 4
    ca_file: str | None = None
    concurrency: int = 8

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        if self.ca_file:
            context.load_verify_locations(cafile=self.ca_file)
        return context


def local_verdict(
    dns: DnsResult, tcp: Sequence[TcpResult], http: HttpResult | None
) -> tuple[Verdict, Blocking | None, str | None]:
    if dns.failure is not None:
        if dns.failure.startswith(F.UNKNOWN_PREFIX):
            return Verdict.FAILURE, None, dns.failure  # our own resolver set-up, not the network
        return Verdict.ANOMALY, Blocking.DNS, dns.failure
    if tcp and not any(item.success for item in tcp):
        return Verdict.ANOMALY, Blocking.TCP_IP, tcp[0].failure
    if http is not None and http.failure is not None:
        return Verdict.ANOMALY, Blocking.HTTP_FAILURE, http.failure
    return Verdict.OK, None, None


async def measure_target(
    target: Target,
    agent_id: str,
    network: NetworkContext,
    settings: ProbeSettings,
    ssl_context: ssl.SSLContext,
    clock: Callable[[], datetime] = utc_now,
) -> Measurement:
    measured_at = clock()
    started = time.monotonic()
    dns = await measure_dns(target.host, settings.resolver, settings.timeout)
    tcp: tuple[TcpResult, ...] = ()
    http: HttpResult | None = None
    if dns.failure is None:
        tcp = await measure_tcp(dns.answers, target.port, settings.timeout, settings.max_endpoints)
        working = tuple(item.ip for item in tcp if item.success)
        if working:
            http = await measure_http(
                target.url,
                target.host,
                working,
                spec=settings.resolver,
                timeout=settings.timeout,
                ssl_context=ssl_context,
            )
    verdict, blocking, failure = local_verdict(dns, tcp, http)
    return Measurement(
        uid=new_uid(),
        agent_id=agent_id,
        measured_at=measured_at,
        runtime=time.monotonic() - started,
        network=network,
        target=target,
        verdict=verdict,
        blocking=blocking,
        failure=failure,
        dns=dns,
        tcp=tcp,
        http=http,
    )


async def measure_targets(
    targets: Sequence[Target],
    agent_id: str,
    network: NetworkContext,
    settings: ProbeSettings,
    on_result: Callable[[Measurement], None] | None = None,
) -> list[Measurement]:
    """Measure every target with bounded concurrency; ``on_result`` sees each as soon as it is done."""
    ssl_context = settings.ssl_context()
    gate = asyncio.Semaphore(settings.concurrency)

    async def one(target: Target) -> Measurement:
        async with gate:
            result = await measure_target(target, agent_id, network, settings, ssl_context)
        if on_result is not None:
            on_result(result)
        return result

    return list(await asyncio.gather(*(one(target) for target in targets)))
