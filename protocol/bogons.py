"""Bogon addresses: answers no public name should resolve to (private, loopback, reserved, ...).

A resolver that answers a public name with one of these is lying (OONI's ``dns_bogon_error``); Iran's
injector, for one, answers 10.10.34.34. Labs and research networks that use such ranges on purpose
(198.18.0.0/15, 127.0.0.0/8 in tests) list them as *routable* so their answers are not flagged.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_prefixes(texts: Iterable[str]) -> tuple[Network, ...]:
    """Parse CIDR prefixes; raises ``ValueError`` naming the bad one."""
    prefixes = []
    for text in texts:
        try:
            prefixes.append(ipaddress.ip_network(str(text).strip(), strict=False))
        except ValueError:
            raise ValueError(f"not an address prefix: {text!r}") from None
    return tuple(prefixes)


def is_bogon(address: str, routable: Sequence[Network] = ()) -> bool:
    """True if ``address`` is not a globally routable unicast address (and not listed as routable).

    Anything that does not parse as an address counts as a bogon: it is not a usable answer.
    """
    try:
        ip = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return True
    if any(ip.version == net.version and ip in net for net in routable):
        return False
    return not ip.is_global or ip.is_reserved or ip.is_multicast
