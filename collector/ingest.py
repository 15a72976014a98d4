"""Ingest one uploaded batch: decode under limits, check the agent, verify, validate, store.

The order matters: cheap checks first (size, envelope shape), then the database lookup of the agent's
key, then the signature over the exact payload bytes, then the per-agent rate limit (after the
signature, so nobody can spend another agent's allowance by sending junk under its id), and only then
the full schema of the payload, so an unauthenticated peer cannot make us parse much.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from protocol import (
    DEFAULT_LIMITS,
    Batch,
    DecodeLimits,
    RemoteProtocolError,
    SignedBatch,
    decode_signed_batch,
)

from .errors import Conflict, Forbidden, TooManyRequests, Unprocessable, from_protocol_error
from .ratelimit import RateLimiter, retry_after_header
from .storage import Storage, StoreResult
from .whoami import check_context_tokens


@dataclass(frozen=True, slots=True)
class Accepted:
    """A committed upload: what was verified and what storing it did."""

    signed: SignedBatch
    batch: Batch
    result: StoreResult

    @property
    def payload_sha256(self) -> str:
        return self.signed.payload_sha256


@dataclass(frozen=True, slots=True)
class IngestPolicy:
    limits: DecodeLimits = DEFAULT_LIMITS
    # Agents keep measuring through a shutdown and upload later, so old is fine up to a point.
    max_age: timedelta = timedelta(days=30)
    # Clocks on volunteers' phones drift; more than this ahead of us is a broken clock or a forgery.
    max_future_skew: timedelta = timedelta(minutes=10)


def check_times(batch: Batch, now: datetime, policy: IngestPolicy) -> None:
    for m in batch.measurements:
        if m.measured_at > now + policy.max_future_skew:
            raise Unprocessable(
                f"measurement {m.uid} is dated in the future ({m.measured_at.isoformat()})",
                code="time_window",
            )
        if m.measured_at < now - policy.max_age:
            raise Unprocessable(
                f"measurement {m.uid} is older than {policy.max_age.days} days", code="time_window"
            )


async def ingest_batch(
    storage: Storage,
    body: bytes,
    now: datetime,
    policy: IngestPolicy,
    context_keys: Sequence[bytes] = (),
) -> StoreResult:
    return (await ingest(storage, body, now, policy, context_keys=context_keys)).result


async def ingest(
    storage: Storage,
    body: bytes,
    now: datetime,
    policy: IngestPolicy,
    *,
    agent_limiter: RateLimiter | None = None,
    context_keys: Sequence[bytes] = (),
) -> Accepted:
    try:
        signed = decode_signed_batch(body, policy.limits)
        agent = await storage.get_agent(signed.agent_id)
        if agent is None:
            raise Forbidden(
                f"agent {signed.agent_id} is not registered; POST its key to /api/v1/agents first",
                code="unknown_agent",
            )
        if agent.revoked_at is not None:
            raise Forbidden(f"agent {signed.agent_id} was revoked", code="revoked")
        signed.verify_signature(agent.public_key)
        if agent_limiter is not None:
            wait = agent_limiter.check(signed.agent_id)
            if wait > 0:
                raise TooManyRequests(
                    f"agent {signed.agent_id} uploads too fast; retry later",
                    retry_after=retry_after_header(wait),
                )
        batch = signed.decode_verified(policy.limits)  # the signature was checked above
    except RemoteProtocolError as exc:
        raise from_protocol_error(exc) from exc
    check_times(batch, now, policy)
    check_context_tokens(batch, context_keys)  # whoami tokens: forged or expired -> 4xx
    result = await storage.store_batch(signed, batch, now)
    if result.duplicate_batch:
        stored_hash = await storage.stored_batch_hash(batch.batch_id)
        if stored_hash != signed.payload_sha256:
            raise Conflict(
                f"batch {batch.batch_id} was already stored with different content",
                code="batch_conflict",
            )
    return Accepted(signed, batch, result)
