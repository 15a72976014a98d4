"""What the collector needs from a database, independent of which one.

Backends: ``sqlite_store.SqliteStorage`` (embedded default). Each keeps the raw signed batch bytes
(verifiable forever), one narrow row per measurement for queries, and the agents' public keys.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from protocol import Batch, SignedBatch
from protocol.signed_requests import Refusal


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
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def register_agent(self, agent_id: str, public_key: bytes, at: datetime) -> bool:
        """Store the key; return True if the agent is new. Re-registering is harmless."""

    async def get_agent(self, agent_id: str) -> AgentRecord | None: ...

    async def revoke_agent(self, agent_id: str, at: datetime) -> bool: ...

    async def store_batch(
        self, signed: SignedBatch, batch: Batch, received_at: datetime
    ) -> StoreResult:
        """Commit the batch and its rows in one transaction; return only after the commit."""

    async def aggregate(self, query: AggregateQuery) -> Sequence[Mapping[str, Any]]: ...

    async def stored_batch_hash(self, batch_id: str) -> str | None:
        """SHA-256 of the payload stored under ``batch_id``, or None if there is none."""

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
