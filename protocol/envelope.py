"""Signed envelopes: a batch upload and an agent registration.

A batch travels as canonical msgpack ``{"v": 1, "agent_id": str, "payload": bin, "sig": bin}`` where
``payload`` is ``canonical_encode(batch.to_wire())`` and ``sig`` is Ed25519 over
``DOMAIN_BATCH + 0x00 + payload``. The collector verifies the *exact* payload bytes and stores them, so
anyone can re-verify a stored measurement later with nothing but the agent's public key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from .canonical import DEFAULT_LIMITS, DecodeLimits, canonical_decode, canonical_encode
from .errors import LocalProtocolError, SchemaError, SignatureError
from .messages import Batch, from_peer
from .signing import (
    DOMAIN_BATCH,
    DOMAIN_REGISTER,
    KEY_LEN,
    SIG_LEN,
    SigningKey,
    agent_id_for,
    verify,
)
from .timefmt import format_time, parse_time

ENVELOPE_VERSION: Final = 1
REGISTRATION_MAX_SKEW: Final = timedelta(minutes=15)


@dataclass(frozen=True, slots=True)
class SignedBatch:
    """A decoded but not yet verified batch envelope."""

    agent_id: str
    payload: bytes
    signature: bytes

    @property
    def payload_sha256(self) -> str:
        return hashlib.sha256(self.payload).hexdigest()

    def to_bytes(self) -> bytes:
        return canonical_encode(
            {
                "v": ENVELOPE_VERSION,
                "agent_id": self.agent_id,
                "payload": self.payload,
                "sig": self.signature,
            }
        )

    def verify_signature(self, public_key: bytes) -> None:
        """Only the signature, without decoding the payload: raises ``SignatureError``."""
        if agent_id_for(public_key) != self.agent_id:
            raise SignatureError("public key does not belong to this agent id", reason="bad_key")
        verify(public_key, DOMAIN_BATCH, self.payload, self.signature)

    def verify(self, public_key: bytes, limits: DecodeLimits = DEFAULT_LIMITS) -> Batch:
        """Check the signature over the exact payload bytes, then decode and validate the batch."""
        self.verify_signature(public_key)
        return self.decode_verified(limits)

    def decode_verified(self, limits: DecodeLimits = DEFAULT_LIMITS) -> Batch:
        """Decode and validate the batch of an envelope whose ``verify_signature`` has passed (the
        collector checks the signature first, then its rate limit, then this: one Ed25519 check)."""
        wire = canonical_decode(self.payload, limits)
        batch = from_peer(lambda: Batch.from_wire(wire))
        if batch.agent_id != self.agent_id:
            raise SchemaError("batch.agent_id differs from the envelope's agent_id")
        return batch


def sign_batch(key: SigningKey, batch: Batch) -> SignedBatch:
    if batch.agent_id != key.agent_id:
        raise LocalProtocolError("cannot sign another agent's batch")
    payload = canonical_encode(batch.to_wire())
    return SignedBatch(key.agent_id, payload, key.sign(DOMAIN_BATCH, payload))


def decode_signed_batch(data: bytes, limits: DecodeLimits = DEFAULT_LIMITS) -> SignedBatch:
    """Decode an upload's envelope (limits enforced); the signature is checked by ``verify``."""
    wire = canonical_decode(data, limits)

    def build() -> SignedBatch:
        if not isinstance(wire, dict) or set(wire) != {"v", "agent_id", "payload", "sig"}:
            raise LocalProtocolError("envelope must be a map of exactly v, agent_id, payload, sig")
        if type(wire["v"]) is not int or wire["v"] != ENVELOPE_VERSION:
            raise LocalProtocolError(f"envelope version {wire['v']!r} is not supported")
        agent_id, payload, sig = wire["agent_id"], wire["payload"], wire["sig"]
        if not isinstance(agent_id, str) or len(agent_id) != 32:
            raise LocalProtocolError("envelope.agent_id must be 32 hex characters")
        if not isinstance(payload, bytes) or not payload:
            raise LocalProtocolError("envelope.payload must be non-empty binary")
        if not isinstance(sig, bytes) or len(sig) != SIG_LEN:
            raise LocalProtocolError(f"envelope.sig must be {SIG_LEN} bytes of binary")
        return SignedBatch(agent_id, payload, sig)

    return from_peer(build)


# --- registration: proof that the registrant holds the private key ---------------------------------


def _registration_message(public_key: bytes, at: str) -> bytes:
    return canonical_encode({"public_key": public_key, "time": at})


def make_registration(key: SigningKey, at: datetime) -> dict[str, Any]:
    """The JSON body of ``POST /api/v1/agents``."""
    stamp = format_time(at)
    proof = key.sign(DOMAIN_REGISTER, _registration_message(key.public_key, stamp))
    return {
        "public_key": base64.b64encode(key.public_key).decode(),
        "time": stamp,
        "proof": base64.b64encode(proof).decode(),
    }


def b64_field(value: object, name: str, length: int) -> bytes:
    """Raw bytes of a base64 string field a peer sent, of exactly ``length`` bytes (``SchemaError``)."""
    if not isinstance(value, str):
        raise SchemaError(f"{name} must be a base64 string")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SchemaError(f"{name} is not valid base64") from exc
    if len(raw) != length:
        raise SchemaError(f"{name} must decode to {length} bytes, got {len(raw)}")
    return raw


def verify_registration(body: object, now: datetime) -> tuple[str, bytes]:
    """Check a registration body; return ``(agent_id, public_key)``. Raises ``RemoteProtocolError``."""
    if not isinstance(body, dict):
        raise SchemaError("registration must be a JSON object")
    missing = {"public_key", "time", "proof"} - set(body)
    if missing:
        raise SchemaError(f"registration is missing: {', '.join(sorted(missing))}")
    public_key = b64_field(body["public_key"], "public_key", KEY_LEN)
    proof = b64_field(body["proof"], "proof", SIG_LEN)
    stamp = body["time"]
    at = from_peer(lambda: parse_time(stamp))
    if abs(now - at) > REGISTRATION_MAX_SKEW:
        raise SchemaError(
            "registration time is more than 15 minutes from the collector's clock", reason="time"
        )
    verify(public_key, DOMAIN_REGISTER, _registration_message(public_key, stamp), proof)
    return agent_id_for(public_key), public_key
