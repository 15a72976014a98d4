"""The connectivity pulse: every few minutes, one DNS query and a TCP connect per anchor.

Cheap enough to run often (IODA probes in 10-minute rounds), so the timeline of a shutdown has
minute resolution even when full rounds run hourly. Anchors come from the config, or else one
domestic and one international target of the current list, so the pulse can tell an international
cut from a full outage. Results are ordinary measurements with ``test = "pulse"``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence

from protocol import Measurement, NetworkContext, Scope, Target, TcpResult, new_uid, utc_now
from protocol.messages import TEST_PULSE

from .probes.dns_probe import measure_dns
from .probes.tcp_probe import measure_tcp
from .web_connectivity import ProbeSettings, local_verdict

PULSE_ENDPOINTS = 2


def choose_anchors(
    anchors: Sequence[Target], targets: Sequence[Target], rng: random.Random
) -> list[Target]:
    if anchors:
        return list(anchors)
    chosen = []
    for scope in (Scope.DOMESTIC, Scope.INTERNATIONAL):
        candidates = [t for t in targets if t.scope == scope]
        if candidates:
            chosen.append(rng.choice(candidates))
    return chosen


async def measure_pulse(
    target: Target, agent_id: str, network: NetworkContext, settings: ProbeSettings
) -> Measurement:
    measured_at = utc_now()
    started = time.monotonic()
    dns = await measure_dns(target.host, settings.resolver, settings.timeout)
    tcp: tuple[TcpResult, ...] = ()
    if dns.failure is None:
        tcp = await measure_tcp(dns.answers, target.port, settings.timeout, PULSE_ENDPOINTS)
    verdict, blocking, failure = local_verdict(dns, tcp, None)
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
        test=TEST_PULSE,
    )
