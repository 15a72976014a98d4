"""`vantage agent install-service` writes a user unit (and says what to run when it cannot enable it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from unitfiles import parse_unit


def vantage(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vantagepoint", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def test_install_service_writes_unit_and_explains(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "xdg"), "PATH": "/nonexistent"}
    missing = vantage("agent", "install-service", "--config", str(config), env=env)
    assert missing.returncode == 2 and "vantage agent init" in missing.stderr
    config.write_text("# placeholder; install-service only needs the path\n")
    # No systemctl on PATH: the unit is written and the exact commands are printed.
    result = vantage("agent", "install-service", "--config", str(config), "--json", env=env)
    assert result.returncode == 1, result.stderr
    document = json.loads(result.stdout)
    assert document["enabled"] is False
    assert "systemctl --user enable --now vantage-agent.service" in document["run_by_hand"]
    unit_path = Path(document["unit"])
    assert unit_path == tmp_path / "xdg" / "systemd" / "user" / "vantage-agent.service"
    unit = parse_unit(unit_path.read_text())
    assert unit["Service"]["ExecStart"][0].endswith(f"agent run --config {config}")
    printed = vantage("agent", "install-service", "--config", str(config), "--print", env=env)
    assert printed.returncode == 0 and "[Service]" in printed.stdout
