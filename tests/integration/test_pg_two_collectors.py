"""Two collector processes, one PostgreSQL: concurrent uploads (the same batch to both, too) are exact."""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from ingest_support import (
    NETWORKS,
    assert_rollups_match_raw,
    measurement,
    registration_body,
    signed,
)

from collector.backends import open_storage

ANNOUNCE = re.compile(r"listening on (http://\S+)")


@contextlib.asynccontextmanager
async def collector_process(db: str, key: Path) -> AsyncIterator[str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "vantagepoint", "collector", "serve", "--db", db, "--port", "0",
        "--migrate", "--key", str(key), "--rate-per-address", "0", "--log-format", "json",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), timeout=30)
        match = ANNOUNCE.search(line.decode())
        assert match, f"collector did not announce its URL: {line!r}"
        yield match.group(1)
    finally:
        process.terminate()
        await process.wait()


async def post(http: aiohttp.ClientSession, url: str, body: bytes, kind: str) -> dict[str, Any]:
    async with http.post(url, data=body, headers={"Content-Type": kind}) as response:
        answer: dict[str, Any] = await response.json()
        assert response.status in (200, 201), answer
        return answer


async def test_two_collectors_share_one_database_exactly(
    postgres_server: Any, tmp_path: Path
) -> None:
    db = postgres_server.new_database()
    key_file = tmp_path / "collector.key"
    async with collector_process(db, key_file) as one, collector_process(db, key_file) as two:
        from protocol import SigningKey

        keys = [SigningKey.generate() for _ in range(4)]
        batches = [
            signed(k, [measurement(k, network=NETWORKS[i % 3]) for _ in range(25)])
            for i, k in enumerate(keys)
            for _ in range(3)
        ]
        async with aiohttp.ClientSession() as http:
            await asyncio.gather(
                *(
                    post(http, f"{url}/api/v1/agents", registration_body(k), "application/json")
                    for k in keys
                    for url in (one, two)
                )
            )
            # every batch goes to both collectors at once: each must be stored exactly once
            answers = await asyncio.gather(
                *(
                    post(http, f"{url}/api/v1/batches", b.to_bytes(), "application/msgpack")
                    for b in batches
                    for url in (one, two)
                )
            )
            views = [
                await (await http.get(f"{url}/api/v1/aggregate?by=region,carrier")).json()
                for url in (one, two)
            ]
    assert sum(a["stored"] for a in answers) == 12 * 25
    assert sum(a["status"] == "stored" for a in answers) == 12
    assert {a["receipt"]["collector_key"] for a in answers} == {
        answers[0]["receipt"]["collector_key"]
    }
    assert views[0]["rows"] == views[1]["rows"]
    assert sum(r["measurements"] for r in views[0]["rows"]) == 300
    storage = open_storage(db)
    await storage.open()
    try:
        assert await storage.counts() == {"agents": 4, "batches": 12, "measurements": 300}
        assert set((await assert_rollups_match_raw(storage)).values()) == {300}
    finally:
        await storage.close()


@pytest.mark.parametrize(
    "args", [["--db", "nosuch://x"], ["--db", "postgresql://nobody@127.0.0.1:1/x"]]
)
async def test_serve_with_a_bad_database_exits_with_a_message(args: list[str]) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "vantagepoint", "collector", "serve", *args, "--port", "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode != 0 and b"error:" in err and b"Traceback" not in err
