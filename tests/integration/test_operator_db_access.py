"""`vantage operator agents|revoke-agent --db`: direct database access on the collector host, for
either backend, with clear errors instead of tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from collector.backends import open_storage
from protocol import SigningKey, utc_now


def vantage(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vantagepoint", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_agents_and_revoke_through_the_database(storage_url: str) -> None:
    storage = open_storage(storage_url, migrate=True)
    await storage.open()
    key = SigningKey.generate()
    try:
        assert await storage.register_agent(key.agent_id, key.public_key, utc_now())
    finally:
        await storage.close()
    listed = vantage("operator", "agents", "--db", storage_url, "--json")
    assert listed.returncode == 0, listed.stderr
    assert [a["agent_id"] for a in json.loads(listed.stdout)["agents"]] == [key.agent_id]
    revoked = vantage("operator", "revoke-agent", key.agent_id, "--db", storage_url, "--json")
    assert revoked.returncode == 0, revoked.stderr
    assert json.loads(revoked.stdout)["status"] == "revoked"
    again = vantage("operator", "agents", "--db", storage_url, "--json")
    assert json.loads(again.stdout)["agents"][0]["revoked_at"] is not None


def test_a_missing_or_unreachable_database_is_a_clear_error(tmp_path: Path) -> None:
    missing = vantage("operator", "agents", "--db", str(tmp_path / "nope.db"))
    assert missing.returncode == 2 and "no collector database" in missing.stderr
    assert not (tmp_path / "nope.db").exists()
    down = vantage("operator", "agents", "--db", "postgresql://vantage@127.0.0.1:9/nothing")
    assert down.returncode == 2 and "cannot use the database" in down.stderr
    assert "Traceback" not in down.stderr
