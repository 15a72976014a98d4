"""Where the agent keeps its files: XDG base directories, overridable by ``--config``/``VANTAGE_CONFIG``."""

from __future__ import annotations

import os
from pathlib import Path


def _xdg(variable: str, fallback: str) -> Path:
    value = os.environ.get(variable)
    return Path(value) if value and Path(value).is_absolute() else Path.home() / fallback


def default_config_path() -> Path:
    explicit = os.environ.get("VANTAGE_CONFIG")
    if explicit:
        return Path(explicit)
    return _xdg("XDG_CONFIG_HOME", ".config") / "vantage" / "agent.toml"


def default_key_path() -> Path:
    return _xdg("XDG_DATA_HOME", ".local/share") / "vantage" / "agent.key"


def default_spool_dir() -> Path:
    return _xdg("XDG_STATE_HOME", ".local/state") / "vantage" / "spool"
