"""Context tokens: the collector's signed statement of where an agent's public address is.

``GET /api/v1/whoami`` looks the requesting address up in a geo database and answers with a token;
the agent copies the token into every measurement it makes on that network
(``NetworkContext.token``, ``source = "collector"``), and the collector checks it again at ingest. So
country, region, carrier ASN and name are the collector's word, not the volunteer's, while the
address itself never leaves the collector's memory.

A token is canonical msgpack ``{"v": 1, "payload": bin, "sig": bin}``; ``payload`` is the canonical
msgpack of the claims and ``sig`` is Ed25519 over ``DOMAIN_CONTEXT + 0x00 + payload`` by the
collector's key. Pure: bytes in, claims out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from .canonical import DecodeLimits, canonical_decode, canonical_encode
from .errors import LocalProtocolError, SchemaError, SignatureError
from .messages import NetworkContext, from_peer
from .signing import SigningKey, verify
from .timefmt import format_time, parse_time

DOMAIN_CONTEXT: Final = b"vantage/context/v1"
TOKEN_VERSION: Final = 1
#: How far a measurement may predate the token's issue time (clock drift between agent and collector).
ISSUE_SKEW: Final = timedelta(minutes=10)
_LIMITS: Final = DecodeLimits(max_bytes=1024, max_str_len=256, max_bin_len=512, max_map_len=16)


@dataclass(frozen=True, slots=True)
class ContextClaims:
    country: str
    region: str
    asn: int
    carrier: str
    issued_at: datetime
    expires_at: datetime
    agent_id: str = ""  # the agent that asked, when it said; "" means any agent may carry it

    def __post_init__(self) -> None:
        # NetworkContext validates the geography fields the same way a measurement would.
        NetworkContext(self.country, self.region, self.asn, self.carrier)
        if self.expires_at <= self.issued_at:
            raise LocalProtocolError("context token expires before it is issued")
        if not isinstance(self.agent_id, str) or len(self.agent_id) not in (0, 32):
            raise LocalProtocolError("context token agent_id must be empty or 32 hex characters")

    @property
    def known(self) -> bool:
        """Whether the collector knew anything about the address (an unknown one says ZZ / AS0)."""
        return self.country != "ZZ" or self.asn != 0

    def to_wire(self) -> dict[str, Any]:
        return {
            "country": self.country,
            "region": self.region,
            "asn": self.asn,
            "carrier": self.carrier,
            "issued_at": format_time(self.issued_at),
            "expires_at": format_time(self.expires_at),
            "agent_id": self.agent_id,
        }

    @classmethod
    def from_wire(cls, wire: object) -> ContextClaims:
        if not isinstance(wire, dict) or set(wire) != set(cls.__slots__):
            raise LocalProtocolError("context claims have missing or unknown fields")
        return cls(
            country=wire["country"],
            region=wire["region"],
            asn=wire["asn"],
            carrier=wire["carrier"],
            issued_at=parse_time(wire["issued_at"]),
            expires_at=parse_time(wire["expires_at"]),
            agent_id=wire["agent_id"],
        )

    def matches(self, network: NetworkContext) -> bool:
        return (network.country, network.region, network.asn, network.carrier) == (
            self.country,
            self.region,
            self.asn,
            self.carrier,
        )


def issue_context_token(key: SigningKey, claims: ContextClaims) -> bytes:
    payload = canonical_encode(claims.to_wire())
    return canonical_encode(
        {"v": TOKEN_VERSION, "payload": payload, "sig": key.sign(DOMAIN_CONTEXT, payload)}
    )


def _split(token: bytes) -> tuple[bytes, bytes]:
    wire = canonical_decode(token, _LIMITS)
    if not isinstance(wire, dict) or set(wire) != {"v", "payload", "sig"}:
        raise SchemaError("context token must be a map of exactly v, payload, sig")
    if wire["v"] != TOKEN_VERSION:
        raise SchemaError(f"context token version {wire['v']!r} is not supported")
    payload, sig = wire["payload"], wire["sig"]
    if not isinstance(payload, bytes) or not isinstance(sig, bytes):
        raise SchemaError("context token payload and sig must be binary")
    return payload, sig


def read_context_token(token: bytes) -> ContextClaims:
    """Decode the claims *without* checking the signature: what the agent needs to fill a context."""
    payload, _ = _split(token)
    wire = canonical_decode(payload, _LIMITS)
    return from_peer(lambda: ContextClaims.from_wire(wire))


def verify_context_token(
    token: bytes, public_keys: Iterable[bytes], measured_at: datetime, agent_id: str
) -> ContextClaims:
    """The claims, if one of ``public_keys`` signed them and they cover ``measured_at`` and ``agent_id``.

    Raises ``SignatureError`` (forged, or signed by a key we do not hold) or ``SchemaError`` with
    reason ``context_expired`` / ``context_agent`` / ``schema``.
    """
    claims = verify_context_signature(token, public_keys)
    check_context_claims(claims, measured_at, agent_id)
    return claims


def verify_context_signature(token: bytes, public_keys: Iterable[bytes]) -> ContextClaims:
    """The claims, if one of ``public_keys`` signed them (the costly half of
    ``verify_context_token``: a batch repeating one token needs it once)."""
    payload, sig = _split(token)
    problem: SignatureError | None = None
    for public_key in public_keys:
        try:
            verify(public_key, DOMAIN_CONTEXT, payload, sig)
            break
        except SignatureError as exc:
            problem = exc
    else:
        raise problem or SignatureError("no collector key to check context tokens with")
    return read_context_token(token)


def check_context_claims(claims: ContextClaims, measured_at: datetime, agent_id: str) -> None:
    """Verified claims cover ``measured_at`` and ``agent_id`` (``SchemaError`` otherwise)."""
    if not claims.issued_at - ISSUE_SKEW <= measured_at <= claims.expires_at:
        raise SchemaError(
            f"context token valid {format_time(claims.issued_at)} to"
            f" {format_time(claims.expires_at)} does not cover {format_time(measured_at)}",
            reason="context_expired",
        )
    if claims.agent_id and claims.agent_id != agent_id:
        raise SchemaError("context token was issued to another agent", reason="context_agent")
