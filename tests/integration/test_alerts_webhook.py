"""A serving collector detects on its own schedule and posts signed alerts to a webhook that fails
first (retried with backoff); a receiver verifies them with the key from /api/v1/collector-key."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from ingest_support import NETWORKS, TARGETS, batch_of, measurement

from collector.alerts import SIGNATURE_HEADER, verify_alert
from collector.app import CollectorConfig
from collector.backends import open_storage
from collector.detector import DetectorSettings
from collector.server import start_collector
from protocol import SignatureError, SigningKey, sign_batch, utc_now


async def seed(db: Path) -> None:
    """One agent per network, this hour: international fails on XA-NORTH MobiNet only."""
    storage = open_storage(db, migrate=True)
    await storage.open()
    at = utc_now() - timedelta(seconds=30)
    for network in NETWORKS:
        key = SigningKey.generate()
        await storage.register_agent(key.agent_id, key.public_key, utc_now())
        items = [
            measurement(
                key,
                at=at,
                network=network,
                target=target,
                verdict="anomaly" if network is NETWORKS[0] and target is TARGETS[0] else "ok",
            )
            for target in TARGETS
            for _ in range(5)
        ]
        batch = batch_of(key, items)
        await storage.store_batch(sign_batch(key, batch), batch, utc_now())
    await storage.close()


async def test_webhook_gets_a_signed_alert_despite_a_failing_first_try(tmp_path: Path) -> None:
    received: list[tuple[bytes, str]] = []
    got = asyncio.Event()

    async def hook(request: web.Request) -> web.Response:
        received.append((await request.read(), request.headers.get(SIGNATURE_HEADER, "")))
        if len(received) == 1:
            return web.Response(status=503)  # the receiver is down the first time
        got.set()
        return web.Response(status=204)

    receiver_app = web.Application()
    receiver_app.router.add_post("/hook", hook)
    runner = web.AppRunner(receiver_app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]

    db = tmp_path / "c.db"
    await seed(db)
    config = CollectorConfig(
        db,
        detect_interval=0.2,
        detector=DetectorSettings(min_agents=1),
        webhooks=(f"http://127.0.0.1:{port}/hook",),
    )
    collector = await start_collector(config)
    try:
        await asyncio.wait_for(got.wait(), timeout=20)
        async with (
            aiohttp.ClientSession(collector.url) as http,
            http.get("/api/v1/collector-key") as response,
        ):
            public_key = base64.b64decode((await response.json())["public_key"])
    finally:
        await collector.stop()
        await runner.cleanup()
    first, second = received[0], received[-1]
    assert first == second  # the retry is the same signed body
    body, signature = second
    verify_alert(public_key, body, signature)
    with pytest.raises(SignatureError):
        verify_alert(public_key, body.replace(b"XA-NORTH", b"XA-SOUTH"), signature)
    alert = json.loads(body)
    assert alert["event"] == "open"
    item = alert["disruption"]
    assert (item["pattern"], item["region"], item["asn"]) == (
        "international_cut",
        "XA-NORTH",
        64500,
    )
    assert item["evidence"]["baseline_source"] == "peers"
