"""Signed upload receipts: the collector's proof that it committed a batch.

A receipt binds a batch id to the SHA-256 of the exact payload bytes the collector verified and stored,
and to the time it received them. The collector signs ``canonical_encode({batch_id, payload_sha256,
received_at})`` under ``DOMAIN_RECEIPT`` with its own Ed25519 key, so an agent (or ``vantage verify``,
reading an evidence bundle offline) can later prove that a collector accepted that data at that time.

On the wire (inside the JSON answer to an upload) a receipt is::

    {"batch_id": hex32, "payload_sha256": hex64, "received_at": "...Z",
     "collector_key": base64(32 bytes), "signature": base64(64 bytes)}

``collector_key`` is informational: a verifier checks against the key it *pinned*, never the one shipped
alongside the signature.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .canonical import canonical_encode
from .envelope import b64_field
from .errors import LocalProtocolError, SchemaError, SignatureError
from .messages import from_peer
from .signing import DOMAIN_RECEIPT, KEY_LEN, SIG_LEN, SigningKey, verify
from .timefmt import format_time, parse_time

_HEX32 = re.compile(r"^[0-9a-f]{32}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True, slots=True)
class Receipt:
    batch_id: str
    payload_sha256: str
    received_at: datetime

    def __post_init__(self) -> None:
        if not isinstance(self.batch_id, str) or not _HEX32.match(self.batch_id):
            raise LocalProtocolError("receipt.batch_id must be 32 lowercase hex characters")
        if not isinstance(self.payload_sha256, str) or not _HEX64.match(self.payload_sha256):
            raise LocalProtocolError("receipt.payload_sha256 must be 64 lowercase hex characters")
        format_time(self.received_at)  # timezone-aware or LocalProtocolError

    def signed_bytes(self) -> bytes:
        """The one byte form that is signed (and verified)."""
        return canonical_encode(
            {
                "batch_id": self.batch_id,
                "payload_sha256": self.payload_sha256,
                "received_at": format_time(self.received_at),
            }
        )


@dataclass(frozen=True, slots=True)
class SignedReceipt:
    receipt: Receipt
    collector_key: bytes
    signature: bytes

    def to_json(self) -> dict[str, Any]:
        return {
            "batch_id": self.receipt.batch_id,
            "payload_sha256": self.receipt.payload_sha256,
            "received_at": format_time(self.receipt.received_at),
            "collector_key": base64.b64encode(self.collector_key).decode(),
            "signature": base64.b64encode(self.signature).decode(),
        }

    def verify(self, pinned_key: bytes) -> Receipt:
        """Check the signature against ``pinned_key``; raise ``SignatureError`` if it fails."""
        verify(pinned_key, DOMAIN_RECEIPT, self.receipt.signed_bytes(), self.signature)
        return self.receipt


def sign_receipt(key: SigningKey, receipt: Receipt) -> SignedReceipt:
    return SignedReceipt(receipt, key.public_key, key.sign(DOMAIN_RECEIPT, receipt.signed_bytes()))


def receipt_from_json(obj: object) -> SignedReceipt:
    """Parse a receipt a peer sent (not yet verified). Raises ``SchemaError``."""
    if not isinstance(obj, dict):
        raise SchemaError("receipt must be a JSON object")
    missing = {"batch_id", "payload_sha256", "received_at", "collector_key", "signature"} - set(obj)
    if missing:
        raise SchemaError(f"receipt is missing: {', '.join(sorted(missing))}")
    receipt = from_peer(
        lambda: Receipt(obj["batch_id"], obj["payload_sha256"], parse_time(obj["received_at"]))
    )
    return SignedReceipt(
        receipt,
        b64_field(obj["collector_key"], "receipt.collector_key", KEY_LEN),
        b64_field(obj["signature"], "receipt.signature", SIG_LEN),
    )


def check_receipt(obj: object, pinned_key: bytes, *, batch_id: str, payload_sha256: str) -> Receipt:
    """Verify a receipt for the batch we sent: right signer, right batch, right bytes.

    Raises ``SchemaError`` if it is malformed or names another batch or payload, ``SignatureError`` if
    the pinned key did not sign it.
    """
    signed = receipt_from_json(obj)
    if signed.receipt.batch_id != batch_id:
        raise SchemaError(f"receipt is for batch {signed.receipt.batch_id}, not {batch_id}")
    if signed.receipt.payload_sha256 != payload_sha256:
        raise SchemaError("receipt names a different payload hash than the bytes sent")
    try:
        return signed.verify(pinned_key)
    except SignatureError as exc:
        raise SignatureError(
            f"receipt is not signed by the pinned collector key: {exc}", reason=exc.reason
        ) from exc
