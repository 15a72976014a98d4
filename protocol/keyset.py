"""Operator key sets: which keys may sign test lists, and how that set changes (rotation, revocation).

Modelled on TUF's root role, reduced to what Vantage needs:

* **Trust starts from pinned keys.** An agent's config (``operator_keys = ["base64...", ...]``) and a
  collector's ``--operator-keys FILE`` pin the initial keys. They form key set *version 0*, which never
  expires and which no network peer can change.
* **Every change is a new, numbered, signed key set.** Version N+1 is accepted only if

  1. it is exactly N+1 (no gaps, no replays: a rollback to an older set is refused);
  2. at least ``threshold`` keys *of version N* signed it — the old keys authorise the change
     (rotation: "the old key signs the new set");
  3. at least its *own* ``threshold`` keys signed it — the new keys prove they exist and consent, so
     nobody can rotate trust to a key whose holder cannot sign;
  4. it re-lists every key revoked before (``revoked`` only grows) and trusts none of them.

* **Threshold.** A key set with *k* keys must have ``threshold >= min(2, k)``. With one key (a small
  deployment) that key alone rotates to a new one. With two or more, any change — adding a key, removing
  one, revoking a stolen one — needs two signatures, so one stolen key can neither lock the honest
  operators out nor keep itself trusted once the others revoke it; with 2-of-3 the operators survive one
  stolen *and* one lost key. Pinned roots follow the same rule.
* **Test lists** need ``list_threshold`` signatures (default 1: lists change often and may be signed by
  automation; key-set changes are rare and deliberate). A stolen key can sign lists until it is revoked;
  revocation takes effect on the next fetch, and lists expire (default a week), which bounds the damage.
* **Freeze attacks.** Every key set after version 0 expires; an agent whose newest key set has expired
  refuses new lists until it sees a fresh one (intermediate sets in a chain may have expired, as in TUF).
  A peer that hides a newer key set cannot make an agent trust lists for long, because lists expire too.

The agent and the collector run the same ``verify_chain`` from their own pinned keys, so a compromised
collector cannot introduce a key: it can only withhold documents, which expiry bounds.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from .errors import LocalProtocolError, SchemaError, TrustError
from .signed_doc import (
    SignedDocument,
    decode_inner,
    decode_signed_document,
    key_id_for,
    sign_document,
)
from .signing import KEY_LEN, SigningKey
from .timefmt import format_time, parse_time

KIND: Final = "keyset"
DOC_TYPE: Final = "vantage-keyset"
MAX_KEYS: Final = 16
_NAME = re.compile(r"^[\w .@+-]{0,64}$")


@dataclass(frozen=True, slots=True)
class OperatorKey:
    public_key: bytes
    name: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.public_key, bytes) or len(self.public_key) != KEY_LEN:
            raise LocalProtocolError("operator public key must be 32 raw bytes")
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise LocalProtocolError(f"operator key name is not a short plain name: {self.name!r}")

    @property
    def key_id(self) -> str:
        return key_id_for(self.public_key)


def min_threshold(key_count: int) -> int:
    """The lowest threshold allowed for a key set of ``key_count`` keys (see the module docstring)."""
    return min(2, key_count)


@dataclass(frozen=True, slots=True)
class KeySet:
    version: int
    keys: tuple[OperatorKey, ...]
    threshold: int
    list_threshold: int = 1
    revoked: frozenset[str] = frozenset()
    issued: datetime | None = None  # None only for version 0, the pinned root
    expires: datetime | None = None

    def __post_init__(self) -> None:
        if isinstance(self.version, bool) or not isinstance(self.version, int) or self.version < 0:
            raise LocalProtocolError("keyset.version must be a non-negative integer")
        if not 1 <= len(self.keys) <= MAX_KEYS:
            raise LocalProtocolError(f"a key set holds 1 to {MAX_KEYS} keys")
        ids = [k.key_id for k in self.keys]
        if len(set(ids)) != len(ids):
            raise LocalProtocolError("a key set lists the same key twice")
        if set(ids) & self.revoked:
            raise LocalProtocolError("a key set cannot trust a key it revokes")
        for name, value in (("threshold", self.threshold), ("list_threshold", self.list_threshold)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise LocalProtocolError(f"keyset.{name} must be an integer")
            if not 1 <= value <= len(self.keys):
                raise LocalProtocolError(
                    f"keyset.{name} must be from 1 to the number of keys ({len(self.keys)})"
                )
        if self.threshold < min_threshold(len(self.keys)):
            raise LocalProtocolError(
                f"a key set of {len(self.keys)} keys needs threshold >= {min_threshold(len(self.keys))}"
                " (one stolen key must not be able to change it)"
            )
        if self.version > 0:
            if self.issued is None or self.expires is None:
                raise LocalProtocolError("keyset.issued and keyset.expires are required")
            if self.expires <= self.issued:
                raise LocalProtocolError("keyset.expires must be after keyset.issued")

    @property
    def by_id(self) -> Mapping[str, bytes]:
        return {k.key_id: k.public_key for k in self.keys}

    def is_expired(self, now: datetime) -> bool:
        return self.expires is not None and now >= self.expires

    def check_fresh(self, now: datetime) -> None:
        if self.is_expired(now):
            assert self.expires is not None
            raise TrustError(
                f"the newest operator key set (version {self.version}) expired on"
                f" {format_time(self.expires)}; a fresh one is needed (freeze attack?)",
                reason="keyset_expired",
            )

    def to_document(self) -> dict[str, Any]:
        if self.version == 0:
            raise LocalProtocolError("version 0 is the pinned root; it is never signed or sent")
        assert self.issued is not None and self.expires is not None
        return {
            "type": DOC_TYPE,
            "version": self.version,
            "issued": format_time(self.issued),
            "expires": format_time(self.expires),
            "keys": [{"public_key": k.public_key, "name": k.name} for k in self.keys],
            "threshold": self.threshold,
            "list_threshold": self.list_threshold,
            "revoked": sorted(self.revoked),
        }

    @classmethod
    def from_document(cls, wire: Any) -> KeySet:
        fields = {
            "type", "version", "issued", "expires", "keys", "threshold", "list_threshold", "revoked"
        }  # fmt: skip
        if not isinstance(wire, dict) or set(wire) != fields:
            raise LocalProtocolError(f"keyset must be a map of exactly {', '.join(sorted(fields))}")
        if wire["type"] != DOC_TYPE:
            raise LocalProtocolError(f"keyset.type must be {DOC_TYPE!r}")
        keys = wire["keys"]
        if not isinstance(keys, list) or not all(
            isinstance(k, dict) and set(k) == {"public_key", "name"} for k in keys
        ):
            raise LocalProtocolError("keyset.keys must be a list of {public_key, name}")
        revoked = wire["revoked"]
        if not isinstance(revoked, list) or not all(isinstance(r, str) for r in revoked):
            raise LocalProtocolError("keyset.revoked must be a list of key ids")
        return cls(
            version=wire["version"],
            keys=tuple(OperatorKey(k["public_key"], k["name"]) for k in keys),
            threshold=wire["threshold"],
            list_threshold=wire["list_threshold"],
            revoked=frozenset(revoked),
            issued=parse_time(wire["issued"]),
            expires=parse_time(wire["expires"]),
        )


@dataclass(frozen=True, slots=True)
class TrustState:
    """Where a chain walk ended: the current key set and the envelopes that led there."""

    current: KeySet
    chain: tuple[bytes, ...] = field(default=())


def pinned_root(public_keys: Sequence[bytes], threshold: int | None = None) -> KeySet:
    """Key set version 0 from pinned keys (``threshold`` defaults to the minimum allowed)."""
    unique = list(dict.fromkeys(public_keys))
    keys = tuple(OperatorKey(k) for k in unique)
    return KeySet(0, keys, threshold if threshold is not None else min_threshold(len(keys)))


def sign_keyset(keyset: KeySet, signers: Iterable[SigningKey]) -> SignedDocument:
    return sign_document(KIND, keyset.to_document(), signers)


def decode_keyset(data: bytes) -> tuple[SignedDocument, KeySet]:
    """Decode (not verify) a key-set envelope and its document."""
    envelope = decode_signed_document(data, KIND)
    keyset: KeySet = decode_inner(envelope, KeySet.from_document)
    return envelope, keyset


def verify_successor(current: KeySet, data: bytes) -> KeySet:
    """Accept ``data`` as the key set following ``current``, or raise why not.

    The old keys' signatures are checked before the signed document is even decoded.
    """
    envelope = decode_signed_document(data, KIND)
    envelope.verified_by(current.by_id, current.threshold, f"key set version {current.version}")
    candidate: KeySet = decode_inner(envelope, KeySet.from_document)
    if candidate.version <= current.version:
        raise TrustError(
            f"key set version {candidate.version} is not newer than version {current.version}",
            reason="keyset_rollback",
        )
    if candidate.version != current.version + 1:
        raise TrustError(
            f"key set version {candidate.version} skips versions after {current.version}",
            reason="keyset_gap",
        )
    envelope.verified_by(
        candidate.by_id, candidate.threshold, f"key set version {candidate.version}"
    )
    dropped = current.revoked - candidate.revoked
    if dropped:
        raise TrustError(
            f"key set version {candidate.version} un-revokes {', '.join(sorted(dropped))}",
            reason="unrevoke",
        )
    return candidate


def verify_chain(root: KeySet, envelopes: Iterable[bytes]) -> TrustState:
    """Walk key sets from ``root`` in version order; ones already known are skipped.

    Raises at the first bad link (everything before it stays unaccepted too: the caller keeps its old
    state), so a peer cannot splice in a bad set by surrounding it with good ones.
    """
    current, chain = root, []
    ordered = sorted(
        ((decode_keyset(data)[1].version, data) for data in envelopes), key=lambda p: p[0]
    )
    for version, data in ordered:
        if version <= current.version:
            continue
        current = verify_successor(current, data)
        chain.append(data)
    return TrustState(current, tuple(chain))


def parse_public_key(text: str) -> bytes:
    """A base64 operator public key (as in ``.pub`` files and agent configs) as 32 raw bytes."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SchemaError(f"operator key is not valid base64: {text.strip()[:20]!r}...") from exc
    if len(raw) != KEY_LEN:
        raise SchemaError(f"operator key must decode to {KEY_LEN} bytes, got {len(raw)}")
    return raw


def format_public_key(public_key: bytes) -> str:
    return base64.b64encode(public_key).decode()


def successor(
    previous: KeySet,
    *,
    issued: datetime,
    expires: datetime,
    add: Sequence[OperatorKey] = (),
    revoke: Sequence[str] = (),
    threshold: int | None = None,
    list_threshold: int | None = None,
) -> KeySet:
    """The next key set: ``previous`` plus ``add`` minus ``revoke`` (key ids, remembered forever).

    Thresholds default to the previous ones, clamped to what the new number of keys allows.
    """
    unknown = set(revoke) - set(previous.by_id)
    if unknown:
        raise LocalProtocolError(f"cannot revoke keys that are not in the set: {sorted(unknown)}")
    keys = [k for k in previous.keys if k.key_id not in revoke]
    keys += [k for k in add if k.key_id not in {old.key_id for old in keys}]
    count = len(keys)
    if threshold is None:
        threshold = max(min_threshold(count), min(previous.threshold, count))
    if list_threshold is None:
        list_threshold = min(previous.list_threshold, count)
    return KeySet(
        version=previous.version + 1,
        keys=tuple(keys),
        threshold=threshold,
        list_threshold=list_threshold,
        revoked=previous.revoked | frozenset(revoke),
        issued=issued,
        expires=expires,
    )
