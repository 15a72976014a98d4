"""SQLite storage: the embedded default. WAL mode, one writer thread, readers on their own connections.

The schema comes from ``migrations.MIGRATIONS``; being embedded (one process owns the file), SQLite
applies pending migrations on open unless told not to.

All writes go through a single-thread executor (SQLite allows one writer; queueing them here instead of
in SQLite's busy handler keeps latency predictable). Readers use separate connections, so with WAL they
never block ingest. A batch and its measurement rows are committed in one transaction, and ``store_batch``
returns only after that commit: the HTTP acknowledgement is never ahead of the disk. Batches that queue
up while a commit is being synced share the next transaction (group commit, each in its own savepoint),
so concurrent uploads pay for one fsync between them rather than one each.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from protocol import Batch, Measurement, SignedBatch, format_time
from protocol.signed_requests import Refusal

from .aggregate import plan_aggregate
from .migrations import LATEST, MIGRATIONS, VERSION_TABLE, check_version
from .rollups import HOURLY, PLACES_OF_AGENT, ROLLUPS, Rollup, increments, row_rollup_key
from .storage import AgentOverview, AgentRecord, AggregateQuery, AggregateSource, StoreResult

T = TypeVar("T")

MEASUREMENT_COLUMNS = (
    "uid, batch_id, agent_id, measured_at, received_at, test, country, region, asn, carrier, "
    "network_type, network_source, url, host, scope, category, verdict, blocking, failure, "
    "dns_failure, tcp_failure, http_failure, http_status, runtime"
)


def measurement_row(m: Measurement, batch_id: str, received_at: str) -> tuple[Any, ...]:
    tcp_failure = next((t.failure for t in m.tcp if t.failure), None) if m.tcp else None
    if m.tcp and any(t.success for t in m.tcp):
        tcp_failure = None  # one working endpoint is a working TCP step
    return (
        m.uid,
        batch_id,
        m.agent_id,
        format_time(m.measured_at),
        received_at,
        m.test,
        m.network.country,
        m.network.region,
        m.network.asn,
        m.network.carrier,
        m.network.network_type.value,
        m.network.source,
        m.target.url,
        m.target.host,
        m.target.scope.value,
        m.target.category,
        m.verdict.value,
        m.blocking.value if m.blocking else None,
        m.failure,
        m.dns.failure if m.dns else None,
        tcp_failure,
        m.http.failure if m.http else None,
        m.http.status if m.http else None,
        m.runtime,
    )


INSERT_MEASUREMENT = (
    f"INSERT INTO measurements ({MEASUREMENT_COLUMNS})"
    f" VALUES ({', '.join('?' * len(MEASUREMENT_COLUMNS.split(',')))})"
)
UPSERT_ROLLUP = {
    rollup: rollup.upsert_sql(
        f"VALUES ({', '.join('?' * (len(rollup.columns) + len(rollup.values)))})"
    )
    for rollup in ROLLUPS
}

BATCH_COLUMNS = "batch_id, agent_id, received_at, payload, signature, payload_sha256, measurements"


def batch_row(signed: SignedBatch, batch: Batch, received_at: str) -> tuple[Any, ...]:
    """The ``batches`` row: the exact verified bytes, so anyone can re-check them later."""
    return (
        batch.batch_id,
        batch.agent_id,
        received_at,
        signed.payload,
        signed.signature,
        signed.payload_sha256,
        len(batch.measurements),
    )


#: At most this many batches share one commit (bounds a transaction's size and the wait behind it).
GROUP_COMMIT_MAX = 64


@dataclass(slots=True)
class _PendingStore:
    """A batch waiting for the writer, and what became of it."""

    batch_row: tuple[Any, ...]
    rows: dict[str, tuple[Any, ...]]
    result: StoreResult | None = None
    error: BaseException | None = None


class SqliteStorage:
    def __init__(
        self, path: Path | str, *, read_timeout: float = 10.0, migrate: bool = True
    ) -> None:
        self.path = Path(path)
        self.auto_migrate = migrate
        self.applied_migrations: list[int] = []
        self.read_timeout = read_timeout
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")
        self._readers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="sqlite-reader")
        self._local = threading.local()
        self._write_conn: sqlite3.Connection | None = None
        self._reader_conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._pending: deque[_PendingStore] = deque()  # appended by the loop, taken by the writer

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")  # an acknowledged batch survives power loss
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    async def _write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            assert self._write_conn is not None, "storage is not open"
            return work(self._write_conn)

        return await asyncio.get_running_loop().run_in_executor(self._writer, run)

    async def _read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
            if conn is None:
                conn = self._connect()
                conn.execute("PRAGMA query_only=ON")
                self._local.conn = conn
                with self._lock:
                    self._reader_conns.append(conn)
            # Datasette's habit: a read query gets a time limit, so one bad query cannot pin a reader.
            stop_at = time.monotonic() + self.read_timeout
            conn.set_progress_handler(lambda: int(time.monotonic() > stop_at), 10_000)
            try:
                return work(conn)
            finally:
                conn.set_progress_handler(None, 0)

        return await asyncio.get_running_loop().run_in_executor(self._readers, run)

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)

        def init() -> None:
            self._write_conn = self._connect()
            if self.auto_migrate:
                self.applied_migrations = self._apply_migrations(self._write_conn)
            else:
                check_version(self._current_version(self._write_conn), str(self.path))

        await asyncio.get_running_loop().run_in_executor(self._writer, init)

    @staticmethod
    def _current_version(conn: sqlite3.Connection) -> int:
        conn.execute(VERSION_TABLE)
        row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
        return int(row[0] or 0)

    def _apply_migrations(self, conn: sqlite3.Connection) -> list[int]:
        current = self._current_version(conn)
        if current > LATEST:
            check_version(current, str(self.path))
        applied = []
        for step in MIGRATIONS:
            if step.version > current:
                # executescript runs the BEGIN/COMMIT too: the step and its record are one transaction.
                conn.executescript(
                    f"BEGIN IMMEDIATE;{step.sqlite};"
                    f"INSERT INTO schema_version (version) VALUES ({step.version});COMMIT;"
                )
                applied.append(step.version)
        return applied

    async def schema_version(self) -> int:
        return await self._read(self._current_version_readonly)

    @staticmethod
    def _current_version_readonly(conn: sqlite3.Connection) -> int:
        row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
        return int(row[0] or 0)

    async def close(self) -> None:
        def close_writer() -> None:
            if self._write_conn is not None:
                self._write_conn.close()
                self._write_conn = None

        await asyncio.get_running_loop().run_in_executor(self._writer, close_writer)
        self._writer.shutdown(wait=True)
        self._readers.shutdown(wait=True)
        with self._lock:
            for conn in self._reader_conns:
                conn.close()
            self._reader_conns.clear()

    async def register_agent(self, agent_id: str, public_key: bytes, at: datetime) -> bool:
        def work(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "INSERT OR IGNORE INTO agents (agent_id, public_key, registered_at) VALUES (?, ?, ?)",
                (agent_id, public_key, format_time(at)),
            )
            return cur.rowcount == 1

        return await self._write(work)

    async def get_agent(self, agent_id: str) -> AgentRecord | None:
        def work(conn: sqlite3.Connection) -> AgentRecord | None:
            row = conn.execute(
                "SELECT agent_id, public_key, registered_at, revoked_at FROM agents"
                " WHERE agent_id = ?",
                (agent_id,),
            ).fetchone()
            return None if row is None else AgentRecord(row[0], bytes(row[1]), row[2], row[3])

        return await self._read(work)

    async def revoke_agent(self, agent_id: str, at: datetime) -> bool:
        def work(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "UPDATE agents SET revoked_at = ? WHERE agent_id = ? AND revoked_at IS NULL",
                (format_time(at), agent_id),
            )
            return cur.rowcount == 1

        return await self._write(work)

    async def stored_batch_hash(self, batch_id: str) -> str | None:
        def work(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT payload_sha256 FROM batches WHERE batch_id = ?", (batch_id,)
            ).fetchone()
            return None if row is None else str(row[0])

        return await self._read(work)

    async def store_batch(
        self, signed: SignedBatch, batch: Batch, received_at: datetime
    ) -> StoreResult:
        received = format_time(received_at)
        pending = _PendingStore(
            batch_row(signed, batch, received),
            {m.uid: measurement_row(m, batch.batch_id, received) for m in batch.measurements},
        )
        self._pending.append(pending)
        # This job commits every store queued by then (ours included, unless an earlier job already
        # took it): one transaction and one fsync for what arrived while the last commit was on
        # its way to disk. Either way ours is committed, or has failed, when the job returns.
        await self._write(self._commit_pending)
        if pending.error is not None:
            raise pending.error
        assert pending.result is not None, "a queued store was neither committed nor failed"
        return pending.result

    def _commit_pending(self, conn: sqlite3.Connection) -> None:
        group: list[_PendingStore] = []
        while self._pending and len(group) < GROUP_COMMIT_MAX:
            group.append(self._pending.popleft())
        if not group:
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            for item in group:
                # A savepoint per batch: one batch failing (a constraint, say) fails alone.
                conn.execute("SAVEPOINT store")
                try:
                    item.result = self._store_one(conn, item)
                except Exception as exc:
                    conn.execute("ROLLBACK TO store")
                    item.error = exc
                conn.execute("RELEASE store")
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            for item in group:  # nothing of the group is on disk: nobody gets a result
                item.result = None
                item.error = exc if isinstance(exc, Exception) else RuntimeError("store aborted")
            if not isinstance(exc, Exception):
                raise

    @staticmethod
    def _store_one(conn: sqlite3.Connection, item: _PendingStore) -> StoreResult:
        batch_id, rows = item.batch_row[0], item.rows
        cur = conn.execute(
            f"INSERT OR IGNORE INTO batches ({BATCH_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
            item.batch_row,
        )
        if cur.rowcount == 0:
            return StoreResult(batch_id, 0, len(rows), duplicate_batch=True)
        # One writer holds the write lock, so what is absent now is still absent at INSERT: only
        # those rows are inserted and only they count in the rollups.
        seen = {
            uid
            for (uid,) in conn.execute(
                f"SELECT uid FROM measurements WHERE uid IN ({', '.join('?' * len(rows))})",
                list(rows),
            )
        }
        fresh = [row for uid, row in rows.items() if uid not in seen]
        conn.executemany(INSERT_MEASUREMENT, fresh)
        if fresh:
            added = increments(map(row_rollup_key, fresh))
            known = {t: conn.execute(PLACES_OF_AGENT, t).fetchall() for t in added.agent_triples}
            for rollup, rows_added in added.settle(known):
                conn.executemany(UPSERT_ROLLUP[rollup], rows_added)
        return StoreResult(batch_id, len(fresh), len(rows) - len(fresh), duplicate_batch=False)

    async def aggregate(
        self, query: AggregateQuery, *, source: AggregateSource | None = None
    ) -> Sequence[Mapping[str, Any]]:
        plan = plan_aggregate(query, lambda n: "?", source=source)

        def work(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            if plan.correction is None:
                return plan.rows(conn.execute(plan.sql, plan.args))
            conn.execute("BEGIN")  # one snapshot for both: the correction describes these rows
            try:
                rows = conn.execute(plan.sql, plan.args).fetchall()
                return plan.rows(rows, conn.execute(*plan.correction).fetchall())
            finally:
                conn.execute("COMMIT")

        return await self._read(work)

    # --- operator documents and fleet overview (issue 7) ------------------------------------------

    async def put_keyset(self, version: int, document: bytes, at: datetime) -> bool:
        def work(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "INSERT OR IGNORE INTO operator_keysets (version, document, published_at)"
                " VALUES (?, ?, ?)",
                (version, document, format_time(at)),
            )
            return cur.rowcount == 1

        return await self._write(work)

    async def keysets(self) -> list[bytes]:
        def work(conn: sqlite3.Connection) -> list[bytes]:
            rows = conn.execute("SELECT document FROM operator_keysets ORDER BY version")
            return [bytes(row[0]) for row in rows]

        return await self._read(work)

    async def put_testlist(
        self,
        list_id: str,
        version: int,
        expires: datetime,
        document: bytes,
        sha256: str,
        at: datetime,
    ) -> int | None:
        def work(conn: sqlite3.Connection) -> int | None:
            conn.execute("BEGIN IMMEDIATE")  # the version check and the insert are one step
            try:
                (latest,) = conn.execute(
                    "SELECT MAX(version) FROM testlists WHERE list_id = ?", (list_id,)
                ).fetchone()
                if latest is not None and latest >= version:
                    conn.execute("ROLLBACK")
                    return int(latest)
                conn.execute(
                    "INSERT INTO testlists (list_id, version, expires_at, document, sha256,"
                    " published_at) VALUES (?, ?, ?, ?, ?, ?)",
                    (list_id, version, format_time(expires), document, sha256, format_time(at)),
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return None

        return await self._write(work)

    async def current_testlists(self, now: datetime) -> list[bytes]:
        def work(conn: sqlite3.Connection) -> list[bytes]:
            rows = conn.execute(
                "SELECT t.document FROM testlists t JOIN (SELECT list_id, MAX(version) AS version"
                " FROM testlists GROUP BY list_id) latest USING (list_id, version)"
                " WHERE t.expires_at > ? ORDER BY t.list_id",
                (format_time(now),),
            )
            return [bytes(row[0]) for row in rows]

        return await self._read(work)

    async def record_refusals(
        self, agent_id: str, refusals: Sequence[Refusal], at: datetime
    ) -> int:
        rows = [
            (agent_id, format_time(at), r.at, r.reason, r.message, r.list_id, r.version, r.sha256)
            for r in refusals
        ]

        def work(conn: sqlite3.Connection) -> int:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(
                    "INSERT INTO testlist_refusals (agent_id, reported_at, refused_at, reason,"
                    " message, list_id, version, sha256) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return len(rows)

        return await self._write(work)

    async def agent_overview(self) -> list[AgentOverview]:
        def work(conn: sqlite3.Connection) -> list[AgentOverview]:
            rows = conn.execute(
                """
                SELECT a.agent_id, a.registered_at, a.revoked_at,
                    (SELECT MAX(received_at) FROM batches b WHERE b.agent_id = a.agent_id),
                    (SELECT COUNT(*) FROM batches b WHERE b.agent_id = a.agent_id),
                    (SELECT COALESCE(SUM(measurements), 0) FROM batches b
                        WHERE b.agent_id = a.agent_id),
                    (SELECT COUNT(*) FROM testlist_refusals r WHERE r.agent_id = a.agent_id),
                    m.country, m.region, m.asn, m.carrier, m.network_type
                FROM agents a
                LEFT JOIN measurements m ON m.uid = (
                    SELECT uid FROM measurements WHERE agent_id = a.agent_id
                    ORDER BY measured_at DESC LIMIT 1)
                ORDER BY a.registered_at, a.agent_id
                """
            )
            return [AgentOverview(*row) for row in rows]

        return await self._read(work)

    async def counts(self) -> dict[str, int]:
        def work(conn: sqlite3.Connection) -> dict[str, int]:
            return {
                table: int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
                for table in ("agents", "batches", "measurements")
            }

        return await self._read(work)

    async def rollups(
        self, *, recompute: bool = False, rollup: Rollup = HOURLY
    ) -> dict[tuple[Any, ...], tuple[int, ...]]:
        sql = rollup.from_raw if recompute else rollup.select_all
        width = len(rollup.columns)

        def work(conn: sqlite3.Connection) -> dict[tuple[Any, ...], tuple[int, ...]]:
            return {tuple(row[:width]): tuple(map(int, row[width:])) for row in conn.execute(sql)}

        return await self._read(work)

    # --- analysis and research API (issue 6) -----------------------------------------------------

    @contextlib.asynccontextmanager
    async def exclusive(self, name: str) -> AsyncIterator[None]:
        """A lock file beside the database (flock): holds across processes sharing the file, and
        across tasks of one process (each holder opens its own file description)."""
        lock_path = self.path.with_name(f"{self.path.name}.{name}.lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            await asyncio.get_running_loop().run_in_executor(None, fcntl.flock, fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    async def fetch(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        def work(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
            return [tuple(row) for row in conn.execute(sql, list(args))]

        return await self._read(work)

    async def execute(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> None:
        def work(conn: sqlite3.Connection) -> None:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for sql, args in statements:
                    conn.execute(sql, list(args))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

        await self._write(work)
