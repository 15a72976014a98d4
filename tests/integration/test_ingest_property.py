"""Property: any sequence of valid, duplicate and invalid uploads leaves raw rows = accepted measurements
and rollups = a recomputation from raw rows, on both backends."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ingest_support import NETWORKS, TARGETS, assert_rollups_match_raw, batch_of, measurement

from collector.aggregate import cheapest_source, parse_aggregate_query
from collector.backends import open_storage
from collector.errors import CollectorError
from collector.ingest import IngestPolicy, ingest
from collector.storage import AggregateSource
from protocol import SignedBatch, SigningKey, sign_batch, utc_now

KEYS = [SigningKey.generate() for _ in range(2)]
OUTSIDER = SigningKey.generate()

# One step: ("new", agent, sizes...) a fresh batch; ("resend", i) an earlier batch again;
# ("overlap", i) a new batch repeating half of an earlier batch's uids; ("bad", kind) an invalid upload.
step = st.one_of(
    st.tuples(
        st.just("new"), st.integers(0, 1), st.integers(1, 6), st.integers(0, 2), st.integers(0, 3)
    ),
    st.tuples(st.just("resend"), st.integers(0, 50)),
    st.tuples(st.just("overlap"), st.integers(0, 50)),
    st.tuples(st.just("bad"), st.sampled_from(["garbage", "tampered", "outsider", "future"])),
)


def build(
    choice: tuple, sent: list[tuple[SigningKey, list, SignedBatch]]
) -> tuple[bytes, list | None, SigningKey]:
    """The upload's bytes, and the measurements it would add if accepted (None: must be refused)."""
    now = utc_now()
    kind = choice[0]
    if kind == "new" or (not sent and kind in ("resend", "overlap")):
        key = KEYS[choice[1] if kind == "new" else 0]
        size, net, verdict_at = (choice[2], choice[3], choice[4]) if kind == "new" else (2, 0, 0)
        items = [
            measurement(
                key,
                at=now - timedelta(hours=j % 3, minutes=1),
                network=NETWORKS[net],
                target=TARGETS[j % 2],
                verdict=("ok", "anomaly", "confirmed", "failure")[(verdict_at + j) % 4],
            )
            for j in range(size)
        ]
        signed = sign_batch(key, batch_of(key, items))
        sent.append((key, items, signed))
        return signed.to_bytes(), items, key
    if kind == "resend":
        key, items, signed = sent[choice[1] % len(sent)]
        return signed.to_bytes(), items, key
    if kind == "overlap":
        key, items, _ = sent[choice[1] % len(sent)]
        mixed = [*items[: max(1, len(items) // 2)], measurement(key, at=now - timedelta(minutes=2))]
        signed = sign_batch(key, batch_of(key, mixed))
        sent.append((key, mixed, signed))
        return signed.to_bytes(), mixed, key
    key = KEYS[0]
    if choice[1] == "garbage":
        return b"\x93\x01\x02", None, key
    if choice[1] == "outsider":
        return (
            sign_batch(OUTSIDER, batch_of(OUTSIDER, [measurement(OUTSIDER)])).to_bytes(),
            None,
            key,
        )
    if choice[1] == "future":
        return (
            sign_batch(
                key, batch_of(key, [measurement(key, at=now + timedelta(hours=1))])
            ).to_bytes(),
            None,
            key,
        )
    good = sign_batch(key, batch_of(key, [measurement(key)]))
    return (
        SignedBatch(good.agent_id, good.payload[:-1] + b"\x00", good.signature).to_bytes(),
        None,
        key,
    )


async def run_sequence(db: str, steps: list[tuple]) -> None:
    storage = open_storage(db, migrate=True)
    await storage.open()
    try:
        for key in KEYS:
            await storage.register_agent(key.agent_id, key.public_key, utc_now())
        accepted: set[str] = set()
        sent: list[tuple[SigningKey, list, SignedBatch]] = []
        for choice in steps:
            body, items, _ = build(choice, sent)
            try:
                await ingest(storage, body, utc_now(), IngestPolicy())
            except CollectorError:
                assert items is None, f"a valid upload was refused: {choice}"
                continue
            assert items is not None, f"an invalid upload was accepted: {choice}"
            accepted.update(m.uid for m in items)
        counts = await storage.counts()
        assert counts["measurements"] == len(accepted)
        assert set((await assert_rollups_match_raw(storage)).values()) == {len(accepted)}
        for params in ANSWERS:  # agents move between networks here: distinct counts stay exact
            query = parse_aggregate_query(params)
            raw = [dict(r) for r in await storage.aggregate(query, source="raw")]
            first = SOURCES.index(cheapest_source(query))
            for source in SOURCES[first:-1]:
                assert [dict(r) for r in await storage.aggregate(query, source=source)] == raw
    finally:
        await storage.close()


ANSWERS = (
    {"by": "region,carrier,scope,hour"},
    {"by": "hour", "scope": "domestic"},
    {"by": "network_type,scope"},
    {"by": "verdict,hour"},
)
SOURCES: tuple[AggregateSource, ...] = ("places", "split", "hourly", "raw")

SETTINGS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@SETTINGS
@given(steps=st.lists(step, min_size=1, max_size=12))
def test_sqlite_rows_and_rollups_match_what_was_accepted(
    tmp_path_factory, steps: list[tuple]
) -> None:
    db = str(tmp_path_factory.mktemp("prop") / "c.db")
    asyncio.run(run_sequence(db, steps))


@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=st.lists(step, min_size=1, max_size=12))
def test_postgresql_rows_and_rollups_match_what_was_accepted(
    postgres_server, steps: list[tuple]
) -> None:
    asyncio.run(run_sequence(postgres_server.new_database(), steps))
