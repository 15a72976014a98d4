"""Score the detector: disruptions found versus events scripted.

A disruption answers an event on a network when it names that network (country, province, carrier
ASN, network type; and the domain, for targeted blocking) and its hours overlap the event's. For each
event row the report gives what was expected (pattern, provinces, carriers), what was found with the
right pattern, and the detection latency: simulated time from the event's start to the first
detection pass whose ``GET /api/v1/disruptions`` listed it (any pattern: the first alert) and listed
it with the right pattern. A disruption that answers no event is a false alarm, also when it was
later retracted (an alert went out).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from statistics import median
from typing import Any

from protocol import NetworkContext

from .events import INTERNATIONAL_CUT, NETWORK_EVENTS, Event
from .scenario import Sighting
from .world import networks


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)  # the API's hour buckets: "2026-03-02T05:00:00Z"


def _identity(item: dict[str, Any]) -> tuple[str, str, int, str]:
    return (item["country"], item["region"], int(item["asn"]), item["network_type"])


def _net_identity(net: NetworkContext) -> tuple[str, str, int, str]:
    return (net.country, net.region, net.asn, net.network_type.value)


def _floor_hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def answers(seen: Sighting, event: Event, net: NetworkContext) -> bool:
    item = seen.item
    if _identity(item) != _net_identity(net):
        return False
    if (item.get("domain") or None) != event.domain:
        return False
    started = _time(item["started_at"])
    # A retracted disruption was last listed as still open: it lasted until it was retracted.
    ended = _time(item["ended_at"]) if item["ended_at"] else seen.retracted_at
    return started < event.end and (ended is None or ended > _floor_hour(event.start))


@dataclass
class NetworkScore:
    network: tuple[str, str, int, str]
    alert_latency: timedelta | None = None  # first listing of any answering disruption
    right_latency: timedelta | None = None  # first listing with the expected pattern
    patterns: set[str] = field(default_factory=set)  # final patterns of answering disruptions
    ids: set[str] = field(default_factory=set)


def _earliest(known: timedelta | None, new: timedelta) -> timedelta:
    return new if known is None else min(known, new)


def score_event(event: Event, sightings: dict[str, Sighting]) -> list[NetworkScore]:
    scores = []
    for net in networks():
        if not event.covers(net):
            continue
        score = NetworkScore(_net_identity(net))
        for ident, seen in sightings.items():
            if not answers(seen, event, net):
                continue
            score.ids.add(ident)
            score.alert_latency = _earliest(score.alert_latency, seen.first_seen - event.start)
            if seen.retracted_at is None:
                score.patterns.add(seen.item["pattern"])
                right = seen.became(event.kind)
                if right is not None:
                    score.right_latency = _earliest(score.right_latency, right - event.start)
        scores.append(score)
    return scores


def _minutes(values: list[timedelta | None]) -> dict[str, float | None]:
    known = [v.total_seconds() / 60 for v in values if v is not None]
    if not known:
        return {"min": None, "median": None, "max": None}
    return {
        "min": round(min(known), 1),
        "median": round(median(known), 1),
        "max": round(max(known), 1),
    }


def detection_table(events: list[Event], sightings: dict[str, Sighting]) -> list[dict[str, Any]]:
    """One row per event group (the seed event's two drops share a row)."""
    groups: dict[str, list[Event]] = {}
    for event in events:
        if event.kind in NETWORK_EVENTS:
            groups.setdefault(event.group, []).append(event)
    rows = []
    for group, members in groups.items():
        scores = [(event, s) for event in members for s in score_event(event, sightings)]
        expected = members[0].kind
        right = [(e, s) for e, s in scores if expected in s.patterns]
        row: dict[str, Any] = {
            "event": group,
            "window": [
                f"{e.label or 'event'} {e.start:%Y-%m-%d %H:%M}-{e.end:%H:%M}" for e in members
            ],
            "expected": {
                "pattern": expected,
                "regions": sorted({s.network[1] for _, s in scores}),
                "carriers": sorted({s.network[2] for _, s in scores}),
                "network_types": sorted({s.network[3] for _, s in scores}),
                "domain": members[0].domain,
                "episodes": len(scores),
            },
            "found": {
                "patterns": sorted({p for _, s in scores for p in s.patterns}),
                "regions": sorted({s.network[1] for _, s in right}),
                "carriers": sorted({s.network[2] for _, s in right}),
                "network_types": sorted({s.network[3] for _, s in right}),
                "episodes": len(right),
            },
            "alert_latency_min": _minutes([s.alert_latency for _, s in scores]),
            "right_pattern_latency_min": _minutes([s.right_latency for _, s in right]),
        }
        row["correct"] = row["found"]["episodes"] == row["expected"]["episodes"] and row["found"][
            "patterns"
        ] == [expected]
        if expected == INTERNATIONAL_CUT and len(members) > 1:
            # Each drop must be its own disruption, not one smeared over the morning.
            per_net: dict[tuple[str, str, int, str], list[set[str]]] = {}
            for _, s in scores:
                per_net.setdefault(s.network, []).append(s.ids)
            separate = all(
                len(set.union(*ids)) >= len(ids) and all(ids) for ids in per_net.values()
            )
            row["separate_drops"] = separate
            row["correct"] = row["correct"] and separate
        rows.append(row)
    return rows


def false_alarms(
    events: list[Event], sightings: dict[str, Sighting], window: tuple[datetime, datetime] | None
) -> list[dict[str, Any]]:
    """Disruptions that answer no scripted event (within ``window`` of start times, if given)."""
    covered = [
        (e, net) for e in events if e.kind in NETWORK_EVENTS for net in networks() if e.covers(net)
    ]
    out = []
    for seen in sightings.values():
        item = seen.item
        if any(answers(seen, e, net) for e, net in covered):
            continue
        started = _time(item["started_at"])
        if window is not None and not window[0] <= started < window[1]:
            continue
        out.append(
            {
                "pattern": item["pattern"],
                "network": "/".join(str(v) for v in _identity(item)),
                "domain": item.get("domain"),
                "scope": item["scope"],
                "started_at": item["started_at"],
                "ended_at": item["ended_at"],
                "retracted": seen.retracted_at is not None,
            }
        )
    return out
