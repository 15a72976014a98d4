"""The built wheel ships the dashboard's assets, byte for byte: an installed collector serves them
from the package, with no network and no source checkout."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from unitfiles import REPO

STATIC = REPO / "collector" / "dashboard" / "static"


def clean_copy(target: Path) -> Path:
    """The project's files as a fresh clone has them: no build/ or egg-info whose file lists
    setuptools would reuse (they would hide a missing package-data entry)."""
    files = (
        subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
            cwd=REPO,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, files):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def test_wheel_contains_the_dashboard_assets(tmp_path: Path) -> None:
    source = clean_copy(tmp_path / "src")
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(tmp_path), str(source)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    wheel = zipfile.ZipFile(next(tmp_path.glob("vantagepoint-*.whl")))
    names = set(wheel.namelist())
    assets = sorted(STATIC.iterdir())
    assert {p.name for p in assets} >= {"dashboard.css", "dashboard.js", "favicon.svg"}
    for asset in assets:
        name = f"collector/dashboard/static/{asset.name}"
        assert name in names, f"{name} is missing from the wheel (package-data)"
        assert wheel.read(name) == asset.read_bytes()
    for module in ("__init__", "views", "charts", "detail", "html"):
        assert f"collector/dashboard/{module}.py" in names
