"""Who the simulated volunteers are and what their measurements look like.

Two countries with documentation ASNs (RFC 5398: 64496-64511): "XA" has six provinces, each served by
two mobile carriers and one fixed-line carrier; "XB" has two provinces with one mobile and one fixed
(wifi) carrier. Every agent measures its country's domestic sites and the same international sites
each round. Addresses in the answers come from the benchmarking range 198.18.0.0/15 (domestic
198.18/16, international 198.19/16), so nothing here names a real host.

Quiet data is not flat: background failures follow a daily rhythm (more at night, as phones sleep and
home routers reboot) scaled by a per-day factor, and they come in several shapes (timeouts, resets,
resolver hiccups), as a real fleet's noise does.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from protocol import (
    Blocking,
    DnsResult,
    HttpResult,
    Measurement,
    NetworkContext,
    Scope,
    Target,
    TcpResult,
    Verdict,
    new_uid,
)
from protocol import failures as F


@dataclass(frozen=True, slots=True)
class Carrier:
    asn: int
    name: str
    network_type: str

    @property
    def mobile(self) -> bool:
        return self.network_type == "mobile"


@dataclass(frozen=True, slots=True)
class Country:
    code: str
    regions: tuple[str, ...]
    carriers: tuple[Carrier, ...]


COUNTRIES = (
    Country(
        "XA",
        tuple(f"XA-{n:02d}" for n in range(1, 7)),
        (
            Carrier(64496, "MobiOne", "mobile"),
            Carrier(64497, "CellTwo", "mobile"),
            Carrier(64498, "FiberHome", "wired"),
        ),
    ),
    Country(
        "XB",
        ("XB-01", "XB-02"),
        (Carrier(64500, "NorthCell", "mobile"), Carrier(64501, "NorthNet", "wifi")),
    ),
)

INTERNATIONAL = (
    Target("https://news.world.test/", Scope.INTERNATIONAL, "NEWS"),
    Target("https://social.world.test/", Scope.INTERNATIONAL, "GRP"),
    Target("https://video.world.test/", Scope.INTERNATIONAL, "MMED"),
    Target("https://search.world.test/", Scope.INTERNATIONAL, "SRCH"),
)


def domestic_targets(country: str) -> tuple[Target, ...]:
    cc = country.lower()
    return (
        Target(f"https://news.{cc}.test/", Scope.DOMESTIC, "NEWS"),
        Target(f"https://bank.{cc}.test/", Scope.DOMESTIC, "ECON"),
        Target(f"https://gov.{cc}.test/", Scope.DOMESTIC, "GOVT"),
        Target(f"https://shop.{cc}.test/", Scope.DOMESTIC, "COMM"),
    )


def test_list(country: str) -> tuple[Target, ...]:
    return domestic_targets(country) + INTERNATIONAL


def networks() -> Iterator[NetworkContext]:
    for country in COUNTRIES:
        for region in country.regions:
            for c in country.carriers:
                yield NetworkContext(country.code, region, c.asn, c.name, c.network_type)  # type: ignore[arg-type]


def fleet_networks(agents_per_network: int) -> list[NetworkContext]:
    """One entry per agent: every network gets ``agents_per_network`` volunteers."""
    return [net for net in networks() for _ in range(agents_per_network)]


#: What a measurement of one target shows: "ok", "noise" (a background failure), "cut" (the path
#: abroad is blocked: TCP times out), "down" (the agent has no network at all) or "dns" (the resolver
#: lies about one name).
Effect = str


@dataclass(frozen=True, slots=True)
class DailyNoise:
    """Share of background failures: ~4 % at midnight, ~1 % at noon (UTC stands in for local time),
    times a factor between 0.7 and 1.3 that changes from day to day. The factor depends on the seed
    and the day's index from ``day0``, not on the calendar, so a seeded run is the same every day."""

    seed: int
    day0: datetime

    def rate(self, at: datetime) -> float:
        day = (at - self.day0).days
        digest = hashlib.sha256(f"{self.seed}/{day}".encode()).digest()
        factor = 0.7 + 0.6 * digest[0] / 255
        hour = at.hour + at.minute / 60
        return factor * (0.025 + 0.015 * math.cos(2 * math.pi * hour / 24))


def _address(target: Target, index: int) -> str:
    second = 18 if target.scope.value == "domestic" else 19
    return f"198.{second}.{index % 250}.{10 + len(target.host) % 200}"


def measure(
    rng: random.Random,
    agent_id: str,
    at: datetime,
    network: NetworkContext,
    target: Target,
    effect: Effect,
) -> Measurement:
    """One web-connectivity measurement as an agent would sign it."""
    ip = _address(target, rng.randrange(250))
    rtt = rng.uniform(0.01, 0.05) if target.scope.value == "domestic" else rng.uniform(0.08, 0.3)
    dns_time = rng.uniform(0.005, 0.04)
    dns_ok = DnsResult("system", (ip,), None, dns_time)
    http_ok = HttpResult(
        target.url, 200, rng.randrange(20_000, 90_000), None, "Front page", None, 3 * rtt
    )
    blocking: Blocking | None = None
    verdict = Verdict.OK
    failure: str | None = None
    dns: DnsResult = dns_ok
    tcp: tuple[TcpResult, ...] = (TcpResult(ip, 443, None, rtt),)
    http: HttpResult | None = http_ok
    if effect == "noise":
        effect = rng.choice(("timeout", "timeout", "reset", "servfail"))
    if effect in ("cut", "timeout"):
        failure = F.GENERIC_TIMEOUT
        tcp, http = (TcpResult(ip, 443, failure, 10.0),), None
        verdict, blocking = Verdict.ANOMALY, Blocking.TCP_IP
        if effect == "timeout" and rng.random() < 0.5:
            verdict, blocking = Verdict.FAILURE, None
    elif effect == "reset":
        failure = F.CONNECTION_RESET
        http = HttpResult(target.url, None, None, None, None, failure, rtt)
        verdict, blocking = Verdict.FAILURE, None
    elif effect == "servfail":
        failure = F.DNS_SERVFAIL
        dns, tcp, http = DnsResult("system", (), failure, dns_time), (), None
        verdict = Verdict.FAILURE
    elif effect == "dns":
        failure = F.DNS_NXDOMAIN
        dns, tcp, http = DnsResult("system", (), failure, dns_time), (), None
        verdict, blocking = Verdict.ANOMALY, Blocking.DNS
    elif effect == "down":
        failure = F.NETWORK_UNREACHABLE
        dns, tcp, http = DnsResult("system", (), failure, 0.001), (), None
        verdict = Verdict.FAILURE
    elif effect != "ok":
        raise ValueError(f"unknown effect {effect!r}")
    runtime = dns.runtime + sum(t.runtime for t in tcp) + (http.runtime if http else 0.0)
    return Measurement(
        new_uid(),
        agent_id,
        at,
        round(runtime, 3),
        network,
        target,
        verdict,
        blocking=blocking,
        failure=failure,
        dns=dns,
        tcp=tcp,
        http=http,
    )
