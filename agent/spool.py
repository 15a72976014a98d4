"""The durable on-disk spool: every result is on disk before the next step, and survives crashes.

Layout under ``spool_dir`` (layout version 2, in ``VERSION``)::

    VERSION                 the layout version; a newer one than we know is refused, not guessed at
    pending/<uid>.m         one measurement, canonical msgpack (written atomically)
    outbox/<batch_id>.b     one signed batch envelope, ready to upload (written atomically)
    rejected/<batch_id>.b   batches the collector refused (4xx): kept for a human, never re-sent
    corrupt/                files that failed to decode, kept for inspection, never uploaded
    spool.json              counters: measurements dropped unsent (reported upstream in batches)
    .packing                present only while pending measurements are being packed

Crash safety (kill -9 at any instant): files appear only by write-fsync-rename, so a name is either
absent or complete; a stale ``.name.tmp`` is removed on open. Packing writes the signed batch to
``outbox`` *before* deleting its pending files, under the ``.packing`` marker; if a crash leaves the
marker, opening the spool deletes pending files whose uid is already in an outbox batch, so no
measurement is ever sent twice. An outbox file is deleted only after the collector acknowledged it;
re-sending it after a crash is harmless (the collector dedupes by batch id and uid).

Bounds and drop policy: measurements older than ``max_age`` are dropped (the collector would refuse
them anyway); beyond ``max_bytes`` the *oldest* measurements go first, outbox batches (packed earlier,
so older) before pending files. Oldest-first keeps what describes the network now, which is what live
detection and a reconnecting agent need; an outage's onset is usually also seen by agents that stayed
connected. Every drop is counted in ``spool.json`` and the cumulative total rides in each batch
(``Batch.dropped_total``), signed, so the collector learns of the gap.

Layout 1 (the walking skeleton: pending/, outbox/, corrupt/ without ``VERSION``) is the same file
format and is upgraded in place by writing ``VERSION``.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from protocol import (
    Batch,
    Measurement,
    RemoteProtocolError,
    SignedBatch,
    SigningKey,
    canonical_decode,
    canonical_encode,
    decode_signed_batch,
    new_uid,
    parse_time,
    sign_batch,
    utc_now,
)
from protocol.messages import from_peer

from .errors import ConfigError

LAYOUT_VERSION: Final = 2
DEFAULT_MAX_BYTES: Final = 64 * 1024 * 1024
DEFAULT_MAX_AGE: Final = timedelta(days=30)


def _fsync_dir(path: Path) -> None:
    dir_fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_atomically(path: Path, data: bytes) -> None:
    """Write-then-rename with fsyncs: the file is either absent or complete, never half-written."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def read_json(path: Path) -> dict[str, Any]:
    """A small JSON state file, or {} if it is absent or unreadable (state is advisory, data is not)."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def write_json(path: Path, value: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomically(path, json.dumps(value, indent=1, sort_keys=True).encode())


def uid_time(uid: str) -> datetime:
    """When a uid (``protocol.new_uid``) was made: its first 48 bits are Unix milliseconds."""
    return datetime.fromtimestamp(int(uid[:12], 16) / 1000, UTC)


@dataclass(frozen=True, slots=True)
class OutboxItem:
    path: Path
    signed: SignedBatch


@dataclass(frozen=True, slots=True)
class SpoolLimits:
    max_bytes: int = DEFAULT_MAX_BYTES
    max_age: timedelta = DEFAULT_MAX_AGE


class Spool:
    def __init__(self, root: Path, limits: SpoolLimits | None = None) -> None:
        self.root = root
        self.limits = limits or SpoolLimits()
        self.pending = root / "pending"
        self.outbox = root / "outbox"
        self.rejected = root / "rejected"
        self.corrupt = root / "corrupt"
        self.stats_path = root / "spool.json"
        self._marker = root / ".packing"
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._check_layout()
        for folder in (self.pending, self.outbox, self.rejected, self.corrupt):
            folder.mkdir(exist_ok=True, mode=0o700)
        self._recover()

    # --- opening: layout version and crash recovery ----------------------------------------------

    def _check_layout(self) -> None:
        version_file = self.root / "VERSION"
        try:
            text = version_file.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            write_atomically(version_file, f"{LAYOUT_VERSION}\n".encode())  # new, or layout 1
            return
        if not text.isdigit():
            raise ConfigError(f"spool {self.root}: VERSION is damaged ({text[:20]!r})")
        if int(text) > LAYOUT_VERSION:
            raise ConfigError(
                f"spool {self.root} has layout {text}, newer than this agent understands"
                f" ({LAYOUT_VERSION}); upgrade the agent instead of discarding measurements"
            )
        if int(text) < LAYOUT_VERSION:
            write_atomically(version_file, f"{LAYOUT_VERSION}\n".encode())

    def _recover(self) -> None:
        for folder in (self.root, self.pending, self.outbox, self.rejected):
            for stale in folder.glob(".*.tmp"):
                stale.unlink(missing_ok=True)  # a write that never reached its rename
        if not self._marker.exists():
            return
        packed: set[str] = set()
        for item in self.outbox_items():
            with contextlib.suppress(RemoteProtocolError, KeyError, TypeError):
                payload = canonical_decode(item.signed.payload)
                packed.update(str(m["uid"]) for m in payload["measurements"])
        for uid in packed:
            (self.pending / f"{uid}.m").unlink(missing_ok=True)
        self._marker.unlink(missing_ok=True)
        _fsync_dir(self.root)

    # --- writing -----------------------------------------------------------------------------------

    def add(self, measurement: Measurement) -> None:
        write_atomically(
            self.pending / f"{measurement.uid}.m", canonical_encode(measurement.to_wire())
        )

    def _quarantine(self, path: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            path.replace(self.corrupt / path.name)

    def pending_measurements(self) -> Iterator[tuple[Path, Measurement]]:
        for path in sorted(self.pending.glob("*.m")):
            try:
                wire = canonical_decode(path.read_bytes())
                yield path, from_peer(lambda w=wire: Measurement.from_wire(w))  # type: ignore[misc]
            except FileNotFoundError:
                continue  # dropped or packed meanwhile
            except (OSError, RemoteProtocolError):
                self._quarantine(path)

    def pack(self, key: SigningKey, batch_size: int = 100) -> int:
        """Move pending measurements into signed outbox batches; return how many batches were made."""
        made = 0
        chunk: list[tuple[Path, Measurement]] = []
        for item in self.pending_measurements():
            if not made and not chunk:
                write_atomically(self._marker, b"")
            chunk.append(item)
            if len(chunk) == batch_size:
                self._pack_chunk(key, chunk)
                made += 1
                chunk = []
        if chunk:
            self._pack_chunk(key, chunk)
            made += 1
        if self._marker.exists():
            self._marker.unlink()
            _fsync_dir(self.root)
        return made

    def _pack_chunk(self, key: SigningKey, chunk: list[tuple[Path, Measurement]]) -> None:
        batch = Batch(
            new_uid(),
            key.agent_id,
            utc_now(),
            tuple(m for _, m in chunk),
            dropped_total=self.dropped_total,
        )
        signed = sign_batch(key, batch)
        write_atomically(self.outbox / f"{batch.batch_id}.b", signed.to_bytes())
        for path, _ in chunk:
            path.unlink(missing_ok=True)
        _fsync_dir(self.pending)

    # --- uploading ---------------------------------------------------------------------------------

    def outbox_items(self) -> Iterator[OutboxItem]:
        for path in sorted(self.outbox.glob("*.b")):
            try:
                yield OutboxItem(path, decode_signed_batch(path.read_bytes()))
            except FileNotFoundError:
                continue
            except (OSError, RemoteProtocolError):
                self._quarantine(path)

    def acknowledge(self, item: OutboxItem) -> None:
        item.path.unlink(missing_ok=True)
        _fsync_dir(self.outbox)

    def reject(self, item: OutboxItem) -> None:
        """The collector refused this batch for good: keep it aside, stop re-sending it."""
        with contextlib.suppress(FileNotFoundError):
            item.path.replace(self.rejected / item.path.name)

    # --- bounds ------------------------------------------------------------------------------------

    @property
    def dropped_total(self) -> int:
        value = read_json(self.stats_path).get("dropped_total", 0)
        return value if isinstance(value, int) and value >= 0 else 0

    def _count_dropped(self, count: int, reason: str) -> None:
        stats = read_json(self.stats_path)
        stats["dropped_total"] = self.dropped_total + count
        stats[f"dropped_{reason}"] = int(stats.get(f"dropped_{reason}", 0)) + count
        stats["last_drop"] = utc_now().strftime("%Y-%m-%dT%H:%M:%SZ")
        write_json(self.stats_path, stats)

    @staticmethod
    def _measurements_in(path: Path) -> int:
        if path.suffix == ".m":
            return 1
        try:
            payload = canonical_decode(decode_signed_batch(path.read_bytes()).payload)
            return len(payload["measurements"])
        except (OSError, RemoteProtocolError, KeyError, TypeError):
            return 0

    def _drop(self, path: Path, reason: str) -> int:
        count = self._measurements_in(path)
        if count:
            self._count_dropped(count, reason)  # counted before deleting: never an unreported gap
        path.unlink(missing_ok=True)
        return count

    def enforce_limits(self, now: datetime | None = None) -> int:
        """Apply the age and size bounds; return how many measurements were dropped."""
        now = now or utc_now()
        oldest_allowed = now - self.limits.max_age
        files: list[tuple[Path, int]] = []
        dropped = 0
        # Outbox first: batches were packed before any pending file was written, so they are older.
        for path in [*sorted(self.outbox.glob("*.b")), *sorted(self.pending.glob("*.m"))]:
            try:
                # A batch id is its packing time, later than every measurement in it.
                if uid_time(path.stem) < oldest_allowed:
                    dropped += self._drop(path, "age")
                    continue
                files.append((path, path.stat().st_size))
            except (ValueError, FileNotFoundError):
                continue
        total = sum(size for _, size in files)
        for path, size in files:
            if total <= self.limits.max_bytes:
                break
            dropped += self._drop(path, "size")
            total -= size
        return dropped

    # --- what is in it -----------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        def count(folder: Path, pattern: str) -> int:
            return sum(1 for _ in folder.glob(pattern))

        return {
            "pending": count(self.pending, "*.m"),
            "outbox": count(self.outbox, "*.b"),
            "rejected": count(self.rejected, "*.b"),
            "corrupt": count(self.corrupt, "*"),
        }

    def size_bytes(self) -> int:
        total = 0
        for folder, pattern in ((self.pending, "*.m"), (self.outbox, "*.b")):
            for path in folder.glob(pattern):
                with contextlib.suppress(FileNotFoundError):
                    total += path.stat().st_size
        return total

    def oldest_unsent(self) -> datetime | None:
        """Measurement time of the oldest measurement not yet acknowledged by the collector."""
        for item in self.outbox_items():
            try:
                payload = canonical_decode(item.signed.payload)
                return min(parse_time(m["measured_at"]) for m in payload["measurements"])
            except (RemoteProtocolError, KeyError, TypeError, ValueError):
                continue
        first = next(iter(sorted(self.pending.glob("*.m"))), None)
        return uid_time(first.stem) if first is not None else None

    def unsent_measurements(self) -> int:
        total = self.counts()["pending"]
        for path in self.outbox.glob("*.b"):
            total += self._measurements_in(path)
        return total
