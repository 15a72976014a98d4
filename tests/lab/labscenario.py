"""Censorship scenarios as data: what the censor (or a broken server) does, and what agents must see.

A :class:`Scenario` is a tuple of actions plus expectations per URL. :func:`applied` turns the actions
into iptables rules in the lab's ``SCENARIO`` chains and into lies of the ISP resolver, and undoes them
on exit, even when the test inside failed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from labtopo import ABROAD, CHAIN, ClientNet, Lab, site


@dataclass(frozen=True)
class DnsLie:
    """The ISP resolver answers ``host`` with ``address`` (None: NXDOMAIN)."""

    host: str
    address: str | None


@dataclass(frozen=True)
class ResetOnString:
    """Inject a TCP RST when a packet to ``port`` carries ``text`` (a Host header, a TLS SNI)."""

    text: str
    port: int


@dataclass(frozen=True)
class Blackhole:
    """Drop every packet to ``host``'s address: connections time out."""

    host: str


@dataclass(frozen=True)
class Divert:
    """Send ``host``'s port-``port`` traffic to one of the censor's own hosts (``to``)."""

    host: str
    port: int
    to: str


@dataclass(frozen=True)
class DropAbroad:
    """Drop everything to international addresses (198.19.0.0/16)."""


@dataclass(frozen=True)
class RejectTo:
    """Refuse connections to ``address`` with ICMP administratively prohibited (a fast cut)."""

    address: str


@dataclass(frozen=True)
class ServerDown:
    """Not the censor: ``host``'s own server refuses every connection, for everyone."""

    host: str


Action = DnsLie | ResetOnString | Blackhole | Divert | DropAbroad | RejectTo | ServerDown


@dataclass(frozen=True)
class Expect:
    url: str
    verdict: str
    blocking: str | None = None
    failure: str | None = None
    fingerprint: str | None = None  # a fingerprint name that must be among the hits


@dataclass(frozen=True)
class Scenario:
    name: str
    technique: str
    actions: tuple[Action, ...]
    expect: tuple[Expect, ...]


def target_rows(expect: Sequence[Expect]) -> list[tuple[str, str]]:
    """(url, scope) rows for a target list measuring what ``expect`` names."""
    return [(e.url, site(e.url.split("/")[2]).scope) for e in expect]


def _ifaces(lab: Lab, clients: Sequence[ClientNet]) -> list[str]:
    return [lab.client_iface(c) for c in clients] or ["cl+"]


def _apply(lab: Lab, action: Action, ifaces: list[str]) -> None:
    if isinstance(action, ServerDown):
        target = site(action.host)
        role = "intl" if target.scope == "international" else "dom"
        lab.iptables(role, "filter", "-d", target.ip, "-p", "tcp", "-j", "REJECT",
                     "--reject-with", "tcp-reset")  # fmt: skip
        return
    for iface in ifaces:
        if isinstance(action, ResetOnString):
            lab.iptables("censor", "filter", "-i", iface, "-p", "tcp", "--dport", str(action.port),
                         "-m", "string", "--string", action.text, "--algo", "bm",
                         "-j", "REJECT", "--reject-with", "tcp-reset")  # fmt: skip
        elif isinstance(action, Blackhole):
            lab.iptables("censor", "filter", "-i", iface, "-d", site(action.host).ip, "-j", "DROP")
        elif isinstance(action, Divert):
            lab.iptables("censor", "nat", "-i", iface, "-p", "tcp", "-d", site(action.host).ip,
                         "--dport", str(action.port), "-j", "DNAT",
                         "--to-destination", f"{action.to}:{action.port}")  # fmt: skip
        elif isinstance(action, DropAbroad):
            lab.iptables("censor", "filter", "-i", iface, "-d", ABROAD, "-j", "DROP")
        elif isinstance(action, RejectTo):
            lab.iptables("censor", "filter", "-i", iface, "-d", action.address, "-j", "REJECT",
                         "--reject-with", "icmp-admin-prohibited")  # fmt: skip


@contextlib.contextmanager
def applied(
    lab: Lab, actions: Sequence[Action], clients: Sequence[ClientNet] = ()
) -> Iterator[None]:
    """Apply ``actions`` (for ``clients`` only, or every subscriber); undo them on exit."""
    lies = {a.host: a.address for a in actions if isinstance(a, DnsLie)}
    try:
        if lies:
            lab.start_isp_resolver(lies)
        for action in actions:
            if not isinstance(action, DnsLie):
                _apply(lab, action, _ifaces(lab, clients))
        yield
    finally:
        lab.flush_rules()
        if lies:
            lab.start_isp_resolver({})


def active_rules(lab: Lab) -> list[str]:
    """Every rule in the lab's scenario chains (empty when the censor is idle)."""
    found = []
    for role, table in (
        ("censor", "filter"),
        ("censor", "nat"),
        ("dom", "filter"),
        ("intl", "filter"),
    ):
        found += [r for r in lab.rules(role, table).splitlines() if r != f"-N {CHAIN}"]
    return found
