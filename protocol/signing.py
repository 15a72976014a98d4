"""Ed25519 identities and signatures, wrapped once.

Keys travel as raw 32-byte strings. Every signature covers ``domain + b"\\x00" + message`` so that a
signature made for one purpose (a batch) can never be replayed as another (a registration, a receipt).
pyca/cryptography's ``verify`` *raises* on a bad signature; here that becomes our ``SignatureError``.
"""

from __future__ import annotations

import hashlib
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .errors import LocalProtocolError, SignatureError

KEY_LEN: Final = 32
SIG_LEN: Final = 64

DOMAIN_BATCH: Final = b"vantage/batch/v1"
DOMAIN_REGISTER: Final = b"vantage/register/v1"
DOMAIN_RECEIPT: Final = b"vantage/receipt/v1"

AGENT_ID_LEN: Final = 32  # hex characters


def agent_id_for(public_key: bytes) -> str:
    """Self-certifying agent id: the first 16 bytes of SHA-256 over the raw public key, in hex."""
    if len(public_key) != KEY_LEN:
        raise LocalProtocolError("public key must be 32 raw bytes")
    return hashlib.sha256(b"vantage/agent-id/v1\x00" + public_key).hexdigest()[:AGENT_ID_LEN]


def _signed_bytes(domain: bytes, message: bytes) -> bytes:
    return domain + b"\x00" + message


class SigningKey:
    """An Ed25519 private key. ``raw`` is the 32-byte seed; store it with mode 0600."""

    __slots__ = ("_key", "public_key")

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self.public_key: bytes = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_raw(cls, raw: bytes) -> SigningKey:
        if len(raw) != KEY_LEN:
            raise LocalProtocolError(f"private key must be {KEY_LEN} raw bytes, got {len(raw)}")
        return cls(Ed25519PrivateKey.from_private_bytes(raw))

    @property
    def raw(self) -> bytes:
        return self._key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )

    @property
    def agent_id(self) -> str:
        return agent_id_for(self.public_key)

    def sign(self, domain: bytes, message: bytes) -> bytes:
        return self._key.sign(_signed_bytes(domain, message))


def verify(public_key: bytes, domain: bytes, message: bytes, signature: bytes) -> None:
    """Return if ``signature`` is valid; raise ``SignatureError`` otherwise (never a bool)."""
    if len(public_key) != KEY_LEN:
        raise SignatureError("public key must be 32 raw bytes", reason="bad_key")
    if len(signature) != SIG_LEN:
        raise SignatureError(f"signature must be {SIG_LEN} bytes", reason="signature")
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(
            signature, _signed_bytes(domain, message)
        )
    except InvalidSignature as exc:
        raise SignatureError("signature does not verify", reason="signature") from exc
    except ValueError as exc:  # a point that is not on the curve
        raise SignatureError(f"invalid public key: {exc}", reason="bad_key") from exc
