"""protocol.envelope: signed batch uploads and agent registrations."""

from __future__ import annotations

import base64
import hashlib
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.canonical import DecodeLimits, canonical_decode, canonical_encode
from protocol.envelope import (
    REGISTRATION_MAX_SKEW,
    SignedBatch,
    decode_signed_batch,
    make_registration,
    sign_batch,
    verify_registration,
)
from protocol.errors import (
    DecodeError,
    LocalProtocolError,
    RemoteProtocolError,
    SchemaError,
    SignatureError,
)
from protocol.messages import Batch
from protocol.signing import DOMAIN_BATCH, DOMAIN_REGISTER, SigningKey

import builders as b

FAST = settings(max_examples=200, deadline=None)

BATCH = b.batch(count=3)
SIGNED = sign_batch(b.KEY_A, BATCH)
ENVELOPE = SIGNED.to_bytes()


def signed_payload(key: SigningKey, wire: Any, agent_id: str | None = None) -> bytes:
    """An envelope around any wire value, validly signed by ``key`` (a malicious but real agent)."""
    payload = canonical_encode(wire)
    signature = key.sign(DOMAIN_BATCH, payload)
    return SignedBatch(agent_id or key.agent_id, payload, signature).to_bytes()


def envelope_with(**fields: Any) -> bytes:
    wire = canonical_decode(ENVELOPE)
    wire.update(fields)
    return canonical_encode({key: value for key, value in wire.items() if value is not ...})


# --- batches: the happy path -----------------------------------------------------------------------


def test_sign_encode_decode_verify_round_trip() -> None:
    received = decode_signed_batch(ENVELOPE)
    assert received == SIGNED
    assert received.verify(b.KEY_A.public_key) == BATCH


def test_the_envelope_is_canonical_msgpack_of_four_fields() -> None:
    wire = canonical_decode(ENVELOPE)
    assert wire == {
        "v": 1,
        "agent_id": b.KEY_A.agent_id,
        "payload": canonical_encode(BATCH.to_wire()),
        "sig": SIGNED.signature,
    }
    assert SIGNED.payload_sha256 == hashlib.sha256(SIGNED.payload).hexdigest()


def test_signing_is_deterministic() -> None:
    assert sign_batch(b.KEY_A, BATCH).to_bytes() == ENVELOPE


@settings(max_examples=30, deadline=None)
@given(st.lists(b.measurements(), min_size=1, max_size=3, unique_by=lambda m: m.uid))
def test_any_valid_batch_survives_the_envelope(items: list[Any]) -> None:
    batch = Batch(b.uid(-1), b.KEY_A.agent_id, b.MOMENT, tuple(items))
    data = sign_batch(b.KEY_A, batch).to_bytes()
    assert decode_signed_batch(data).verify(b.KEY_A.public_key) == batch


def test_an_agent_cannot_sign_another_agents_batch() -> None:
    with pytest.raises(LocalProtocolError):
        sign_batch(b.KEY_B, BATCH)


# --- batches: tampering and impersonation ----------------------------------------------------------


@FAST
@given(st.integers(0, len(ENVELOPE) - 1), st.integers(1, 255))
def test_any_flipped_byte_is_detected(index: int, mask: int) -> None:
    tampered = bytearray(ENVELOPE)
    tampered[index] ^= mask
    with pytest.raises(RemoteProtocolError) as info:
        decode_signed_batch(bytes(tampered)).verify(b.KEY_A.public_key)
    assert type(info.value) in (DecodeError, SchemaError, SignatureError)


@FAST
@given(st.integers(0, len(ENVELOPE) - 1))
def test_any_truncation_is_detected(length: int) -> None:
    with pytest.raises(DecodeError):
        decode_signed_batch(ENVELOPE[:length])


def test_each_part_of_the_envelope_is_covered() -> None:
    payload_at = ENVELOPE.index(SIGNED.payload)
    sig_at = ENVELOPE.index(SIGNED.signature)
    id_at = ENVELOPE.index(b.KEY_A.agent_id.encode())
    expected = {payload_at + 10: SignatureError, sig_at + 10: SignatureError, id_at: SignatureError}
    for index, error in expected.items():
        tampered = bytearray(ENVELOPE)
        tampered[index] ^= 0x01
        with pytest.raises(error):
            decode_signed_batch(bytes(tampered)).verify(b.KEY_A.public_key)


def test_another_agents_key_does_not_verify() -> None:
    with pytest.raises(SignatureError) as info:
        decode_signed_batch(ENVELOPE).verify(b.KEY_B.public_key)
    assert info.value.reason == "bad_key"


def test_a_signature_by_another_key_does_not_verify() -> None:
    # the envelope claims agent A, but B signed it
    payload = canonical_encode(BATCH.to_wire())
    forged = SignedBatch(b.KEY_A.agent_id, payload, b.KEY_B.sign(DOMAIN_BATCH, payload))
    with pytest.raises(SignatureError):
        decode_signed_batch(forged.to_bytes()).verify(b.KEY_A.public_key)


def test_a_registration_signature_is_not_a_batch_signature() -> None:
    payload = canonical_encode(BATCH.to_wire())
    replayed = SignedBatch(b.KEY_A.agent_id, payload, b.KEY_A.sign(DOMAIN_REGISTER, payload))
    with pytest.raises(SignatureError):
        decode_signed_batch(replayed.to_bytes()).verify(b.KEY_A.public_key)


def test_the_payload_agent_must_be_the_envelope_agent() -> None:
    # B signs, honestly as B, a batch that claims to be A's measurements
    data = signed_payload(b.KEY_B, BATCH.to_wire())
    with pytest.raises(SchemaError, match="agent_id"):
        decode_signed_batch(data).verify(b.KEY_B.public_key)


def test_an_envelope_claiming_another_agent_is_refused() -> None:
    # B signs its own batch but labels the envelope with A's id
    theirs = b.batch(agent_id=b.KEY_B.agent_id)
    data = signed_payload(b.KEY_B, theirs.to_wire(), agent_id=b.KEY_A.agent_id)
    with pytest.raises(SignatureError):
        decode_signed_batch(data).verify(b.KEY_B.public_key)
    with pytest.raises(SignatureError):
        decode_signed_batch(data).verify(b.KEY_A.public_key)


@pytest.mark.parametrize(
    ("wire", "error"),
    [
        ({"schema": 1}, SchemaError),
        ([1, 2, 3], SchemaError),
        ({**BATCH.to_wire(), "measurements": []}, SchemaError),
        ({**BATCH.to_wire(), "extra": 1}, SchemaError),
        ({**BATCH.to_wire(), "created_at": "yesterday"}, SchemaError),
    ],
)
def test_a_signed_but_invalid_payload_is_refused(wire: Any, error: type[Exception]) -> None:
    data = signed_payload(b.KEY_A, wire)
    with pytest.raises(error):
        decode_signed_batch(data).verify(b.KEY_A.public_key)


def test_a_signed_non_canonical_payload_is_a_decode_error() -> None:
    import msgpack

    payload = msgpack.packb(dict(reversed(list(BATCH.to_wire().items()))), use_bin_type=True)
    data = SignedBatch(b.KEY_A.agent_id, payload, b.KEY_A.sign(DOMAIN_BATCH, payload)).to_bytes()
    with pytest.raises(DecodeError):
        decode_signed_batch(data).verify(b.KEY_A.public_key)


def test_payload_limits_apply() -> None:
    received = decode_signed_batch(ENVELOPE)
    with pytest.raises(DecodeError) as info:
        received.verify(b.KEY_A.public_key, DecodeLimits(max_bytes=len(received.payload) - 1))
    assert info.value.reason == "size"


def test_envelope_limits_apply() -> None:
    with pytest.raises(DecodeError) as info:
        decode_signed_batch(ENVELOPE, DecodeLimits(max_bytes=len(ENVELOPE) - 1))
    assert info.value.reason == "size"


def test_a_signed_payload_with_a_malformed_url_is_a_schema_error() -> None:
    wire = BATCH.to_wire()
    wire["measurements"][0]["target"]["url"] = "http://[::1/"
    data = signed_payload(b.KEY_A, wire)
    with pytest.raises(SchemaError):
        decode_signed_batch(data).verify(b.KEY_A.public_key)


def test_a_deeply_nested_upload_is_a_decode_error() -> None:
    with pytest.raises(DecodeError):
        decode_signed_batch(b"\x91" * 1000 + b"\xc0")


# --- batches: malformed envelopes ----------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        envelope_with(v=2),
        envelope_with(v="1"),
        envelope_with(v=...),
        envelope_with(extra=b""),
        envelope_with(agent_id=b.KEY_A.agent_id.encode()),
        envelope_with(agent_id=b.KEY_A.agent_id[:-1]),
        envelope_with(agent_id=None),
        envelope_with(payload=b""),
        envelope_with(payload="text, not binary"),
        envelope_with(sig=SIGNED.signature[:-1]),
        envelope_with(sig=SIGNED.signature + b"\x00"),
        envelope_with(sig=base64.b64encode(SIGNED.signature).decode()),
        envelope_with(sig=...),
        canonical_encode([1, b.KEY_A.agent_id, SIGNED.payload, SIGNED.signature]),
        canonical_encode(None),
    ],
)
def test_malformed_envelopes_are_schema_errors(data: bytes) -> None:
    with pytest.raises(SchemaError):
        decode_signed_batch(data)


@pytest.mark.parametrize("data", [b"", b"\x80\x80", ENVELOPE + b"\x00", b"{}"])
def test_undecodable_envelopes_are_decode_errors(data: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_signed_batch(data)


@FAST
@given(st.binary(max_size=128))
def test_arbitrary_bytes_are_never_a_valid_upload(data: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        decode_signed_batch(data).verify(b.KEY_A.public_key)


# --- registration --------------------------------------------------------------------------------

NOW = b.MOMENT


def test_registration_round_trip() -> None:
    body = make_registration(b.KEY_A, NOW)
    assert set(body) == {"public_key", "time", "proof"}
    assert all(isinstance(value, str) for value in body.values())
    assert verify_registration(body, NOW) == (b.KEY_A.agent_id, b.KEY_A.public_key)


def test_registration_survives_json() -> None:
    import json

    body = json.loads(json.dumps(make_registration(b.KEY_B, NOW)))
    assert verify_registration(body, NOW + timedelta(minutes=3)) == (
        b.KEY_B.agent_id,
        b.KEY_B.public_key,
    )


@pytest.mark.parametrize(
    "skew",
    [
        REGISTRATION_MAX_SKEW,
        -REGISTRATION_MAX_SKEW,
        timedelta(minutes=14, seconds=59),
        timedelta(0),
    ],
)
def test_registration_within_the_skew_is_accepted(skew: timedelta) -> None:
    body = make_registration(b.KEY_A, NOW)
    assert verify_registration(body, NOW + skew)[0] == b.KEY_A.agent_id


@pytest.mark.parametrize(
    "skew",
    [
        REGISTRATION_MAX_SKEW + timedelta(microseconds=1),
        -REGISTRATION_MAX_SKEW - timedelta(microseconds=1),
        timedelta(minutes=16),
        timedelta(days=-365),
    ],
)
def test_registration_outside_the_skew_is_refused(skew: timedelta) -> None:
    body = make_registration(b.KEY_A, NOW)
    with pytest.raises(SchemaError) as info:
        verify_registration(body, NOW + skew)
    assert info.value.reason == "time"


def test_a_tampered_proof_is_refused() -> None:
    body = make_registration(b.KEY_A, NOW)
    proof = bytearray(base64.b64decode(body["proof"]))
    proof[5] ^= 0x20
    with pytest.raises(SignatureError):
        verify_registration({**body, "proof": base64.b64encode(proof).decode()}, NOW)


def test_a_changed_time_is_refused() -> None:
    body = make_registration(b.KEY_A, NOW)
    later = make_registration(b.KEY_A, NOW + timedelta(seconds=1))
    with pytest.raises(SignatureError):
        verify_registration({**body, "time": later["time"]}, NOW)


def test_a_proof_for_another_key_is_refused() -> None:
    mine, theirs = make_registration(b.KEY_A, NOW), make_registration(b.KEY_B, NOW)
    with pytest.raises(SignatureError):
        verify_registration({**mine, "public_key": theirs["public_key"]}, NOW)


def test_a_batch_signature_is_not_a_registration_proof() -> None:
    body = make_registration(b.KEY_A, NOW)
    message = canonical_encode({"public_key": b.KEY_A.public_key, "time": body["time"]})
    proof = b.KEY_A.sign(DOMAIN_BATCH, message)
    with pytest.raises(SignatureError):
        verify_registration({**body, "proof": base64.b64encode(proof).decode()}, NOW)


@pytest.mark.parametrize("field", ["public_key", "time", "proof"])
def test_registration_fields_are_required(field: str) -> None:
    body = make_registration(b.KEY_A, NOW)
    del body[field]
    with pytest.raises(SchemaError, match=field):
        verify_registration(body, NOW)


@pytest.mark.parametrize("body", [None, [], "body", b"{}", 1])
def test_registration_must_be_an_object(body: Any) -> None:
    with pytest.raises(SchemaError):
        verify_registration(body, NOW)


KEY_B64 = base64.b64encode(b.KEY_A.public_key).decode()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("public_key", "not base64!"),
        ("public_key", KEY_B64[:-4]),  # 30 bytes
        ("public_key", KEY_B64.rstrip("=")),  # padding missing
        ("public_key", KEY_B64 + "AAAA"),  # 35 bytes
        ("public_key", " " + KEY_B64),
        ("public_key", KEY_B64.replace("+", "-").replace("/", "_") + "é"),
        ("public_key", b.KEY_A.public_key),  # raw bytes, not a string
        ("public_key", None),
        ("proof", base64.b64encode(b"x" * 63).decode()),
        ("proof", "====" * 22),
        ("proof", 42),
        ("time", "2026-01-31T12:00:00Z"),
        ("time", None),
        ("time", 1769860800),
    ],
)
def test_malformed_registration_fields_are_schema_errors(field: str, value: Any) -> None:
    body = {**make_registration(b.KEY_A, NOW), field: value}
    with pytest.raises(SchemaError):
        verify_registration(body, NOW)


@FAST
@given(
    st.dictionaries(
        st.sampled_from(["public_key", "time", "proof", "x"]),
        st.none() | st.text(max_size=100) | st.integers() | st.binary(max_size=8),
    )
)
def test_arbitrary_registration_bodies_are_refused_cleanly(body: dict[str, Any]) -> None:
    with pytest.raises(RemoteProtocolError):
        verify_registration(body, NOW)


def test_envelope_version_must_be_an_integer() -> None:
    with pytest.raises(SchemaError):
        decode_signed_batch(envelope_with(v=True))
