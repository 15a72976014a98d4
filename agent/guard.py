"""The resource guard: measure only when the volunteer's device can afford it.

* Battery: skip a round when on battery below ``min_battery`` percent, unless charging.
* Data: a daily budget in bytes (UTC days), counted from what each measurement and upload moved;
  a round that would overrun it measures a random subset that fits, or nothing.
* CPU: the service lowers its own scheduling priority (``os.nice``).
Facts come from psutil but are injectable, so tests decide the battery level.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from protocol import Measurement, utc_now

from .spool import read_json, write_json

T = TypeVar("T")

DEFAULT_MEASUREMENT_COST = 4096  # bytes, until we have measured our own average


@dataclass(frozen=True, slots=True)
class PowerFacts:
    percent: float | None
    plugged: bool | None


def read_power() -> PowerFacts | None:
    """The battery, or None on a machine without one (desktops, servers)."""
    import psutil

    battery = getattr(psutil, "sensors_battery", lambda: None)()
    if battery is None:
        return None
    return PowerFacts(battery.percent, battery.power_plugged)


@dataclass(frozen=True, slots=True)
class GuardSettings:
    min_battery: float = 20.0  # percent; 0 disables the battery check
    daily_budget_bytes: int = 0  # 0 means unlimited
    nice: int = 10  # added to the process's niceness when the service starts; 0 leaves it


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: int  # how many targets may be measured this round (0: skip it)
    reason: str  # "ok", "battery", "budget" or "budget-partial"


def estimate_bytes(m: Measurement) -> int:
    """Rough bytes on the wire for one measurement (headers and handshakes included)."""
    total = 0
    if m.dns is not None and m.dns.resolver != "none":
        total += 2 * (60 + 2 * len(m.target.host)) + 2 * 120  # A + AAAA query and answer
    total += 400 * len(m.tcp)  # handshake and close packets
    if m.http is not None:
        total += 2000 + (m.http.body_length or 0)  # request, headers, TLS handshake, body
    return total


class ResourceGuard:
    def __init__(
        self,
        settings: GuardSettings,
        usage_path: Path,
        *,
        power: Callable[[], PowerFacts | None] = read_power,
        clock: Callable[[], datetime] = utc_now,
        rng: random.Random | None = None,
    ) -> None:
        self.settings, self.usage_path = settings, usage_path
        self.power, self.clock = power, clock
        self.rng = rng or random.Random()

    def _usage(self) -> dict[str, int | str]:
        usage = read_json(self.usage_path)
        today = self.clock().strftime("%Y-%m-%d")
        if usage.get("day") != today:
            cost = usage.get("cost_per_measurement", DEFAULT_MEASUREMENT_COST)
            usage = {"day": today, "bytes": 0, "cost_per_measurement": cost}
        return usage

    def used_today(self) -> int:
        return int(self._usage()["bytes"])

    def record(self, nbytes: int, measurements: int = 0) -> None:
        """Add ``nbytes`` to today's usage; with ``measurements``, update the average cost."""
        usage = self._usage()
        usage["bytes"] = int(usage["bytes"]) + max(0, nbytes)
        if measurements:
            old = int(usage.get("cost_per_measurement", DEFAULT_MEASUREMENT_COST))
            usage["cost_per_measurement"] = max(1, (3 * old + nbytes // measurements) // 4)
        write_json(self.usage_path, dict(usage))

    def check(self, targets: int) -> Decision:
        power = self.power()
        if (
            power is not None
            and self.settings.min_battery > 0
            and power.percent is not None
            and power.percent < self.settings.min_battery
            and not power.plugged
        ):
            return Decision(0, "battery")
        budget = self.settings.daily_budget_bytes
        if budget <= 0:
            return Decision(targets, "ok")
        usage = self._usage()
        left = budget - int(usage["bytes"])
        cost = max(1, int(usage.get("cost_per_measurement", DEFAULT_MEASUREMENT_COST)))
        fits = max(0, left // cost)
        if fits >= targets:
            return Decision(targets, "ok")
        return Decision(int(fits), "budget-partial" if fits else "budget")

    def choose(self, items: list[T], decision: Decision) -> list[T]:
        return items if decision.allowed >= len(items) else self.rng.sample(items, decision.allowed)

    def lower_priority(self) -> int:
        """Be nice to the volunteer's other programs; returns the new niceness."""
        if self.settings.nice <= 0:
            return os.nice(0)
        try:
            return os.nice(self.settings.nice)
        except OSError:
            return os.nice(0)
