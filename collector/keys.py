"""The collector's own Ed25519 key (signs whoami context tokens): a 0600 file, created on first use."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from protocol import LocalProtocolError, SigningKey

from .errors import CollectorError


class KeyFileError(CollectorError):
    code = "key_file"


def load_or_create_key(path: Path) -> SigningKey:
    """Read the key at ``path``; if there is none, create it (mode 0600, never overwriting)."""
    try:
        info = path.stat()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = SigningKey.generate()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another collector process created it just now: use theirs
            return load_or_create_key(path)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key.raw)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(path, 0o600)
        return key
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(
            f"collector key {path} is readable by others (mode {stat.S_IMODE(info.st_mode):o});"
            f" run: chmod 600 {path}"
        )
    try:
        return SigningKey.from_raw(path.read_bytes())
    except LocalProtocolError as exc:
        raise KeyFileError(f"collector key {path} is damaged: {exc}") from exc
