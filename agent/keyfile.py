"""The agent's Ed25519 key on disk: 32 raw bytes in a file only its owner can read (mode 0600)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from protocol import LocalProtocolError, SigningKey

from .errors import ConfigError


def create_key(path: Path) -> SigningKey:
    """Write a new key. Refuses to overwrite: losing a key loses the agent's identity."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = SigningKey.generate()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(f"a key already exists at {path}; refusing to overwrite it") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(key.raw)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(path, 0o600)  # in case the umask was stricter than needed or os.open ignored mode
    return key


def load_key(path: Path) -> SigningKey:
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ConfigError(f"no agent key at {path}; run `vantage agent init` first") from None
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"agent key {path} is readable by others (mode {stat.S_IMODE(info.st_mode):o});"
            f" run: chmod 600 {path}"
        )
    try:
        return SigningKey.from_raw(path.read_bytes())
    except LocalProtocolError as exc:
        raise ConfigError(f"agent key {path} is damaged: {exc}") from exc
