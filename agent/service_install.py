"""``vantage agent install-service``: run the agent in the background for a user who installed with pipx.

Linux: a systemd *user* unit in ``$XDG_CONFIG_HOME/systemd/user/``, enabled with ``systemctl --user``.
macOS: a launchd agent in ``~/Library/LaunchAgents/``. When enabling is impossible here (no systemd user
session, say, inside a container), the unit is still written and the exact commands are printed.
"""

from __future__ import annotations

import os
import plistlib
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

UNIT_NAME = "vantage-agent.service"
PLIST_LABEL = "org.vantage.agent"


@dataclass(frozen=True, slots=True)
class InstallResult:
    path: Path
    enabled: bool
    commands: list[str]  # what to run by hand when ``enabled`` is False


def vantage_executable() -> str:
    """The ``vantage`` this process was started as (the pipx venv's), as an absolute path."""
    found = shutil.which("vantage")
    argv0 = Path(sys.argv[0])
    if argv0.name == "vantage" and argv0.exists():
        return str(argv0.resolve())
    return str(Path(found).resolve()) if found else "vantage"


def _quote(arg: str) -> str:
    # systemd's ExecStart splits on spaces and honours double quotes.
    return f'"{arg}"' if any(ch.isspace() for ch in arg) else arg


def user_unit(executable: str, config: Path) -> str:
    command = " ".join(
        _quote(part) for part in (executable, "agent", "run", "--config", str(config))
    )
    return f"""# Vantage measurement agent, per-user service. Written by `vantage agent install-service`.
[Unit]
Description=Vantage measurement agent
After=network-online.target

[Service]
Type=exec
ExecStart={command}
Restart=on-failure
RestartSec=60s
# Measuring must never get in the volunteer's way.
Nice=10
IOSchedulingClass=idle
NoNewPrivileges=yes
UMask=0077

[Install]
WantedBy=default.target
"""


def launchd_plist(executable: str, config: Path, log: Path) -> bytes:
    return plistlib.dumps(
        {
            "Label": PLIST_LABEL,
            "ProgramArguments": [executable, "agent", "run", "--config", str(config)],
            "RunAtLoad": True,
            "KeepAlive": {"SuccessfulExit": False},
            "ThrottleInterval": 60,
            "ProcessType": "Background",
            "LowPriorityIO": True,
            "Nice": 10,
            "StandardOutPath": str(log),
            "StandardErrorPath": str(log),
        }
    )


def _run(commands: list[list[str]]) -> bool:
    for command in commands:
        try:
            done = subprocess.run(command, capture_output=True, timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return False
        if done.returncode != 0:
            return False
    return True


def install_systemd_user(config: Path, *, enable: bool, home: Path | None = None) -> InstallResult:
    base = os.environ.get("XDG_CONFIG_HOME") or str((home or Path.home()) / ".config")
    path = Path(base) / "systemd" / "user" / UNIT_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(user_unit(vantage_executable(), config), encoding="utf-8")
    commands = [
        ["systemctl", "--user", "daemon-reload"],
        ["systemctl", "--user", "enable", "--now", UNIT_NAME],
    ]
    enabled = enable and shutil.which("systemctl") is not None and _run(commands)
    hints = [" ".join(c) for c in commands]
    hints.append("loginctl enable-linger $USER   # keep measuring while you are logged out")
    return InstallResult(path, enabled, [] if enabled else hints)


def install_launchd(config: Path, *, enable: bool, home: Path | None = None) -> InstallResult:
    root = home or Path.home()
    path = root / "Library" / "LaunchAgents" / f"{PLIST_LABEL}.plist"
    path.parent.mkdir(parents=True, exist_ok=True)
    log = root / "Library" / "Logs" / "vantage-agent.log"
    path.write_bytes(launchd_plist(vantage_executable(), config, log))
    command = ["launchctl", "bootstrap", f"gui/{os.getuid()}", str(path)]
    enabled = enable and shutil.which("launchctl") is not None and _run([command])
    return InstallResult(path, enabled, [] if enabled else [" ".join(command)])


def install_service(config: Path, *, enable: bool = True) -> InstallResult:
    if sys.platform == "darwin":
        return install_launchd(config, enable=enable)
    return install_systemd_user(config, enable=enable)
