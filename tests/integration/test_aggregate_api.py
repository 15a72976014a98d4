"""``GET /api/v1/aggregate`` over a known set of signed measurements from three agents."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest

from protocol import SigningKey, utc_now

COUNTS = ("measurements", "ok", "anomaly", "confirmed", "failure", "agents")


@dataclass(frozen=True)
class Place:
    region: str
    asn: int
    carrier: str
    network_type: str


NORTH_MOBILE = Place("XA-NORTH", 64500, "MobiNet", "mobile")
EAST_FIXED = Place("XA-EAST", 64501, "FiberLine", "wired")

# agent name -> where it measures from
AGENTS = {"a": NORTH_MOBILE, "b": NORTH_MOBILE, "c": EAST_FIXED}
# (agent, scope, verdict, hours ago, host)
PLAN = [
    ("a", "domestic", "ok", 3, "news.domestic.test"),
    ("a", "domestic", "ok", 1, "bank.domestic.test"),
    ("a", "international", "anomaly", 3, "news.world.test"),
    ("a", "international", "anomaly", 2, "video.world.test"),
    ("a", "international", "confirmed", 1, "social.world.test"),
    ("b", "domestic", "ok", 2, "news.domestic.test"),
    ("b", "domestic", "failure", 2, "bank.domestic.test"),
    ("b", "international", "anomaly", 1, "news.world.test"),
    ("c", "domestic", "ok", 3, "news.domestic.test"),
    ("c", "domestic", "ok", 2, "bank.domestic.test"),
    ("c", "international", "ok", 1, "news.world.test"),
    ("c", "international", "anomaly", 3, "video.world.test"),
]


@dataclass
class Dataset:
    api: Any
    now: datetime
    keys: dict[str, SigningKey]

    def at(self, hours_ago: int) -> datetime:
        return self.now - timedelta(hours=hours_ago)


@pytest.fixture
async def dataset(api, build, db) -> Dataset:
    now = utc_now().replace(minute=30, second=0, microsecond=0)
    if now > utc_now():
        now -= timedelta(hours=1)
    data = Dataset(api, now, {name: SigningKey.generate() for name in AGENTS})
    for name, key in data.keys.items():
        assert (await api.register(key))[0] == 201
        place = AGENTS[name]
        measurements = [
            build.measurement(
                key,
                host=host,
                scope=scope,
                verdict=verdict,
                measured_at=data.at(hours),
                region=place.region,
                asn=place.asn,
                carrier=place.carrier,
                network_type=place.network_type,
            )
            for agent, scope, verdict, hours, host in PLAN
            if agent == name
        ]
        status, document = await api.upload(build.body(key, measurements))
        assert (status, document["stored"]) == (200, len(measurements))
    assert db.counts()["measurements"] == len(PLAN)
    return data


def expected(axes: list[str], keep=lambda row: True) -> list[dict[str, Any]]:
    """A plain-Python oracle for the aggregate over PLAN."""
    groups: dict[tuple[Any, ...], dict[str, Any]] = {}
    agents: dict[tuple[Any, ...], set[str]] = defaultdict(set)
    for agent, scope, verdict, hours, host in PLAN:
        place = AGENTS[agent]
        row = {
            "region": place.region,
            "asn": place.asn,
            "carrier": place.carrier,
            "network_type": place.network_type,
            "scope": scope,
            "verdict": verdict,
            "hours": hours,
            "domain": host,
        }
        if not keep(row):
            continue
        columns: dict[str, Any] = {}
        for axis in axes:
            if axis == "carrier":
                columns.update(asn=place.asn, carrier=place.carrier)
            else:
                columns[axis] = row[axis]
        group_key = tuple(value for name, value in columns.items() if name != "carrier")
        group = groups.setdefault(group_key, {**columns, **dict.fromkeys(COUNTS, 0)})
        group["measurements"] += 1
        group[verdict] += 1
        agents[group_key].add(agent)
    for group_key, group in groups.items():
        group["agents"] = len(agents[group_key])
    return [groups[k] for k in sorted(groups)]


async def test_by_region_carrier_scope(dataset):
    status, document = await dataset.api.aggregate(by="region,carrier,scope")
    assert status == 200
    assert document["axes"] == ["region", "carrier", "scope"]
    assert document["filters"] == {}
    assert (document["since"], document["until"]) == (None, None)
    row = dict.fromkeys(COUNTS, 0)
    assert document["rows"] == [
        {"region": "XA-EAST", "asn": 64501, "carrier": "FiberLine", "scope": "domestic",
         **row, "measurements": 2, "ok": 2, "agents": 1},
        {"region": "XA-EAST", "asn": 64501, "carrier": "FiberLine", "scope": "international",
         **row, "measurements": 2, "ok": 1, "anomaly": 1, "agents": 1},
        {"region": "XA-NORTH", "asn": 64500, "carrier": "MobiNet", "scope": "domestic",
         **row, "measurements": 4, "ok": 3, "failure": 1, "agents": 2},
        {"region": "XA-NORTH", "asn": 64500, "carrier": "MobiNet", "scope": "international",
         **row, "measurements": 4, "anomaly": 3, "confirmed": 1, "agents": 2},
    ]  # fmt: skip
    assert document["rows"] == expected(["region", "carrier", "scope"])


async def test_totals_without_axes(dataset):
    status, document = await dataset.api.aggregate()
    assert status == 200
    assert document["rows"] == [
        {"measurements": 12, "ok": 6, "anomaly": 4, "confirmed": 1, "failure": 1, "agents": 3}
    ]


@pytest.mark.parametrize(
    ("params", "axes", "keep"),
    [
        (
            {"scope": "international", "by": "region"},
            ["region"],
            lambda r: r["scope"] == "international",
        ),
        ({"asn": "AS64500", "by": "scope"}, ["scope"], lambda r: r["asn"] == 64500),
        ({"asn": "64500", "by": "scope"}, ["scope"], lambda r: r["asn"] == 64500),
        (
            {"asn": "as64501", "by": "scope,verdict"},
            ["scope", "verdict"],
            lambda r: r["asn"] == 64501,
        ),
        ({"region": "XA-EAST"}, [], lambda r: r["region"] == "XA-EAST"),
        (
            {"region": "XA-NORTH", "scope": "domestic", "by": "carrier,verdict"},
            ["carrier", "verdict"],
            lambda r: r["region"] == "XA-NORTH" and r["scope"] == "domestic",
        ),
        (
            {"network_type": "wired", "by": "domain"},
            ["domain"],
            lambda r: r["network_type"] == "wired",
        ),
        (
            {"verdict": "anomaly", "by": "region,carrier"},
            ["region", "carrier"],
            lambda r: r["verdict"] == "anomaly",
        ),
        (
            {"domain": "news.world.test", "by": "region"},
            ["region"],
            lambda r: r["domain"] == "news.world.test",
        ),
        ({"country": "xa", "by": "network_type"}, ["network_type"], lambda r: True),
    ],
    ids=lambda value: (
        None if not isinstance(value, dict) else "&".join(f"{k}={v}" for k, v in value.items())
    ),
)
async def test_filters(dataset, params, axes, keep):
    status, document = await dataset.api.aggregate(**params)
    assert status == 200, document
    assert document["rows"] == expected(axes, keep)


async def test_filter_values_are_echoed_normalised(dataset):
    status, document = await dataset.api.aggregate(asn="AS64500", country="xa", scope="domestic")
    assert status == 200
    assert document["filters"] == {"asn": 64500, "country": "XA", "scope": "domestic"}


async def test_filter_matching_nothing_gives_no_rows(dataset):
    status, document = await dataset.api.aggregate(region="XA-NOWHERE", by="region,carrier,scope")
    assert (status, document["rows"]) == (200, [])


async def test_counts_are_zero_not_null_when_nothing_matches(dataset):
    status, document = await dataset.api.aggregate(region="XA-NOWHERE")
    assert status == 200
    assert document["rows"] == [dict.fromkeys(COUNTS, 0)]


async def test_since_and_until(dataset):
    since = dataset.at(2) - timedelta(minutes=1)
    until = dataset.at(2) + timedelta(minutes=1)
    stamp = "%Y-%m-%dT%H:%M:%SZ"
    status, document = await dataset.api.aggregate(by="scope", since=since.strftime(stamp))
    assert status == 200
    assert document["rows"] == expected(["scope"], lambda r: r["hours"] <= 2)
    assert document["since"] == since.isoformat()

    status, document = await dataset.api.aggregate(by="scope", until=until.strftime(stamp))
    assert document["rows"] == expected(["scope"], lambda r: r["hours"] >= 2)

    status, document = await dataset.api.aggregate(
        by="region,carrier,scope", since=since.strftime(stamp), until=until.strftime(stamp)
    )
    assert document["rows"] == expected(["region", "carrier", "scope"], lambda r: r["hours"] == 2)

    # A bare date and an offset are accepted too; until is exclusive.
    status, document = await dataset.api.aggregate(
        since=(dataset.now + timedelta(days=1)).date().isoformat()
    )
    assert document["rows"][0]["measurements"] == 0
    exact = dataset.at(1).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")
    status, document = await dataset.api.aggregate(until=exact)
    assert document["rows"][0]["measurements"] == sum(1 for p in PLAN if p[3] > 1)


async def test_hour_aligned_window_agrees_with_any_window(dataset):
    """On-the-hour windows may be answered from hourly rollups, others from raw rows: same numbers."""
    hour = dataset.at(2).replace(minute=0)
    stamp = "%Y-%m-%dT%H:%M:%S.%fZ"
    for since in (hour, hour - timedelta(seconds=1), hour + timedelta(minutes=29)):
        status, document = await dataset.api.aggregate(
            by="region,carrier,scope,verdict", since=since.strftime(stamp)
        )
        assert status == 200
        assert document["rows"] == expected(
            ["region", "carrier", "scope", "verdict"], lambda r: r["hours"] <= 2
        ), since


async def test_by_hour(dataset):
    status, document = await dataset.api.aggregate(by="hour")
    assert status == 200
    hours = {row["hour"]: row["measurements"] for row in document["rows"]}
    assert hours == {
        dataset.at(h).strftime("%Y-%m-%dT%H:00:00Z"): sum(1 for p in PLAN if p[3] == h)
        for h in (1, 2, 3)
    }


async def test_csv_format(dataset):
    status, text = await dataset.api.aggregate(by="region,carrier,scope", format="csv")
    assert status == 200
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == ["region", "asn", "carrier", "scope", *COUNTS]
    want = expected(["region", "carrier", "scope"])
    assert rows == [{key: str(value) for key, value in row.items()} for row in want]
    response = await dataset.api.client.get("/api/v1/aggregate", params={"format": "csv"})
    assert response.content_type == "text/csv"


async def test_csv_header_is_the_same_when_nothing_matches(dataset):
    status, text = await dataset.api.aggregate(
        by="region,carrier", region="XA-NOWHERE", format="csv"
    )
    assert status == 200
    assert text.splitlines() == [",".join(["region", "asn", "carrier", *COUNTS])]


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"by": "planet"}, "unknown axis"),
        ({"by": "region,planet"}, "unknown axis"),
        ({"asn": "ASX"}, "asn"),
        ({"asn": "-1"}, "asn"),
        ({"asn": "4294967296"}, "asn"),
        ({"colour": "blue"}, "unknown query parameter"),
        ({"by": "region", "limit": "10"}, "unknown query parameter"),
        ({"scope": "galactic"}, "unknown value"),
        ({"network_type": "satellite"}, "unknown value"),
        ({"verdict": "blocked"}, "unknown value"),
        ({"since": "yesterday"}, "since"),
        ({"until": "2026-13-45"}, "until"),
        ({"since": "2026-01-02", "until": "2026-01-01"}, "before"),
        ({"format": "xml"}, "format"),
        ({"region": "x" * 300}, "too long"),
    ],
)
async def test_bad_queries_are_400(dataset, params, needle):
    status, document = await dataset.api.aggregate(**params)
    assert status == 400, document
    assert document["error"]["code"] == "bad_request"
    assert needle in document["error"]["message"]
    # and the next query is answered
    status, document = await dataset.api.aggregate(by="scope")
    assert status == 200 and len(document["rows"]) == 2
