"""Small signed requests: an operator's command to the collector, an agent's report of refused lists.

**Operator requests** (``revoke-agent``, ``list-agents``) are signed by an operator key in the current
key set, so the collector needs no passwords and no database access from the operator's laptop. The
document is ``{"action", "time", "params"}``; the collector accepts it within ``MAX_SKEW`` of its clock
and only on the endpoint named by ``action`` (a signed "list agents" cannot be replayed as a revocation).
Replaying the same request inside the window is harmless: both actions are idempotent.

**Refusal reports** are signed by the *agent's* key: ``{"agent_id", "time", "refusals": [...]}``. They
tell operators that someone served an agent a bad list (a compromised collector, a mirror, the network),
and the signature keeps strangers from forging or flooding such reports.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from .errors import LocalProtocolError, SchemaError, TrustError
from .keyset import KeySet
from .signed_doc import SignedDocument, decode_signed_document, key_id_for, sign_document
from .signing import SigningKey
from .timefmt import format_time, parse_time

REQUEST_KIND: Final = "operator-request"
REFUSAL_KIND: Final = "testlist-refusal"
MAX_SKEW: Final = timedelta(minutes=5)
ACTIONS: Final = frozenset({"revoke-agent", "list-agents"})
MAX_REFUSALS: Final = 100
_AGENT_ID = re.compile(r"^[0-9a-f]{32}$")


def _scalar_params(params: Mapping[str, Any]) -> dict[str, str | int]:
    out: dict[str, str | int] = {}
    for key, value in params.items():
        if not isinstance(value, str | int) or isinstance(value, bool):
            raise LocalProtocolError(f"request parameter {key} must be a string or integer")
        out[key] = value
    return out


def sign_operator_request(
    key: SigningKey, action: str, params: Mapping[str, Any], at: datetime
) -> bytes:
    if action not in ACTIONS:
        raise LocalProtocolError(f"unknown operator action {action!r}")
    document = {"action": action, "time": format_time(at), "params": _scalar_params(params)}
    return sign_document(REQUEST_KIND, document, [key]).to_bytes()


def verify_operator_request(
    data: bytes, action: str, keyset: KeySet, now: datetime
) -> tuple[str, dict[str, Any]]:
    """Return ``(signer key id, params)``; raise ``RemoteProtocolError`` subclasses otherwise."""
    envelope = decode_signed_document(data, REQUEST_KIND)
    good = envelope.verified_by(keyset.by_id, 1, f"operator key set version {keyset.version}")
    wire = envelope.document()
    if not isinstance(wire, dict) or set(wire) != {"action", "time", "params"}:
        raise SchemaError("operator request must be a map of action, time, params")
    if wire["action"] != action:
        raise SchemaError(
            f"this endpoint takes {action!r}, the request says {wire['action']!r}", reason="action"
        )
    try:
        at = parse_time(wire["time"])
    except LocalProtocolError as exc:
        raise SchemaError(str(exc)) from exc
    if abs(now - at) > MAX_SKEW:
        raise TrustError(
            "operator request time is more than 5 minutes from the collector's clock"
            " (check the clock, or this is a replay)",
            reason="time",
        )
    if not isinstance(wire["params"], dict):
        raise SchemaError("operator request params must be a map")
    return sorted(good)[0], dict(wire["params"])


# --- refusal reports ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Refusal:
    """One list an agent refused, and why (``reason`` is a stable code such as ``rollback``)."""

    at: str
    reason: str
    message: str
    list_id: str = ""
    version: int = 0
    sha256: str = ""

    def __post_init__(self) -> None:
        parse_time(self.at)
        if not isinstance(self.reason, str) or not re.match(r"^[a-z_]{1,32}$", self.reason):
            raise LocalProtocolError(f"refusal reason must be a short code: {self.reason!r}")
        for name, value, limit in (
            ("message", self.message, 512),
            ("list_id", self.list_id, 64),
            ("sha256", self.sha256, 64),
        ):
            if not isinstance(value, str) or len(value) > limit:
                raise LocalProtocolError(f"refusal {name} must be a string of at most {limit}")
        if isinstance(self.version, bool) or not isinstance(self.version, int) or self.version < 0:
            raise LocalProtocolError("refusal version must be a non-negative integer")

    def to_wire(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "reason": self.reason,
            "message": self.message,
            "list_id": self.list_id,
            "version": self.version,
            "sha256": self.sha256,
        }

    @classmethod
    def from_wire(cls, wire: Any) -> Refusal:
        fields = {"at", "reason", "message", "list_id", "version", "sha256"}
        if not isinstance(wire, dict) or set(wire) != fields:
            raise LocalProtocolError(f"refusal must be a map of {', '.join(sorted(fields))}")
        return cls(**wire)


def sign_refusal_report(key: SigningKey, refusals: Sequence[Refusal], at: datetime) -> bytes:
    if not 1 <= len(refusals) <= MAX_REFUSALS:
        raise LocalProtocolError(f"a refusal report carries 1 to {MAX_REFUSALS} refusals")
    document = {
        "agent_id": key.agent_id,
        "time": format_time(at),
        "refusals": [r.to_wire() for r in refusals],
    }
    return sign_document(REFUSAL_KIND, document, [key]).to_bytes()


def refusal_report_agent(data: bytes) -> tuple[SignedDocument, str]:
    """Decode a report (not verified) and name the agent that claims to have sent it."""
    envelope = decode_signed_document(data, REFUSAL_KIND)
    wire = envelope.document()
    agent_id = wire.get("agent_id") if isinstance(wire, dict) else None
    if not isinstance(agent_id, str) or not _AGENT_ID.match(agent_id):
        raise SchemaError("refusal report must name its agent_id (32 hex characters)")
    return envelope, agent_id


def verify_refusal_report(envelope: SignedDocument, agent_public_key: bytes) -> list[Refusal]:
    envelope.verified_by({key_id_for(agent_public_key): agent_public_key}, 1, "the agent's key")
    wire = envelope.document()
    if set(wire) != {"agent_id", "time", "refusals"} or not isinstance(wire["refusals"], list):
        raise SchemaError("refusal report must be a map of agent_id, time, refusals")
    if not 1 <= len(wire["refusals"]) <= MAX_REFUSALS:
        raise SchemaError(f"a refusal report carries 1 to {MAX_REFUSALS} refusals")
    try:
        return [Refusal.from_wire(item) for item in wire["refusals"]]
    except (LocalProtocolError, TypeError) as exc:
        raise SchemaError(f"refusal report: {exc}") from exc
