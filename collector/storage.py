"""What the collector needs from a database, independent of which one.

Backends: ``sqlite_store.SqliteStorage`` (embedded default) and ``pg_store.PostgresStorage`` (shared
by several collector processes); ``open_storage(url)`` picks one. Each keeps the raw signed batch bytes
(verifiable forever), one narrow row per measurement for queries, the agents' public keys, and hourly
rollups updated in the same transaction as the rows they count.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from protocol import Batch, SignedBatch

from .rollups import RollupKey


class StorageUnavailable(RuntimeError):
    """The database cannot be reached or refused us (connection, authentication)."""


@dataclass(frozen=True, slots=True)
class AgentRecord:
    agent_id: str
    public_key: bytes
    registered_at: str
    revoked_at: str | None


@dataclass(frozen=True, slots=True)
class StoreResult:
    """What ``store_batch`` did: ``duplicate_batch`` means the very same batch was already stored."""

    batch_id: str
    stored: int
    duplicates: int
    duplicate_batch: bool


@dataclass(frozen=True, slots=True)
class AggregateQuery:
    axes: tuple[str, ...]
    filters: Mapping[str, Any]
    since: datetime | None
    until: datetime | None


class Storage(Protocol):
    applied_migrations: list[int]

    async def open(self) -> None:
        """Connect; apply pending migrations if built with ``migrate=True``, else insist on the
        latest schema (``migrations.SchemaMismatch``)."""

    async def schema_version(self) -> int: ...

    async def close(self) -> None: ...

    async def register_agent(self, agent_id: str, public_key: bytes, at: datetime) -> bool:
        """Store the key; return True if the agent is new. Re-registering is harmless."""

    async def get_agent(self, agent_id: str) -> AgentRecord | None: ...

    async def revoke_agent(self, agent_id: str, at: datetime) -> bool: ...

    async def store_batch(
        self, signed: SignedBatch, batch: Batch, received_at: datetime
    ) -> StoreResult:
        """Commit the batch, its new rows and their rollup increments in one transaction; return
        only after the commit. Safe to call concurrently from several processes on one database."""

    async def aggregate(
        self, query: AggregateQuery, *, from_raw: bool = False
    ) -> Sequence[Mapping[str, Any]]:
        """Answer from rollups when the query allows; ``from_raw`` reads raw rows (a cross-check)."""

    async def stored_batch_hash(self, batch_id: str) -> str | None:
        """SHA-256 of the payload stored under ``batch_id``, or None if there is none."""

    async def counts(self) -> dict[str, int]:
        """Row counts of ``agents``, ``batches`` and ``measurements``."""

    async def rollups(self, *, recompute: bool = False) -> dict[RollupKey, int]:
        """The rollup table, or (``recompute=True``) what it should hold, recomputed from raw rows."""
