"""Collector endpoints for operator documents, on a real aiohttp server with real SQLite."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from collector.app import CollectorConfig, create_app
from protocol import (
    Batch,
    DnsResult,
    Measurement,
    NetworkContext,
    Scope,
    SigningKey,
    Target,
    Verdict,
    make_registration,
    new_uid,
    sign_batch,
    utc_now,
)
from protocol.keyset import OperatorKey, pinned_root, sign_keyset, successor
from protocol.signed_doc import Signature, SignedDocument, decode_signed_document
from protocol.signed_requests import Refusal, sign_operator_request, sign_refusal_report
from protocol.testlist import Entry, Targeting, TestList, decode_bundle, sign_testlist

ANYONE = Targeting()
MSGPACK = {"Content-Type": "application/msgpack"}
ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


def make_list(
    list_id: str, version: int, targeting: Targeting = ANYONE, days: float = 7
) -> TestList:
    now = utc_now()
    return TestList(
        list_id,
        version,
        now,
        now + timedelta(days=days),
        (Entry(f"https://{list_id}.world.test/", Scope.INTERNATIONAL, "NEWS"),),
        targeting,
    )


@pytest.fixture
def ops() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture
async def client(
    aiohttp_client: ClientFactory, tmp_path: Path, ops: SigningKey
) -> AsyncIterator[TestClient[Any, Any]]:
    config = CollectorConfig(db_path=tmp_path / "c.db", operator_keys=(ops.public_key,))
    yield await aiohttp_client(create_app(config))


async def publish(
    client: TestClient[Any, Any], data: bytes, path: str = "/api/v1/testlists"
) -> tuple[int, dict[str, Any]]:
    response = await client.post(path, data=data, headers=MSGPACK)
    return response.status, await response.json()


async def test_publish_serve_etag_and_targeting(
    client: TestClient[Any, Any], ops: SigningKey
) -> None:
    lists = {
        "north-mobile": Targeting(regions=("XA-NORTH",), asns=(64500,)),
        "east": Targeting(regions=("XA-EAST",)),
        "everyone": Targeting(),
        "fixed": Targeting(network_types=("wired",)),
    }
    for list_id, targeting in lists.items():
        status, answer = await publish(
            client, sign_testlist(make_list(list_id, 1, targeting), [ops]).to_bytes()
        )
        assert status == 201, answer
    query = "?country=XA&region=XA-NORTH&asn=64500&network_type=mobile"
    response = await client.get("/api/v1/testlists" + query)
    assert response.status == 200
    etag = response.headers["ETag"]
    bundle = decode_bundle(await response.read())
    served = sorted(sign_list_id(data) for data in bundle.lists)
    assert served == ["everyone", "north-mobile"]
    again = await client.get("/api/v1/testlists" + query, headers={"If-None-Match": etag})
    assert again.status == 304
    other = await client.get(
        "/api/v1/testlists?country=XA&region=XA-EAST&asn=64501&network_type=wired"
    )
    assert sorted(sign_list_id(d) for d in decode_bundle(await other.read()).lists) == [
        "east",
        "everyone",
        "fixed",
    ]
    # A new version changes the ETag and is served instead of the old one, byte for byte.
    v2 = sign_testlist(make_list("north-mobile", 2, lists["north-mobile"]), [ops]).to_bytes()
    assert (await publish(client, v2))[0] == 201
    changed = await client.get("/api/v1/testlists" + query, headers={"If-None-Match": etag})
    assert changed.status == 200
    assert v2 in decode_bundle(await changed.read()).lists
    bad = await client.get("/api/v1/testlists?asn=notanumber")
    assert bad.status == 400


def sign_list_id(data: bytes) -> str:
    from protocol.testlist import decode_testlist

    return decode_testlist(data)[1].list_id


async def test_publish_refusals_have_precise_errors(
    client: TestClient[Any, Any], ops: SigningKey
) -> None:
    good = sign_testlist(make_list("xa", 5), [ops]).to_bytes()
    assert (await publish(client, good))[0] == 201
    status, answer = await publish(client, sign_testlist(make_list("xa", 4), [ops]).to_bytes())
    assert (status, answer["error"]["code"]) == (409, "version_not_newer")
    assert "v5" in answer["error"]["message"]
    status, answer = await publish(
        client, sign_testlist(make_list("xa", 6), [SigningKey.generate()]).to_bytes()
    )
    assert (status, answer["error"]["code"]) == (403, "unknown_key")
    status, answer = await publish(client, good[:-7])
    assert (status, answer["error"]["code"]) == (400, "undecodable")
    envelope = decode_signed_document(good, "testlist")
    (sig,) = envelope.signatures
    flipped = Signature(sig.key_id, bytes([sig.sig[0] ^ 1]) + sig.sig[1:])
    forged = SignedDocument("testlist", envelope.signed, (flipped,)).to_bytes()
    status, answer = await publish(client, forged)
    assert (status, answer["error"]["code"]) == (401, "bad_signature")
    now = utc_now()
    stale = TestList(
        "old", 1, now - timedelta(days=2), now - timedelta(days=1), make_list("old", 1).entries
    )
    status, answer = await publish(client, sign_testlist(stale, [ops]).to_bytes())
    assert (status, answer["error"]["code"]) == (422, "expired")
    wrong_type = await client.post(
        "/api/v1/testlists", data=good, headers={"Content-Type": "text/plain"}
    )
    assert wrong_type.status == 400


async def test_key_rotation_at_the_collector(client: TestClient[Any, Any], ops: SigningKey) -> None:
    new = SigningKey.generate()
    now = utc_now()
    by_old = sign_testlist(make_list("xa", 1), [ops]).to_bytes()
    assert (await publish(client, by_old))[0] == 201
    rotated = successor(
        pinned_root([ops.public_key]),
        issued=now,
        expires=now + timedelta(days=30),
        add=[OperatorKey(new.public_key)],
        revoke=[OperatorKey(ops.public_key).key_id],
    )
    status, answer = await publish(
        client, sign_keyset(rotated, [new]).to_bytes(), "/api/v1/keysets"
    )
    assert (status, answer["error"]["code"]) == (403, "unknown_key")  # the old key must authorise
    status, answer = await publish(
        client, sign_keyset(rotated, [ops, new]).to_bytes(), "/api/v1/keysets"
    )
    assert status == 201 and answer["version"] == 1
    status, answer = await publish(
        client, sign_keyset(rotated, [ops, new]).to_bytes(), "/api/v1/keysets"
    )
    assert (status, answer["error"]["code"]) == (409, "keyset_rollback")
    status, answer = await publish(client, sign_testlist(make_list("xa", 2), [ops]).to_bytes())
    assert (status, answer["error"]["code"]) == (403, "unknown_key")
    assert (await publish(client, sign_testlist(make_list("yb", 1), [new]).to_bytes()))[0] == 201
    # The list signed by the now-revoked key is no longer served; the key set travels with the bundle.
    bundle = decode_bundle(await (await client.get("/api/v1/testlists?country=XA")).read())
    assert [sign_list_id(d) for d in bundle.lists] == ["yb"]
    assert len(bundle.keysets) == 1


def measurement(agent: SigningKey) -> Measurement:
    return Measurement(
        uid=new_uid(),
        agent_id=agent.agent_id,
        measured_at=utc_now(),
        runtime=0.1,
        network=NetworkContext("XA", "XA-NORTH", 64500, "MobiNet", "mobile"),  # type: ignore[arg-type]
        target=Target("http://a.domestic.test/", Scope.DOMESTIC),
        dns=DnsResult("system", ("127.0.0.1",), None, 0.01),
        tcp=(),
        http=None,
        verdict=Verdict.OK,
        blocking=None,
        failure=None,
    )


async def test_revoke_agent_and_agents_overview_with_signed_requests(
    client: TestClient[Any, Any], ops: SigningKey
) -> None:
    agent = SigningKey.generate()
    assert (
        await client.post("/api/v1/agents", json=make_registration(agent, utc_now()))
    ).status == 201
    batch = Batch(new_uid(), agent.agent_id, utc_now(), (measurement(agent), measurement(agent)))
    upload = await client.post(
        "/api/v1/batches", data=sign_batch(agent, batch).to_bytes(), headers=MSGPACK
    )
    assert upload.status == 200
    report = sign_refusal_report(
        agent, [Refusal("2026-01-01T00:00:00.000000Z", "rollback", "old", "xa", 3, "ab")], utc_now()
    )
    status, answer = await publish(client, report, "/api/v1/testlists/refusals")
    assert (status, answer) == (200, {"stored": 1})

    status, answer = await publish(
        client, sign_operator_request(ops, "list-agents", {}, utc_now()), "/api/v1/operator/agents"
    )
    assert status == 200
    (row,) = answer["agents"]
    assert row["agent_id"] == agent.agent_id and row["last_seen"] is not None
    assert (row["batches"], row["measurements"], row["refusals"]) == (1, 2, 1)
    assert (row["region"], row["asn"], row["network_type"]) == ("XA-NORTH", 64500, "mobile")

    stranger = SigningKey.generate()
    status, answer = await publish(
        client,
        sign_operator_request(stranger, "revoke-agent", {"agent_id": agent.agent_id}, utc_now()),
        "/api/v1/operator/revoke-agent",
    )
    assert (status, answer["error"]["code"]) == (403, "unknown_key")
    replayed_as = sign_operator_request(ops, "list-agents", {}, utc_now())
    status, answer = await publish(client, replayed_as, "/api/v1/operator/revoke-agent")
    assert (status, answer["error"]["code"]) == (422, "action")
    stale = sign_operator_request(
        ops, "revoke-agent", {"agent_id": agent.agent_id}, utc_now() - timedelta(hours=1)
    )
    status, answer = await publish(client, stale, "/api/v1/operator/revoke-agent")
    assert (status, answer["error"]["code"]) == (422, "time")

    request = sign_operator_request(ops, "revoke-agent", {"agent_id": agent.agent_id}, utc_now())
    status, answer = await publish(client, request, "/api/v1/operator/revoke-agent")
    assert (status, answer["status"]) == (200, "revoked")
    batch2 = Batch(new_uid(), agent.agent_id, utc_now(), (measurement(agent),))
    refused = await client.post(
        "/api/v1/batches", data=sign_batch(agent, batch2).to_bytes(), headers=MSGPACK
    )
    assert refused.status == 403 and (await refused.json())["error"]["code"] == "revoked"


async def test_collector_without_operator_keys_refuses_publication(
    aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    client = await aiohttp_client(create_app(CollectorConfig(db_path=tmp_path / "c.db")))
    status, answer = await publish(
        client, sign_testlist(make_list("xa", 1), [SigningKey.generate()]).to_bytes()
    )
    assert (status, answer["error"]["code"]) == (403, "no_operator_keys")
    served = await client.get("/api/v1/testlists")
    assert served.status == 200 and decode_bundle(await served.read()).lists == ()
