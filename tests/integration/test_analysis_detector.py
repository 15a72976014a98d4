"""The disruption detector on synthetic streams, on both backends, driven hour by hour with ``--at``.

One stream carries four injected events in a country of 3 provinces × (2 mobile carriers + 1 fixed-line
carrier), each network with 3 agents, and two networks where nothing happens:

- international cut on both mobile carriers of XA-01 and XA-02, hours 24–27;
- full outage on FiberLine in XA-03, hours 25–26 (reported in real time);
- DNS blocking of social.world.test on CellCo in XA-03 from hour 24;
- FiberLine in XA-02 silent in hours 26–27, its agents' failures backfilled at hour 28.

A round is one detection pass at an hour boundary, after that hour's uploads.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from analysis_support import NETWORKS, TARGETS, Stream, at_hour

from collector.backends import open_storage
from collector.detector import DetectorSettings
from collector.disruptions import detect, list_disruptions
from collector.storage import Storage

CUT = {("XA-01", 64500), ("XA-01", 64502), ("XA-02", 64500), ("XA-02", 64502)}
OUTAGE = ("XA-03", 64501)
BLOCKED = ("XA-03", 64502)
SILENT = ("XA-02", 64501)
UNTOUCHED = {("XA-03", 64500), ("XA-01", 64501)}
SETTINGS = DetectorSettings()  # the defaults: 3 agents, 12 buckets of baseline, 7-day window


def hour_str(h: int) -> str:
    return at_hour(h).strftime("%Y-%m-%dT%H:00:00Z")


def outcome(h: int):  # type: ignore[no-untyped-def]
    def pick(net: tuple[str, int], target: Any, index: int) -> str:
        if net in CUT and 24 <= h <= 27 and target.scope == "international":
            return "cut"
        if net == OUTAGE and 25 <= h <= 26:
            return "down"
        if net == BLOCKED and h >= 24 and target.host == "social.world.test":
            return "dns"
        return "ok"

    return pick


@pytest.fixture
async def storage(storage_url: str) -> AsyncIterator[Storage]:
    store = open_storage(storage_url, migrate=True)
    await store.open()
    yield store
    await store.close()


def by_network(items: list[dict[str, Any]]) -> dict[tuple[str, int], list[dict[str, Any]]]:
    out: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for item in items:
        out.setdefault((item["region"], item["asn"]), []).append(item)
    return out


async def test_injected_events_are_found_named_and_placed(storage: Storage) -> None:
    stream = Stream(storage)
    await stream.register()
    seen: dict[int, list[dict[str, Any]]] = {}
    for h in range(31):
        networks = [n for n in NETWORKS if not (n == SILENT and h in (26, 27))]
        await stream.hour(h, outcome(h), networks)
        if h == 28:  # the silent network's agents come back and upload their backlog
            await stream.hour(26, lambda *_: "down", [SILENT])
            await stream.hour(27, lambda *_: "down", [SILENT])
        if h >= 12:
            await detect(storage, at_hour(h + 1), SETTINGS)
            seen[h + 1] = await list_disruptions(storage, {})

    # Nothing before the events; the quiet day with its daily rhythm raised nothing.
    assert all(not seen[at] for at in range(13, 25))

    # Within two rounds of each start, the right pattern on exactly the right networks.
    early = by_network(seen[26])
    cuts = {net for net, items in early.items() if items[0]["pattern"] == "international_cut"}
    assert cuts == CUT
    for net in CUT:
        (item,) = early[net]
        assert item["started_at"] == hour_str(24) and item["scope"] == "international"
        assert item["network_type"] == "mobile" and item["agents"] >= 3
        assert item["severity"] == "critical" and item["current"] < 0.5 * item["baseline"]
    (outage,) = by_network(seen[27])[OUTAGE]
    assert outage["pattern"] == "full_outage" and outage["started_at"] == hour_str(25)
    (blocking,) = early[BLOCKED]
    assert blocking["pattern"] == "targeted_blocking" and blocking["domain"] == "social.world.test"
    assert blocking["started_at"] == hour_str(24) and blocking["evidence"]["blocking_dns"] >= 9
    (silence,) = by_network(seen[28])[SILENT]
    assert silence["pattern"] == "silence" and not silence["confirmed"]
    assert silence["started_at"] == hour_str(26) and silence["ended_at"] is None

    final = by_network(seen[31])
    assert not set(final) & UNTOUCHED
    assert set(final) == CUT | {OUTAGE, BLOCKED, SILENT}
    for net in CUT:  # the cut ended when international sites came back at hour 28
        (item,) = final[net]
        assert item["ended_at"] == hour_str(28)
    (outage,) = final[OUTAGE]
    assert (outage["started_at"], outage["ended_at"]) == (hour_str(25), hour_str(27))
    # The backfill confirmed the silence as a full outage of the same two hours.
    (backfilled,) = final[SILENT]
    assert backfilled["id"] == silence["id"] and backfilled["confirmed"]
    assert backfilled["pattern"] == "full_outage"
    assert (backfilled["started_at"], backfilled["ended_at"]) == (hour_str(26), hour_str(28))
    assert backfilled["evidence"]["failures"] >= 2 * 3 * len(TARGETS) * 3 - 2
    (still,) = final[BLOCKED]
    assert still["ended_at"] is None

    # A pass at the same moment changes nothing: the detector is idempotent.
    assert (await detect(storage, at_hour(31), SETTINGS)).events == []


async def test_late_measurements_reshape_a_closed_event(storage: Storage) -> None:
    stream = Stream(storage, agents_per_network=3)
    await stream.register()
    for h in range(29):
        await stream.hour(h, outcome(h), [OUTAGE, ("XA-03", 64500), ("XA-01", 64501)])
        if h >= 12:
            await detect(storage, at_hour(h + 1), SETTINGS)
    (closed,) = await list_disruptions(storage, {"pattern": "full_outage"})
    assert (closed["started_at"], closed["ended_at"]) == (hour_str(25), hour_str(27))

    # Three more agents of that network, offline until now, upload their spooled hour 24: it failed.
    late = await stream.add_agents(OUTAGE, 3)
    await stream.hour(24, lambda *_: "down", [OUTAGE], keys=lambda _: late)
    result = await detect(storage, at_hour(29), SETTINGS)
    assert [kind for kind, _ in result.events] == ["update"]
    (reshaped,) = await list_disruptions(storage, {"pattern": "full_outage"})
    assert reshaped["id"] == closed["id"]
    assert (reshaped["started_at"], reshaped["ended_at"]) == (hour_str(24), hour_str(27))
    assert reshaped["evidence"]["measurements"] > closed["evidence"]["measurements"]
    assert reshaped["updated_at"] > closed["updated_at"]


async def test_min_agents_keeps_one_volunteer_from_raising_alarms(storage: Storage) -> None:
    stream = Stream(storage, agents_per_network=2)
    await stream.register()
    for h in range(27):
        await stream.hour(h, outcome(h), [("XA-01", 64500), ("XA-01", 64501), ("XA-02", 64500)])
    await detect(storage, at_hour(27), SETTINGS)
    assert await list_disruptions(storage, {}) == []
    await detect(storage, at_hour(27), DetectorSettings(min_agents=2))
    found = await list_disruptions(storage, {})
    assert {(i["region"], i["asn"], i["pattern"]) for i in found} == {
        ("XA-01", 64500, "international_cut"),
        ("XA-02", 64500, "international_cut"),
    }


async def test_quiet_days_with_daily_rhythm_raise_nothing(storage: Storage) -> None:
    stream = Stream(storage)
    await stream.register()
    for h in range(48):  # two days: failures swing between ~2 % at noon and ~10 % at midnight
        await stream.hour(h)
        if h % 2 or h >= 40:
            result = await detect(storage, at_hour(h + 1), SETTINGS)
            assert result.events == [], (h, result.events)
    assert await list_disruptions(storage, {}) == []


async def test_concurrent_passes_open_each_disruption_once(storage_url: str) -> None:
    """Two collectors sharing a database run their passes at the same moment: the detector lock
    (Storage.exclusive) serialises them, so the second finds the first's disruptions and opens none."""
    first, second = open_storage(storage_url, migrate=True), open_storage(storage_url, migrate=True)
    await first.open()
    await second.open()
    try:
        stream = Stream(first)
        await stream.register()
        for h in range(26):
            await stream.hour(h, outcome(h), NETWORKS)
        results = await asyncio.gather(
            detect(first, at_hour(26), SETTINGS), detect(second, at_hour(26), SETTINGS)
        )
        opened = [kind for result in results for kind, _ in result.events if kind == "open"]
        items = await list_disruptions(first, {})
        assert len(opened) == len(items) > 0
        assert len({item["id"] for item in items}) == len(items)
        keys = {(i["region"], i["asn"], i["pattern"], i["domain"]) for i in items}
        assert len(keys) == len(items), "the same disruption was opened twice"
    finally:
        await first.close()
        await second.close()
