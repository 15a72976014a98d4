"""Build the .deb, install it with dpkg as root, check what it put where, and remove it cleanly.

This changes the machine it runs on (a package, a system user), so it runs only as root and only where
dpkg exists; CI (root, Debian) must run it.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from pathlib import Path

import pytest

from needs import require
from unitfiles import REPO


def run(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(argv), capture_output=True, text=True, timeout=900, check=False, env=env
    )


@pytest.fixture(scope="module")
def deb() -> Path:
    require(os.geteuid() == 0, "installing a .deb needs root")
    require(shutil.which("dpkg-deb") is not None, "dpkg-deb is not installed")
    require(Path("/usr/bin/python3").exists(), "Debian's /usr/bin/python3 is not installed")
    installed = run("dpkg-query", "-W", "-f=${Status}", "vantage")
    if "installed" in installed.stdout:
        pytest.fail("a vantage package is already installed here; remove it first")
    built = run(str(REPO / "packaging" / "debian" / "build-deb.sh"))
    assert built.returncode == 0, built.stderr
    return REPO / built.stdout.strip().splitlines()[-1]


def test_deb_installs_runs_verifies_and_removes(deb: Path) -> None:
    info = run("dpkg-deb", "--info", str(deb))
    assert "Package: vantage" in info.stdout
    try:
        result = run("dpkg", "-i", str(deb))
        assert result.returncode == 0, result.stdout + result.stderr
        # Files where they belong.
        for path in (
            "/opt/vantage/bin/vantage",
            "/usr/bin/vantage",
            "/lib/systemd/system/vantage-agent.service",
            "/lib/systemd/system/vantage-collector.service",
            "/etc/default/vantage-collector",
            "/usr/share/doc/vantage/examples/agent.toml",
        ):
            assert Path(path).exists(), path
        # A dedicated system user without a login shell, owning its state directory.
        user = pwd.getpwnam("vantage")
        assert user.pw_uid < 1000
        state = Path("/var/lib/vantage")
        assert state.stat().st_uid == user.pw_uid
        assert state.stat().st_mode & 0o077 == 0
        # The venv works from its installed location (no staging paths left behind).
        version = run("/usr/bin/vantage", "--version")
        assert version.returncode == 0 and version.stdout.startswith("vantage "), version.stderr
        demo_help = run("/opt/vantage/bin/vantage", "collector", "serve", "--help")
        assert demo_help.returncode == 0, demo_help.stderr
        leftover = run("grep", "-rlI", "/tmp/", "/opt/vantage/bin")
        assert leftover.stdout == "", f"staging paths in: {leftover.stdout}"
        # systemd accepts the installed units.
        if shutil.which("systemd-analyze"):
            verify = run(
                "systemd-analyze",
                "verify",
                "/lib/systemd/system/vantage-agent.service",
                "/lib/systemd/system/vantage-collector.service",
            )
            ours = [line for line in verify.stderr.splitlines() if "vantage" in line]
            assert ours == [], verify.stderr
        # State written by the services survives remove and plain purge.
        (state / "marker").write_text("measurements live here")
        removed = run("dpkg", "-r", "vantage")
        assert removed.returncode == 0, removed.stderr
        assert not Path("/opt/vantage").exists()
        assert not Path("/lib/systemd/system/vantage-agent.service").exists()
        assert (state / "marker").exists()
        purged = run("dpkg", "--purge", "vantage")
        assert purged.returncode == 0, purged.stderr
        assert (state / "marker").exists(), "purge keeps state unless asked"
        assert not Path("/etc/default/vantage-collector").exists()
        # ... and removes it when asked.
        result = run("dpkg", "-i", str(deb))
        assert result.returncode == 0, result.stderr
        env = {**os.environ, "VANTAGE_PURGE_STATE": "yes"}
        purged = run("dpkg", "--purge", "vantage", env=env)
        assert purged.returncode == 0, purged.stderr
        assert not state.exists()
    finally:
        run("dpkg", "--purge", "vantage")
