"""protocol.canonical: one byte string per message, and safe decoding of untrusted bytes."""

from __future__ import annotations

import struct
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.canonical import DEFAULT_LIMITS, DecodeLimits, canonical_decode, canonical_encode
from protocol.errors import DecodeError, LocalProtocolError

from builders import MSGPACK_INTS, WIRE_VALUES, same_wire

FAST = settings(max_examples=200, deadline=None)


def nested_lists(levels: int) -> list[Any]:
    """``levels`` lists inside each other, the innermost empty: ``[[...[]...]]``."""
    obj: list[Any] = []
    for _ in range(levels - 1):
        obj = [obj]
    return obj


# --- encoding --------------------------------------------------------------------------------------


@FAST
@given(WIRE_VALUES)
def test_round_trip(value: Any) -> None:
    data = canonical_encode(value)
    assert same_wire(canonical_decode(data), value)


@FAST
@given(WIRE_VALUES)
def test_encoding_is_a_fixed_point(value: Any) -> None:
    data = canonical_encode(value)
    assert canonical_encode(canonical_decode(data)) == data


@FAST
@given(st.dictionaries(st.text(max_size=6), MSGPACK_INTS, min_size=2, max_size=10), st.randoms())
def test_key_order_does_not_change_the_bytes(items: dict[str, int], rnd: Any) -> None:
    keys = list(items)
    rnd.shuffle(keys)
    shuffled = {key: items[key] for key in keys}
    reversed_ = {key: items[key] for key in reversed(list(items))}
    assert canonical_encode(shuffled) == canonical_encode(items) == canonical_encode(reversed_)
    assert canonical_encode({"outer": shuffled}) == canonical_encode({"outer": items})


def test_maps_are_sorted_by_key() -> None:
    assert canonical_encode({"b": 1, "a": 2}) == b"\x82\xa1a\x02\xa1b\x01"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1, b"\x01"),  # positive fixint, not uint8/16/32/64
        (-1, b"\xff"),
        (255, b"\xcc\xff"),
        (2**64 - 1, b"\xcf" + b"\xff" * 8),
        (-(2**63), b"\xd3\x80" + b"\x00" * 7),
        (1.5, b"\xcb" + struct.pack(">d", 1.5)),  # always float64, never float32
        (1.0, b"\xcb" + struct.pack(">d", 1.0)),  # a float stays a float
        ("é", b"\xa2\xc3\xa9"),  # str is UTF-8 str
        (b"\x00", b"\xc4\x01\x00"),  # bytes is bin, not str
        (True, b"\xc3"),
        (None, b"\xc0"),
        ((1, 2), b"\x92\x01\x02"),  # a tuple is encoded as a list
    ],
)
def test_scalar_forms(value: Any, expected: bytes) -> None:
    assert canonical_encode(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        float("nan"),
        float("inf"),
        float("-inf"),
        [1, float("nan")],
        {"a": {"b": float("inf")}},
    ],
)
def test_non_finite_floats_are_refused(value: Any) -> None:
    with pytest.raises(LocalProtocolError, match="NaN"):
        canonical_encode(value)


@pytest.mark.parametrize("value", [{1: "a"}, {b"k": 1}, {None: 1}, {"ok": {2.5: 1}}])
def test_non_string_keys_are_refused(value: Any) -> None:
    with pytest.raises(LocalProtocolError, match="keys"):
        canonical_encode(value)


@pytest.mark.parametrize("value", [2**64, -(2**63) - 1, [2**70]])
def test_integers_outside_msgpack_are_refused(value: Any) -> None:
    with pytest.raises(LocalProtocolError, match="range"):
        canonical_encode(value)


@pytest.mark.parametrize("value", [{1, 2}, object(), 1j, bytearray(b"x"), [frozenset()]])
def test_unsupported_types_are_refused(value: Any) -> None:
    with pytest.raises(LocalProtocolError, match="cannot encode"):
        canonical_encode(value)


def test_encoder_refuses_what_a_peer_could_not_decode() -> None:
    with pytest.raises(LocalProtocolError, match="deeply"):
        canonical_encode(nested_lists(DEFAULT_LIMITS.max_depth + 5))


def test_nesting_at_the_depth_limit_round_trips() -> None:
    value = nested_lists(DEFAULT_LIMITS.max_depth)
    assert canonical_decode(canonical_encode(value)) == value


@pytest.mark.parametrize("empty", [[], {}])
def test_everything_the_encoder_accepts_the_decoder_accepts(empty: Any) -> None:
    value: Any = empty
    for _ in range(DEFAULT_LIMITS.max_depth):
        value = [value]  # max_depth + 1 containers in all
    try:
        data = canonical_encode(value)
    except LocalProtocolError:
        return  # refusing to encode is fine; encoding what a peer must refuse is not
    assert canonical_decode(data) == value


@pytest.mark.parametrize("value", ["\ud800", {"k": "a\udcffb"}, {"\ud800": 1}])
def test_unencodable_strings_are_a_local_protocol_error(value: Any) -> None:
    with pytest.raises(LocalProtocolError):
        canonical_encode(value)


# --- decoding: canonical form only ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (msgpack.packb({"b": 1, "a": 2}), "map keys out of order"),
        (b"\x82\xa1a\x01\xa1a\x02", "duplicate map key"),
        (b"\xcd\x00\x01", "1 as uint16"),
        (b"\xcc\x01", "1 as uint8"),
        (b"\xd0\x01", "1 as int8"),
        (b"\xd1\xff\xff", "-1 as int16"),
        (b"\xcf" + (1).to_bytes(8, "big"), "1 as uint64"),
        (b"\xca" + struct.pack(">f", 1.5), "float32"),
        (b"\xd9\x01a", "a short str as str8"),
        (b"\xdc\x00\x01\x01", "a short array as array16"),
        (b"\xde\x00\x01\xa1a\x01", "a small map as map16"),
    ],
)
def test_non_canonical_bytes_are_refused(data: bytes, why: str) -> None:
    with pytest.raises(DecodeError) as info:
        canonical_decode(data)
    assert info.value.reason == "decode"


@pytest.mark.parametrize(
    "data",
    [
        b"\x81\x01\x02",  # int key
        b"\x81\xc4\x01k\x01",  # bin key
        b"\xcb" + struct.pack(">d", float("nan")),
        b"\xcb" + struct.pack(">d", float("inf")),
    ],
)
def test_values_without_a_canonical_form_are_refused(data: bytes) -> None:
    with pytest.raises(DecodeError):
        canonical_decode(data)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x01\x02",  # trailing data
        canonical_encode({"a": 1}) + b"\xc0",
        b"\x92\x01",  # truncated array
        b"\xa5abc",  # truncated str
        b"\xcb\x00\x00",  # truncated float
        b"\xc1",  # never-used byte
        b"\xa2\xff\xfe",  # invalid UTF-8
        b"\xd4\x05\x00",  # fixext 1
        b"\xc7\x00\x05",  # ext 8 of length 0
        b"\xd6\xff\x00\x00\x00\x00",  # msgpack timestamp
    ],
)
def test_malformed_input_is_a_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError):
        canonical_decode(data)


@pytest.mark.parametrize("data", [None, "text", 1, [1]])
def test_non_bytes_input_is_a_decode_error(data: Any) -> None:
    with pytest.raises(DecodeError):
        canonical_decode(data)


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview])
def test_bytes_like_input_is_accepted(wrap: Any) -> None:
    assert canonical_decode(wrap(canonical_encode({"a": [1, b"x"]}))) == {"a": [1, b"x"]}


# --- decoding: limits ------------------------------------------------------------------------------


def test_over_max_bytes_is_a_size_error() -> None:
    data = canonical_encode("x" * 100)
    assert canonical_decode(data, DecodeLimits(max_bytes=len(data))) == "x" * 100
    with pytest.raises(DecodeError) as info:
        canonical_decode(data, DecodeLimits(max_bytes=len(data) - 1))
    assert info.value.reason == "size"


@pytest.mark.parametrize(
    ("limit", "at_limit", "over_limit"),
    [
        ("max_str_len", "x" * 10, "x" * 11),
        ("max_bin_len", b"x" * 10, b"x" * 11),
        ("max_array_len", list(range(10)), list(range(11))),
        ("max_map_len", {str(i): i for i in range(10)}, {str(i): i for i in range(11)}),
        ("max_depth", nested_lists(10), nested_lists(11)),
        ("max_depth", {"a": nested_lists(9)}, {"a": nested_lists(10)}),
    ],
)
def test_each_limit_is_enforced(limit: str, at_limit: Any, over_limit: Any) -> None:
    limits = DecodeLimits(**{limit: 10})
    assert canonical_decode(canonical_encode(at_limit), limits) == at_limit
    with pytest.raises(DecodeError):
        canonical_decode(canonical_encode(over_limit), limits)


def test_limits_apply_inside_containers() -> None:
    limits = DecodeLimits(max_str_len=4)
    with pytest.raises(DecodeError):
        canonical_decode(canonical_encode({"k": ["ok", "too long"]}), limits)


def test_a_huge_declared_length_is_refused_without_allocating() -> None:
    # array32 claiming 2**32 - 1 items, str32 and bin32 claiming 4 GiB: five bytes each
    for head in (b"\xdd", b"\xdb", b"\xc6"):
        with pytest.raises(DecodeError):
            canonical_decode(head + b"\xff\xff\xff\xff")


@pytest.mark.parametrize("head", [b"\x91", b"\x81\xa1k"])
def test_deep_nesting_within_msgpack_stack_is_a_decode_error(head: bytes) -> None:
    with pytest.raises(DecodeError):
        canonical_decode(head * 1000 + b"\xc0")


@pytest.mark.parametrize("levels", [5_000, 100_000])
def test_nesting_past_msgpack_stack_is_a_decode_error(levels: int) -> None:
    with pytest.raises(DecodeError):
        canonical_decode(b"\x91" * levels + b"\xc0")


# --- decoding: anything at all ---------------------------------------------------------------------


@FAST
@given(st.binary(max_size=128))
def test_arbitrary_bytes_decode_or_raise_decode_error(data: bytes) -> None:
    # max_size stays well under the ~340 nesting levels that trip the RecursionError bug above
    try:
        value = canonical_decode(data)
    except DecodeError:
        return
    assert canonical_encode(value) == data


@FAST
@given(WIRE_VALUES, st.data())
def test_mutated_canonical_bytes_decode_or_raise_decode_error(
    value: Any, data: st.DataObject
) -> None:
    raw = bytearray(canonical_encode(value))
    index = data.draw(st.integers(0, len(raw) - 1))
    raw[index] ^= data.draw(st.integers(1, 255))
    cut = data.draw(st.integers(0, len(raw)))
    for candidate in (bytes(raw), bytes(raw[:cut])):
        try:
            decoded = canonical_decode(candidate)
        except DecodeError:
            continue
        assert canonical_encode(decoded) == candidate
