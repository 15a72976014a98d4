"""The service's settings in the agent's TOML config: schedule, pulse, guard, spool bounds, context.

Every section and key is optional (defaults below); every bad value names its key. Kept apart from
``config.py`` (identity, collector, probe) so each file has one job.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from protocol import LocalProtocolError, Target

from .errors import ConfigError
from .guard import GuardSettings
from .spool import DEFAULT_MAX_BYTES, SpoolLimits


@dataclass(frozen=True, slots=True)
class ScheduleSettings:
    interval: float = 3600.0  # seconds between measurement rounds, on average
    jitter: float = 0.25  # each wait is interval * uniform(1 - jitter, 1 + jitter)
    pulse_interval: float = 300.0  # connectivity pulse; 0 disables it
    upload_interval: float = 600.0  # how often to try uploading when nothing else triggers it
    batch_size: int = 100


@dataclass(frozen=True, slots=True)
class ContextSettings:
    whoami: bool = True  # ask the collector where we are (signed token)
    mmdb_files: tuple[Path, ...] = ()  # local fallback lookups, marked self-reported
    routable_prefixes: tuple[str, ...] = ()  # lab/research: treat these as public addresses


@dataclass(frozen=True, slots=True)
class ServiceSettings:
    schedule: ScheduleSettings = field(default_factory=ScheduleSettings)
    guard: GuardSettings = field(default_factory=GuardSettings)
    spool: SpoolLimits = field(default_factory=SpoolLimits)
    context: ContextSettings = field(default_factory=ContextSettings)
    pulse_anchors: tuple[Target, ...] = ()  # empty: one domestic + one international target


def _table(data: dict[str, Any], name: str, where: str) -> dict[str, Any]:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: [{name}] must be a table")
    return value


def _number(
    table: dict[str, Any], key: str, default: float, low: float, high: float, where: str
) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ConfigError(f"{where}: {key} must be a number from {low:g} to {high:g}")
    return float(value)


def parse_service_settings(data: dict[str, Any], base: Path, where: str) -> ServiceSettings:
    s = _table(data, "schedule", where)
    sw = f"{where} [schedule]"
    schedule = ScheduleSettings(
        interval=_number(s, "interval", 3600, 1, 7 * 86400, sw),
        jitter=_number(s, "jitter", 0.25, 0, 0.9, sw),
        pulse_interval=_number(s, "pulse_interval", 300, 0, 86400, sw),
        upload_interval=_number(s, "upload_interval", 600, 1, 86400, sw),
        batch_size=int(_number(s, "batch_size", 100, 1, 500, sw)),
    )
    g = _table(data, "guard", where)
    gw = f"{where} [guard]"
    guard = GuardSettings(
        min_battery=_number(g, "min_battery", 20, 0, 100, gw),
        daily_budget_bytes=int(_number(g, "daily_budget_bytes", 0, 0, 2**50, gw)),
        nice=int(_number(g, "nice", 10, 0, 19, gw)),
    )
    sp = _table(data, "spool", where)
    spw = f"{where} [spool]"
    limits = SpoolLimits(
        max_bytes=int(_number(sp, "max_bytes", DEFAULT_MAX_BYTES, 64 * 1024, 2**40, spw)),
        max_age=timedelta(days=_number(sp, "max_age_days", 30, 1 / 24, 365, spw)),
    )
    c = _table(data, "context", where)
    whoami = c.get("whoami", True)
    mmdb = c.get("mmdb", [])
    if not isinstance(whoami, bool):
        raise ConfigError(f"{where} [context]: whoami must be true or false")
    if not isinstance(mmdb, list) or not all(isinstance(p, str) for p in mmdb):
        raise ConfigError(f"{where} [context]: mmdb must be a list of file paths")
    # One idea, one default: prefixes treated as routable for DNS answers ([probe]) are also treated
    # as public addresses here, unless [context] says otherwise.
    probe = data.get("probe", {})
    default_routable = probe.get("routable_prefixes", []) if isinstance(probe, dict) else []
    routable = c.get("routable_prefixes", default_routable)
    try:
        if not isinstance(routable, list):
            raise ValueError("must be a list")
        for prefix in routable:
            ipaddress.ip_network(str(prefix))
    except ValueError as exc:
        raise ConfigError(f"{where} [context]: routable_prefixes: {exc}") from exc
    context = ContextSettings(whoami, tuple(base / p for p in mmdb), tuple(map(str, routable)))
    p = _table(data, "pulse", where)
    anchors = p.get("anchors", [])
    if not isinstance(anchors, list):
        raise ConfigError(f"{where} [pulse]: anchors must be a list of {{url, scope}} tables")
    targets = []
    for index, anchor in enumerate(anchors):
        try:
            if not isinstance(anchor, dict):
                raise LocalProtocolError("must be a table {url = ..., scope = ...}")
            targets.append(Target(anchor.get("url"), anchor.get("scope"), "ANCHOR"))  # type: ignore[arg-type]
        except LocalProtocolError as exc:
            raise ConfigError(f"{where} [pulse]: anchors[{index}]: {exc}") from exc
    return ServiceSettings(schedule, guard, limits, context, tuple(targets))


def render_service_settings(settings: ServiceSettings) -> list[str]:
    s, g, sp = settings.schedule, settings.guard, settings.spool
    return [
        "",
        "# `vantage agent run`: when to measure. Waits are randomized by +-jitter.",
        "[schedule]",
        f"interval = {s.interval:g}  # seconds between measurement rounds",
        f"jitter = {s.jitter:g}",
        f"pulse_interval = {s.pulse_interval:g}  # connectivity pulse (0: off)",
        f"upload_interval = {s.upload_interval:g}",
        "",
        "# Be kind to the device: skip rounds on low battery, cap daily data, low CPU priority.",
        "[guard]",
        f"min_battery = {g.min_battery:g}  # percent; ignored while charging",
        f"daily_budget_bytes = {g.daily_budget_bytes}  # 0: unlimited",
        f"nice = {g.nice}",
        "",
        "# Unsent results are kept on disk, bounded; the oldest are dropped first (and counted).",
        "[spool]",
        f"max_bytes = {sp.max_bytes}",
        f"max_age_days = {sp.max_age.total_seconds() / 86400:g}",
        "",
        "[context]",
        "whoami = true  # ask the collector where this network is (signed; your IP is not stored)",
        "mmdb = []  # local .mmdb files for when the collector is unreachable (self-reported)",
    ]
