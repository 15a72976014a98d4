"""The wheel and sdist build, and a volunteer's agent-only install works without the collector extras."""

from __future__ import annotations

import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest

from unitfiles import REPO


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(REPO)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    return out


def test_wheel_and_sdist_contain_the_code(dist: Path) -> None:
    wheel = next(dist.glob("vantagepoint-*.whl"))
    sdist = next(dist.glob("vantagepoint-*.tar.gz"))
    names = zipfile.ZipFile(wheel).namelist()
    for module in ("vantagepoint.py", "protocol/messages.py", "agent/cli.py", "collector/app.py"):
        assert module in names
    assert "protocol/py.typed" in names
    assert not any(name.startswith("tests/") for name in names), "tests are not shipped"
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "vantage = vantagepoint:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
    with tarfile.open(sdist) as archive:
        members = archive.getnames()
    assert any(m.endswith("/pyproject.toml") for m in members)


def test_agent_only_install_runs_without_collector_extras(dist: Path, tmp_path: Path) -> None:
    wheel = next(dist.glob("vantagepoint-*.whl"))
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    subprocess.run(
        [str(py), "-m", "pip", "install", "--quiet", str(wheel)], check=True, timeout=600
    )
    vantage = env_dir / "bin" / "vantage"
    version = subprocess.run(
        [str(vantage), "--version"], capture_output=True, text=True, check=True
    )
    assert version.stdout.startswith("vantage ")
    helptext = subprocess.run(
        [str(vantage), "agent", "--help"], capture_output=True, text=True, check=True
    )
    assert "vantage agent init" in helptext.stdout
    # The agent's five dependencies and nothing server-side.
    installed = subprocess.run(
        [str(py), "-m", "pip", "list", "--format=freeze"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.lower()
    for package in ("aiohttp", "dnspython", "cryptography", "psutil", "msgpack"):
        assert package in installed
    for server_only in ("asyncpg", "prometheus-client", "maxminddb"):
        assert server_only not in installed
    # `vantage agent ...` never imports the collector.
    probe = (
        "import sys, vantagepoint; vantagepoint.build_parser(['agent', 'status']);"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'collector'))"
    )
    loaded = subprocess.run([str(py), "-c", probe], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"
