"""What the collector needs from a database, independent of which one.

Backends: ``sqlite_store.SqliteStorage`` (embedded default) and ``pg_store.PostgresStorage`` (shared
by several collector processes); ``open_storage(url)`` picks one. Each keeps the raw signed batch bytes
(verifiable forever), one narrow row per measurement for queries, the agents' public keys, and hourly
rollups updated in the same transaction as the rows they count.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

from protocol import Batch, SignedBatch
from protocol.signed_requests import Refusal

from .rollups import HOURLY, Rollup

#: Where an aggregate is read from, cheapest first (collector/aggregate.py ``cheapest_source``).
AggregateSource = Literal["places", "split", "hourly", "raw"]


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


@dataclass(frozen=True, slots=True)
class AgentOverview:
    """One agent as ``vantage operator agents`` shows it; context is from its latest measurement."""

    agent_id: str
    registered_at: str
    revoked_at: str | None
    last_seen: str | None
    batches: int
    measurements: int
    refusals: int
    country: str | None
    region: str | None
    asn: int | None
    carrier: str | None
    network_type: str | None


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
        self, query: AggregateQuery, *, source: AggregateSource | None = None
    ) -> Sequence[Mapping[str, Any]]:
        """Answer from the cheapest source the query allows; ``source`` forces one (the tests'
        cross-check; a source that cannot answer the query is a ``ValueError``)."""

    async def stored_batch_hash(self, batch_id: str) -> str | None:
        """SHA-256 of the payload stored under ``batch_id``, or None if there is none."""

    async def counts(self) -> dict[str, int]:
        """Row counts of ``agents``, ``batches`` and ``measurements``."""

    async def rollups(
        self, *, recompute: bool = False, rollup: Rollup = HOURLY
    ) -> dict[tuple[Any, ...], tuple[int, ...]]:
        """A rollup table as ``{key: values}``, or (``recompute=True``) what it should hold,
        recomputed from raw rows."""

    # --- operator documents and fleet overview (issue 7) ------------------------------------------
    # Documents are stored as the exact signed bytes; verification happens before these are called.

    async def put_keyset(self, version: int, document: bytes, at: datetime) -> bool:
        """Store key set ``version``; False if that version is already stored."""

    async def keysets(self) -> list[bytes]:
        """Every stored key set, oldest version first."""

    async def put_testlist(
        self,
        list_id: str,
        version: int,
        expires: datetime,
        document: bytes,
        sha256: str,
        at: datetime,
    ) -> int | None:
        """Store a list version atomically; None if stored, else the newer-or-equal version present."""

    async def current_testlists(self, now: datetime) -> list[bytes]:
        """The newest version of each list id, unless that version has expired."""

    async def record_refusals(
        self, agent_id: str, refusals: Sequence[Refusal], at: datetime
    ) -> int:
        """Append an agent's verified refusal reports; return how many were stored."""

    async def agent_overview(self) -> list[AgentOverview]:
        """Every agent with last-seen, batch/measurement/refusal counts and latest context."""

    # --- analysis and research API (issue 6) -----------------------------------------------------
    # Modules that own their tables (collector/disruptions.py) or build whitelisted queries
    # (collector/research.py) speak SQL written with ``?`` placeholders, portable to both backends.

    async def fetch(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of one read query (``?`` placeholders), under the read time limit."""

    async def execute(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> None:
        """Run write statements (``?`` placeholders) in one transaction; return after the commit."""

    def exclusive(self, name: str) -> AbstractAsyncContextManager[None]:
        """Hold a lock called ``name`` across every process using this database (e.g. so that
        two collectors sharing it never run detection passes at the same time)."""
