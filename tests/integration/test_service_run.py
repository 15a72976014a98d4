"""``vantage agent run | status | init``: the service as a volunteer's machine runs it."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import pytest
from service_helpers import make_agent, quick, start_lab, stored_measurements, vantage, with_context

from agent.consent import require_consent
from agent.errors import ConfigError
from agent.guard import GuardSettings, PowerFacts, ResourceGuard
from agent.service import AgentService, FileTargets
from agent.spool import Spool
from collector.app import CollectorConfig
from collector.server import start_collector
from protocol import Measurement


async def test_run_max_rounds_measures_pulses_uploads_and_reports_status(tmp_path: Path) -> None:
    lab = await start_lab()
    collector = await start_collector(CollectorConfig(db_path=tmp_path / "c.db"))
    try:
        targets = lab.targets_csv(tmp_path / "targets.csv")
        config, _ = make_agent(
            tmp_path / "agent", collector.url, lab.resolver, targets_file=targets
        )
        process = await vantage(
            "agent", "run", "--config", str(config.path), "--interval", "0.3", "--jitter", "0.2",
            "--pulse-interval", "0.1", "--max-rounds", "2",
        )  # fmt: skip
        out, err = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode == 0, err.decode()
        lines = [line.split() for line in err.decode().splitlines() if line.startswith("measured ")]
        tests = {parts[2] for parts in lines}
        assert tests == {"web_connectivity", "pulse"}
        assert set(stored_measurements(tmp_path / "c.db")) == {parts[1] for parts in lines}
        status = await vantage("agent", "status", "--config", str(config.path), "--json")
        out, err = await status.communicate()
        document = json.loads(out)
        assert document["spool"]["unsent_measurements"] == 0
        assert document["spool"]["oldest_unsent"] is None
        assert document["last_upload_at"] and document["last_round"].startswith("4 measured")
        assert document["network"]["country"] == "XA" and document["running"] is False
        text = await vantage("agent", "status", "--config", str(config.path))
        out, _ = await text.communicate()
        assert b"last upload" in out and b"next run" in out
    finally:
        await collector.stop()
        await lab.stop()


async def test_sigterm_stops_cleanly_and_keeps_what_was_measured(tmp_path: Path) -> None:
    lab = await start_lab()
    try:
        targets = lab.targets_csv(tmp_path / "targets.csv")
        config, _ = make_agent(tmp_path / "agent", "http://127.0.0.1:9", lab.resolver)
        process = await vantage(
            "agent", "run", "--config", str(config.path), "--targets", str(targets),
            "--interval", "0.05", "--jitter", "0", "--upload-interval", "3600",
        )  # fmt: skip
        assert process.stderr is not None
        seen = 0
        while seen < 5:
            line = await asyncio.wait_for(process.stderr.readline(), 30)
            seen += line.startswith(b"measured ")
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 20)
        assert process.returncode == 0
        spool = Spool(config.spool_dir)
        assert spool.unsent_measurements() >= 5
        assert not list(spool.root.rglob(".*.tmp"))
        status = json.loads((config.spool_dir / "status.json").read_text())
        assert status["stopped_at"] and status["next_run_at"] is None
    finally:
        await lab.stop()


async def test_round_is_skipped_on_low_battery(tmp_path: Path) -> None:
    lab = await start_lab()
    try:
        targets = lab.targets_csv(tmp_path / "targets.csv")
        config, key = make_agent(tmp_path / "agent", "http://127.0.0.1:9", lab.resolver)
        config = quick(with_context(config, whoami=False))
        made: list[Measurement] = []
        low = ResourceGuard(
            GuardSettings(), config.spool_dir / "usage.json", power=lambda: PowerFacts(12, False)
        )
        service = AgentService(
            config, key, FileTargets(targets), guard=low, on_measurement=made.append
        )
        service.uploader.attempts = 1
        await service.run(max_rounds=2)
        assert made == []
        assert json.loads((config.spool_dir / "status.json").read_text())["last_round"] == (
            "skipped (battery)"
        )
    finally:
        await lab.stop()


async def test_init_requires_informed_consent(tmp_path: Path) -> None:
    argv = ["agent", "init", "--config", str(tmp_path / "a" / "agent.toml"), "--collector",
            "http://127.0.0.1:9", "--no-register"]  # fmt: skip
    refused = await vantage(*argv)  # stdin is not a terminal, no flag
    _, err = await refused.communicate()
    assert refused.returncode == 2
    assert b"--accept-risks" in err and not (tmp_path / "a" / "agent.toml").exists()
    accepted = await vantage(*argv, "--accept-risks")
    await accepted.communicate()
    assert accepted.returncode == 0 and (tmp_path / "a" / "agent.toml").exists()
    assert b'network_type = "auto"' in (tmp_path / "a" / "agent.toml").read_bytes()


class FakeTerminal:
    def isatty(self) -> bool:
        return True


def test_interactive_consent(capsys: pytest.CaptureFixture[str]) -> None:
    require_consent(False, stdin=FakeTerminal(), ask=lambda prompt: "yes")
    assert "risks" in capsys.readouterr().err.lower()
    with pytest.raises(ConfigError, match="consent not given"):
        require_consent(False, stdin=FakeTerminal(), ask=lambda prompt: "no")


async def test_run_without_targets_is_a_clear_error(tmp_path: Path) -> None:
    config, _ = make_agent(tmp_path / "agent", "http://127.0.0.1:9", "127.0.0.1:9")
    process = await vantage("agent", "run", "--config", str(config.path), "--max-rounds", "1")
    _, err = await process.communicate()
    assert process.returncode == 2 and b"--targets" in err
