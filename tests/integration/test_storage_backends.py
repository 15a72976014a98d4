"""One storage suite, two real backends (SQLite file, throwaway PostgreSQL server): same expectations."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from ingest_support import (
    NETWORKS,
    TARGETS,
    assert_rollups_match_raw,
    batch_of,
    measurement,
    total,
)

from collector.aggregate import build_aggregate_sql, cheapest_source, parse_aggregate_query
from collector.backends import open_storage, parse_storage_url
from collector.migrations import LATEST, MIGRATIONS, SchemaMismatch
from collector.storage import Storage
from protocol import SigningKey, sign_batch, utc_now

HOUR = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


@pytest.fixture
async def storage(storage_url: str) -> AsyncIterator[Storage]:
    store = open_storage(storage_url, migrate=True)
    await store.open()
    yield store
    await store.close()


async def store(storage: Storage, key: SigningKey, items: list, batch_id: str | None = None):
    batch = batch_of(key, items, batch_id)
    return await storage.store_batch(sign_batch(key, batch), batch, utc_now())


async def registered(storage: Storage) -> SigningKey:
    key = SigningKey.generate()
    assert await storage.register_agent(key.agent_id, key.public_key, utc_now())
    return key


async def test_agents_register_once_and_revoke(storage: Storage) -> None:
    key = await registered(storage)
    assert not await storage.register_agent(key.agent_id, key.public_key, utc_now())
    record = await storage.get_agent(key.agent_id)
    assert record is not None and record.public_key == key.public_key and record.revoked_at is None
    assert await storage.revoke_agent(key.agent_id, utc_now())
    assert not await storage.revoke_agent(key.agent_id, utc_now())
    revoked = await storage.get_agent(key.agent_id)
    assert revoked is not None and revoked.revoked_at is not None
    assert await storage.get_agent("0" * 32) is None


async def test_store_keeps_raw_bytes_rows_and_rollups(storage: Storage) -> None:
    key = await registered(storage)
    items = [
        measurement(key, at=HOUR + timedelta(minutes=i), verdict=v)
        for i, v in enumerate(["ok", "anomaly", "ok"])
    ]
    batch = batch_of(key, items)
    signed = sign_batch(key, batch)
    result = await storage.store_batch(signed, batch, utc_now())
    assert (result.stored, result.duplicates, result.duplicate_batch) == (3, 0, False)
    assert await storage.stored_batch_hash(batch.batch_id) == signed.payload_sha256
    assert (await storage.counts())["measurements"] == 3
    assert set((await assert_rollups_match_raw(storage)).values()) == {3}
    bucket = {k[0] for k in await storage.rollups()}
    assert bucket == {"2026-11-20T10:00:00Z"}


async def test_duplicates_count_once(storage: Storage) -> None:
    key = await registered(storage)
    items = [measurement(key, at=HOUR) for _ in range(4)]
    first = await store(storage, key, items)
    again = await store(storage, key, items, batch_id=first.batch_id)
    assert again.duplicate_batch and again.stored == 0
    # a new batch repeating two old uids (a crash between spool steps) stores only the new ones
    overlap = await store(storage, key, [*items[:2], measurement(key, at=HOUR)])
    assert (overlap.stored, overlap.duplicates, overlap.duplicate_batch) == (1, 2, False)
    assert (await storage.counts())["measurements"] == 5
    assert set((await assert_rollups_match_raw(storage)).values()) == {5}


async def test_concurrent_writers_are_exact(storage: Storage) -> None:
    keys = [await registered(storage) for _ in range(3)]
    shared = [measurement(keys[0], at=HOUR) for _ in range(20)]
    batch = batch_of(keys[0], shared)
    signed = sign_batch(keys[0], batch)
    others = [
        [measurement(k, at=HOUR + timedelta(hours=1), network=NETWORKS[i]) for _ in range(30)]
        for i, k in enumerate(keys)
    ]
    results = await asyncio.gather(
        *(storage.store_batch(signed, batch, utc_now()) for _ in range(5)),
        *(store(storage, k, o) for k, o in zip(keys, others, strict=True)),
        # the same measurements in a different batch, at the same time
        store(storage, keys[0], shared[:10]),
    )
    assert sum(r.stored for r in results) == 20 + 90
    assert sum(1 for r in results[:5] if not r.duplicate_batch) == 1
    assert (await storage.counts())["measurements"] == 110
    assert set((await assert_rollups_match_raw(storage)).values()) == {110}


async def test_a_failing_batch_fails_alone(storage: Storage) -> None:
    """Concurrent stores may share a transaction (SQLite's group commit): one batch that the database
    refuses (here: its agent is unknown, a foreign-key violation) must not take the others down."""
    keys = [await registered(storage) for _ in range(4)]
    stranger = SigningKey.generate()  # never registered
    goods = [batch_of(k, [measurement(k, at=HOUR) for _ in range(5)]) for k in keys]
    bad = batch_of(stranger, [measurement(stranger, at=HOUR)])
    stores = [
        storage.store_batch(sign_batch(k, b), b, utc_now())
        for k, b in zip(keys, goods, strict=True)
    ]
    stores.insert(2, storage.store_batch(sign_batch(stranger, bad), bad, utc_now()))
    results = await asyncio.gather(*stores, return_exceptions=True)
    assert isinstance(results[2], Exception)
    assert [r.stored for r in results if not isinstance(r, BaseException)] == [5, 5, 5, 5]
    assert await storage.counts() == {"agents": 4, "batches": 4, "measurements": 20}
    assert set((await assert_rollups_match_raw(storage)).values()) == {20}
    # and the writer keeps working
    again = await store(storage, keys[0], [measurement(keys[0], at=HOUR)])
    assert again.stored == 1


#: (query, the cheapest source that can answer it)
QUERIES = [
    ({}, "split"),
    ({"by": "region,carrier,scope"}, "split"),
    ({"by": "region,carrier,scope,hour", "since": "2026-11-20T11:00:00Z"}, "places"),
    ({"by": "hour,country", "scope": "domestic"}, "places"),
    ({"by": "scope,hour"}, "places"),
    ({"by": "hour,network_type", "country": "XA"}, "split"),
    ({"by": "day,country", "network_type": "wired", "scope": "domestic"}, "split"),
    ({"by": "carrier", "region": "XA-NORTH", "asn": "64500"}, "split"),
    ({"by": "day,verdict,blocking"}, "hourly"),
    ({"by": "test", "asn": "AS64500", "scope": "international"}, "hourly"),
    ({"by": "region", "verdict": "ok"}, "hourly"),
    ({"by": "region", "since": "2026-11-20T10:00:00Z", "until": "2026-11-20T12:00:00Z"}, "split"),
    ({"by": "domain,category"}, "raw"),  # not rollup dimensions: raw rows
    ({"by": "region", "since": "2026-11-20T10:30:00Z"}, "raw"),  # not on an hour: raw rows
]
SOURCES = ("places", "split", "hourly", "raw")


@pytest.mark.parametrize(
    ("params", "cheapest"),
    QUERIES,
    ids=lambda p: ",".join(f"{k}={v}" for k, v in p.items()) or "all" if isinstance(p, dict) else p,
)
async def test_rollup_answers_equal_raw_answers(
    storage: Storage, params: dict[str, str], cheapest: str
) -> None:
    keys = [await registered(storage) for _ in range(3)]
    for i, key in enumerate(keys):
        items = [
            measurement(
                key,
                at=HOUR + timedelta(minutes=37 * j),
                network=NETWORKS[i],
                target=TARGETS[j % 2],
                verdict=("ok", "anomaly", "confirmed", "failure")[j % 4],
            )
            for j in range(12)
        ]
        await store(storage, key, items)
    # one agent that moved between networks within an hour: distinct agents must not double-count
    roaming = await registered(storage)
    await store(
        storage,
        roaming,
        [
            measurement(roaming, at=HOUR + timedelta(minutes=m), network=NETWORKS[m % 3])
            for m in (1, 2, 3)
        ],
    )
    query = parse_aggregate_query(params)
    assert cheapest_source(query) == cheapest
    raw = [dict(r) for r in await storage.aggregate(query, source="raw")]
    assert raw, "the query should select something"
    for source in SOURCES[SOURCES.index(cheapest) :]:
        assert [dict(r) for r in await storage.aggregate(query, source=source)] == raw, source
    assert [dict(r) for r in await storage.aggregate(query)] == raw
    for source in SOURCES[: SOURCES.index(cheapest)]:
        with pytest.raises(ValueError, match="cannot answer"):
            build_aggregate_sql(query, lambda n: "?", source=source)  # type: ignore[arg-type]
    if set(params) <= {"by"}:
        assert total(raw) == 39


async def test_empty_database_answers_like_raw(storage: Storage) -> None:
    for params in ({}, {"by": "region,carrier,scope,hour"}, {"by": "region"}, {"by": "verdict"}):
        query = parse_aggregate_query(params)
        raw = [dict(r) for r in await storage.aggregate(query, source="raw")]
        for source in SOURCES[SOURCES.index(cheapest_source(query)) :]:
            assert [dict(r) for r in await storage.aggregate(query, source=source)] == raw


async def _apply_v1_only(storage_url: str) -> None:
    url = parse_storage_url(storage_url)
    v1 = MIGRATIONS[0]
    if url.backend == "sqlite":
        with sqlite3.connect(url.target) as conn:
            conn.executescript(
                v1.sqlite
                + "CREATE TABLE schema_version (version INTEGER NOT NULL);INSERT INTO schema_version VALUES (1);"
            )
    else:
        conn = await asyncpg.connect(url.target)
        await conn.execute(
            v1.postgresql
            + ";CREATE TABLE schema_version (version INTEGER NOT NULL);INSERT INTO schema_version VALUES (1);"
        )
        await conn.close()


async def test_migration_backfills_rollups_from_old_rows(storage_url: str) -> None:
    await _apply_v1_only(storage_url)
    old = open_storage(storage_url, migrate=False)
    with pytest.raises(SchemaMismatch, match="collector migrate"):
        await old.open()
    # write rows the way version 1 did (no rollups), then migrate
    v1 = open_storage(storage_url, migrate=True)
    key = SigningKey.generate()
    items = [measurement(key, at=HOUR + timedelta(hours=i % 3)) for i in range(9)]
    url = parse_storage_url(storage_url)
    from collector.sqlite_store import MEASUREMENT_COLUMNS, measurement_row

    batch = batch_of(key, items)
    signed = sign_batch(key, batch)
    rows = [measurement_row(m, batch.batch_id, "2026-11-20T13:00:00.000000Z") for m in items]
    agent = (key.agent_id, key.public_key, "2026-11-20T13:00:00.000000Z")
    batch_row = (
        batch.batch_id,
        key.agent_id,
        "2026-11-20T13:00:00.000000Z",
        signed.payload,
        signed.signature,
        signed.payload_sha256,
        9,
    )
    if url.backend == "sqlite":
        with sqlite3.connect(url.target) as conn:
            conn.execute(
                "INSERT INTO agents (agent_id, public_key, registered_at) VALUES (?, ?, ?)", agent
            )
            conn.execute("INSERT INTO batches VALUES (?, ?, ?, ?, ?, ?, ?)", batch_row)
            conn.executemany(
                f"INSERT INTO measurements ({MEASUREMENT_COLUMNS}) VALUES ({', '.join('?' * 24)})",
                rows,
            )
    else:
        conn = await asyncpg.connect(url.target)
        await conn.execute(
            "INSERT INTO agents (agent_id, public_key, registered_at) VALUES ($1, $2, $3)", *agent
        )
        await conn.execute("INSERT INTO batches VALUES ($1, $2, $3, $4, $5, $6, $7)", *batch_row)
        await conn.executemany(
            f"INSERT INTO measurements ({MEASUREMENT_COLUMNS}) VALUES ({', '.join(f'${i}' for i in range(1, 25))})",
            rows,
        )
        await conn.close()
    await v1.open()
    try:
        assert v1.applied_migrations == list(range(2, LATEST + 1))
        assert await v1.schema_version() == LATEST
        assert len(await v1.rollups()) == 3
        assert set((await assert_rollups_match_raw(v1)).values()) == {9}
    finally:
        await v1.close()
    again = open_storage(storage_url, migrate=True)
    await again.open()
    assert again.applied_migrations == []
    await again.close()


async def test_operator_documents_and_agent_overview(storage: Storage) -> None:
    """Key sets, test lists, refusals and the fleet overview behave alike on both backends."""
    from protocol import format_time
    from protocol.signed_requests import Refusal

    now = utc_now()
    assert await storage.put_keyset(1, b"keyset-1", now)
    assert not await storage.put_keyset(1, b"keyset-1-again", now)
    assert await storage.put_keyset(2, b"keyset-2", now)
    assert await storage.keysets() == [b"keyset-1", b"keyset-2"]

    later = now + timedelta(days=7)
    assert await storage.put_testlist("national", 1, later, b"n1", "a" * 64, now) is None
    assert await storage.put_testlist("national", 2, later, b"n2", "b" * 64, now) is None
    assert await storage.put_testlist("national", 2, later, b"n2x", "c" * 64, now) == 2
    assert await storage.put_testlist("national", 1, later, b"n1x", "d" * 64, now) == 2
    assert (
        await storage.put_testlist("old", 1, now - timedelta(days=1), b"o1", "e" * 64, now) is None
    )
    assert await storage.current_testlists(now) == [b"n2"]  # newest per id, expired dropped

    key = await registered(storage)
    quiet = await registered(storage)
    await store(storage, key, [measurement(key, at=HOUR), measurement(key, at=HOUR)])
    refusal = Refusal(format_time(now), "rollback", "version 1 is older than 2", "national", 1)
    assert await storage.record_refusals(key.agent_id, [refusal, refusal], now) == 2
    overview = {row.agent_id: row for row in await storage.agent_overview()}
    assert set(overview) == {key.agent_id, quiet.agent_id}
    busy = overview[key.agent_id]
    assert (busy.batches, busy.measurements, busy.refusals) == (1, 2, 2)
    assert busy.last_seen is not None and busy.country is not None and busy.asn is not None
    idle = overview[quiet.agent_id]
    assert (idle.batches, idle.measurements, idle.refusals, idle.last_seen) == (0, 0, 0, None)
