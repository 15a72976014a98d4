"""Where the agent measures from: network type from interface facts, the rest from the collector.

* **Network type** (mobile / wifi / wired / unknown) comes from the interfaces psutil reports and the
  kernel's default route: the interface that carries the default route decides; names and the sysfs
  ``wireless`` flag say what kind it is. Facts are injectable (``NetworkFacts``) so tests need no
  particular machine.
* **Country, region, carrier ASN and name** come from the collector's ``GET /api/v1/whoami`` as a
  signed token (``source = "collector"``), re-asked when the network changes (a different set of
  interfaces or addresses, or another default route) or the token nears expiry. Without a valid
  token: a local MMDB lookup of a public interface address, then what the last token said if the
  network has not changed since, then the config's ``[network]`` values — all ``self-reported``.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import os
import re
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from protocol import NetworkContext, NetworkType, RemoteProtocolError, utc_now
from protocol.context_token import ContextClaims, read_context_token
from protocol.mmdb import MmdbReader, geo_fields

from .errors import UploadError
from .spool import read_json, write_json

_MOBILE = re.compile(r"^(wwan|wwp|rmnet|ccmni|pdp|ppp|usb|rndis|cdc-wdm|qmi|mbim|v4-rmnet)")
_WIFI = re.compile(r"^(wl|wlan|wifi|ath|ra\d|wlp|wlx)")
_WIRED = re.compile(r"^(eth|en|em|eno|ens|enp|enx|bond|team)")
_VIRTUAL = re.compile(
    r"^(lo|docker|veth|br-|virbr|vnet|tun|tap|wg|zt|tailscale|utun|dummy|llw|awdl)"
)


@dataclass(frozen=True, slots=True)
class Interface:
    name: str
    is_up: bool
    addresses: tuple[str, ...] = ()
    wireless: bool = False


@dataclass(frozen=True, slots=True)
class NetworkFacts:
    interfaces: tuple[Interface, ...]
    default_interface: str | None = None

    @property
    def fingerprint(self) -> str:
        """Changes whenever the network plausibly changed: another route, interface or address."""
        parts = [self.default_interface or "-"]
        parts += sorted(
            f"{i.name}={','.join(sorted(i.addresses))}" for i in self.interfaces if i.is_up
        )
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def interface_kind(interface: Interface) -> NetworkType | None:
    """What kind of link an interface is, or None for loopback and virtual ones (ignored)."""
    name = interface.name.lower()
    if _VIRTUAL.match(name):
        return None
    if interface.wireless or _WIFI.match(name):
        return NetworkType.WIFI
    if _MOBILE.match(name):
        return NetworkType.MOBILE
    if _WIRED.match(name):
        return NetworkType.WIRED
    return NetworkType.UNKNOWN


def _routable(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return False
    return not (ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_unspecified)


def detect_network_type(facts: NetworkFacts) -> NetworkType:
    """The kind of the default-route interface; else the only kind among connected interfaces."""
    connected = [i for i in facts.interfaces if i.is_up and any(map(_routable, i.addresses))]
    by_name = {i.name: i for i in connected}
    if facts.default_interface in by_name:
        kind = interface_kind(by_name[facts.default_interface])
        if kind is not None:
            return kind
    kinds = {kind for i in connected if (kind := interface_kind(i)) is not None}
    return kinds.pop() if len(kinds) == 1 else NetworkType.UNKNOWN


def public_addresses(
    facts: NetworkFacts, routable: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network] = ()
) -> list[str]:
    """Globally routable interface addresses (rare behind NAT, common on some mobile links).

    ``routable`` lists extra prefixes to treat as public: a lab setting (198.18.0.0/15 test nets).
    """
    found = []
    for interface in facts.interfaces:
        if interface.is_up and interface_kind(interface) is not None:
            for address in interface.addresses:
                try:
                    ip = ipaddress.ip_address(address.split("%")[0])
                    if ip.is_global or any(ip in net for net in routable):
                        found.append(address.split("%")[0])
                except ValueError:
                    continue
    return found


def read_default_interface(route_table: Path = Path("/proc/net/route")) -> str | None:
    """The interface of the IPv4 default route (Linux); None where the kernel does not say."""
    try:
        lines = route_table.read_text().splitlines()[1:]
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) > 2 and fields[1] == "00000000":
            return fields[0]
    return None


def read_network_facts() -> NetworkFacts:
    import psutil

    stats = psutil.net_if_stats()
    addresses = psutil.net_if_addrs()
    interfaces = []
    for name, stat in sorted(stats.items()):
        addrs = tuple(
            a.address
            for a in addresses.get(name, ())
            if a.family in (socket.AF_INET, socket.AF_INET6)
        )
        wireless = os.path.isdir(f"/sys/class/net/{name}/wireless")
        interfaces.append(Interface(name, bool(stat.isup), addrs, wireless))
    return NetworkFacts(tuple(interfaces), read_default_interface())


TokenFetcher = Callable[[], Awaitable[bytes]]


class ContextResolver:
    """Keeps the current ``NetworkContext``; ``current()`` re-checks the network on every call."""

    def __init__(
        self,
        fallback: NetworkContext,
        *,
        detect_type: bool = True,
        fetch_token: TokenFetcher | None = None,
        mmdb_paths: Sequence[Path] = (),
        routable: Sequence[str] = (),
        facts: Callable[[], NetworkFacts] = read_network_facts,
        state_path: Path | None = None,
        clock: Callable[[], datetime] = utc_now,
        refresh_before: timedelta = timedelta(hours=1),
        usable_margin: timedelta = timedelta(minutes=15),
        retry_after: timedelta = timedelta(minutes=5),
    ) -> None:
        self.fallback = fallback
        self.detect_type = detect_type
        self.fetch_token = fetch_token
        self.mmdb_paths = tuple(mmdb_paths)
        self.routable = tuple(ipaddress.ip_network(prefix) for prefix in routable)
        self.facts = facts
        self.state_path = state_path
        self.clock = clock
        self.refresh_before, self.usable_margin = refresh_before, usable_margin
        self.retry_after = retry_after
        self._token: bytes | None = None
        self._claims: ContextClaims | None = None
        self._fingerprint: str | None = None
        self._last_attempt: datetime | None = None
        self.last_error: str | None = None
        self._load_state()

    # --- persistence: a restart on the same network need not ask again ------------------------------

    def _load_state(self) -> None:
        if self.state_path is None:
            return
        state = read_json(self.state_path)
        try:
            token = base64.b64decode(str(state["token"]), validate=True)
            self._claims = read_context_token(token)
            self._token, self._fingerprint = token, str(state["fingerprint"])
        except (KeyError, ValueError, RemoteProtocolError):
            pass

    def _save_state(self) -> None:
        if self.state_path is not None and self._token is not None:
            write_json(
                self.state_path,
                {
                    "token": base64.b64encode(self._token).decode(),
                    "fingerprint": self._fingerprint,
                },
            )

    # --- the context ---------------------------------------------------------------------------------

    async def _refresh_token(self, fingerprint: str, now: datetime) -> None:
        changed = fingerprint != self._fingerprint
        due = self._claims is None or self._claims.expires_at - now < self.refresh_before or changed
        if not due or self.fetch_token is None:
            if changed:
                self._forget(fingerprint)
            return
        if (
            not changed
            and self._last_attempt is not None
            and now - self._last_attempt < self.retry_after
        ):
            return
        self._last_attempt = now
        try:
            token = await self.fetch_token()
            claims = read_context_token(token)
        except (UploadError, RemoteProtocolError) as exc:
            self.last_error = str(exc)
            if changed:
                self._forget(fingerprint)  # the old network's token says nothing about this one
            return
        self.last_error = None
        if not claims.known:
            self._forget(fingerprint)
            return
        self._token, self._claims, self._fingerprint = token, claims, fingerprint
        self._save_state()

    def _forget(self, fingerprint: str) -> None:
        self._token, self._claims, self._fingerprint = None, None, fingerprint

    def _local_lookup(self, facts: NetworkFacts) -> dict[str, Any] | None:
        addresses = public_addresses(facts, self.routable)
        if not addresses or not self.mmdb_paths:
            return None
        readers = []
        for path in self.mmdb_paths:
            try:
                readers.append(MmdbReader(path.read_bytes()))
            except (OSError, RemoteProtocolError):
                continue
        for address in addresses:
            records = []
            for reader in readers:
                try:
                    records.append(reader.lookup(address))
                except (ValueError, RemoteProtocolError):
                    records.append(None)
            found = geo_fields(records)
            if found["country"] != "ZZ" or found["asn"]:
                return found
        return None

    async def current(self) -> NetworkContext:
        facts = self.facts()
        now = self.clock()
        await self._refresh_token(facts.fingerprint, now)
        network_type = detect_network_type(facts) if self.detect_type else None
        kind = network_type or self.fallback.network_type
        claims = self._claims
        if (
            claims is not None
            and self._token is not None
            and claims.expires_at - now > self.usable_margin
        ):
            return NetworkContext(
                claims.country,
                claims.region,
                claims.asn,
                claims.carrier,
                kind,
                source="collector",
                token=self._token,
            )
        local = self._local_lookup(facts)
        if local is not None:
            return NetworkContext(
                local["country"], local["region"], local["asn"], local["carrier"], kind
            )
        if claims is not None and self._fingerprint == facts.fingerprint:
            # Same network as when the collector last told us: still the best guess, but our word now.
            return NetworkContext(claims.country, claims.region, claims.asn, claims.carrier, kind)
        f = self.fallback
        return NetworkContext(f.country, f.region, f.asn, f.carrier, kind)
