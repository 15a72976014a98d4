"""Private keys on disk: created exclusively with mode 0600, refused when others can read them.

Plain file I/O (no sockets, no event loop), shared by the agent's key and the operators' keys so that
both follow exactly one rule.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


class SecretFileError(Exception):
    """The file exists already, cannot be read, or is readable by others (callers re-raise theirs)."""


def write_new_secret(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600 and write ``data``; never overwrite (a lost key is lost)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise SecretFileError(f"a key already exists at {path}; refusing to overwrite it") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(path, 0o600)  # in case os.open's mode was narrowed oddly by the platform


def read_secret(path: Path) -> bytes:
    """Read a key file; refuse one that group or others may read."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise SecretFileError(
                f"key {path} is readable by others (mode {mode:o}); run: chmod 600 {path}"
            )
        return path.read_bytes()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise SecretFileError(f"cannot read key {path}: {exc.strerror}") from exc
