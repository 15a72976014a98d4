"""The durable on-disk spool: every result is on disk before the next step, and survives crashes.

Layout under ``spool_dir``::

    pending/<uid>.m         one measurement, canonical msgpack (written atomically)
    outbox/<batch_id>.b     one signed batch envelope, ready to upload (written atomically)
    corrupt/                files that failed to decode, kept for inspection, never uploaded

Packing writes the signed batch to ``outbox`` *before* deleting its pending files, and an outbox file
is deleted only after the collector acknowledged it; so a crash at any moment loses nothing. A crash
between those two steps can put a measurement in two batches: the collector dedupes by uid.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

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
    sign_batch,
    utc_now,
)
from protocol.messages import from_peer


def write_atomically(path: Path, data: bytes) -> None:
    """Write-then-rename with fsyncs: the file is either absent or complete, never half-written."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@dataclass(frozen=True, slots=True)
class OutboxItem:
    path: Path
    signed: SignedBatch


class Spool:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.pending = root / "pending"
        self.outbox = root / "outbox"
        self.corrupt = root / "corrupt"
        for folder in (self.pending, self.outbox, self.corrupt):
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)

    def add(self, measurement: Measurement) -> None:
        write_atomically(
            self.pending / f"{measurement.uid}.m", canonical_encode(measurement.to_wire())
        )

    def _quarantine(self, path: Path) -> None:
        path.replace(self.corrupt / path.name)

    def pending_measurements(self) -> Iterator[tuple[Path, Measurement]]:
        for path in sorted(self.pending.glob("*.m")):
            try:
                wire = canonical_decode(path.read_bytes())
                yield path, from_peer(lambda w=wire: Measurement.from_wire(w))  # type: ignore[misc]
            except (OSError, RemoteProtocolError):
                self._quarantine(path)

    def pack(self, key: SigningKey, batch_size: int = 100) -> int:
        """Move pending measurements into signed outbox batches; return how many batches were made."""
        made = 0
        chunk: list[tuple[Path, Measurement]] = []
        for item in self.pending_measurements():
            chunk.append(item)
            if len(chunk) == batch_size:
                self._pack_chunk(key, chunk)
                made += 1
                chunk = []
        if chunk:
            self._pack_chunk(key, chunk)
            made += 1
        return made

    def _pack_chunk(self, key: SigningKey, chunk: list[tuple[Path, Measurement]]) -> None:
        batch = Batch(new_uid(), key.agent_id, utc_now(), tuple(m for _, m in chunk))
        signed = sign_batch(key, batch)
        write_atomically(self.outbox / f"{batch.batch_id}.b", signed.to_bytes())
        for path, _ in chunk:
            path.unlink(missing_ok=True)

    def outbox_items(self) -> Iterator[OutboxItem]:
        for path in sorted(self.outbox.glob("*.b")):
            try:
                yield OutboxItem(path, decode_signed_batch(path.read_bytes()))
            except (OSError, RemoteProtocolError):
                self._quarantine(path)

    def acknowledge(self, item: OutboxItem) -> None:
        item.path.unlink(missing_ok=True)

    def counts(self) -> dict[str, int]:
        return {
            "pending": sum(1 for _ in self.pending.glob("*.m")),
            "outbox": sum(1 for _ in self.outbox.glob("*.b")),
            "corrupt": sum(1 for _ in self.corrupt.iterdir()),
        }
