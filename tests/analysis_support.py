"""Synthetic measurement streams for the detector and research API tests.

A country "XA" with three provinces, each with two mobile carriers and one fixed-line carrier; every
network has its agents (real Ed25519 keys) measure two domestic and two international sites a few times
an hour. ``Stream.hour(h, ...)`` signs and stores what the agents of some networks measured in hour h,
with an outcome per (network, target) chosen by the test, so events can be injected exactly where the
test says and nowhere else. Success has a daily rhythm (more failures at night) so that quiet data is not
flat.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from protocol import (
    Batch,
    Blocking,
    DnsResult,
    HttpResult,
    Measurement,
    NetworkContext,
    SigningKey,
    Target,
    Verdict,
    new_uid,
    sign_batch,
    utc_now,
)
from protocol import failures as F

T0 = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
REGIONS = ("XA-01", "XA-02", "XA-03")
CARRIERS = (
    (64500, "MobiNet", "mobile"),
    (64502, "CellCo", "mobile"),
    (64501, "FiberLine", "wired"),
)
NETWORKS = {
    (region, asn): NetworkContext("XA", region, asn, name, kind)
    for region in REGIONS
    for asn, name, kind in CARRIERS
}
TARGETS = (
    Target("https://news.domestic.test/", "domestic", "NEWS"),
    Target("https://bank.domestic.test/", "domestic", "FINANCE"),
    Target("https://news.world.test/", "international", "NEWS"),
    Target("https://social.world.test/", "international", "GRP"),
)
REPEATS = 3  # each agent measures each target this many times an hour

#: What a (network, target) shows in an hour: "ok", "cut" (TCP/IP blocking of the path), "down" (no
#: network at all: the measurement itself fails) or "dns" (the resolver lies: DNS tampering).
Outcome = Callable[[tuple[str, int], Target, int], str]


def at_hour(h: float) -> datetime:
    return T0 + timedelta(hours=h)


def quiet(network: tuple[str, int], target: Target, index: int) -> str:
    """Nothing happens (``Stream.hour`` still adds the daily rhythm of failures)."""
    return "ok"


def failures_due(h: int, n: int) -> int:
    """Daily rhythm: about 10 % of measurements fail at midnight, 2 % at noon."""
    rate = 0.06 + 0.04 * math.cos(2 * math.pi * (h % 24) / 24)
    return round(rate * n)


#: outcome -> (verdict, blocking, failure, DNS answers, DNS failure, HTTP result?, runtime)
_SHAPES: dict[
    str, tuple[Verdict, Blocking | None, str | None, tuple[str, ...], str | None, bool, float]
] = {
    "ok": (Verdict.OK, None, None, ("198.18.0.10",), None, True, 0.2),
    "dns": (Verdict.ANOMALY, Blocking.DNS, F.DNS_NXDOMAIN, (), F.DNS_NXDOMAIN, False, 0.2),
    "cut": (
        Verdict.ANOMALY,
        Blocking.TCP_IP,
        F.GENERIC_TIMEOUT,
        ("198.18.0.20",),
        None,
        False,
        10.0,
    ),
    "down": (Verdict.FAILURE, None, F.GENERIC_TIMEOUT, (), F.GENERIC_TIMEOUT, False, 10.0),
}
_SHAPES["noise"] = _SHAPES["down"]


def _measurement(
    key: SigningKey, at: datetime, network: NetworkContext, target: Target, outcome: str
) -> Measurement:
    verdict, blocking, failure, answers, dns_failure, http_ok, runtime = _SHAPES[outcome]
    return Measurement(
        new_uid(),
        key.agent_id,
        at,
        runtime,
        network,
        target,
        verdict,
        blocking=blocking,
        failure=failure,
        dns=DnsResult("system", answers, dns_failure, 0.01),
        http=HttpResult(target.url, 200, 1024, None, "Site", None, 0.1) if http_ok else None,
    )


@dataclass
class Stream:
    storage: Any  # collector.storage.Storage
    agents_per_network: int = 3
    keys: dict[tuple[str, int], list[SigningKey]] = field(default_factory=dict)

    async def register(self) -> None:
        for net in NETWORKS:
            self.keys[net] = [SigningKey.generate() for _ in range(self.agents_per_network)]
            for key in self.keys[net]:
                await self.storage.register_agent(key.agent_id, key.public_key, utc_now())

    async def add_agents(self, net: tuple[str, int], count: int) -> list[SigningKey]:
        extra = [SigningKey.generate() for _ in range(count)]
        for key in extra:
            await self.storage.register_agent(key.agent_id, key.public_key, utc_now())
        return extra

    async def hour(
        self,
        h: int,
        outcome: Outcome = quiet,
        networks: Iterable[tuple[str, int]] | None = None,
        keys: Callable[[tuple[str, int]], list[SigningKey]] | None = None,
    ) -> int:
        """Store hour ``h`` of the chosen networks (default all); return measurements stored."""
        stored = 0
        for net in networks if networks is not None else NETWORKS:
            agents = keys(net) if keys else self.keys[net]
            slots = [
                (key, target, rep) for key in agents for target in TARGETS for rep in range(REPEATS)
            ]
            noisy = failures_due(h, len(slots))
            by_key: dict[str, list[Measurement]] = {}
            for index, (key, target, rep) in enumerate(slots):
                result = outcome(net, target, index)
                if result == "ok" and index % max(1, len(slots) // max(1, noisy)) == 0 and noisy:
                    result = "noise"
                    noisy -= 1
                at = at_hour(h) + timedelta(minutes=5 + 20 * rep, seconds=index)
                by_key.setdefault(key.agent_id, []).append(
                    _measurement(key, at, NETWORKS[net], target, result)
                )
            for key in agents:
                items = tuple(by_key[key.agent_id])
                batch = Batch(new_uid(), key.agent_id, at_hour(h + 1), items)
                await self.storage.store_batch(sign_batch(key, batch), batch, at_hour(h + 1))
                stored += len(items)
        return stored
