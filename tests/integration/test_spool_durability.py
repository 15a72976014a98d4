"""The spool under kill -9, limits and upgrades: nothing recorded is lost, nothing sent twice."""

from __future__ import annotations

import asyncio
import json
import random
import signal
from datetime import timedelta
from pathlib import Path

import pytest
from service_helpers import (
    batch_measurement_total,
    make_agent,
    start_lab,
    stored_measurements,
    stored_payloads,
    vantage,
)

from agent.errors import ConfigError
from agent.spool import LAYOUT_VERSION, Spool, SpoolLimits
from agent.uploader import drain
from collector.app import CollectorConfig
from collector.server import start_collector
from protocol import (
    Measurement,
    NetworkContext,
    SigningKey,
    Target,
    Verdict,
    canonical_decode,
    canonical_encode,
    new_uid,
    sign_batch,
    utc_now,
)
from protocol.messages import Batch


def measurement(
    key: SigningKey, age: timedelta = timedelta(0), url: str = "http://a.test/"
) -> Measurement:
    return Measurement(
        uid=new_uid(),
        agent_id=key.agent_id,
        measured_at=utc_now() - age,
        runtime=0.1,
        network=NetworkContext("XA", "XA-NORTH", 64500, "MobiNet"),
        target=Target(url, "domestic"),  # type: ignore[arg-type]
        verdict=Verdict.OK,
    )


async def test_kill_9_while_writing_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    lab = await start_lab()
    collector = await start_collector(CollectorConfig(db_path=tmp_path / "collector.db"))
    try:
        targets = lab.targets_csv(tmp_path / "targets.csv")
        config, _ = make_agent(tmp_path / "agent", collector.url, lab.resolver)
        recorded: set[str] = set()
        rng = random.Random(4)
        for _ in range(6):
            process = await vantage(
                "agent", "run", "--config", str(config.path), "--targets", str(targets),
                "--interval", "0.05", "--jitter", "0", "--pulse-interval", "0.3",
                "--upload-interval", "0.2",
            )  # fmt: skip
            assert process.stderr is not None
            deadline = asyncio.get_running_loop().time() + rng.uniform(0.8, 2.5)
            while (left := deadline - asyncio.get_running_loop().time()) > 0:
                try:
                    line = await asyncio.wait_for(process.stderr.readline(), left)
                except TimeoutError:
                    break
                if not line:
                    break
                parts = line.decode().split()
                if parts[:1] == ["measured"]:
                    recorded.add(parts[1])  # printed only after the spool write returned
            process.send_signal(signal.SIGKILL)
            await process.wait()
        assert len(recorded) > 20, "the agent should have measured between kills"
        spool = Spool(config.spool_dir)  # opens cleanly after every kind of interruption
        assert not list(spool.root.rglob(".*.tmp")), "no half-written file survives an open"
        key = SigningKey.from_raw(config.key_file.read_bytes())
        report = await drain(spool, key, collector.url)
        assert report.left == 0 and not report.errors
        stored = stored_measurements(tmp_path / "collector.db")
        assert recorded <= set(stored), "a measurement recorded before a kill was lost"
        # Every stored batch carried only measurements no other batch carried: no resends of a
        # measurement under a new batch id, even when the kill fell inside packing.
        assert batch_measurement_total(tmp_path / "collector.db") == len(stored)
    finally:
        await collector.stop()
        await lab.stop()


def test_crash_between_outbox_write_and_pending_delete_is_repaired(tmp_path: Path) -> None:
    key = SigningKey.generate()
    spool = Spool(tmp_path / "spool")
    items = [measurement(key) for _ in range(3)]
    for m in items:
        spool.add(m)
    # What pack() does, stopped by a "crash" right after the batch reached the outbox.
    (spool.root / ".packing").write_bytes(b"")
    signed = sign_batch(key, Batch(new_uid(), key.agent_id, utc_now(), tuple(items)))
    (spool.outbox / "x.b").write_bytes(signed.to_bytes())
    (spool.pending / f".{new_uid()}.m.tmp").write_bytes(b"half")
    reopened = Spool(tmp_path / "spool")
    assert reopened.counts()["pending"] == 0, "packed measurements must not be packed again"
    assert reopened.counts()["outbox"] == 1
    assert not (spool.root / ".packing").exists()
    assert not list(spool.pending.glob(".*.tmp"))


def test_pending_without_marker_is_kept(tmp_path: Path) -> None:
    key = SigningKey.generate()
    spool = Spool(tmp_path / "spool")
    spool.add(measurement(key))
    assert Spool(tmp_path / "spool").counts()["pending"] == 1


def test_age_and_size_limits_drop_oldest_and_count(tmp_path: Path) -> None:
    key = SigningKey.generate()
    spool = Spool(tmp_path / "spool", SpoolLimits(max_bytes=10**9, max_age=timedelta(days=1)))
    old = measurement(key)
    spool.add(old)
    spool.add(measurement(key))
    later = utc_now() + timedelta(days=1, seconds=1)  # the first two are now over a day old
    assert spool.enforce_limits(later) == 2
    assert spool.dropped_total == 2
    # Size: keep the newest that fit.
    for _ in range(10):
        spool.add(measurement(key))
    spool.pack(key, batch_size=4)  # outbox: 4 + 4 + 2, oldest first
    for _ in range(5):
        spool.add(measurement(key))
    sizes = sorted(p.stat().st_size for p in spool.outbox.glob("*.b"))
    pending_bytes = sum(p.stat().st_size for p in spool.pending.glob("*.m"))
    spool.limits = SpoolLimits(max_bytes=pending_bytes + sizes[0] + 10)
    dropped = spool.enforce_limits()
    assert spool.counts()["pending"] == 5, "the newest measurements are kept"
    assert dropped in (8, 10) and spool.dropped_total == 2 + dropped
    assert {"dropped_age", "dropped_size"} <= set(json.loads(spool.stats_path.read_text()))


async def test_dropped_count_reaches_the_collector_signed(tmp_path: Path) -> None:
    collector = await start_collector(CollectorConfig(db_path=tmp_path / "collector.db"))
    try:
        key = SigningKey.generate()
        spool = Spool(tmp_path / "spool", SpoolLimits(max_age=timedelta(hours=1)))
        spool.add(measurement(key))
        spool.enforce_limits(utc_now() + timedelta(hours=2))
        spool.add(measurement(key))
        report = await drain(spool, key, collector.url)
        assert report.batches == 1 and report.stored == 1
        (payload,) = stored_payloads(tmp_path / "collector.db")
        assert canonical_decode(payload)["dropped_total"] == 1
    finally:
        await collector.stop()


def test_layout_versions(tmp_path: Path) -> None:
    root = tmp_path / "spool"
    (root / "pending").mkdir(parents=True)  # a walking-skeleton (layout 1) spool: no VERSION
    key = SigningKey.generate()
    m = measurement(key)
    (root / "pending" / f"{m.uid}.m").write_bytes(canonical_encode(m.to_wire()))
    spool = Spool(root)
    assert (root / "VERSION").read_text().strip() == str(LAYOUT_VERSION)
    assert [x.uid for _, x in spool.pending_measurements()] == [m.uid]
    (root / "VERSION").write_text(f"{LAYOUT_VERSION + 1}\n")
    with pytest.raises(ConfigError, match="newer than this agent"):
        Spool(root)


def test_corrupt_files_are_quarantined_not_fatal(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    (spool.pending / f"{new_uid()}.m").write_bytes(b"\xc1garbage")
    (spool.outbox / f"{new_uid()}.b").write_bytes(b"\x00")
    assert list(spool.pending_measurements()) == []
    assert list(spool.outbox_items()) == []
    assert spool.counts()["corrupt"] == 2
