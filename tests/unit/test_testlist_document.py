"""Signed test lists (protocol/testlist.py): signature, expiry, rollback, targeting, bundles."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from protocol import NetworkContext, SigningKey
from protocol.errors import DecodeError, LocalProtocolError, SchemaError, SignatureError, TrustError
from protocol.keyset import OperatorKey, pinned_root, sign_keyset, successor, verify_chain
from protocol.signed_doc import Signature, SignedDocument
from protocol.testlist import (
    Bundle,
    Entry,
    Schedule,
    Targeting,
    TestList,
    check_update,
    decode_bundle,
    decode_testlist,
    sign_testlist,
    targets_of,
    verify_testlist,
)
from protocol.verdicts import Scope

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ENTRIES = (
    Entry("https://news.world.test/", Scope.INTERNATIONAL, "NEWS"),
    Entry("http://bank.domestic.test/", Scope.DOMESTIC, "FINC"),
)


def make_list(
    version: int = 1, *, list_id: str = "xa-all", days: float = 7, **kw: object
) -> TestList:
    return TestList(
        list_id=list_id,
        version=version,
        issued=NOW,
        expires=NOW + timedelta(days=days),
        entries=kw.pop("entries", ENTRIES),  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )


def context(
    region: str = "XA-NORTH", asn: int = 64500, network_type: str = "mobile"
) -> NetworkContext:
    return NetworkContext("XA", region, asn, "MobiNet", network_type)  # type: ignore[arg-type]


def test_a_signed_list_verifies_and_round_trips() -> None:
    key = SigningKey.generate()
    original = make_list(3, description="all of XA", schedule=Schedule(900, 80))
    data = sign_testlist(original, [key]).to_bytes()
    verified = verify_testlist(data, pinned_root([key.public_key]), NOW)
    assert verified.testlist == original
    assert verified.data == data
    assert decode_testlist(data)[1] == original


def test_bad_signature_is_refused() -> None:
    key = SigningKey.generate()
    envelope = sign_testlist(make_list(), [key])
    sig = envelope.signatures[0]
    forged = SignedDocument(
        "testlist", envelope.signed, (Signature(sig.key_id, bytes(64)),)
    ).to_bytes()
    with pytest.raises(SignatureError, match="does not verify"):
        verify_testlist(forged, pinned_root([key.public_key]), NOW)


def test_content_changed_after_signing_is_refused() -> None:
    key = SigningKey.generate()
    envelope = sign_testlist(make_list(), [key])
    other = sign_testlist(make_list(entries=ENTRIES[:1]), [key])
    spliced = SignedDocument("testlist", other.signed, envelope.signatures).to_bytes()
    with pytest.raises(SignatureError):
        verify_testlist(spliced, pinned_root([key.public_key]), NOW)


def test_wrong_key_is_refused_with_reason() -> None:
    trusted, stranger = SigningKey.generate(), SigningKey.generate()
    data = sign_testlist(make_list(), [stranger]).to_bytes()
    with pytest.raises(TrustError, match="none of them a key") as caught:
        verify_testlist(data, pinned_root([trusted.public_key]), NOW)
    assert caught.value.reason == "unknown_key"


def test_expired_list_is_refused() -> None:
    key = SigningKey.generate()
    data = sign_testlist(make_list(days=1), [key]).to_bytes()
    with pytest.raises(TrustError, match="expired") as caught:
        verify_testlist(data, pinned_root([key.public_key]), NOW + timedelta(days=2))
    assert caught.value.reason == "expired"


def test_truncated_document_is_refused() -> None:
    key = SigningKey.generate()
    data = sign_testlist(make_list(), [key]).to_bytes()
    for cut in (1, len(data) // 2, len(data) - 1):
        with pytest.raises(DecodeError):
            verify_testlist(data[:cut], pinned_root([key.public_key]), NOW)
    with pytest.raises(SchemaError, match="expected a testlist"):
        verify_testlist(
            sign_keyset(
                successor(pinned_root([key.public_key]), issued=NOW, expires=NOW + timedelta(1)),
                [key],
            ).to_bytes(),
            pinned_root([key.public_key]),
            NOW,
        )


def test_rollback_and_equivocation() -> None:
    key = SigningKey.generate()
    root = pinned_root([key.public_key])
    v1 = verify_testlist(sign_testlist(make_list(1), [key]).to_bytes(), root, NOW)
    v2 = verify_testlist(sign_testlist(make_list(2), [key]).to_bytes(), root, NOW)
    v2_other = verify_testlist(
        sign_testlist(make_list(2, entries=ENTRIES[:1]), [key]).to_bytes(), root, NOW
    )
    assert check_update(None, v1) is True
    assert check_update(v1, v2) is True
    assert check_update(v2, v2) is False
    with pytest.raises(TrustError) as caught:
        check_update(v2, v1)
    assert caught.value.reason == "rollback"
    with pytest.raises(TrustError) as caught:
        check_update(v2, v2_other)
    assert caught.value.reason == "equivocation"


def test_after_rotation_new_key_accepted_and_old_key_alone_refused() -> None:
    old, new = SigningKey.generate(), SigningKey.generate()
    root = pinned_root([old.public_key])
    rotated = successor(
        root,
        issued=NOW,
        expires=NOW + timedelta(days=365),
        add=[OperatorKey(new.public_key)],
        revoke=[OperatorKey(old.public_key).key_id],
    )
    current = verify_chain(root, [sign_keyset(rotated, [old, new]).to_bytes()]).current
    assert verify_testlist(sign_testlist(make_list(2), [new]).to_bytes(), current, NOW)
    with pytest.raises(TrustError) as caught:
        verify_testlist(sign_testlist(make_list(3), [old]).to_bytes(), current, NOW)
    assert caught.value.reason == "unknown_key"


def test_expired_keyset_blocks_new_lists() -> None:
    key = SigningKey.generate()
    root = pinned_root([key.public_key])
    v1 = successor(root, issued=NOW, expires=NOW + timedelta(days=30))
    current = verify_chain(root, [sign_keyset(v1, [key]).to_bytes()]).current
    data = sign_testlist(make_list(days=60), [key]).to_bytes()
    with pytest.raises(TrustError) as caught:
        verify_testlist(data, current, NOW + timedelta(days=31))
    assert caught.value.reason == "keyset_expired"


def test_list_threshold_two() -> None:
    a, b = SigningKey.generate(), SigningKey.generate()
    root = pinned_root([a.public_key, b.public_key])
    strict = successor(root, issued=NOW, expires=NOW + timedelta(days=9), list_threshold=2)
    current = verify_chain(root, [sign_keyset(strict, [a, b]).to_bytes()]).current
    with pytest.raises(TrustError, match="needs 2"):
        verify_testlist(sign_testlist(make_list(), [a]).to_bytes(), current, NOW)
    assert verify_testlist(sign_testlist(make_list(), [a, b]).to_bytes(), current, NOW)


@pytest.mark.parametrize(
    ("targeting", "north_mobile", "north_wired", "east_mobile", "other_carrier"),
    [
        (Targeting(), True, True, True, True),
        (Targeting(regions=("XA-NORTH",)), True, True, False, True),
        (Targeting(regions=("XA-NORTH",), asns=(64500,)), True, False, False, False),
        (Targeting(asns=(64500,), network_types=("mobile",)), True, False, True, False),
        (Targeting(countries=("YB",)), False, False, False, False),
    ],
)
def test_targeting(
    targeting: Targeting,
    north_mobile: bool,
    north_wired: bool,
    east_mobile: bool,
    other_carrier: bool,
) -> None:
    assert targeting.matches(context()) is north_mobile
    assert targeting.matches(context(asn=64501, network_type="wired")) is north_wired
    assert targeting.matches(context(region="XA-EAST")) is east_mobile
    assert targeting.matches(context(asn=64999)) is other_carrier


def test_invalid_documents_cannot_be_built() -> None:
    with pytest.raises(LocalProtocolError, match="list_id"):
        make_list(list_id="Bad Id")
    with pytest.raises(LocalProtocolError, match="positive"):
        make_list(0)
    with pytest.raises(LocalProtocolError, match="expires"):
        make_list(days=-1)
    with pytest.raises(LocalProtocolError, match="same URL"):
        make_list(entries=(ENTRIES[0], ENTRIES[0]))
    with pytest.raises(LocalProtocolError, match="network_types"):
        Targeting(network_types=("satellite",))
    with pytest.raises(LocalProtocolError, match="http"):
        Entry("ftp://x.test/", Scope.DOMESTIC)
    with pytest.raises(LocalProtocolError, match="tests"):
        Entry("http://x.test/", Scope.DOMESTIC, tests=("Bad Name",))


def test_bundle_round_trip_and_truncation() -> None:
    bundle = Bundle((b"k1",), (b"l1", b"l2"))
    assert decode_bundle(bundle.to_bytes()) == bundle
    with pytest.raises(DecodeError, match="truncated"):
        decode_bundle(bundle.to_bytes()[:-1])


def test_targets_of_orders_by_priority_and_skips_other_tests() -> None:
    low = make_list(list_id="low", schedule=Schedule(3600, 10))
    high = make_list(
        list_id="high",
        schedule=Schedule(3600, 90),
        entries=(
            Entry("http://only-dns.test/", Scope.DOMESTIC, tests=("dns_consistency",)),
            Entry("http://bank.domestic.test/", Scope.DOMESTIC, "BANK"),
        ),
    )
    targets = targets_of([low, high])
    assert [t.url for t in targets] == ["http://bank.domestic.test/", "https://news.world.test/"]
    assert targets[0].category == "BANK"
