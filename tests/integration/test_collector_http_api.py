"""The collector's HTTP API against signed batches built with ``protocol``: a real server, a real SQLite file."""

from __future__ import annotations

import base64
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import msgpack
import pytest

from collector.sqlite_store import SqliteStorage
from protocol import (
    SignatureError,
    SignedBatch,
    SigningKey,
    canonical_encode,
    make_registration,
    utc_now,
    verify,
)
from protocol.receipt import check_receipt
from protocol.signing import DOMAIN_BATCH

# --- small checks ---------------------------------------------------------------------------------


def assert_error(status: int, document: Any, expected_status: int, expected_code: str) -> None:
    assert status == expected_status, document
    assert set(document) == {"error"}, document
    assert set(document["error"]) == {"code", "message"}, document
    assert document["error"]["code"] == expected_code, document
    assert isinstance(document["error"]["message"], str) and document["error"]["message"]


# --- service basics -------------------------------------------------------------------------------


async def test_index_and_health(api):
    response = await api.client.get("/healthz")
    assert response.status == 200
    assert await response.json() == {"status": "ok"}
    response = await api.client.get("/")
    document = await response.json()
    assert document["service"] == "vantage-collector"
    assert "POST /api/v1/batches" in document["endpoints"]


async def test_unknown_route_is_a_json_404(api):
    response = await api.client.get("/api/v1/nothing-here")
    assert_error(response.status, await response.json(), 404, "not_found")


# --- registration ---------------------------------------------------------------------------------


async def test_registration_is_201_then_200(api, db):
    key = SigningKey.generate()
    status, document = await api.register(key)
    assert status == 201
    assert document == {"agent_id": key.agent_id, "status": "registered"}
    status, document = await api.register(key)
    assert status == 200
    assert document == {"agent_id": key.agent_id, "status": "already_registered"}
    rows = db.query("SELECT agent_id, public_key, revoked_at FROM agents")
    assert rows == [(key.agent_id, key.public_key, None)]


async def test_registration_bad_json_is_400(api, db):
    response = await api.client.post(
        "/api/v1/agents", data=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert_error(response.status, await response.json(), 400, "undecodable")
    assert db.counts()["agents"] == 0


async def test_registration_with_another_keys_proof_is_401(api, db):
    key, impostor = SigningKey.generate(), SigningKey.generate()
    body = make_registration(key, utc_now())
    body["proof"] = make_registration(impostor, utc_now())["proof"]
    response = await api.client.post("/api/v1/agents", json=body)
    assert_error(response.status, await response.json(), 401, "bad_signature")
    assert db.counts()["agents"] == 0


async def test_registration_proof_over_another_time_is_401(api, db):
    key = SigningKey.generate()
    body = make_registration(key, utc_now())
    body["time"] = make_registration(key, utc_now() + timedelta(seconds=1))["time"]
    response = await api.client.post("/api/v1/agents", json=body)
    assert_error(response.status, await response.json(), 401, "bad_signature")
    assert db.counts()["agents"] == 0


@pytest.mark.parametrize("minutes", [-20, 20])
async def test_registration_with_stale_time_is_422(api, db, minutes):
    key = SigningKey.generate()
    status, document = await api.register(key, at=utc_now() + timedelta(minutes=minutes))
    assert_error(status, document, 422, "time")
    assert db.counts()["agents"] == 0


@pytest.mark.parametrize(
    "mangle",
    [
        lambda body: {k: v for k, v in body.items() if k != "proof"},
        lambda body: {**body, "public_key": "not base64!"},
        lambda body: {**body, "public_key": base64.b64encode(b"short").decode()},
        lambda body: {**body, "time": "yesterday"},
        lambda body: [body],
    ],
    ids=["missing-proof", "bad-base64", "short-key", "bad-time", "not-an-object"],
)
async def test_registration_schema_problems_are_422(api, db, mangle):
    body = mangle(make_registration(SigningKey.generate(), utc_now()))
    response = await api.client.post("/api/v1/agents", json=body)
    assert_error(response.status, await response.json(), 422, "schema")
    assert db.counts()["agents"] == 0


async def test_revoked_agent_gets_403_on_upload_and_on_registration(api, db, db_path, build):
    key = SigningKey.generate()
    assert (await api.register(key))[0] == 201
    status, document = await api.upload(build.body(key, [build.measurement(key)]))
    assert (status, document["stored"]) == (200, 1)

    storage = SqliteStorage(db_path)  # a second storage on the same file, as an operator tool would
    await storage.open()
    try:
        assert await storage.revoke_agent(key.agent_id, utc_now()) is True
        assert await storage.revoke_agent(key.agent_id, utc_now()) is False  # already revoked
    finally:
        await storage.close()

    before = db.counts()
    status, document = await api.upload(build.body(key, [build.measurement(key)]))
    assert_error(status, document, 403, "revoked")
    status, document = await api.register(key)
    assert_error(status, document, 403, "revoked")
    assert db.counts() == before
    # Other agents are unaffected.
    other = SigningKey.generate()
    assert (await api.register(other))[0] == 201
    status, document = await api.upload(build.body(other, [build.measurement(other)]))
    assert (status, document["stored"]) == (200, 1)


# --- uploads and dedupe ---------------------------------------------------------------------------


async def test_upload_stores_then_dedupes_identical_bytes(api, agent_key, build, db):
    measurements = [build.measurement(agent_key, host=f"site{i}.example.test") for i in range(3)]
    signed = build.signed(agent_key, measurements)
    body = signed.to_bytes()
    response = await api.client.get("/api/v1/collector-key")
    collector_key = base64.b64decode((await response.json())["public_key"])

    status, document = await api.upload(body)
    assert status == 200
    batch_id = canonical_batch_id(signed)
    receipt = document.pop("receipt")
    assert document == {"status": "stored", "batch_id": batch_id, "stored": 3, "duplicates": 0}
    check_receipt(receipt, collector_key, batch_id=batch_id, payload_sha256=signed.payload_sha256)
    assert db.counts() == {"agents": 1, "batches": 1, "measurements": 3}

    status, document = await api.upload(body)
    assert status == 200
    receipt = document.pop("receipt")
    assert document == {"status": "duplicate", "batch_id": batch_id, "stored": 0, "duplicates": 3}
    # A lost acknowledgement is answered with a receipt for the same bytes.
    check_receipt(receipt, collector_key, batch_id=batch_id, payload_sha256=signed.payload_sha256)
    assert db.counts() == {"agents": 1, "batches": 1, "measurements": 3}
    stored = {row[0] for row in db.query("SELECT uid FROM measurements")}
    assert stored == {m.uid for m in measurements}


def canonical_batch_id(signed: SignedBatch) -> str:
    return msgpack.unpackb(signed.payload)["batch_id"]


async def test_measurement_uid_reused_in_another_batch_counts_as_duplicate(
    api, agent_key, build, db
):
    first = build.measurement(agent_key, host="a.example.test")
    status, document = await api.upload(build.body(agent_key, [first]))
    assert (status, document["stored"]) == (200, 1)

    # A crash between packing and deleting pending files can put a measurement in two batches.
    fresh = build.measurement(agent_key, host="b.example.test")
    status, document = await api.upload(build.body(agent_key, [first, fresh]))
    assert status == 200
    assert document["status"] == "stored"
    assert (document["stored"], document["duplicates"]) == (1, 1)
    assert db.counts() == {"agents": 1, "batches": 2, "measurements": 2}
    # The row keeps the batch that first delivered it.
    rows = dict(db.query("SELECT uid, batch_id FROM measurements"))
    assert rows[first.uid] != rows[fresh.uid]


async def test_different_payload_under_existing_batch_id_is_409(api, agent_key, build, db):
    signed = build.signed(agent_key, [build.measurement(agent_key)])
    status, _ = await api.upload(signed.to_bytes())
    assert status == 200
    before = db.counts()

    batch_id = canonical_batch_id(signed)
    other = build.body(agent_key, [build.measurement(agent_key, host="x.example.test")], batch_id)
    status, document = await api.upload(other)
    assert_error(status, document, 409, "batch_conflict")
    assert batch_id in document["error"]["message"]
    assert db.counts() == before
    # The original is untouched and still dedupes.
    status, document = await api.upload(signed.to_bytes())
    assert (status, document["status"]) == (200, "duplicate")


async def test_two_agents_upload_independently(api, build, db):
    keys = [SigningKey.generate() for _ in range(2)]
    for key in keys:
        assert (await api.register(key))[0] == 201
        status, document = await api.upload(build.body(key, [build.measurement(key)]))
        assert (status, document["stored"]) == (200, 1)
    agents = {row[0] for row in db.query("SELECT agent_id FROM measurements")}
    assert agents == {key.agent_id for key in keys}


# --- bad input: the right 4xx, nothing stored, the server keeps serving ---------------------------

SMALL_LIMIT = 16 * 1024


@dataclass
class Ctx:
    build: Any
    key: SigningKey  # registered
    other: SigningKey  # registered too
    stranger: SigningKey  # never registered

    def good(self) -> bytes:
        return self.build.body(self.key, [self.build.measurement(self.key)])

    def signed_payload(self, wire: Any, *, signer: SigningKey | None = None) -> bytes:
        """Sign hand-made payload bytes exactly as an agent would, bypassing message validation."""
        signer = signer or self.key
        payload = wire if isinstance(wire, bytes) else canonical_encode(wire)
        return SignedBatch(signer.agent_id, payload, signer.sign(DOMAIN_BATCH, payload)).to_bytes()

    def wire(self) -> dict[str, Any]:
        return self.build.batch(self.key, [self.build.measurement(self.key)]).to_wire()


def tampered_payload(ctx: Ctx) -> bytes:
    signed = ctx.build.signed(ctx.key, [ctx.build.measurement(ctx.key)])
    payload = bytearray(signed.payload)
    payload[len(payload) // 2] ^= 0x01
    return SignedBatch(signed.agent_id, bytes(payload), signed.signature).to_bytes()


def tampered_signature(ctx: Ctx) -> bytes:
    signed = ctx.build.signed(ctx.key, [ctx.build.measurement(ctx.key)])
    signature = bytearray(signed.signature)
    signature[-1] ^= 0x80
    return SignedBatch(signed.agent_id, signed.payload, bytes(signature)).to_bytes()


def signed_by_another_key(ctx: Ctx) -> bytes:
    signed = ctx.build.signed(ctx.key, [ctx.build.measurement(ctx.key)])
    forged = ctx.other.sign(DOMAIN_BATCH, signed.payload)
    return SignedBatch(ctx.key.agent_id, signed.payload, forged).to_bytes()


def other_agents_batch_in_own_envelope(ctx: Ctx) -> bytes:
    # A registered agent signs (validly) a batch that claims to be someone else's.
    return ctx.signed_payload(ctx.wire(), signer=ctx.other)


def unregistered_agent(ctx: Ctx) -> bytes:
    return ctx.build.body(ctx.stranger, [ctx.build.measurement(ctx.stranger)])


def future_measurement(ctx: Ctx) -> bytes:
    late = ctx.build.measurement(ctx.key, measured_at=utc_now() + timedelta(hours=1))
    return ctx.build.body(ctx.key, [ctx.build.measurement(ctx.key), late])


def ancient_measurement(ctx: Ctx) -> bytes:
    old = ctx.build.measurement(ctx.key, measured_at=utc_now() - timedelta(days=31))
    return ctx.build.body(ctx.key, [old])


def mutate(change: Callable[[dict[str, Any]], None]) -> Callable[[Ctx], bytes]:
    def make(ctx: Ctx) -> bytes:
        wire = ctx.wire()
        change(wire)
        return ctx.signed_payload(wire)

    return make


def _set(path: tuple[Any, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def change(wire: dict[str, Any]) -> None:
        target = wire
        for step in path[:-1]:
            target = target[step]
        target[path[-1]] = value

    return change


def non_canonical_envelope(ctx: Ctx) -> bytes:
    signed = ctx.build.signed(ctx.key, [ctx.build.measurement(ctx.key)])
    unsorted = {
        "v": 1,
        "sig": signed.signature,
        "payload": signed.payload,
        "agent_id": ctx.key.agent_id,
    }
    return msgpack.packb(unsorted, use_bin_type=True)


def non_canonical_signed_payload(ctx: Ctx) -> bytes:
    wire = ctx.wire()
    payload = msgpack.packb(dict(reversed(list(wire.items()))), use_bin_type=True)
    return ctx.signed_payload(payload)


def oversized_valid_batch(ctx: Ctx) -> bytes:
    measurements = [
        ctx.build.measurement(ctx.key, host=f"site{i}.example.test") for i in range(120)
    ]
    body = ctx.build.body(ctx.key, measurements)
    assert len(body) > SMALL_LIMIT
    return body


BAD_INPUTS: dict[str, tuple[Callable[[Ctx], bytes], str, int, str]] = {
    # name: (make body, content type, status, error code)
    "tampered-payload-byte": (tampered_payload, "application/msgpack", 401, "bad_signature"),
    "tampered-signature": (tampered_signature, "application/msgpack", 401, "bad_signature"),
    "signed-by-another-key": (signed_by_another_key, "application/msgpack", 401, "bad_signature"),
    "batch-of-another-agent": (
        other_agents_batch_in_own_envelope,
        "application/msgpack",
        422,
        "schema",
    ),
    "unregistered-agent": (unregistered_agent, "application/msgpack", 403, "unknown_agent"),
    "truncated": (lambda ctx: ctx.good()[:-7], "application/msgpack", 400, "undecodable"),
    "garbage": (
        lambda ctx: random.Random(7).randbytes(512),
        "application/msgpack",
        400,
        "undecodable",
    ),
    "empty": (lambda ctx: b"", "application/msgpack", 400, "undecodable"),
    "non-canonical-envelope": (non_canonical_envelope, "application/msgpack", 400, "undecodable"),
    "msgpack-but-not-an-envelope": (
        lambda ctx: canonical_encode({"hello": "world"}),
        "application/msgpack",
        422,
        "schema",
    ),
    "json-content-type": (
        lambda ctx: ctx.good(),
        "application/json",
        415,
        "unsupported_media_type",
    ),
    "text-content-type": (lambda ctx: ctx.good(), "text/plain", 415, "unsupported_media_type"),
    "oversized": (oversized_valid_batch, "application/msgpack", 413, "too_large"),
    "measured-in-the-future": (future_measurement, "application/msgpack", 422, "time_window"),
    "measured-31-days-ago": (ancient_measurement, "application/msgpack", 422, "time_window"),
    "signed-unknown-verdict": (
        mutate(_set(("measurements", 0, "verdict"), "blocked")),
        "application/msgpack",
        422,
        "schema",
    ),
    "signed-extra-field": (
        mutate(_set(("measurements", 0, "client_ip"), "192.0.2.1")),
        "application/msgpack",
        422,
        "schema",
    ),
    "signed-bad-uid": (
        mutate(_set(("measurements", 0, "uid"), "NOT-A-UID")),
        "application/msgpack",
        422,
        "schema",
    ),
    "signed-no-measurements": (
        mutate(_set(("measurements",), [])),
        "application/msgpack",
        422,
        "schema",
    ),
    "signed-bad-failure-string": (
        mutate(_set(("measurements", 0, "failure"), "it broke")),
        "application/msgpack",
        422,
        "schema",
    ),
    "signed-not-a-batch": (
        lambda ctx: ctx.signed_payload(["a", "list"]),
        "application/msgpack",
        422,
        "schema",
    ),
    "signed-non-canonical-payload": (
        non_canonical_signed_payload,
        "application/msgpack",
        400,
        "undecodable",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
async def test_bad_upload_is_refused_stores_nothing_and_server_keeps_serving(
    make_api, build, db, case
):
    api = await make_api(max_body_bytes=SMALL_LIMIT)
    keys = [SigningKey.generate() for _ in range(2)]
    for key in keys:
        assert (await api.register(key))[0] == 201
    ctx = Ctx(build, keys[0], keys[1], SigningKey.generate())
    status, document = await api.upload(ctx.good())  # something already stored
    assert (status, document["stored"]) == (200, 1)
    before = db.counts()

    make_body, content_type, expected_status, expected_code = BAD_INPUTS[case]
    status, document = await api.upload(make_body(ctx), content_type)
    assert_error(status, document, expected_status, expected_code)
    assert db.counts() == before

    status, document = await api.upload(ctx.good())
    assert (status, document["status"], document["stored"]) == (200, "stored", 1)
    assert db.counts()["measurements"] == before["measurements"] + 1


async def test_many_bad_requests_in_a_row_on_one_connection(make_api, build, db):
    api = await make_api(max_body_bytes=SMALL_LIMIT)
    key = SigningKey.generate()
    assert (await api.register(key))[0] == 201
    for seed in range(20):
        status, document = await api.upload(random.Random(seed).randbytes(64 + seed * 97))
        assert 400 <= status < 500, document
        assert set(document["error"]) == {"code", "message"}
    assert db.counts() == {"agents": 1, "batches": 0, "measurements": 0}
    status, document = await api.upload(build.body(key, [build.measurement(key)]))
    assert (status, document["stored"]) == (200, 1)


# --- evidence and privacy -------------------------------------------------------------------------


async def test_stored_payload_reverifies_with_the_agents_key(api, agent_key, build, db):
    signed = build.signed(
        agent_key, [build.measurement(agent_key, host=f"h{i}.example.test") for i in range(4)]
    )
    status, _ = await api.upload(signed.to_bytes())
    assert status == 200

    [(agent_id, payload, signature, sha)] = db.query(
        "SELECT agent_id, payload, signature, payload_sha256 FROM batches"
    )
    [(public_key,)] = db.query("SELECT public_key FROM agents WHERE agent_id = ?", (agent_id,))
    assert bytes(payload) == signed.payload
    assert sha == signed.payload_sha256
    verify(bytes(public_key), DOMAIN_BATCH, bytes(payload), bytes(signature))  # raises if not
    batch = SignedBatch(agent_id, bytes(payload), bytes(signature)).verify(bytes(public_key))
    stored_uids = {row[0] for row in db.query("SELECT uid FROM measurements")}
    assert {m.uid for m in batch.measurements} == stored_uids
    # And the evidence is tamper-evident.
    forged = bytearray(payload)
    forged[-1] ^= 0x01
    with pytest.raises(SignatureError):
        verify(bytes(public_key), DOMAIN_BATCH, bytes(forged), bytes(signature))


async def test_no_client_address_is_stored_anywhere(make_api, build, db):
    api = await make_api(max_body_bytes=SMALL_LIMIT)
    keys = [SigningKey.generate() for _ in range(2)]
    for key in keys:
        assert (await api.register(key))[0] == 201
        body = build.body(key, [build.measurement(key, host=f"{key.agent_id[:8]}.example.test")])
        assert (await api.upload(body))[0] == 200
        assert (await api.upload(body))[0] == 200  # duplicate
        assert (await api.upload(body[:-3]))[0] == 400  # rejected
        assert (await api.register(key))[0] == 200
    status, _ = await api.aggregate(by="region")
    assert status == 200

    seen = 0
    for table, column, value in db.all_values():
        seen += 1
        if isinstance(value, str):
            assert "127.0.0.1" not in value, (table, column, value)
            assert "localhost" not in value, (table, column, value)
        elif isinstance(value, bytes):
            assert b"127.0.0.1" not in value, (table, column)
    assert seen > 50
    columns = {row[1] for table in db.TABLES for row in db.query(f"PRAGMA table_info({table})")}
    assert not {"ip", "client_ip", "remote", "address", "peer"} & columns
