"""Write small MaxMind DB files for tests (format: maxmind.github.io/MaxMind-DB, version 2.0).

Enough of the format for geo tests: a 24-bit-record search tree for IPv4 or IPv6 (IPv4 networks live
under ::/96 in an IPv6 tree, as in MaxMind's own files), and maps, arrays, strings, unsigned integers
and booleans in the data section. The real ``maxminddb`` reader must accept what this writes.
"""

from __future__ import annotations

import ipaddress
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MARKER = b"\xab\xcd\xefMaxMind.com"


def _control(kind: int, size: int) -> bytes:
    if size < 29:
        head, extra = size, b""
    elif size < 285:
        head, extra = 29, bytes([size - 29])
    elif size < 65821:
        head, extra = 30, (size - 285).to_bytes(2, "big")
    else:
        head, extra = 31, (size - 65821).to_bytes(3, "big")
    if kind <= 7:
        return bytes([(kind << 5) | head]) + extra
    return bytes([head, kind - 7]) + extra


@dataclass(frozen=True)
class Uint:
    """An unsigned integer of a fixed MMDB type (libmaxminddb checks metadata types exactly)."""

    bits: int
    value: int


_UINT_KIND = {16: 5, 32: 6, 64: 9, 128: 10}


def encode(value: Any) -> bytes:
    if isinstance(value, Uint):
        raw = value.value.to_bytes((value.value.bit_length() + 7) // 8, "big")
        return _control(_UINT_KIND[value.bits], len(raw)) + raw
    if isinstance(value, bool):
        return _control(14, int(value))
    if isinstance(value, str):
        raw = value.encode()
        return _control(2, len(raw)) + raw
    if isinstance(value, float):
        return _control(3, 8) + struct.pack(">d", value)
    if isinstance(value, bytes):
        return _control(4, len(value)) + value
    if isinstance(value, int):
        if value < 0:
            raise ValueError("negative integers are not needed here")
        kind = 5 if value < 2**16 else 6 if value < 2**32 else 9
        raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
        return _control(kind, len(raw)) + raw
    if isinstance(value, dict):
        return _control(7, len(value)) + b"".join(encode(k) + encode(v) for k, v in value.items())
    if isinstance(value, list):
        return _control(11, len(value)) + b"".join(encode(item) for item in value)
    raise TypeError(type(value).__name__)


def build_mmdb(networks: dict[str, dict[str, Any]], ip_version: int = 6) -> bytes:
    """An MMDB file mapping each network (CIDR) to its record."""
    bits = 128 if ip_version == 6 else 32
    # The tree as nested lists [left, right]; leaves are ("data", index).
    root: list[Any] = [None, None]
    records: list[bytes] = []
    for cidr, record in networks.items():
        net = ipaddress.ip_network(cidr)
        if net.version == 4 and ip_version == 6:
            net = ipaddress.ip_network(f"::{net.network_address}/{96 + net.prefixlen}")
        elif net.version == 6 and ip_version == 4:
            raise ValueError("IPv6 network in an IPv4 database")
        value, prefix = int(net.network_address), net.prefixlen
        node = root
        for depth in range(prefix - 1):
            bit = (value >> (bits - 1 - depth)) & 1
            if not isinstance(node[bit], list):
                node[bit] = [None, None]
            node = node[bit]
        records.append(encode(record))
        node[(value >> (bits - prefix)) & 1] = ("data", len(records) - 1)
    nodes: list[list[Any]] = []
    numbers: dict[int, int] = {}
    queue = [root]
    while queue:  # breadth-first numbering; node 0 is the root
        node = queue.pop(0)
        numbers[id(node)] = len(nodes)
        nodes.append(node)
        queue.extend(child for child in node if isinstance(child, list))
    count = len(nodes)
    offsets, data = [], b""
    for raw in records:
        offsets.append(len(data))
        data += raw

    def record_value(child: Any) -> int:
        if child is None:
            return count
        if isinstance(child, list):
            return numbers[id(child)]
        return count + 16 + offsets[child[1]]

    tree = b"".join(
        record_value(n[0]).to_bytes(3, "big") + record_value(n[1]).to_bytes(3, "big") for n in nodes
    )
    metadata = {
        "binary_format_major_version": Uint(16, 2),
        "binary_format_minor_version": Uint(16, 0),
        "build_epoch": Uint(64, int(time.time())),
        "database_type": "Vantage-Test-City-ASN",
        "description": {"en": "test database written by tests/mmdb_writer.py"},
        "ip_version": Uint(16, ip_version),
        "languages": ["en"],
        "node_count": Uint(32, count),
        "record_size": Uint(16, 24),
    }
    return tree + b"\0" * 16 + data + MARKER + encode(metadata)


def write_mmdb(path: Path, networks: dict[str, dict[str, Any]], ip_version: int = 6) -> Path:
    path.write_bytes(build_mmdb(networks, ip_version))
    return path


def city_asn_record(country: str, subdivision: str, asn: int, org: str) -> dict[str, Any]:
    """A record shaped like GeoIP2-City merged with GeoLite2-ASN."""
    return {
        "country": {"iso_code": country, "names": {"en": country}},
        "subdivisions": [{"iso_code": subdivision}],
        "autonomous_system_number": Uint(32, asn),
        "autonomous_system_organization": org,
    }
