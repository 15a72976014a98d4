"""The resource guard with injected psutil facts: battery, daily data budget, CPU priority."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.guard import GuardSettings, PowerFacts, ResourceGuard


def guard(tmp_path: Path, power: PowerFacts | None, **settings: int | float) -> ResourceGuard:
    return ResourceGuard(
        GuardSettings(**settings),  # type: ignore[arg-type]
        tmp_path / "usage.json",
        power=lambda: power,
        rng=random.Random(1),
    )


@pytest.mark.parametrize(
    ("power", "allowed", "reason"),
    [
        (PowerFacts(15, False), 0, "battery"),  # on battery, below 20 %
        (PowerFacts(15, True), 10, "ok"),  # charging: fine
        (PowerFacts(20, False), 10, "ok"),  # at the threshold
        (PowerFacts(None, None), 10, "ok"),  # the OS does not say
        (None, 10, "ok"),  # no battery at all (desktop)
    ],
)
def test_battery(tmp_path: Path, power: PowerFacts | None, allowed: int, reason: str) -> None:
    decision = guard(tmp_path, power).check(10)
    assert (decision.allowed, decision.reason) == (allowed, reason)


def test_battery_threshold_is_configurable(tmp_path: Path) -> None:
    assert guard(tmp_path, PowerFacts(15, False), min_battery=10).check(3).allowed == 3
    assert guard(tmp_path, PowerFacts(5, False), min_battery=0).check(3).allowed == 3


def test_daily_budget(tmp_path: Path) -> None:
    day = [datetime(2026, 11, 28, 23, 0, tzinfo=UTC)]
    g = ResourceGuard(
        GuardSettings(daily_budget_bytes=20_000),
        tmp_path / "usage.json",
        power=lambda: None,
        clock=lambda: day[0],
    )
    assert g.check(2).reason == "ok"  # 2 x 4096 (default cost) fits
    g.record(2000 * 4, measurements=4)  # we learn: 2000 bytes a measurement... on average
    assert g.used_today() == 8000
    partial = g.check(5)
    assert partial.reason == "budget-partial" and 0 < partial.allowed < 5
    chosen = g.choose(list(range(5)), partial)
    assert len(chosen) == partial.allowed and set(chosen) <= set(range(5))
    g.record(12_000)
    assert g.check(1).allowed == 0 and g.check(1).reason == "budget"
    day[0] += timedelta(hours=2)  # a new UTC day: the budget is fresh
    assert g.used_today() == 0 and g.check(2).reason == "ok"


def test_unlimited_budget(tmp_path: Path) -> None:
    g = guard(tmp_path, None)
    g.record(10**12)
    assert g.check(1000).allowed == 1000


def test_lower_priority_in_a_child_process() -> None:
    code = (
        "import os, pathlib, tempfile;"
        "from agent.guard import GuardSettings, ResourceGuard;"
        "g = ResourceGuard(GuardSettings(nice=7), pathlib.Path(tempfile.mkdtemp()) / 'u.json');"
        "before = os.nice(0); print(g.lower_priority() - before)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "7" or os.nice(0) + 7 > 19
