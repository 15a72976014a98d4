"""The agent's Ed25519 key on disk: 32 raw bytes in a file only its owner can read (mode 0600)."""

from __future__ import annotations

from pathlib import Path

from protocol import LocalProtocolError, SigningKey
from protocol.secretfile import SecretFileError, read_secret, write_new_secret

from .errors import ConfigError


def create_key(path: Path) -> SigningKey:
    """Write a new key. Refuses to overwrite: losing a key loses the agent's identity."""
    key = SigningKey.generate()
    try:
        write_new_secret(path, key.raw)
    except SecretFileError as exc:
        raise ConfigError(str(exc)) from exc
    return key


def load_key(path: Path) -> SigningKey:
    try:
        raw = read_secret(path)
    except FileNotFoundError:
        raise ConfigError(f"no agent key at {path}; run `vantage agent init` first") from None
    except SecretFileError as exc:
        raise ConfigError(f"agent {exc}") from exc
    try:
        return SigningKey.from_raw(raw)
    except LocalProtocolError as exc:
        raise ConfigError(f"agent key {path} is damaged: {exc}") from exc
