"""Builders for collector storage and ingest tests: valid signed batches with chosen dimensions.

Importable as ``ingest_support`` (pytest puts tests/ on sys.path). Every builder returns a valid object.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from protocol import (
    Batch,
    Blocking,
    DnsResult,
    HttpResult,
    Measurement,
    NetworkContext,
    SignedBatch,
    SigningKey,
    Target,
    Verdict,
    make_registration,
    new_uid,
    sign_batch,
    utc_now,
)
from protocol import failures as F

NETWORKS = (
    NetworkContext("XA", "XA-NORTH", 64500, "MobiNet", "mobile"),
    NetworkContext("XA", "XA-EAST", 64500, "MobiNet", "mobile"),
    NetworkContext("XA", "XA-NORTH", 64501, "FiberLine", "wired"),
)
TARGETS = (
    Target("https://news.example.test/", "international", "NEWS"),
    Target("http://bank.example.test/", "domestic", "FINANCE"),
)


def measurement(
    key: SigningKey,
    *,
    at: datetime | None = None,
    network: NetworkContext = NETWORKS[0],
    target: Target = TARGETS[0],
    verdict: str = "ok",
    uid: str | None = None,
) -> Measurement:
    blocked = verdict != "ok"
    return Measurement(
        uid=uid or new_uid(),
        agent_id=key.agent_id,
        measured_at=at or utc_now() - timedelta(minutes=5),
        runtime=0.25,
        network=network,
        target=target,
        verdict=Verdict(verdict),
        blocking=Blocking.DNS if blocked else None,
        failure=F.DNS_NXDOMAIN if blocked else None,
        dns=DnsResult(
            "system", () if blocked else ("198.18.0.10",), F.DNS_NXDOMAIN if blocked else None, 0.01
        ),
        http=None if blocked else HttpResult(target.url, 200, 1024, None, "Example", None, 0.1),
    )


def batch_of(
    key: SigningKey, measurements: list[Measurement], batch_id: str | None = None
) -> Batch:
    return Batch(batch_id or new_uid(), key.agent_id, utc_now(), tuple(measurements))


def signed(
    key: SigningKey, measurements: list[Measurement], batch_id: str | None = None
) -> SignedBatch:
    return sign_batch(key, batch_of(key, measurements, batch_id))


def registration_body(key: SigningKey) -> bytes:
    return json.dumps(make_registration(key, utc_now())).encode()


def total(rows: list[dict[str, Any]], column: str = "measurements") -> int:
    return sum(int(row[column] or 0) for row in rows)


async def assert_rollups_match_raw(storage: Any) -> dict[str, int]:
    """Every rollup table equals its recomputation from raw rows; return the sum of n of each table
    that counts measurements."""
    from collector.rollups import ROLLUPS

    sums = {}
    for rollup in ROLLUPS:
        held = await storage.rollups(rollup=rollup)
        assert held == await storage.rollups(rollup=rollup, recompute=True), rollup.table
        if rollup.values[:1] == ("n",):
            sums[rollup.table] = sum(values[0] for values in held.values())
    return sums
