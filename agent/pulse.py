"""The connectivity pulse: a cheap check of a few domestic and international anchors.

Per anchor: one DNS question (A) and one TCP connect (port 443 unless the anchor's URL names another).
Run every few minutes, it is the raw signal for shutdown detection (METHODOLOGY.md, "Connectivity
pulse"): international anchors failing while domestic ones answer is what an international cut
looks like. Scheduling it is the scheduler's job; this module measures one round.

Anchors come from the config, or else one domestic and one international target of the current
list (``choose_anchors``), so the pulse can tell an international cut from a full outage.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from urllib.parse import urlsplit

from protocol import Measurement, NetworkContext, Scope, Target, TcpResult, utc_now
from protocol.messages import TEST_PULSE

from .probes.dns_probe import measure_dns
from .probes.tcp_probe import connect_once
from .web_connectivity import Run, record


def choose_anchors(
    anchors: Sequence[Target], targets: Sequence[Target], rng: random.Random
) -> list[Target]:
    """The configured anchors, or one random domestic and one random international target."""
    if anchors:
        return list(anchors)
    chosen = []
    for scope in (Scope.DOMESTIC, Scope.INTERNATIONAL):
        candidates = [t for t in targets if t.scope == scope]
        if candidates:
            chosen.append(rng.choice(candidates))
    return chosen


def pulse_port(target: Target) -> int:
    return urlsplit(target.url).port or 443


async def measure_pulse(
    target: Target,
    agent_id: str,
    network: NetworkContext,
    run: Run,
    clock: Callable[[], datetime] = utc_now,
) -> Measurement:
    settings = run.settings
    measured_at = clock()
    started = time.monotonic()
    dns = await measure_dns(
        target.host, settings.resolver, settings.timeout, run.dns_options, rdtypes=("A",)
    )
    tcp: tuple[TcpResult, ...] = ()
    if dns.failure is None:
        tcp = (await connect_once(dns.answers[0], pulse_port(target), settings.timeout),)
    return record(
        target, agent_id, network, measured_at, started, dns=dns, tcp=tcp, test=TEST_PULSE
    )
