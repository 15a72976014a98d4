"""The agent's side (agent/testlists.py) against collectors on 127.0.0.1 that misbehave.

A real collector cannot be made to serve a rolled-back or forged list (it refuses them at publication),
so the hostile "collector" here is a small real HTTP server that serves whatever bundle the test sets,
the way a compromised collector, a stale mirror or a meddling network would.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from agent.testlists import ListStore, OperatorTrust, refresh
from collector.app import CollectorConfig
from collector.server import start_collector
from protocol import NetworkContext, Scope, SigningKey, make_registration, utc_now
from protocol.keyset import OperatorKey, pinned_root, sign_keyset, successor
from protocol.signed_doc import Signature, SignedDocument
from protocol.signed_requests import Refusal, refusal_report_agent, verify_refusal_report
from protocol.testlist import Bundle, Entry, Targeting, TestList, sign_testlist

ServerFactory = Callable[..., Awaitable[TestServer]]
ANYONE = Targeting()
NORTH = NetworkContext("XA", "XA-NORTH", 64500, "MobiNet", "mobile")  # type: ignore[arg-type]


def make_list(
    version: int,
    *,
    list_id: str = "xa",
    days: float = 7,
    targeting: Targeting = ANYONE,
    url: str = "https://news.world.test/",
) -> TestList:
    now = utc_now()
    return TestList(
        list_id,
        version,
        now,
        now + timedelta(days=days),
        (Entry(url, Scope.INTERNATIONAL, "NEWS"),),
        targeting,
    )


@dataclass
class Hostile:
    """What the fake collector serves and what it was told."""

    bundle: bytes = Bundle((), ()).to_bytes()
    keys: dict[str, bytes] = field(default_factory=dict)
    reports: list[str] = field(default_factory=list)


@pytest.fixture
async def hostile(aiohttp_server: ServerFactory) -> tuple[Hostile, str]:
    state = Hostile()

    async def serve(request: web.Request) -> web.Response:
        return web.Response(
            body=state.bundle,
            content_type="application/msgpack",
            headers={"ETag": f'"{hash(state.bundle)}"'},
        )

    async def refusals(request: web.Request) -> web.Response:
        envelope, agent_id = refusal_report_agent(await request.read())
        got = verify_refusal_report(envelope, state.keys[agent_id])
        state.reports.extend(r.reason for r in got)
        return web.json_response({"stored": len(got)})

    app = web.Application()
    app.router.add_get("/api/v1/testlists", serve)
    app.router.add_post("/api/v1/testlists/refusals", refusals)
    server = await aiohttp_server(app)
    return state, str(server.make_url("")).rstrip("/")


def agent_key(state: Hostile) -> SigningKey:
    key = SigningKey.generate()
    state.keys[key.agent_id] = key.public_key
    return key


def usable_versions(store: ListStore) -> list[tuple[str, int]]:
    good, _ = store.usable(NORTH, utc_now())
    return [(v.testlist.list_id, v.testlist.version) for v in good]


async def test_each_bad_list_is_refused_with_a_reason_and_the_last_good_one_kept(
    hostile: tuple[Hostile, str], tmp_path: Path
) -> None:
    state, url = hostile
    ops = SigningKey.generate()
    key = agent_key(state)
    store = ListStore(tmp_path / "testlists", OperatorTrust((ops.public_key,)))

    state.bundle = Bundle((), (sign_testlist(make_list(3), [ops]).to_bytes(),)).to_bytes()
    report = await refresh(store, url, key, NORTH)
    assert (report.status, report.accepted, report.refused) == ("updated", ["xa v3"], [])
    good_bytes = (tmp_path / "testlists" / "lists" / "xa.vtl").read_bytes()

    v4 = sign_testlist(make_list(4), [ops])
    stranger = SigningKey.generate()
    now = utc_now()
    expired = TestList(
        "xa", 9, now - timedelta(days=3), now - timedelta(days=1), make_list(9).entries
    )
    cases = {
        "signature": SignedDocument(
            "testlist", v4.signed, (Signature(v4.signatures[0].key_id, bytes(64)),)
        ).to_bytes(),
        "unknown_key": sign_testlist(make_list(5), [stranger]).to_bytes(),
        "rollback": sign_testlist(make_list(2), [ops]).to_bytes(),
        "equivocation": sign_testlist(
            make_list(3, url="https://other.world.test/"), [ops]
        ).to_bytes(),
        "expired": sign_testlist(expired, [ops]).to_bytes(),
        "decode": v4.to_bytes()[:-20],
        "not_targeted": sign_testlist(
            make_list(6, targeting=Targeting(regions=("XA-EAST",))), [ops]
        ).to_bytes(),
    }
    for reason, data in cases.items():
        state.bundle = Bundle((), (data,)).to_bytes()
        report = await refresh(store, url, key, NORTH)
        assert [r.reason for r in report.refused] == [reason], (reason, report)
        assert report.refused[0].message
        assert (tmp_path / "testlists" / "lists" / "xa.vtl").read_bytes() == good_bytes
        assert usable_versions(store) == [("xa", 3)]
    assert state.reports == list(cases)  # every refusal reached the collector, signed by the agent

    # A truncated bundle (not just a truncated list) is refused the same way.
    state.bundle = Bundle((), (v4.to_bytes(),)).to_bytes()[:-5]
    report = await refresh(store, url, key, NORTH)
    assert [r.reason for r in report.refused] == ["decode"]
    assert usable_versions(store) == [("xa", 3)]


async def test_unreachable_collector_keeps_last_good_and_queues_refusals(
    hostile: tuple[Hostile, str], tmp_path: Path
) -> None:
    state, url = hostile
    ops = SigningKey.generate()
    key = agent_key(state)
    store = ListStore(tmp_path / "testlists", OperatorTrust((ops.public_key,)))
    state.bundle = Bundle((), (sign_testlist(make_list(1), [ops]).to_bytes(),)).to_bytes()
    await refresh(store, url, key, NORTH)
    report = await refresh(store, "http://127.0.0.1:9", key, NORTH)  # nothing listens on port 9
    assert report.status == "unreachable" and "cannot reach" in report.problem
    assert usable_versions(store) == [("xa", 1)]
    # A refusal recorded while the report could not be sent goes out with the next good fetch.
    store.queue_refusals([Refusal("2026-01-01T00:00:00.000000Z", "rollback", "seen offline")])
    report = await refresh(store, url, key, NORTH)
    assert report.reported == 1 and state.reports == ["rollback"]
    assert store.pending_refusals() == []


async def test_rotation_and_targeting_through_a_real_collector(tmp_path: Path) -> None:
    old, new = SigningKey.generate(), SigningKey.generate()
    collector = await start_collector(
        CollectorConfig(db_path=tmp_path / "c.db", operator_keys=(old.public_key,))
    )
    try:
        import aiohttp

        async with aiohttp.ClientSession() as session:

            async def post(path: str, data: bytes) -> int:
                async with session.post(
                    collector.url + path, data=data, headers={"Content-Type": "application/msgpack"}
                ) as r:
                    return r.status

            lists = {
                "north-mobinet": Targeting(regions=("XA-NORTH",), asns=(64500,)),
                "north-any": Targeting(regions=("XA-NORTH",)),
                "east-mobinet": Targeting(regions=("XA-EAST",), asns=(64500,)),
                "north-fiber": Targeting(regions=("XA-NORTH",), asns=(64501,)),
                "mobile": Targeting(network_types=("mobile",)),
                "wired": Targeting(network_types=("wired",)),
            }
            for list_id, targeting in lists.items():
                data = sign_testlist(
                    make_list(
                        1, list_id=list_id, targeting=targeting, url=f"https://{list_id}.test/"
                    ),
                    [old],
                )
                assert await post("/api/v1/testlists", data.to_bytes()) == 201
            agent = SigningKey.generate()
            async with session.post(
                collector.url + "/api/v1/agents", json=make_registration(agent, utc_now())
            ) as r:
                assert r.status == 201

            store = ListStore(tmp_path / "agent", OperatorTrust((old.public_key,)))
            report = await refresh(store, collector.url, agent, NORTH)
            assert sorted(report.accepted) == ["mobile v1", "north-any v1", "north-mobinet v1"]
            assert (await refresh(store, collector.url, agent, NORTH)).status == "not_modified"

            now = utc_now()
            rotated = successor(
                pinned_root([old.public_key]), issued=now, expires=now + timedelta(days=90),
                add=[OperatorKey(new.public_key)], revoke=[OperatorKey(old.public_key).key_id],
            )  # fmt: skip
            assert await post("/api/v1/keysets", sign_keyset(rotated, [old, new]).to_bytes()) == 201
            v2 = sign_testlist(
                make_list(2, list_id="north-any", targeting=lists["north-any"]), [new]
            )
            assert await post("/api/v1/testlists", v2.to_bytes()) == 201
            report = await refresh(store, collector.url, agent, NORTH)
            assert report.keyset_version == 1 and report.accepted == ["north-any v2"]
            # Lists signed only by the revoked key stop being used; the new key's list is.
            assert usable_versions(store) == [("north-any", 2)]
    finally:
        await collector.stop()

    # The old key alone no longer suffices, even if a hostile server offers its list directly.
    stale_key_list = sign_testlist(make_list(3, list_id="north-any"), [old]).to_bytes()
    from agent.testlists import FetchReport, apply_bundle

    report = FetchReport()
    apply_bundle(store, Bundle((), (stale_key_list,)).to_bytes(), NORTH, utc_now(), report)
    assert [r.reason for r in report.refused] == ["unknown_key"]
    assert usable_versions(store) == [("north-any", 2)]
