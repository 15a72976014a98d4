"""Network type from interface facts (injected), and when the network counts as changed."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.netcontext import (
    Interface,
    NetworkFacts,
    detect_network_type,
    read_default_interface,
    read_network_facts,
)
from protocol import NetworkType


@pytest.mark.parametrize(
    ("interfaces", "default", "expected"),
    [
        ((Interface("wlan0", True, ("192.0.2.2",)),), "wlan0", NetworkType.WIFI),
        ((Interface("wlp3s0", True, ("192.0.2.2",)),), None, NetworkType.WIFI),
        ((Interface("x0", True, ("192.0.2.2",), wireless=True),), "x0", NetworkType.WIFI),
        ((Interface("rmnet_data0", True, ("192.0.2.2",)),), "rmnet_data0", NetworkType.MOBILE),
        ((Interface("wwan0", True, ("2001:db8::2",)),), None, NetworkType.MOBILE),
        ((Interface("enp0s31f6", True, ("192.0.2.2",)),), "enp0s31f6", NetworkType.WIRED),
        # The default route decides between several connected links.
        (
            (Interface("eth0", True, ("192.0.2.2",)), Interface("wwan0", True, ("192.0.2.3",))),
            "wwan0",
            NetworkType.MOBILE,
        ),
        # No default route known and two kinds connected: honest "unknown".
        (
            (Interface("eth0", True, ("192.0.2.2",)), Interface("wlan0", True, ("192.0.2.3",))),
            None,
            NetworkType.UNKNOWN,
        ),
        # Down links, loopback, link-local only and VPN/container interfaces do not count.
        (
            (
                Interface("lo", True, ("127.0.0.1",)),
                Interface("docker0", True, ("192.0.2.9",)),
                Interface("tun0", True, ("192.0.2.8",)),
                Interface("wlan0", False, ("192.0.2.3",)),
                Interface("eth1", True, ("fe80::1",)),
                Interface("eth0", True, ("192.0.2.2",)),
            ),
            "tun0",
            NetworkType.WIRED,
        ),
        ((), None, NetworkType.UNKNOWN),
    ],
)
def test_network_type(
    interfaces: tuple[Interface, ...], default: str | None, expected: NetworkType
) -> None:
    assert detect_network_type(NetworkFacts(interfaces, default)) == expected


def test_fingerprint_changes_with_route_interface_or_address() -> None:
    base = NetworkFacts((Interface("wlan0", True, ("192.0.2.2",)),), "wlan0")
    same = NetworkFacts((Interface("wlan0", True, ("192.0.2.2",)),), "wlan0")
    assert base.fingerprint == same.fingerprint
    others = [
        NetworkFacts((Interface("wlan0", True, ("192.0.2.3",)),), "wlan0"),
        NetworkFacts((Interface("wlan0", True, ("192.0.2.2",)),), None),
        NetworkFacts(
            (Interface("wlan0", True, ("192.0.2.2",)), Interface("wwan0", True, ("192.0.2.5",))),
            "wlan0",
        ),
    ]
    assert len({base.fingerprint, *(o.fingerprint for o in others)}) == 4


def test_default_route_from_the_kernel_table(tmp_path: Path) -> None:
    table = tmp_path / "route"
    table.write_text(
        "Iface\tDestination\tGateway\tFlags\n"
        "docker0\t000011AC\t00000000\t0001\n"
        "wlan0\t00000000\t0102A8C0\t0003\n"
    )
    assert read_default_interface(table) == "wlan0"
    assert read_default_interface(tmp_path / "absent") is None


def test_real_facts_are_readable_here() -> None:
    facts = read_network_facts()  # this machine, via psutil: at least loopback
    assert any(i.name.startswith("lo") for i in facts.interfaces)
    assert isinstance(detect_network_type(facts), NetworkType)
