"""Every way an upload can be refused answers the right 4xx, stores nothing, and the service stays up."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import msgpack
import pg_server
import pytest
from aiohttp.test_utils import TestClient
from ingest_support import batch_of, measurement, registration_body, signed

from collector.app import INFLIGHT, LIMITS, STORAGE, CollectorConfig, create_app
from collector.ratelimit import Rate
from protocol import (
    SignedBatch,
    SigningKey,
    canonical_decode,
    canonical_encode,
    check_receipt,
    sign_batch,
    utc_now,
)

from needs import require

MSGPACK = {"Content-Type": "application/msgpack"}
Client = TestClient[Any, Any]


def config(db: str, tmp_path: Path, **overrides: Any) -> CollectorConfig:
    return CollectorConfig(
        db_path=db, key_path=tmp_path / "collector.key", migrate=True, **overrides
    )


@pytest.fixture
async def client(
    storage_url: str, tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> Client:
    return await aiohttp_client(
        create_app(config(storage_url, tmp_path, max_body_bytes=256 * 1024))
    )


async def register(client: Client, key: SigningKey) -> None:
    response = await client.post(
        "/api/v1/agents", data=registration_body(key), headers={"Content-Type": "application/json"}
    )
    assert response.status == 201


async def upload(client: Client, body: bytes) -> tuple[int, dict[str, Any]]:
    response = await client.post("/api/v1/batches", data=body, headers=MSGPACK)
    return response.status, await response.json()


async def stored(client: Client) -> int:
    response = await client.get("/api/v1/aggregate")
    return int((await response.json())["rows"][0]["measurements"])


def tampered(batch: SignedBatch) -> bytes:
    payload = bytearray(batch.payload)
    payload[-1] ^= 1
    return SignedBatch(batch.agent_id, bytes(payload), batch.signature).to_bytes()


def envelope(**fields: Any) -> bytes:
    return canonical_encode(fields)


async def test_valid_upload_stores_and_answers_a_signed_receipt(client: Client) -> None:
    key = SigningKey.generate()
    await register(client, key)
    batch = signed(key, [measurement(key), measurement(key)])
    status, answer = await upload(client, batch.to_bytes())
    assert status == 200 and answer["stored"] == 2 and answer["status"] == "stored"
    served = await (await client.get("/api/v1/collector-key")).json()
    pinned = base64.b64decode(served["public_key"])
    receipt = check_receipt(
        answer["receipt"], pinned, batch_id=answer["batch_id"], payload_sha256=batch.payload_sha256
    )
    assert abs(receipt.received_at - utc_now()) < timedelta(minutes=1)
    # a re-send is acknowledged (with a fresh receipt), never stored twice
    status, again = await upload(client, batch.to_bytes())
    assert (status, again["status"], again["stored"], again["duplicates"]) == (
        200,
        "duplicate",
        0,
        2,
    )
    assert await stored(client) == 2


REJECTIONS: dict[str, tuple[Callable[[SigningKey, SigningKey], bytes], int, str]] = {
    "oversized": (lambda k, o: b"\x00" * (300 * 1024), 413, "too_large"),
    "malformed msgpack": (lambda k, o: b"\xc1\xc1 not msgpack", 400, "undecodable"),
    "truncated msgpack": (
        lambda k, o: signed(k, [measurement(k)]).to_bytes()[:-7],
        400,
        "undecodable",
    ),
    "not canonical": (
        lambda k, o: msgpack.packb(
            {"v": 1, "sig": b"x" * 64, "payload": b"p", "agent_id": k.agent_id}
        ),
        400,
        "undecodable",
    ),
    "wrong envelope types": (
        lambda k, o: envelope(v=1, agent_id=k.agent_id, payload="text", sig=b"x" * 64),
        422,
        "schema",
    ),
    "wrong payload types": (
        lambda k, o: SignedBatch(
            k.agent_id,
            canonical_encode({"batch_id": 7}),
            k.sign(b"vantage/batch/v1", canonical_encode({"batch_id": 7})),
        ).to_bytes(),
        422,
        "schema",
    ),
    "bad signature": (lambda k, o: tampered(signed(k, [measurement(k)])), 401, "bad_signature"),
    "signed by another key": (
        lambda k, o: SignedBatch(
            k.agent_id, signed(o, [measurement(o)]).payload, signed(o, [measurement(o)]).signature
        ).to_bytes(),
        401,
        "bad_signature",
    ),
    "unknown agent": (lambda k, o: signed(o, [measurement(o)]).to_bytes(), 403, "unknown_agent"),
    "future timestamp": (
        lambda k, o: signed(k, [measurement(k, at=utc_now() + timedelta(hours=2))]).to_bytes(),
        422,
        "time_window",
    ),
    "too old": (
        lambda k, o: signed(k, [measurement(k, at=utc_now() - timedelta(days=45))]).to_bytes(),
        422,
        "time_window",
    ),
}


@pytest.mark.parametrize("case", list(REJECTIONS))
async def test_rejection_stores_nothing_and_service_stays_up(client: Client, case: str) -> None:
    key, other = SigningKey.generate(), SigningKey.generate()
    await register(client, key)
    build, status, code = REJECTIONS[case]
    got, answer = await upload(client, build(key, other))
    assert (got, answer["error"]["code"]) == (status, code), answer
    assert await stored(client) == 0
    ok, _ = await upload(client, signed(key, [measurement(key)]).to_bytes())
    assert ok == 200 and await stored(client) == 1


async def test_revoked_agent_is_refused(client: Client) -> None:
    key = SigningKey.generate()
    await register(client, key)
    assert await client.app[STORAGE].revoke_agent(key.agent_id, utc_now())
    status, answer = await upload(client, signed(key, [measurement(key)]).to_bytes())
    assert (status, answer["error"]["code"]) == (403, "revoked")
    assert await stored(client) == 0


async def test_replay_of_a_batch_id_with_other_content_is_a_conflict(client: Client) -> None:
    key = SigningKey.generate()
    await register(client, key)
    first = signed(key, [measurement(key)])
    assert (await upload(client, first.to_bytes()))[0] == 200
    batch_id = check_batch_id(first)
    replay = sign_batch(key, batch_of(key, [measurement(key)], batch_id=batch_id))
    status, answer = await upload(client, replay.to_bytes())
    assert (status, answer["error"]["code"]) == (409, "batch_conflict")
    assert await stored(client) == 1


def check_batch_id(batch: SignedBatch) -> str:
    return str(canonical_decode(batch.payload)["batch_id"])


async def test_wrong_content_type_is_415(client: Client) -> None:
    response = await client.post(
        "/api/v1/batches", data=b"{}", headers={"Content-Type": "application/json"}
    )
    assert response.status == 415


async def test_per_agent_rate_limit_answers_429_with_retry_after(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    app = create_app(config(str(tmp_path / "c.db"), tmp_path, agent_rate=Rate(0.01, 2)))
    client = await aiohttp_client(app)
    key, other = SigningKey.generate(), SigningKey.generate()
    await register(client, key)
    await register(client, other)
    for _ in range(2):
        assert (await upload(client, signed(key, [measurement(key)]).to_bytes()))[0] == 200
    response = await client.post(
        "/api/v1/batches", data=signed(key, [measurement(key)]).to_bytes(), headers=MSGPACK
    )
    assert response.status == 429
    assert (await response.json())["error"]["code"] == "rate_limited"
    assert int(response.headers["Retry-After"]) >= 1
    assert await stored(client) == 2
    # another agent has its own allowance; junk sent under the limited agent's id cannot spend it
    assert (await upload(client, signed(other, [measurement(other)]).to_bytes()))[0] == 200


async def test_per_address_rate_limit_answers_429_with_retry_after(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    app = create_app(config(str(tmp_path / "c.db"), tmp_path, address_rate=Rate(0.01, 3)))
    client = await aiohttp_client(app)
    statuses = [
        (await client.post("/api/v1/batches", data=b"junk", headers=MSGPACK)).status
        for _ in range(4)
    ]
    assert statuses == [400, 400, 400, 429]
    response = await client.post(
        "/api/v1/agents", data=b"{}", headers={"Content-Type": "application/json"}
    )
    assert response.status == 429 and int(response.headers["Retry-After"]) >= 1
    # reads are not limited, and the limiter holds no address, only keyed hashes of it
    assert (await client.get("/healthz")).status == 200
    limiter = app[LIMITS].per_address.limiter
    assert len(limiter) == 1 and "127.0.0.1" not in repr(limiter._buckets)


async def test_uploads_beyond_the_inflight_limit_get_503_and_nothing_is_lost(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    """Back-pressure: at the limit a new upload is refused before its body is read; the one in
    flight still completes, and the refused batch goes through when retried."""
    app = create_app(config(str(tmp_path / "c.db"), tmp_path, max_inflight_uploads=1))
    client = await aiohttp_client(app)
    key = SigningKey.generate()
    await register(client, key)
    slow, refused = signed(key, [measurement(key)]), signed(key, [measurement(key)])
    release = asyncio.Event()

    async def trickle() -> Any:  # holds the only slot until released
        body = slow.to_bytes()
        yield body[:16]
        await release.wait()
        yield body[16:]

    first = asyncio.ensure_future(client.post("/api/v1/batches", data=trickle(), headers=MSGPACK))
    for _ in range(500):
        if app[INFLIGHT].current == 1:
            break
        await asyncio.sleep(0.01)
    assert app[INFLIGHT].current == 1
    response = await client.post("/api/v1/batches", data=refused.to_bytes(), headers=MSGPACK)
    assert response.status == 503
    assert (await response.json())["error"]["code"] == "busy"
    assert int(response.headers["Retry-After"]) >= 1
    release.set()
    assert (await first).status == 200
    assert app[INFLIGHT].current == 0
    assert (await upload(client, refused.to_bytes()))[0] == 200
    assert await stored(client) == 2


async def test_a_database_outage_is_a_503_the_agent_retries_not_a_500(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    """The collector's own PostgreSQL server goes away mid-service: uploads and health checks get
    503 storage_unavailable with Retry-After (agents keep the batch and retry), never a 500."""
    require(pg_server.available(), "PostgreSQL server binaries (Debian package postgresql) absent")
    server = pg_server.PostgresServer()  # its own server: this test stops it
    try:
        server.start()
        client = await aiohttp_client(create_app(config(server.new_database(), tmp_path)))
        key = SigningKey.generate()
        await register(client, key)
        assert (await upload(client, signed(key, [measurement(key)]).to_bytes()))[0] == 200
        server.stop()
        response = await client.post(
            "/api/v1/batches", data=signed(key, [measurement(key)]).to_bytes(), headers=MSGPACK
        )
        assert response.status == 503
        assert (await response.json())["error"]["code"] == "storage_unavailable"
        assert int(response.headers["Retry-After"]) >= 1
        health = await client.get("/healthz")
        assert health.status == 503
    finally:
        server.stop()
