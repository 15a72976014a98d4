"""/metrics counts what happened; the agent checks receipts against a pinned key; logs hold no address."""

from __future__ import annotations

import base64
import json
import logging
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest
from ingest_support import measurement, registration_body, signed

from agent.spool import Spool
from agent.uploader import drain
from collector.app import CollectorConfig
from collector.logs import JsonLineFormatter
from collector.server import start_collector
from protocol import SigningKey, check_receipt, utc_now


async def register(http: aiohttp.ClientSession, key: SigningKey) -> None:
    headers = {"Content-Type": "application/json"}
    async with http.post("/api/v1/agents", data=registration_body(key), headers=headers) as r:
        assert r.status == 201


def metric(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        head, _, value = line.rpartition(" ")
        if head == (f"{name}{{{wanted}}}" if labels else name):
            return float(value)
    return 0.0


async def test_metrics_count_ingest_rejects_latency_and_lag(tmp_path: Path) -> None:
    running = await start_collector(CollectorConfig(tmp_path / "c.db"))
    try:
        key = SigningKey.generate()
        async with aiohttp.ClientSession(running.url) as http:
            await register(http, key)
            batch = signed(
                key, [measurement(key, at=utc_now() - timedelta(minutes=5)) for _ in range(3)]
            )
            for body in (batch.to_bytes(), batch.to_bytes(), b"\xc1"):
                await http.post(
                    "/api/v1/batches", data=body, headers={"Content-Type": "application/msgpack"}
                )
            response = await http.get("/metrics")
            assert response.status == 200 and response.content_type == "text/plain"
            text = await response.text()
    finally:
        await running.stop()
    assert metric(text, "vantage_ingest_batches_total", result="stored") == 1
    assert metric(text, "vantage_ingest_batches_total", result="duplicate") == 1
    assert metric(text, "vantage_ingest_measurements_total", result="stored") == 3
    assert metric(text, "vantage_ingest_measurements_total", result="duplicate") == 3
    assert (
        metric(text, "vantage_ingest_rejects_total", route="/api/v1/batches", reason="undecodable")
        == 1
    )
    assert (
        metric(
            text,
            "vantage_http_request_duration_seconds_count",
            route="/api/v1/batches",
            method="POST",
        )
        == 3
    )
    assert metric(text, "vantage_ingest_spool_lag_seconds_count") == 3
    assert (
        metric(text, "vantage_ingest_spool_lag_seconds_bucket", le="1.0") == 0
    )  # measured 5 min ago
    assert metric(text, "vantage_ingest_spool_lag_seconds_bucket", le="900.0") == 3
    assert "127.0.0.1" not in text


async def fill_spool(spool_dir: Path, key: SigningKey, n: int) -> Spool:
    spool = Spool(spool_dir)
    for _ in range(n):
        spool.add(measurement(key))
    return spool


async def test_agent_verifies_receipts_with_its_pinned_key(tmp_path: Path) -> None:
    running = await start_collector(CollectorConfig(tmp_path / "c.db"))
    try:
        async with aiohttp.ClientSession() as http:
            served = await (await http.get(running.url + "/api/v1/collector-key")).json()
        pinned = base64.b64decode(served["public_key"])
        key = SigningKey.generate()
        spool = await fill_spool(tmp_path / "spool", key, 3)
        report = await drain(spool, key, running.url, collector_key=pinned)
        assert (report.errors, report.stored, report.left) == ([], 3, 0)
        kept = list((tmp_path / "spool" / "receipts").glob("*.json"))
        assert len(kept) == 1
        receipt = json.loads(kept[0].read_text())
        check_receipt(
            receipt, pinned, batch_id=kept[0].stem, payload_sha256=receipt["payload_sha256"]
        )

        # a collector that signs with another key (or a man in the middle): the batch stays queued
        other = await fill_spool(tmp_path / "spool2", key, 2)
        wrong = SigningKey.generate().public_key
        report = await drain(other, key, running.url, collector_key=wrong)
        assert report.left == 1 and report.batches == 0
        assert "receipt does not verify" in report.errors[0]
    finally:
        await running.stop()


def test_json_log_lines_are_structured(caplog: pytest.LogCaptureFixture) -> None:
    record = logging.makeLogRecord(
        {
            "name": "vantage.collector",
            "msg": "batch %s",
            "args": ("ab",),
            "levelno": 20,
            "levelname": "INFO",
            "batch_id": "ab",
        }
    )
    line = json.loads(JsonLineFormatter().format(record))
    assert line["message"] == "batch ab" and line["batch_id"] == "ab" and line["level"] == "info"


async def test_collector_logs_never_contain_the_client_address(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    running = await start_collector(CollectorConfig(tmp_path / "c.db"), access_log=True)
    try:
        key = SigningKey.generate()
        async with aiohttp.ClientSession(running.url) as http:
            await register(http, key)
            await http.post(
                "/api/v1/batches",
                data=signed(key, [measurement(key)]).to_bytes(),
                headers={"Content-Type": "application/msgpack"},
            )
            await http.post(
                "/api/v1/batches", data=b"junk", headers={"Content-Type": "application/msgpack"}
            )
    finally:
        await running.stop()
    assert any("batch" in r.getMessage() for r in caplog.records)
    assert all("127.0.0.1" not in r.getMessage() for r in caplog.records)
