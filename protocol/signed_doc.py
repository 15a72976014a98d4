"""The envelope of an operator-signed document (key set, test list, operator request).

On the wire: canonical msgpack ``{"v": 1, "kind": str, "signed": bin, "signatures": [{"key_id": str,
"sig": bin}, ...]}``. ``signed`` is ``canonical_encode(document)``; each signature is Ed25519 over
``domain(kind) + 0x00 + signed`` (``protocol.signing``), so a key-set signature can never be replayed as a
test-list signature. Several signatures let a threshold of operators co-sign (TUF's multi-signature roles);
they are added one at a time, offline, by ``add_signature``.

Whoever stores or forwards a document keeps these exact bytes: the collector serves them unchanged, and an
agent re-verifies them on every load.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from .canonical import DecodeLimits, canonical_decode, canonical_encode
from .errors import DecodeError, LocalProtocolError, SchemaError, SignatureError, TrustError
from .signing import KEY_LEN, SIG_LEN, SigningKey, verify

ENVELOPE_VERSION: Final = 1
MAX_SIGNATURES: Final = 16
KEY_ID_LEN: Final = (
    16  # hex characters: short enough to type, long enough to be unique in a key set
)

#: One signature domain per kind of document.
DOMAINS: Final[Mapping[str, bytes]] = {
    "keyset": b"vantage/keyset/v1",
    "testlist": b"vantage/testlist/v1",
    "operator-request": b"vantage/operator-request/v1",
    "testlist-refusal": b"vantage/testlist-refusal/v1",
}

#: Test lists can hold thousands of URLs; a key set or request is tiny.
DOCUMENT_LIMITS: Final = DecodeLimits(max_bytes=4 * 1024 * 1024, max_bin_len=4 * 1024 * 1024)


def key_id_for(public_key: bytes) -> str:
    """A short, self-certifying name for an operator key (like TUF's keyid)."""
    if len(public_key) != KEY_LEN:
        raise LocalProtocolError("public key must be 32 raw bytes")
    return hashlib.sha256(b"vantage/operator-key-id/v1\x00" + public_key).hexdigest()[:KEY_ID_LEN]


@dataclass(frozen=True, slots=True)
class Signature:
    key_id: str
    sig: bytes


@dataclass(frozen=True, slots=True)
class SignedDocument:
    """A decoded envelope; ``signed`` are the exact bytes the signatures cover."""

    kind: str
    signed: bytes
    signatures: tuple[Signature, ...]

    def to_bytes(self) -> bytes:
        return canonical_encode(
            {
                "v": ENVELOPE_VERSION,
                "kind": self.kind,
                "signed": self.signed,
                "signatures": [{"key_id": s.key_id, "sig": s.sig} for s in self.signatures],
            }
        )

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.to_bytes()).hexdigest()

    def document(self, limits: DecodeLimits = DOCUMENT_LIMITS) -> Any:
        """The signed document, decoded (do this only after ``verified_by``)."""
        return canonical_decode(self.signed, limits)

    def verified_by(self, keys: Mapping[str, bytes], threshold: int, who: str) -> set[str]:
        """Key ids of ``keys`` with a valid signature; raise ``TrustError`` below ``threshold``.

        Signatures by keys outside ``keys`` are ignored, not fatal: a document co-signed by an
        operator we do not (yet, or any more) trust is still good if enough trusted keys signed it.
        """
        good: set[str] = set()
        domain = DOMAINS[self.kind]
        for signature in self.signatures:
            public_key = keys.get(signature.key_id)
            if public_key is None or signature.key_id in good:
                continue
            try:
                verify(public_key, domain, self.signed, signature.sig)
            except SignatureError:
                continue
            good.add(signature.key_id)
        if len(good) < threshold:
            signers = ", ".join(s.key_id for s in self.signatures) or "nobody"
            if not any(s.key_id in keys for s in self.signatures):
                raise TrustError(
                    f"{self.kind} is signed by {signers}, none of them a key in {who}",
                    reason="unknown_key",
                )
            if len(good) == 0:
                raise SignatureError(f"{self.kind} signature does not verify", reason="signature")
            raise TrustError(
                f"{self.kind} has {len(good)} valid signature(s) from {who}, needs {threshold}",
                reason="threshold",
            )
        return good


def sign_document(
    kind: str, document: Mapping[str, Any], keys: Iterable[SigningKey]
) -> SignedDocument:
    signed = canonical_encode(dict(document))
    envelope = SignedDocument(kind, signed, ())
    for key in keys:
        envelope = add_signature(envelope, key)
    return envelope


def add_signature(envelope: SignedDocument, key: SigningKey) -> SignedDocument:
    """Co-sign: the same bytes, one more signature (replacing this key's earlier one)."""
    key_id = key_id_for(key.public_key)
    others = tuple(s for s in envelope.signatures if s.key_id != key_id)
    if len(others) >= MAX_SIGNATURES:
        raise LocalProtocolError(f"a document carries at most {MAX_SIGNATURES} signatures")
    sig = key.sign(DOMAINS[envelope.kind], envelope.signed)
    return SignedDocument(envelope.kind, envelope.signed, (*others, Signature(key_id, sig)))


def decode_signed_document(
    data: bytes, kind: str, limits: DecodeLimits = DOCUMENT_LIMITS
) -> SignedDocument:
    """Decode an envelope of ``kind`` (signatures are checked by ``verified_by``)."""
    try:
        wire = canonical_decode(data, limits)
    except DecodeError as exc:
        raise DecodeError(f"{kind}: {exc} (truncated or damaged?)", reason=exc.reason) from exc
    if not isinstance(wire, dict) or set(wire) != {"v", "kind", "signed", "signatures"}:
        raise SchemaError(f"{kind} envelope must be a map of exactly v, kind, signed, signatures")
    if wire["v"] != ENVELOPE_VERSION:
        raise SchemaError(f"{kind} envelope version {wire['v']!r} is not supported")
    if wire["kind"] != kind:
        raise SchemaError(f"expected a {kind} document, got {wire['kind']!r}", reason="kind")
    signed, signatures = wire["signed"], wire["signatures"]
    if not isinstance(signed, bytes) or not signed:
        raise SchemaError(f"{kind}.signed must be non-empty binary")
    if not isinstance(signatures, list) or not 1 <= len(signatures) <= MAX_SIGNATURES:
        raise SchemaError(f"{kind} must carry 1 to {MAX_SIGNATURES} signatures")
    parsed = []
    for item in signatures:
        if not isinstance(item, dict) or set(item) != {"key_id", "sig"}:
            raise SchemaError(f"{kind}.signatures[] must be maps of key_id, sig")
        key_id, sig = item["key_id"], item["sig"]
        if not isinstance(key_id, str) or len(key_id) != KEY_ID_LEN:
            raise SchemaError(f"{kind}.signatures[].key_id must be {KEY_ID_LEN} hex characters")
        if not isinstance(sig, bytes) or len(sig) != SIG_LEN:
            raise SchemaError(f"{kind}.signatures[].sig must be {SIG_LEN} bytes")
        parsed.append(Signature(key_id, sig))
    return SignedDocument(kind, signed, tuple(parsed))


def decode_inner(envelope: SignedDocument, build: Callable[[Any], Any]) -> Any:
    """Decode the signed bytes and build a message; the signer's mistakes are ``SchemaError``."""
    wire = envelope.document()
    try:
        return build(wire)
    except LocalProtocolError as exc:
        raise SchemaError(f"{envelope.kind}: {exc}") from exc
