"""A small, pure reader of the MaxMind DB format (GeoLite2, DB-IP "lite" and friends).

The agent may not depend on ``maxminddb``, yet its offline fallback needs a lookup in a local file, so
this reads the documented format (maxmind.github.io/MaxMind-DB): a binary search tree over the
address bits, 16 zero bytes, a data section of typed values, and a metadata map after the marker
``\\xab\\xcd\\xefMaxMind.com``. Bytes in, values out. ``geo_fields`` turns GeoIP2/DB-IP records into
the network-context fields both sides use.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable, Mapping
from typing import Any, Final

from .errors import DecodeError

METADATA_MARKER: Final = b"\xab\xcd\xefMaxMind.com"
_DATA_SEPARATOR: Final = 16


class MmdbReader:
    def __init__(self, data: bytes) -> None:
        self._data = data
        start = data.rfind(METADATA_MARKER, max(0, len(data) - 128 * 1024))
        if start < 0:
            raise DecodeError("not a MaxMind DB file (no metadata marker)")
        meta, _ = self._decode(start + len(METADATA_MARKER), 0)
        if not isinstance(meta, dict):
            raise DecodeError("MaxMind DB metadata is not a map")
        self.metadata: dict[str, Any] = meta
        try:
            self.node_count = int(meta["node_count"])
            self.record_size = int(meta["record_size"])
            self.ip_version = int(meta["ip_version"])
        except (KeyError, TypeError, ValueError) as exc:
            raise DecodeError(f"MaxMind DB metadata lacks {exc}") from exc
        if self.record_size not in (24, 28, 32):
            raise DecodeError(f"unsupported record size {self.record_size}")
        self._node_bytes = self.record_size // 4
        self._tree_size = self.node_count * self._node_bytes
        self._data_start = self._tree_size + _DATA_SEPARATOR
        if self._data_start > start:
            raise DecodeError("MaxMind DB search tree overruns the file")
        self._ipv4_start = self._find_ipv4_start()

    # --- the search tree -------------------------------------------------------------------------

    def _record(self, node: int, bit: int) -> int:
        off = node * self._node_bytes
        b = self._data[off : off + self._node_bytes]
        if self.record_size == 24:
            return int.from_bytes(b[3:6] if bit else b[0:3], "big")
        if self.record_size == 28:
            if bit:
                return ((b[3] & 0x0F) << 24) | int.from_bytes(b[4:7], "big")
            return ((b[3] & 0xF0) << 20) | int.from_bytes(b[0:3], "big")
        return int.from_bytes(b[4:8] if bit else b[0:4], "big")

    def _find_ipv4_start(self) -> int:
        if self.ip_version != 6:
            return 0
        node = 0
        for _ in range(96):
            if node >= self.node_count:
                break
            node = self._record(node, 0)
        return node

    def lookup(self, address: str) -> Any | None:
        """The record for ``address``, or None if the database has none."""
        ip = ipaddress.ip_address(address)
        if ip.version == 6 and self.ip_version == 4:
            raise ValueError(f"{address} is IPv6 but this database holds IPv4 only")
        bits, node = (32, self._ipv4_start) if ip.version == 4 else (128, 0)
        value = int(ip)
        for depth in range(bits):
            if node >= self.node_count:
                break
            node = self._record(node, (value >> (bits - 1 - depth)) & 1)
        if node == self.node_count:
            return None
        if node < self.node_count:
            raise DecodeError("MaxMind DB search tree is deeper than the address")
        offset = node - self.node_count - _DATA_SEPARATOR
        value_, _ = self._decode(self._data_start + offset, self._data_start)
        return value_

    # --- the data section ------------------------------------------------------------------------

    def _decode(self, offset: int, base: int) -> tuple[Any, int]:
        try:
            return self._decode_at(offset, base)
        except (IndexError, struct.error, UnicodeDecodeError, RecursionError) as exc:
            raise DecodeError(f"damaged MaxMind DB data at offset {offset}: {exc}") from exc

    def _decode_at(self, offset: int, base: int) -> tuple[Any, int]:
        data = self._data
        ctrl = data[offset]
        offset += 1
        kind = ctrl >> 5
        if kind == 1:  # pointer: follow it, but continue after the pointer itself
            ss, vvv = (ctrl >> 3) & 3, ctrl & 7
            if ss == 0:
                pointer, offset = (vvv << 8) | data[offset], offset + 1
            elif ss == 1:
                pointer = ((vvv << 16) | int.from_bytes(data[offset : offset + 2], "big")) + 2048
                offset += 2
            elif ss == 2:
                pointer = ((vvv << 24) | int.from_bytes(data[offset : offset + 3], "big")) + 526336
                offset += 3
            else:
                pointer, offset = int.from_bytes(data[offset : offset + 4], "big"), offset + 4
            value, _ = self._decode_at(base + pointer, base)
            return value, offset
        if kind == 0:  # extended type
            kind, offset = 7 + data[offset], offset + 1
        size = ctrl & 0x1F
        if size >= 29:
            extra = size - 28
            raw = int.from_bytes(data[offset : offset + extra], "big")
            offset += extra
            size = (29, 285, 65821)[extra - 1] + raw
        if kind == 7:  # map
            result: dict[str, Any] = {}
            for _ in range(size):
                key, offset = self._decode_at(offset, base)
                result[str(key)], offset = self._decode_at(offset, base)
            return result, offset
        if kind == 11:  # array
            items = []
            for _ in range(size):
                item, offset = self._decode_at(offset, base)
                items.append(item)
            return items, offset
        if kind == 14:  # boolean: the value is the size
            return bool(size), offset
        chunk = data[offset : offset + size]
        if len(chunk) != size:
            raise IndexError("value runs past the end of the file")
        offset += size
        if kind == 2:
            return chunk.decode("utf-8"), offset
        if kind == 3:
            return struct.unpack(">d", chunk)[0], offset
        if kind == 15:
            return struct.unpack(">f", chunk)[0], offset
        if kind == 4:
            return bytes(chunk), offset
        if kind in (5, 6, 9, 10):  # unsigned integers of up to 16/32/64/128 bits
            return int.from_bytes(chunk, "big"), offset
        if kind == 8:  # int32
            return int.from_bytes(chunk.rjust(4, b"\0"), "big", signed=True), offset
        raise DecodeError(f"unknown MaxMind DB data type {kind}")


def geo_fields(records: Iterable[Mapping[str, Any] | None]) -> dict[str, Any]:
    """Country, region (ISO 3166-2), ASN and carrier from GeoIP2/DB-IP City/Country/ASN records.

    Several databases can be given (a City and an ASN file); the first that has a field wins.
    """
    found: dict[str, Any] = {"country": "ZZ", "region": "", "asn": 0, "carrier": ""}
    for record in records:
        if not isinstance(record, Mapping):
            continue
        country = record.get("country") or record.get("registered_country") or {}
        code = country.get("iso_code") if isinstance(country, Mapping) else None
        if found["country"] == "ZZ" and isinstance(code, str) and len(code) == 2:
            found["country"] = code.upper()
        subdivisions = record.get("subdivisions") or []
        if not found["region"] and isinstance(subdivisions, list) and subdivisions:
            first = subdivisions[0]
            sub = first.get("iso_code") if isinstance(first, Mapping) else None
            if isinstance(sub, str) and sub and found["country"] != "ZZ":
                found["region"] = f"{found['country']}-{sub}"[:64]
        asn = record.get("autonomous_system_number")
        if not found["asn"] and isinstance(asn, int) and 0 < asn < 2**32:
            found["asn"] = asn
        org = record.get("autonomous_system_organization")
        if not found["carrier"] and isinstance(org, str):
            found["carrier"] = "".join(ch for ch in org if ord(ch) >= 0x20)[:128]
    return found
