"""Scripted events on the simulated clock, and what the detector should name for each.

Network events change what agents measure (and, for a full outage, whether they can upload at all);
collector faults (``collector_kill``, ``collector_outage``) change whether the collector is there. Each
network event carries the pattern ``GET /api/v1/disruptions`` should report for every network it hits,
so ``evaluate`` can score the detector: right pattern, right provinces, right carriers, how fast.

The standard calendar (days from the first simulated midnight):

- day 0: warm-up (the detector has no history yet and leans on peer networks);
- days 1-7: the quiet week, with two collector faults that must not look like network events:
  a kill -9 in the middle of ingest (day 2, 12:00) and a 30-minute collector outage (day 4, 13:00);
- day 8: the seed event, international access cut on the mobile carriers of four provinces of XA,
  domestic sites untouched, fixed lines untouched, in two drops in one morning;
- day 9: a full outage of province XA-05 (every carrier; agents go silent and backfill when it ends)
  and DNS blocking of one international domain on one carrier (AS64497) in every province.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from protocol import NetworkContext, Target

from .world import Effect

INTERNATIONAL_CUT = "international_cut"
FULL_OUTAGE = "full_outage"
TARGETED_BLOCKING = "targeted_blocking"
COLLECTOR_KILL = "collector_kill"
COLLECTOR_OUTAGE = "collector_outage"
NETWORK_EVENTS = (INTERNATIONAL_CUT, FULL_OUTAGE, TARGETED_BLOCKING)

SEED_REGIONS = ("XA-01", "XA-02", "XA-03", "XA-04")
SEED_CARRIERS = (64496, 64497)
OUTAGE_REGION = "XA-05"
BLOCKED_DOMAIN = "social.world.test"
BLOCKING_CARRIER = 64497


@dataclass(frozen=True, slots=True)
class Event:
    group: str  # the report row: both drops of the seed event share one
    kind: str
    start: datetime
    end: datetime
    countries: frozenset[str] = frozenset()
    regions: frozenset[str] = frozenset()  # empty: every region of the countries
    asns: frozenset[int] = frozenset()  # empty: every carrier
    network_types: frozenset[str] = frozenset()  # empty: every type
    domain: str | None = None
    label: str = ""  # e.g. "drop 1"
    notes: dict[str, str] = field(default_factory=dict)

    @property
    def expected(self) -> str | None:
        """The pattern the detector should report, or None for a collector fault."""
        return self.kind if self.kind in NETWORK_EVENTS else None

    def covers(self, net: NetworkContext) -> bool:
        return (
            self.kind in NETWORK_EVENTS
            and (not self.countries or net.country in self.countries)
            and (not self.regions or net.region in self.regions)
            and (not self.asns or net.asn in self.asns)
            and (not self.network_types or net.network_type.value in self.network_types)
        )

    def active(self, at: datetime) -> bool:
        return self.start <= at < self.end

    def effect(self, net: NetworkContext, target: Target, at: datetime) -> Effect | None:
        if not self.active(at) or not self.covers(net):
            return None
        if self.kind == INTERNATIONAL_CUT:
            return "cut" if target.scope.value == "international" else None
        if self.kind == FULL_OUTAGE:
            return "down"
        if self.kind == TARGETED_BLOCKING:
            return "dns" if target.host == self.domain else None
        return None

    def describe(self) -> str:
        where = ",".join(sorted(self.regions)) or ",".join(sorted(self.countries)) or "all"
        carriers = ",".join(f"AS{a}" for a in sorted(self.asns)) or "all carriers"
        what = f" {self.domain}" if self.domain else ""
        return f"{self.kind}{what} {where} {carriers}".strip()


def effect_at(events: list[Event], net: NetworkContext, target: Target, at: datetime) -> Effect:
    for event in events:
        effect = event.effect(net, target, at)
        if effect is not None:
            return effect
    return "ok"


def offline(events: list[Event], net: NetworkContext, at: datetime) -> bool:
    """True while a full outage cuts this agent off: it measures (failures) but cannot upload."""
    return any(e.kind == FULL_OUTAGE and e.active(at) and e.covers(net) for e in events)


def _at(day0: datetime, day: int, hour: int, minute: int = 0) -> datetime:
    return day0 + timedelta(days=day, hours=hour, minutes=minute)


def seed_event(day0: datetime, day: int) -> list[Event]:
    """International cut on the mobile carriers of four provinces, two drops in one morning. The hour
    between the drops is clean, so a detector that reads hourly buckets can tell them apart."""
    first = Event(
        "seed: international cut",
        INTERNATIONAL_CUT,
        _at(day0, day, 5, 40),
        _at(day0, day, 7, 50),
        countries=frozenset({"XA"}),
        regions=frozenset(SEED_REGIONS),
        asns=frozenset(SEED_CARRIERS),
        network_types=frozenset({"mobile"}),
        label="drop 1",
    )
    second = replace(first, start=_at(day0, day, 9, 20), end=_at(day0, day, 11, 30), label="drop 2")
    return [first, second]


def regional_outage(day0: datetime, day: int) -> Event:
    return Event(
        "full regional outage",
        FULL_OUTAGE,
        _at(day0, day, 2, 10),
        _at(day0, day, 5, 40),
        countries=frozenset({"XA"}),
        regions=frozenset({OUTAGE_REGION}),
    )


def targeted_blocking(day0: datetime, day: int) -> Event:
    return Event(
        "targeted DNS blocking",
        TARGETED_BLOCKING,
        _at(day0, day, 14, 0),
        _at(day0, day, 20, 0),
        countries=frozenset({"XA"}),
        asns=frozenset({BLOCKING_CARRIER}),
        domain=BLOCKED_DOMAIN,
    )


def collector_kill(day0: datetime, day: int, hour: int) -> Event:
    moment = _at(day0, day, hour)
    return Event("kill -9 collector mid-ingest", COLLECTOR_KILL, moment, moment)


def collector_outage(day0: datetime, day: int, hour: int, minutes: int = 30) -> Event:
    start = _at(day0, day, hour)
    return Event(
        f"collector outage {minutes} min",
        COLLECTOR_OUTAGE,
        start,
        start + timedelta(minutes=minutes),
    )


def standard_calendar(day0: datetime, quiet_days: int = 7) -> tuple[list[Event], int]:
    """The full run's events and its length in days (see the module docstring)."""
    events: list[Event] = []
    if quiet_days >= 2:
        events.append(collector_kill(day0, 2, 12))
    if quiet_days >= 4:
        events.append(collector_outage(day0, 4, 13))
    seed_day = 1 + quiet_days
    events += seed_event(day0, seed_day)
    events += [regional_outage(day0, seed_day + 1), targeted_blocking(day0, seed_day + 1)]
    return events, seed_day + 2


def quiet_week(day0: datetime, quiet_days: int = 7) -> tuple[datetime, datetime]:
    return day0 + timedelta(days=1), day0 + timedelta(days=1 + quiet_days)
