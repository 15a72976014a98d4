"""Key sets (protocol/keyset.py): rotation, revocation, thresholds, rollback and freeze protection."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from protocol import SigningKey
from protocol.errors import DecodeError, LocalProtocolError, SignatureError, TrustError
from protocol.keyset import (
    KeySet,
    OperatorKey,
    format_public_key,
    parse_public_key,
    pinned_root,
    sign_keyset,
    successor,
    verify_chain,
    verify_successor,
)
from protocol.signed_doc import Signature, SignedDocument, add_signature, decode_signed_document

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def next_set(previous: KeySet, **changes: object) -> KeySet:
    return successor(previous, issued=NOW, expires=NOW + timedelta(days=365), **changes)  # type: ignore[arg-type]


def op(key: SigningKey, name: str = "") -> OperatorKey:
    return OperatorKey(key.public_key, name)


def tamper_signature(envelope: SignedDocument) -> bytes:
    first = envelope.signatures[0]
    flipped = Signature(first.key_id, bytes([first.sig[0] ^ 1]) + first.sig[1:])
    return SignedDocument(envelope.kind, envelope.signed, (flipped,)).to_bytes()


def test_single_key_rotation_old_key_signs_new_set() -> None:
    old, new = SigningKey.generate(), SigningKey.generate()
    root = pinned_root([old.public_key])
    rotated = next_set(root, add=[op(new)], revoke=[op(old).key_id])
    data = sign_keyset(rotated, [old, new]).to_bytes()
    state = verify_chain(root, [data])
    assert state.current.version == 1
    assert set(state.current.by_id) == {op(new).key_id}
    assert op(old).key_id in state.current.revoked


def test_rotation_needs_the_new_key_to_sign_too() -> None:
    old, new = SigningKey.generate(), SigningKey.generate()
    root = pinned_root([old.public_key])
    rotated = next_set(root, add=[op(new)], revoke=[op(old).key_id])
    with pytest.raises(TrustError) as caught:
        verify_successor(root, sign_keyset(rotated, [old]).to_bytes())
    assert caught.value.reason == "unknown_key"


def test_new_key_alone_cannot_rotate_itself_in() -> None:
    old, attacker = SigningKey.generate(), SigningKey.generate()
    root = pinned_root([old.public_key])
    forged = next_set(root, add=[op(attacker)], revoke=[op(old).key_id])
    with pytest.raises(TrustError, match="none of them a key in key set version 0") as caught:
        verify_successor(root, sign_keyset(forged, [attacker]).to_bytes())
    assert caught.value.reason == "unknown_key"


def test_two_of_three_one_stolen_key_cannot_revoke_the_others() -> None:
    a, b, c = (SigningKey.generate() for _ in range(3))
    root = pinned_root([a.public_key, b.public_key, c.public_key])
    assert root.threshold == 2
    coup = next_set(root, revoke=[op(b).key_id, op(c).key_id])
    assert coup.threshold == 1  # one key left: min(2, 1)
    with pytest.raises(TrustError) as caught:
        verify_successor(root, sign_keyset(coup, [a]).to_bytes())
    assert caught.value.reason == "threshold"
    # Two honest operators revoke the stolen key a.
    cleanup = next_set(root, revoke=[op(a).key_id])
    state = verify_chain(root, [sign_keyset(cleanup, [b, c]).to_bytes()])
    assert op(a).key_id not in state.current.by_id


def test_co_signing_offline_adds_signatures_one_at_a_time() -> None:
    a, b = SigningKey.generate(), SigningKey.generate()
    root = pinned_root([a.public_key, b.public_key])
    envelope = sign_keyset(next_set(root), [a])
    with pytest.raises(TrustError):
        verify_successor(root, envelope.to_bytes())
    cosigned = add_signature(decode_signed_document(envelope.to_bytes(), "keyset"), b)
    assert verify_successor(root, cosigned.to_bytes()).version == 1


def test_threshold_must_be_at_least_two_when_there_are_two_keys() -> None:
    a, b = SigningKey.generate(), SigningKey.generate()
    with pytest.raises(LocalProtocolError, match="threshold >= 2"):
        KeySet(0, (op(a), op(b)), threshold=1)


def test_rollback_gap_and_unrevoke_are_refused() -> None:
    a, b = SigningKey.generate(), SigningKey.generate()
    root = pinned_root([a.public_key])
    v1 = next_set(root, add=[op(b)])
    v1_bytes = sign_keyset(v1, [a, b]).to_bytes()
    v2 = next_set(v1, revoke=[op(a).key_id])
    v2_bytes = sign_keyset(v2, [a, b]).to_bytes()
    state = verify_chain(root, [v2_bytes, v1_bytes])  # any order
    assert state.current.version == 2
    with pytest.raises(TrustError) as caught:
        verify_successor(state.current, v1_bytes)
    assert caught.value.reason == "keyset_rollback"
    with pytest.raises(TrustError) as caught:
        verify_chain(root, [v2_bytes])
    assert caught.value.reason == "keyset_gap"
    # v3 that trusts a again is impossible to even build ...
    with pytest.raises(LocalProtocolError):
        KeySet(
            3,
            (op(a), op(b)),
            2,
            revoked=frozenset({op(a).key_id}),
            issued=NOW,
            expires=NOW + timedelta(1),
        )
    # ... and one that forgets the revocation is refused.
    sneaky = KeySet(3, (op(b),), 1, issued=NOW, expires=NOW + timedelta(days=1))
    with pytest.raises(TrustError) as caught:
        verify_successor(state.current, sign_keyset(sneaky, [b]).to_bytes())
    assert caught.value.reason == "unrevoke"


def test_bad_signature_and_truncation() -> None:
    a = SigningKey.generate()
    root = pinned_root([a.public_key])
    with pytest.raises(SignatureError):
        verify_successor(root, tamper_signature(sign_keyset(next_set(root), [a])))
    good = sign_keyset(next_set(root), [a]).to_bytes()
    with pytest.raises(DecodeError, match="truncated"):
        verify_successor(root, good[:-10])


def test_keyset_expiry_is_a_freeze_check() -> None:
    a = SigningKey.generate()
    root = pinned_root([a.public_key])
    v1 = next_set(root)
    root.check_fresh(NOW + timedelta(days=10_000))  # pinned keys never expire
    v1.check_fresh(NOW)
    with pytest.raises(TrustError) as caught:
        v1.check_fresh(NOW + timedelta(days=366))
    assert caught.value.reason == "keyset_expired"


def test_public_key_text_round_trip_and_errors() -> None:
    key = SigningKey.generate()
    assert parse_public_key(format_public_key(key.public_key) + "\n") == key.public_key
    with pytest.raises(Exception, match="32 bytes"):
        parse_public_key("AAAA")
    with pytest.raises(Exception, match="base64"):
        parse_public_key("not base64!")
