"""The per-target web test: DNS → TCP → TLS → HTTP, a control from the collector, and a verdict.

Modelled on OONI's Web Connectivity (METHODOLOGY.md). The control helper is asked concurrently with
the probe's own TCP/TLS/HTTP steps; the verdict is ``protocol.classify.classify`` over everything
recorded, so the collector reaches the same verdict from the signed measurement.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp

from protocol import (
    DnsResult,
    HttpResult,
    Measurement,
    NetworkContext,
    Target,
    TcpResult,
    new_uid,
    utc_now,
)
from protocol.bogons import Network, parse_prefixes
from protocol.classify import classify
from protocol.fingerprints import FingerprintSet, Hit, builtin_fingerprints, parse_fingerprints_csv
from protocol.messages import MAX_FINGERPRINT_HITS, ControlResult, TlsResult

from .control_client import ControlClient
from .errors import ConfigError
from .probes.dns_probe import SYSTEM_RESOLVER, DnsOptions, ResolverSpec, measure_dns
from .probes.http_probe import measure_http
from .probes.tcp_probe import measure_tcp
from .probes.tls_probe import measure_tls


@dataclass(frozen=True, slots=True)
class ProbeSettings:
    resolver: ResolverSpec = SYSTEM_RESOLVER
    timeout: float = 5.0
    max_endpoints: int = 4
    ca_file: str | None = None
    concurrency: int = 8
    extra_resolvers: tuple[ResolverSpec, ...] = ()
    #: Prefixes whose answers are not bogons (labs, research networks); empty for real use.
    routable_prefixes: tuple[str, ...] = ()
    control_url: str | None = None  # None: measure without a control
    fingerprints_file: str | None = None  # OONI-format CSV added to the built-in set

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        if self.ca_file:
            context.load_verify_locations(cafile=self.ca_file)
        return context

    def routable(self) -> tuple[Network, ...]:
        return parse_prefixes(self.routable_prefixes)

    def fingerprints(self) -> FingerprintSet:
        found = builtin_fingerprints()
        if self.fingerprints_file:
            try:
                text = Path(self.fingerprints_file).read_text(encoding="utf-8")
            except OSError as exc:
                raise ConfigError(
                    f"cannot read fingerprints {self.fingerprints_file}: {exc}"
                ) from exc
            extra, problems = parse_fingerprints_csv(text)
            if problems:
                shown = "; ".join(str(p) for p in problems[:5])
                raise ConfigError(f"{self.fingerprints_file}: {len(problems)} bad row(s): {shown}")
            found = found + extra
        return found


@dataclass(slots=True)
class Run:
    """What every target of one run shares: TLS trust, fingerprints, sessions, the control client."""

    settings: ProbeSettings
    ssl_context: ssl.SSLContext
    fingerprints: FingerprintSet
    dns_options: DnsOptions
    control: ControlClient | None = None


@contextlib.asynccontextmanager
async def open_run(settings: ProbeSettings) -> AsyncIterator[Run]:
    ssl_context = settings.ssl_context()
    async with aiohttp.ClientSession() as session:
        control = (
            ControlClient(settings.control_url, session, settings.timeout * 4)
            if settings.control_url
            else None
        )
        yield Run(
            settings=settings,
            ssl_context=ssl_context,
            fingerprints=settings.fingerprints(),
            dns_options=DnsOptions(settings.routable(), ssl_context, session),
            control=control,
        )


async def _steps(
    target: Target, dns: DnsResult, run: Run
) -> tuple[tuple[TcpResult, ...], TlsResult | None, HttpResult | None, list[Hit]]:
    settings = run.settings
    tcp = await measure_tcp(dns.answers, target.port, settings.timeout, settings.max_endpoints)
    working = tuple(item.ip for item in tcp if item.success)
    if not working:
        return tcp, None, None, []
    tls = None
    if target.url.startswith("https:"):
        tls = await measure_tls(
            working[0], target.port, target.host, run.ssl_context, settings.timeout
        )
        if tls.failure is not None:
            return tcp, tls, None, []
    fetched = await measure_http(
        target.url,
        target.host,
        working,
        spec=settings.resolver,
        timeout=settings.timeout,
        ssl_context=run.ssl_context,
        options=run.dns_options,
    )
    hits = run.fingerprints.match_http(fetched.body, fetched.headers)
    return tcp, tls, fetched.result, hits


async def measure_target(
    target: Target,
    agent_id: str,
    network: NetworkContext,
    run: Run,
    clock: Callable[[], datetime] = utc_now,
) -> Measurement:
    settings = run.settings
    measured_at = clock()
    started = time.monotonic()
    dns, *extra = await asyncio.gather(
        measure_dns(target.host, settings.resolver, settings.timeout, run.dns_options),
        *(
            measure_dns(target.host, spec, settings.timeout, run.dns_options)
            for spec in settings.extra_resolvers
        ),
    )
    control_task: asyncio.Task[ControlResult | None] | None = None
    if run.control is not None:
        control_task = asyncio.create_task(run.control.measure(target.url, dns.answers))
    hits = run.fingerprints.match_dns(dns.answers)
    tcp: tuple[TcpResult, ...] = ()
    tls: TlsResult | None = None
    http: HttpResult | None = None
    if dns.failure is None:  # a bogon answer stops here: we never connect to what a censor made up
        tcp, tls, http, http_hits = await _steps(target, dns, run)
        hits += http_hits
    control = await control_task if control_task is not None else None
    hits = hits[:MAX_FINGERPRINT_HITS]
    return record(
        target,
        agent_id,
        network,
        measured_at,
        started,
        dns=dns,
        tcp=tcp,
        http=http,
        tls=tls,
        control=control,
        dns_extra=tuple(extra),
        fingerprints=tuple(hits),
    )


def record(
    target: Target,
    agent_id: str,
    network: NetworkContext,
    measured_at: datetime,
    started: float,
    **steps: Any,
) -> Measurement:
    """The signed record of one test: its steps, and the verdict ``classify`` draws from them."""
    verdict = classify(
        **{
            key: steps[key]
            for key in ("dns", "tcp", "tls", "http", "control", "fingerprints")
            if key in steps
        }
    )
    return Measurement(
        uid=new_uid(),
        agent_id=agent_id,
        measured_at=measured_at,
        runtime=time.monotonic() - started,
        network=network,
        target=target,
        verdict=verdict.verdict,
        blocking=verdict.blocking,
        failure=verdict.failure,
        **steps,
    )


MeasureFn = Callable[[Target, str, NetworkContext, Run], Awaitable[Measurement]]


async def measure_targets(
    targets: Sequence[Target],
    agent_id: str,
    network: NetworkContext,
    settings: ProbeSettings,
    on_result: Callable[[Measurement], None] | None = None,
    measure: MeasureFn = measure_target,
) -> list[Measurement]:
    """Measure every target with bounded concurrency; ``on_result`` sees each as soon as it is done."""
    gate = asyncio.Semaphore(settings.concurrency)
    async with open_run(settings) as run:

        async def one(target: Target) -> Measurement:
            async with gate:
                result = await measure(target, agent_id, network, run)
            if on_result is not None:
                on_result(result)
            return result

        return list(await asyncio.gather(*(one(target) for target in targets)))
