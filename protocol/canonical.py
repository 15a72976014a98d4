"""The one canonical byte form of a Vantage message, and decoding it safely.

Like dnspython's ``to_digestable()``, ``canonical_encode`` is the single function whose bytes get signed:
maps are sorted by key, strings are UTF-8 ``str``, binary is ``bin``, integers take their shortest form
and floats are always float64. ``canonical_decode`` reads untrusted bytes under hard limits, so a hostile
peer cannot make us allocate more than the limits allow, and it refuses anything that is not already in
canonical form (so one message has exactly one byte string, which makes hashes and dedupe meaningful).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import msgpack

from .errors import DecodeError, LocalProtocolError

Wire = None | bool | int | float | str | bytes | list["Wire"] | dict[str, "Wire"]


@dataclass(frozen=True, slots=True)
class DecodeLimits:
    """Upper bounds for decoding untrusted msgpack. The defaults suit one upload batch."""

    max_bytes: int = 8 * 1024 * 1024
    max_str_len: int = 64 * 1024
    max_bin_len: int = 8 * 1024 * 1024
    max_array_len: int = 10_000
    max_map_len: int = 64
    max_depth: int = 12


DEFAULT_LIMITS = DecodeLimits()


def _check_utf8(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise LocalProtocolError(f"string is not encodable as UTF-8: {exc.reason}") from None


def _normalize(obj: Any, depth: int) -> Any:
    """Check that ``obj`` is encodable and put it in canonical order."""
    if isinstance(obj, list | tuple | dict) and depth >= DEFAULT_LIMITS.max_depth:
        raise LocalProtocolError("message nests too deeply to be decoded by a peer")
    if obj is None or isinstance(obj, bool | int | str | bytes):
        if isinstance(obj, int) and not isinstance(obj, bool) and not -(2**63) <= obj < 2**64:
            raise LocalProtocolError(f"integer out of msgpack range: {obj}")
        if isinstance(obj, str):
            _check_utf8(obj)
        return obj
    if isinstance(obj, float):
        if not math.isfinite(obj):
            raise LocalProtocolError("NaN and infinities have no canonical form")
        return obj
    if isinstance(obj, list | tuple):
        return [_normalize(item, depth + 1) for item in obj]
    if isinstance(obj, dict):
        if not all(isinstance(key, str) for key in obj):
            raise LocalProtocolError("map keys must be strings")
        for key in obj:
            _check_utf8(key)
        return {key: _normalize(obj[key], depth + 1) for key in sorted(obj)}
    raise LocalProtocolError(f"cannot encode {type(obj).__name__}")


def canonical_encode(obj: Any) -> bytes:
    """The canonical msgpack bytes of ``obj`` (dicts with str keys, lists, scalars, bytes)."""
    packed: bytes = msgpack.packb(
        _normalize(obj, 0), use_bin_type=True, use_single_float=False, strict_types=False
    )
    return packed


def canonical_decode(data: bytes, limits: DecodeLimits = DEFAULT_LIMITS) -> Any:
    """Decode untrusted canonical msgpack, enforcing ``limits``. Raises ``DecodeError``."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError("expected bytes")
    if len(data) > limits.max_bytes:
        raise DecodeError(
            f"message is {len(data)} bytes, limit is {limits.max_bytes}", reason="size"
        )
    if len(data) == 0:
        raise DecodeError("empty message")
    data = bytes(data)
    try:
        obj = msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            use_list=True,
            max_str_len=limits.max_str_len,
            max_bin_len=limits.max_bin_len,
            max_array_len=limits.max_array_len,
            max_map_len=limits.max_map_len,
            max_ext_len=0,
        )
    except (
        ValueError,
        TypeError,
        msgpack.ExtraData,
        msgpack.FormatError,
        msgpack.StackError,
    ) as exc:
        raise DecodeError(f"not valid msgpack: {exc}") from exc
    except Exception as exc:  # msgpack raises a few odd types on hostile input
        raise DecodeError(f"not valid msgpack: {type(exc).__name__}: {exc}") from exc
    _check_decoded_shape(obj, limits.max_depth)
    # Key order was checked above; msgpack itself re-encodes with the shortest widths, float64 and
    # bin-vs-str kept, so equal bytes mean canonical bytes. (Much faster than canonical_encode's
    # rebuild in Python, and this runs on every upload.)
    again = msgpack.packb(obj, use_bin_type=True, use_single_float=False)
    if again != data:
        raise DecodeError("not in canonical form (integer, float or string width)")
    return obj


_SCALARS: frozenset[type] = frozenset({type(None), bool, int, str, bytes})


def _check_decoded_shape(obj: Any, max_depth: int) -> None:
    """Nesting within ``max_depth``; maps have sorted ``str`` keys and floats are finite, everywhere.

    One iterative walk (no recursion, so hostile nesting cannot exhaust the stack) that queues only
    containers: scalars, most of a message, are checked where they sit, by exact type (msgpack
    builds exact types; anything else, such as an empty ExtType, is refused)."""
    pending: list[tuple[Any, int]] = []
    values: Any = (obj,)
    depth = 0  # of the values being looked at
    while True:
        for value in values:
            kind = type(value)
            if kind is dict or kind is list:
                if depth >= max_depth:
                    raise DecodeError(f"nesting deeper than {max_depth}")
                if value:  # most lists and maps of a measurement are empty: nothing to look at
                    pending.append((value, depth + 1))
            elif kind is float:
                if not math.isfinite(value):
                    raise DecodeError("not canonical: NaN and infinities have no canonical form")
            elif kind not in _SCALARS:
                raise DecodeError(f"not canonical: {kind.__name__} values are not allowed")
        if not pending:
            return
        item, depth = pending.pop()
        if type(item) is dict:
            keys = list(item)
            try:
                "".join(keys)  # C-speed "every key is a str" (bytes keys raise TypeError)
            except TypeError:
                raise DecodeError("not canonical: map keys must be strings") from None
            if keys != sorted(keys):
                raise DecodeError("not in canonical form (map keys out of order)")
            values = item.values()
        else:
            values = item
