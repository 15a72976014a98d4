"""protocol.signing: Ed25519 with domain separation; a bad signature always raises SignatureError."""

from __future__ import annotations

import re

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.errors import LocalProtocolError, SignatureError
from protocol.signing import (
    DOMAIN_BATCH,
    DOMAIN_RECEIPT,
    DOMAIN_REGISTER,
    KEY_LEN,
    SIG_LEN,
    SigningKey,
    agent_id_for,
    verify,
)

from builders import KEY_A, KEY_B

FAST = settings(max_examples=100, deadline=None)
MESSAGE = b"canonical payload bytes"


def test_sign_then_verify() -> None:
    signature = KEY_A.sign(DOMAIN_BATCH, MESSAGE)
    assert len(signature) == SIG_LEN
    assert verify(KEY_A.public_key, DOMAIN_BATCH, MESSAGE, signature) is None


@FAST
@given(st.binary(max_size=256), st.sampled_from([DOMAIN_BATCH, DOMAIN_REGISTER, DOMAIN_RECEIPT]))
def test_any_message_round_trips(message: bytes, domain: bytes) -> None:
    verify(KEY_A.public_key, domain, message, KEY_A.sign(domain, message))


def test_a_generated_key_signs_and_verifies() -> None:
    key = SigningKey.generate()
    assert len(key.public_key) == KEY_LEN
    assert len(key.raw) == KEY_LEN
    verify(key.public_key, DOMAIN_BATCH, MESSAGE, key.sign(DOMAIN_BATCH, MESSAGE))


def test_wrong_key_is_refused() -> None:
    signature = KEY_A.sign(DOMAIN_BATCH, MESSAGE)
    with pytest.raises(SignatureError) as info:
        verify(KEY_B.public_key, DOMAIN_BATCH, MESSAGE, signature)
    assert info.value.reason == "signature"


@FAST
@given(st.data())
def test_a_flipped_bit_in_the_message_is_refused(data: st.DataObject) -> None:
    signature = KEY_A.sign(DOMAIN_BATCH, MESSAGE)
    tampered = bytearray(MESSAGE)
    tampered[data.draw(st.integers(0, len(MESSAGE) - 1))] ^= 1 << data.draw(st.integers(0, 7))
    with pytest.raises(SignatureError):
        verify(KEY_A.public_key, DOMAIN_BATCH, bytes(tampered), signature)


@FAST
@given(st.integers(0, SIG_LEN - 1), st.integers(0, 7))
def test_a_flipped_bit_in_the_signature_is_refused(index: int, bit: int) -> None:
    tampered = bytearray(KEY_A.sign(DOMAIN_BATCH, MESSAGE))
    tampered[index] ^= 1 << bit
    with pytest.raises(SignatureError):
        verify(KEY_A.public_key, DOMAIN_BATCH, MESSAGE, bytes(tampered))


@FAST
@given(st.binary(min_size=SIG_LEN, max_size=SIG_LEN))
def test_arbitrary_signatures_are_refused(signature: bytes) -> None:
    with pytest.raises(SignatureError):
        verify(KEY_A.public_key, DOMAIN_BATCH, MESSAGE, signature)


def test_extending_the_message_is_refused() -> None:
    signature = KEY_A.sign(DOMAIN_BATCH, MESSAGE)
    for message in (MESSAGE + b"\x00", MESSAGE[:-1], b"", b"\x00" + MESSAGE):
        with pytest.raises(SignatureError):
            verify(KEY_A.public_key, DOMAIN_BATCH, message, signature)


@pytest.mark.parametrize(
    ("signed_as", "checked_as"),
    [
        (DOMAIN_BATCH, DOMAIN_REGISTER),
        (DOMAIN_REGISTER, DOMAIN_BATCH),
        (DOMAIN_BATCH, DOMAIN_RECEIPT),
        (DOMAIN_RECEIPT, DOMAIN_REGISTER),
    ],
)
def test_a_signature_is_bound_to_its_domain(signed_as: bytes, checked_as: bytes) -> None:
    signature = KEY_A.sign(signed_as, MESSAGE)
    with pytest.raises(SignatureError):
        verify(KEY_A.public_key, checked_as, MESSAGE, signature)


def test_domains_are_distinct_and_nul_free() -> None:
    # signatures cover domain + 0x00 + message, which is unambiguous only if no domain holds a NUL
    domains = [DOMAIN_BATCH, DOMAIN_REGISTER, DOMAIN_RECEIPT]
    assert len(set(domains)) == len(domains)
    assert all(b"\x00" not in domain for domain in domains)


def test_the_signed_bytes_are_domain_nul_message() -> None:
    # pinned so anyone can re-verify a stored payload with a plain Ed25519 library
    plain = Ed25519PrivateKey.from_private_bytes(KEY_A.raw)
    assert KEY_A.sign(DOMAIN_BATCH, MESSAGE) == plain.sign(DOMAIN_BATCH + b"\x00" + MESSAGE)


@pytest.mark.parametrize("length", [0, 31, 33, 64])
def test_a_public_key_of_the_wrong_length_is_refused(length: int) -> None:
    signature = KEY_A.sign(DOMAIN_BATCH, MESSAGE)
    with pytest.raises(SignatureError) as info:
        verify(KEY_A.public_key[:1] * length, DOMAIN_BATCH, MESSAGE, signature)
    assert info.value.reason == "bad_key"


@pytest.mark.parametrize("length", [0, 1, 63, 65, 128])
def test_a_signature_of_the_wrong_length_is_refused(length: int) -> None:
    signature = (KEY_A.sign(DOMAIN_BATCH, MESSAGE) * 2)[:length]
    with pytest.raises(SignatureError):
        verify(KEY_A.public_key, DOMAIN_BATCH, MESSAGE, signature)


# --- agent ids and raw keys ------------------------------------------------------------------------


def test_agent_id_is_32_lowercase_hex_and_deterministic() -> None:
    agent_id = agent_id_for(KEY_A.public_key)
    assert re.fullmatch(r"[0-9a-f]{32}", agent_id)
    assert agent_id_for(bytes(KEY_A.public_key)) == agent_id
    assert KEY_A.agent_id == agent_id


def test_agent_id_is_pinned() -> None:
    # the id is stored by the collector: changing its derivation orphans every registered agent
    import hashlib

    expected = hashlib.sha256(b"vantage/agent-id/v1\x00" + KEY_A.public_key).hexdigest()[:32]
    assert agent_id_for(KEY_A.public_key) == expected


@FAST
@given(st.binary(min_size=KEY_LEN, max_size=KEY_LEN), st.binary(min_size=KEY_LEN, max_size=KEY_LEN))
def test_different_keys_have_different_agent_ids(one: bytes, two: bytes) -> None:
    assert re.fullmatch(r"[0-9a-f]{32}", agent_id_for(one))
    assert (agent_id_for(one) == agent_id_for(two)) == (one == two)


def test_two_generated_keys_differ() -> None:
    assert SigningKey.generate().agent_id != SigningKey.generate().agent_id
    assert KEY_A.agent_id != KEY_B.agent_id


@pytest.mark.parametrize("length", [0, 31, 33])
def test_agent_id_needs_a_32_byte_key(length: int) -> None:
    with pytest.raises(LocalProtocolError):
        agent_id_for(b"\x01" * length)


def test_from_raw_restores_the_same_key() -> None:
    key = SigningKey.generate()
    again = SigningKey.from_raw(key.raw)
    assert again.public_key == key.public_key
    assert again.agent_id == key.agent_id
    assert again.raw == key.raw
    # Ed25519 is deterministic: the restored key makes the very same signature
    assert again.sign(DOMAIN_BATCH, MESSAGE) == key.sign(DOMAIN_BATCH, MESSAGE)


@pytest.mark.parametrize("length", [0, 16, 31, 33, 64])
def test_from_raw_needs_32_bytes(length: int) -> None:
    with pytest.raises(LocalProtocolError, match="32"):
        SigningKey.from_raw(b"\x07" * length)
