"""Receipts: what the collector signs is exactly what a verifier checks, and nothing else verifies."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest

from protocol import (
    Receipt,
    SchemaError,
    SignatureError,
    SigningKey,
    check_receipt,
    receipt_from_json,
    sign_receipt,
)
from protocol.signing import DOMAIN_BATCH

BATCH_ID = "0" * 31 + "1"
DIGEST = hashlib.sha256(b"payload").hexdigest()
AT = datetime(2026, 11, 28, 12, 0, 0, 123456, tzinfo=UTC)


def make(key: SigningKey) -> dict[str, str]:
    return sign_receipt(key, Receipt(BATCH_ID, DIGEST, AT)).to_json()


def test_round_trip_verifies_with_the_pinned_key() -> None:
    key = SigningKey.generate()
    receipt = check_receipt(make(key), key.public_key, batch_id=BATCH_ID, payload_sha256=DIGEST)
    assert receipt == Receipt(BATCH_ID, DIGEST, AT)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("received_at", "2026-11-28T12:00:01.123456Z"),
        ("payload_sha256", hashlib.sha256(b"other").hexdigest()),
    ],
)
def test_any_changed_field_breaks_the_signature(field: str, value: str) -> None:
    key = SigningKey.generate()
    body = make(key) | {field: value}
    signed = receipt_from_json(body)
    with pytest.raises(SignatureError):
        signed.verify(key.public_key)


def test_another_key_or_the_shipped_key_is_not_trusted() -> None:
    key, impostor = SigningKey.generate(), SigningKey.generate()
    forged = make(impostor)  # carries the impostor's own key alongside: that must not matter
    with pytest.raises(SignatureError, match="pinned collector key"):
        check_receipt(forged, key.public_key, batch_id=BATCH_ID, payload_sha256=DIGEST)


def test_receipt_for_another_batch_or_payload_is_refused() -> None:
    key = SigningKey.generate()
    with pytest.raises(SchemaError, match="is for batch"):
        check_receipt(make(key), key.public_key, batch_id="f" * 32, payload_sha256=DIGEST)
    with pytest.raises(SchemaError, match="payload hash"):
        check_receipt(make(key), key.public_key, batch_id=BATCH_ID, payload_sha256="a" * 64)


def test_domain_separation_a_batch_signature_is_not_a_receipt() -> None:
    key = SigningKey.generate()
    message = Receipt(BATCH_ID, DIGEST, AT).signed_bytes()
    body = make(key)
    body["signature"] = __import__("base64").b64encode(key.sign(DOMAIN_BATCH, message)).decode()
    with pytest.raises(SignatureError):
        receipt_from_json(body).verify(key.public_key)


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        {"batch_id": BATCH_ID},
        {
            "batch_id": "XYZ",
            "payload_sha256": DIGEST,
            "received_at": "2026-11-28T12:00:00.000000Z",
            "collector_key": "",
            "signature": "",
        },
        {
            "batch_id": BATCH_ID,
            "payload_sha256": DIGEST,
            "received_at": "yesterday",
            "collector_key": "",
            "signature": "",
        },
        {
            "batch_id": BATCH_ID,
            "payload_sha256": DIGEST,
            "received_at": "2026-11-28T12:00:00.000000Z",
            "collector_key": "!!",
            "signature": "AAAA",
        },
    ],
)
def test_malformed_receipts_are_schema_errors(body: object) -> None:
    with pytest.raises(SchemaError):
        receipt_from_json(body)


def test_receipt_signed_bytes_are_canonical_and_stable() -> None:
    first = Receipt(BATCH_ID, DIGEST, AT).signed_bytes()
    assert first == Receipt(BATCH_ID, DIGEST, AT.astimezone()).signed_bytes()
    assert b"2026-11-28T12:00:00.123456Z" in first
