"""The collector's own Ed25519 key, which signs upload receipts: a 0600 file, created on first start.

Several collectors behind one load balancer should share one key file, so agents can pin a single
collector key. A key readable by others is refused rather than used: receipts are evidence.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from protocol import LocalProtocolError, SigningKey


class CollectorKeyError(RuntimeError):
    """The key file is unusable (wrong mode, wrong size, unreadable)."""


def load_or_create_key(path: Path) -> SigningKey:
    """Load the key at ``path``, or create it there if there is none."""
    if path.exists():
        return _load(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = SigningKey.generate()
    # Write a private temp file, then hard-link it into place: the key file appears complete or not at
    # all, and if two collectors start at once, one key wins and both use it.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(key.raw)
            handle.flush()
            os.fsync(handle.fileno())
        os.link(tmp, path)
    except FileExistsError:
        return _load(path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    return key


def _load(path: Path) -> SigningKey:
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise CollectorKeyError(
                f"collector key {path} is readable by others (mode {mode:o}); run: chmod 600 {path}"
            )
        raw = path.read_bytes()
    except OSError as exc:
        raise CollectorKeyError(f"cannot read collector key {path}: {exc.strerror}") from exc
    try:
        return SigningKey.from_raw(raw)
    except LocalProtocolError as exc:
        raise CollectorKeyError(f"collector key {path} is damaged: {exc}") from exc
