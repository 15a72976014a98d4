"""The systemd units are hardened the way the packaging issue asks, and systemd accepts them."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from agent.service_install import user_unit

from needs import require
from unitfiles import PACKAGING, parse_unit

UNITS = ["vantage-agent.service", "vantage-collector.service"]

HARDENING = {
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "NoNewPrivileges": "yes",
    "PrivateTmp": "yes",
    "CapabilityBoundingSet": "",
    "RestrictNamespaces": "yes",
    "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectControlGroups": "yes",
    "SystemCallArchitectures": "native",
    "UMask": "0077",
}


@pytest.mark.parametrize("name", UNITS)
def test_unit_is_hardened(name: str) -> None:
    service = parse_unit((PACKAGING / "systemd" / name).read_text())["Service"]
    for key, expected in HARDENING.items():
        assert service.get(key) == [expected], f"{name}: {key} should be {expected!r}"
    assert service["User"] == ["vantage"], "runs as the dedicated unprivileged user"
    assert service["Restart"] == ["on-failure"]
    assert service["StateDirectory"][0].startswith("vantage/")
    families = service["RestrictAddressFamilies"][0].split()
    assert set(families) <= {"AF_INET", "AF_INET6", "AF_UNIX", "AF_NETLINK"}
    assert "@system-service" in service["SystemCallFilter"]


def test_agent_unit_stays_out_of_the_way() -> None:
    service = parse_unit((PACKAGING / "systemd" / "vantage-agent.service").read_text())["Service"]
    assert int(service["Nice"][0]) >= 10
    assert service["IOSchedulingClass"] == ["idle"]
    assert service["ExecStart"] == ["/opt/vantage/bin/vantage agent run"]


def test_collector_unit_logs_no_addresses_and_reads_its_options() -> None:
    service = parse_unit((PACKAGING / "systemd" / "vantage-collector.service").read_text())[
        "Service"
    ]
    assert service["ExecStart"] == [
        "/opt/vantage/bin/vantage collector serve $VANTAGE_COLLECTOR_ARGS"
    ]
    assert service["EnvironmentFile"] == ["-/etc/default/vantage-collector"]


def _verify(unit_dir: Path, names: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", "verify", *(str(unit_dir / n) for n in names)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _findings(result: subprocess.CompletedProcess[str]) -> list[str]:
    # Lines about *other* units on this machine are not ours to fix.
    return [line for line in result.stderr.splitlines() if "vantage" in line]


@pytest.mark.parametrize("name", UNITS)
def test_systemd_analyze_verify_accepts_units(tmp_path: Path, name: str) -> None:
    require(shutil.which("systemd-analyze") is not None, "systemd-analyze is not installed")
    # verify checks that ExecStart's program exists: point it at a real executable for the check.
    fake = tmp_path / "opt" / "vantage" / "bin" / "vantage"
    fake.parent.mkdir(parents=True)
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    text = (PACKAGING / "systemd" / name).read_text().replace("/opt/vantage/bin/vantage", str(fake))
    (tmp_path / name).write_text(text)
    result = _verify(tmp_path, [name])
    assert _findings(result) == [], result.stderr


def test_user_unit_written_by_install_service_verifies(tmp_path: Path) -> None:
    require(shutil.which("systemd-analyze") is not None, "systemd-analyze is not installed")
    exe = tmp_path / "vantage"
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    (tmp_path / "vantage-agent.service").write_text(user_unit(str(exe), tmp_path / "agent.toml"))
    result = _verify(tmp_path, ["vantage-agent.service"])
    assert _findings(result) == [], result.stderr
    unit = parse_unit((tmp_path / "vantage-agent.service").read_text())
    assert unit["Service"]["ExecStart"] == [f"{exe} agent run --config {tmp_path / 'agent.toml'}"]
    assert unit["Install"]["WantedBy"] == ["default.target"]
