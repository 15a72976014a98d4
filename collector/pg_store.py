"""PostgreSQL storage via asyncpg: the shared store when several stateless collectors run side by side.

Correctness under concurrency comes from the database, not from this process: the batch row and each
measurement row are inserted with ``ON CONFLICT DO NOTHING ... RETURNING``, so when two collectors
receive the same batch (or the same measurement in two batches) at once, one waits on the other's
unique-index entry and then sees it as a duplicate; only rows this transaction actually inserted are
counted into the rollups. Rows and rollup keys are written in sorted order so concurrent writers lock
in the same order; a deadlock or serialization failure (should one happen anyway) is retried.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime
from typing import Any

import asyncpg

from protocol import Batch, SignedBatch, format_time
from protocol.signed_requests import Refusal

from .aggregate import plan_aggregate
from .migrations import LATEST, MIGRATIONS, VERSION_TABLE, check_version
from .rollups import (
    AGENTS,
    HOURLY,
    ROLLUPS,
    VERDICTS,
    Rollup,
    increments,
    row_rollup_key,
)
from .sqlite_store import BATCH_COLUMNS, MEASUREMENT_COLUMNS, batch_row, measurement_row
from .storage import (
    AgentOverview,
    AgentRecord,
    AggregateQuery,
    AggregateSource,
    StorageUnavailable,
    StoreResult,
)

#: asyncpg needs the array type of each column to ``unnest`` a whole batch in one statement.
_MEASUREMENT_TYPES = {"asn": "int8", "http_status": "int4", "runtime": "float8"}
_ROLLUP_TYPES = {name: "int8" for name in ("asn", "n", *VERDICTS, "agents")}
_MIGRATION_LOCK = 0x76616E74  # "vant": one advisory lock id serialises migrations across processes
_AGENT_LOCKS = 0x61676E74  # "agnt": (this, hashtext(agent_id)) serialises one agent's stores
_LOCK_AGENT = "SELECT pg_advisory_xact_lock($1, hashtext($2))"
_RETRIES = 5


def _unnest(columns: Sequence[str], types: Mapping[str, str]) -> str:
    arrays = ", ".join(f"${i}::{types.get(c, 'text')}[]" for i, c in enumerate(columns, 1))
    return f"SELECT * FROM unnest({arrays})"


_COLUMNS = [c.strip() for c in MEASUREMENT_COLUMNS.split(",")]
INSERT_MEASUREMENTS = (
    f"INSERT INTO measurements ({MEASUREMENT_COLUMNS}) {_unnest(_COLUMNS, _MEASUREMENT_TYPES)}"
    " ON CONFLICT (uid) DO NOTHING RETURNING uid"
)
UPSERT_ROLLUP = {
    rollup: rollup.upsert_sql(_unnest(rollup.columns + rollup.values, _ROLLUP_TYPES))
    for rollup in ROLLUPS
}


def dollar_placeholders(sql: str) -> str:
    """``?`` placeholders (the portable form analysis modules write) as asyncpg's ``$1, $2, ...``."""
    parts = sql.split("?")
    return parts[0] + "".join(f"${i}{part}" for i, part in enumerate(parts[1:], 1))


#: PLACES_OF_AGENT for every (hour, scope, agent) of a batch in one round trip.
_PLACES_OF_AGENTS = (
    f"SELECT {', '.join(f'a.{c}' for c in AGENTS.columns)} FROM rollup_agents a"
    " JOIN unnest($1::text[], $2::text[], $3::text[]) t(bucket, scope, agent_id)"
    " ON a.bucket = t.bucket AND a.scope = t.scope AND a.agent_id = t.agent_id"
)
_SCOPE, _AGENT = AGENTS.columns.index("scope"), AGENTS.columns.index("agent_id")


def _columns_of(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    return [list(column) for column in zip(*rows, strict=True)] if rows else [[]] * width


class PostgresStorage:
    def __init__(
        self,
        dsn: str,
        *,
        migrate: bool = False,
        read_timeout: float = 10.0,
        min_connections: int = 1,
        max_connections: int = 10,
    ) -> None:
        self.dsn = dsn
        self.auto_migrate = migrate
        self.read_timeout = read_timeout
        self.applied_migrations: list[int] = []
        self._sizes = (min_connections, max_connections)
        self._pool: asyncpg.Pool | None = None

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("storage is not open")
        return self._pool

    async def open(self) -> None:
        try:
            self._pool = await asyncpg.create_pool(
                self.dsn,
                min_size=self._sizes[0],
                max_size=self._sizes[1],
                server_settings={"application_name": "vantage-collector"},
            )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StorageUnavailable(f"cannot open PostgreSQL database: {exc}") from exc
        try:
            if self.auto_migrate:
                self.applied_migrations = await self.migrate()
            else:
                check_version(await self.schema_version(), "postgresql://...")
        except BaseException:
            await self.close()
            raise

    async def migrate(self) -> list[int]:
        applied: list[int] = []
        async with self.pool.acquire() as conn, conn.transaction():
            # Two collectors started with --migrate at once: the second waits here, then finds
            # nothing left to do.
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
            await conn.execute(VERSION_TABLE)
            current = int(
                await conn.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_version")
            )
            if current > LATEST:
                check_version(current, "postgresql://...")
            for step in MIGRATIONS:
                if step.version > current:
                    await conn.execute(step.postgresql)
                    await conn.execute("INSERT INTO schema_version VALUES ($1)", step.version)
                    applied.append(step.version)
        return applied

    async def schema_version(self) -> int:
        exists = await self.pool.fetchval("SELECT to_regclass('schema_version') IS NOT NULL")
        if not exists:
            return 0
        return int(await self.pool.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_version"))

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def register_agent(self, agent_id: str, public_key: bytes, at: datetime) -> bool:
        inserted = await self.pool.fetchval(
            "INSERT INTO agents (agent_id, public_key, registered_at) VALUES ($1, $2, $3)"
            " ON CONFLICT (agent_id) DO NOTHING RETURNING agent_id",
            agent_id,
            public_key,
            format_time(at),
        )
        return inserted is not None

    async def get_agent(self, agent_id: str) -> AgentRecord | None:
        row = await self.pool.fetchrow(
            "SELECT agent_id, public_key, registered_at, revoked_at FROM agents WHERE agent_id = $1",
            agent_id,
        )
        return None if row is None else AgentRecord(row[0], bytes(row[1]), row[2], row[3])

    async def revoke_agent(self, agent_id: str, at: datetime) -> bool:
        status = await self.pool.execute(
            "UPDATE agents SET revoked_at = $1 WHERE agent_id = $2 AND revoked_at IS NULL",
            format_time(at),
            agent_id,
        )
        return bool(status == "UPDATE 1")

    async def stored_batch_hash(self, batch_id: str) -> str | None:
        value = await self.pool.fetchval(
            "SELECT payload_sha256 FROM batches WHERE batch_id = $1", batch_id
        )
        return None if value is None else str(value)

    async def store_batch(
        self, signed: SignedBatch, batch: Batch, received_at: datetime
    ) -> StoreResult:
        received = format_time(received_at)
        ordered = sorted(
            (measurement_row(m, batch.batch_id, received) for m in batch.measurements),
            key=lambda row: str(row[0]),
        )
        columns = _columns_of(ordered, len(_COLUMNS))
        for attempt in range(_RETRIES):
            try:
                return await self._store_once(signed, batch, received, ordered, columns)
            except (asyncpg.DeadlockDetectedError, asyncpg.SerializationError):
                if attempt + 1 == _RETRIES:
                    raise
                await asyncio.sleep(0.01 * 2**attempt)
        raise AssertionError("unreachable")

    async def _store_once(
        self,
        signed: SignedBatch,
        batch: Batch,
        received: str,
        ordered: list[tuple[Any, ...]],
        columns: list[list[Any]],
    ) -> StoreResult:
        total = len(ordered)
        async with self.pool.acquire() as conn, conn.transaction():
            # One agent's uploads are stored one at a time (whichever collector got them): the
            # places an agent already has in an hour, read below, stay true until our commit.
            # Taken first, so no transaction waits on it while holding a row another one needs.
            await conn.execute(_LOCK_AGENT, _AGENT_LOCKS, batch.agent_id)
            inserted = await conn.fetchval(
                f"INSERT INTO batches ({BATCH_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
                " ON CONFLICT (batch_id) DO NOTHING RETURNING batch_id",
                *batch_row(signed, batch, received),
            )
            if inserted is None:
                return StoreResult(batch.batch_id, 0, total, duplicate_batch=True)
            new_uids = {row[0] for row in await conn.fetch(INSERT_MEASUREMENTS, *columns)}
            fresh = [row for row in ordered if row[0] in new_uids]
            if fresh:
                added = increments(map(row_rollup_key, fresh))
                triples = added.agent_triples
                known: dict[tuple[str, str, str], list[tuple[Any, ...]]] = {}
                for r in await conn.fetch(_PLACES_OF_AGENTS, *_columns_of(triples, 3)):
                    known.setdefault((r[0], r[_SCOPE], r[_AGENT]), []).append(tuple(r))
                for rollup, rows in added.settle(known):
                    width = len(rollup.columns) + len(rollup.values)
                    await conn.execute(UPSERT_ROLLUP[rollup], *_columns_of(rows, width))
        return StoreResult(batch.batch_id, len(fresh), total - len(fresh), duplicate_batch=False)

    async def aggregate(
        self, query: AggregateQuery, *, source: AggregateSource | None = None
    ) -> Sequence[Mapping[str, Any]]:
        plan = plan_aggregate(query, lambda n: f"${n}", source=source)
        # One snapshot for both statements: the correction must describe the same rows.
        async with (
            self.pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            rows = await conn.fetch(plan.sql, *plan.args, timeout=self.read_timeout)
            extra = []
            if plan.correction is not None:
                sql, args = plan.correction
                extra = await conn.fetch(sql, *args, timeout=self.read_timeout)
        return plan.rows(rows, extra)

    async def counts(self) -> dict[str, int]:
        row = await self.pool.fetchrow(
            "SELECT (SELECT COUNT(*) FROM agents), (SELECT COUNT(*) FROM batches),"
            " (SELECT COUNT(*) FROM measurements)"
        )
        assert row is not None
        return {"agents": row[0], "batches": row[1], "measurements": row[2]}

    async def rollups(
        self, *, recompute: bool = False, rollup: Rollup = HOURLY
    ) -> dict[tuple[Any, ...], tuple[int, ...]]:
        sql = rollup.from_raw if recompute else rollup.select_all
        rows = await self.pool.fetch(sql, timeout=self.read_timeout)
        width = len(rollup.columns)
        return {tuple(row[:width]): tuple(map(int, row[width:])) for row in rows}

    # --- operator documents and fleet overview (issue 7) ------------------------------------------

    async def put_keyset(self, version: int, document: bytes, at: datetime) -> bool:
        inserted = await self.pool.fetchval(
            "INSERT INTO operator_keysets (version, document, published_at) VALUES ($1, $2, $3)"
            " ON CONFLICT (version) DO NOTHING RETURNING version",
            version,
            document,
            format_time(at),
        )
        return inserted is not None

    async def keysets(self) -> list[bytes]:
        rows = await self.pool.fetch("SELECT document FROM operator_keysets ORDER BY version")
        return [bytes(row[0]) for row in rows]

    async def put_testlist(
        self,
        list_id: str,
        version: int,
        expires: datetime,
        document: bytes,
        sha256: str,
        at: datetime,
    ) -> int | None:
        async with self.pool.acquire() as conn, conn.transaction():
            # Serialise publishers of one list id so "newer than the latest" holds across collectors.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", list_id)
            latest = await conn.fetchval(
                "SELECT MAX(version) FROM testlists WHERE list_id = $1", list_id
            )
            if latest is not None and latest >= version:
                return int(latest)
            await conn.execute(
                "INSERT INTO testlists (list_id, version, expires_at, document, sha256,"
                " published_at) VALUES ($1, $2, $3, $4, $5, $6)",
                list_id,
                version,
                format_time(expires),
                document,
                sha256,
                format_time(at),
            )
        return None

    async def current_testlists(self, now: datetime) -> list[bytes]:
        rows = await self.pool.fetch(
            "SELECT t.document FROM testlists t JOIN (SELECT list_id, MAX(version) AS version"
            " FROM testlists GROUP BY list_id) latest USING (list_id, version)"
            " WHERE t.expires_at > $1 ORDER BY t.list_id",
            format_time(now),
        )
        return [bytes(row[0]) for row in rows]

    async def record_refusals(
        self, agent_id: str, refusals: Sequence[Refusal], at: datetime
    ) -> int:
        rows = [
            (agent_id, format_time(at), r.at, r.reason, r.message, r.list_id, r.version, r.sha256)
            for r in refusals
        ]
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.executemany(
                "INSERT INTO testlist_refusals (agent_id, reported_at, refused_at, reason,"
                " message, list_id, version, sha256) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                rows,
            )
        return len(rows)

    async def agent_overview(self) -> list[AgentOverview]:
        rows = await self.pool.fetch(
            """
            SELECT a.agent_id, a.registered_at, a.revoked_at,
                (SELECT MAX(received_at) FROM batches b WHERE b.agent_id = a.agent_id),
                (SELECT COUNT(*) FROM batches b WHERE b.agent_id = a.agent_id),
                (SELECT COALESCE(SUM(measurements), 0) FROM batches b
                    WHERE b.agent_id = a.agent_id),
                (SELECT COUNT(*) FROM testlist_refusals r WHERE r.agent_id = a.agent_id),
                m.country, m.region, m.asn, m.carrier, m.network_type
            FROM agents a
            LEFT JOIN LATERAL (
                SELECT country, region, asn, carrier, network_type FROM measurements
                WHERE agent_id = a.agent_id ORDER BY measured_at DESC LIMIT 1) m ON TRUE
            ORDER BY a.registered_at, a.agent_id
            """,
            timeout=self.read_timeout,
        )
        return [AgentOverview(*row) for row in rows]

    # --- analysis and research API (issue 6) -----------------------------------------------------

    @contextlib.asynccontextmanager
    async def exclusive(self, name: str) -> AsyncIterator[None]:
        """A session-level advisory lock, held on its own connection for the whole block."""
        async with self.pool.acquire() as conn:
            await conn.execute("SELECT pg_advisory_lock(hashtext($1))", f"vantage:{name}")
            try:
                yield
            finally:
                await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", f"vantage:{name}")

    async def fetch(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        rows = await self.pool.fetch(dollar_placeholders(sql), *args, timeout=self.read_timeout)
        return [tuple(row) for row in rows]

    async def execute(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            for sql, args in statements:
                await conn.execute(dollar_placeholders(sql), *args)
