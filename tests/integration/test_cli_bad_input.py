"""Bad config and bad input for the real ``vantage`` CLI: exit 2, a useful message, no traceback."""

from __future__ import annotations

import asyncio
import shutil
import stat
from pathlib import Path

import pytest

GOOD_TARGETS = "url,category_code,scope\nhttp://news.domestic.test/,NEWS,domestic\n"


def assert_config_error(result, *needles: str) -> None:
    assert result.code == 2, result
    assert "Traceback" not in result.err, result
    assert result.err.startswith("vantage: error: "), result
    for needle in needles:
        assert needle in result.err, result


@pytest.fixture(scope="module")
def agent_template(tmp_path_factory, vantage_in) -> Path:
    """One valid, unregistered agent made by the real ``vantage agent init`` (no collector)."""
    root = tmp_path_factory.mktemp("template")
    home = root / "home"
    home.mkdir()
    config = root / "agent" / "agent.toml"
    result = vantage_in(home).run_sync(
        "agent", "init", "--accept-risks", "--config", str(config), "--collector", "http://127.0.0.1:9",
        "--country", "XA", "--region", "XA-1", "--asn", "64500", "--carrier", "Test",
        "--network-type", "mobile", "--resolver", "127.0.0.1:53", "--no-register",
    )  # fmt: skip
    assert result.code == 0, result
    return config.parent


@pytest.fixture
def agent_config(agent_template, tmp_path) -> Path:
    """A private copy of the template agent (its config points at the copied key and spool)."""
    folder = tmp_path / "agent"
    shutil.copytree(agent_template, folder)
    config = folder / "agent.toml"
    config.write_text(config.read_text("utf-8").replace(str(agent_template), str(folder)), "utf-8")
    assert stat.S_IMODE((folder / "agent.key").stat().st_mode) == 0o600
    return config


@pytest.fixture
def targets(tmp_path) -> Path:
    path = tmp_path / "targets.csv"
    path.write_text(GOOD_TARGETS, encoding="utf-8")
    return path


@pytest.mark.parametrize("command", ["once", "upload", "status", "register"])
async def test_missing_config(vantage, tmp_path, targets, command):
    missing = tmp_path / "nowhere" / "agent.toml"
    extra = ["--targets", str(targets)] if command == "once" else []
    result = await vantage("agent", command, "--config", str(missing), *extra)
    assert_config_error(result, "vantage agent init", str(missing))


async def test_missing_default_config_names_the_xdg_path(vantage):
    result = await vantage("agent", "status")
    assert_config_error(result, "vantage agent init", "xdg-config/vantage/agent.toml")


async def test_init_refuses_to_overwrite(vantage, agent_config):
    key = agent_config.parent / "agent.key"
    before = key.read_bytes()
    result = await vantage(
        "agent", "init", "--accept-risks", "--config", str(agent_config), "--collector", "http://127.0.0.1:9",
        "--no-register",
    )  # fmt: skip
    assert_config_error(result, "already exists")
    assert key.read_bytes() == before


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--collector", "ftp://collector.test"], "collector URL"),
        (["--collector", "http://127.0.0.1:9", "--country", "Atlantis"], "country"),
        (["--collector", "http://127.0.0.1:9", "--resolver", "dns.example:53"], "resolver"),
        (["--collector", "http://127.0.0.1:9", "--resolver", "127.0.0.1:99999"], "port"),
        (["--collector", "http://127.0.0.1:9", "--asn", "4294967296"], "asn"),
    ],
)
async def test_init_bad_arguments(vantage, tmp_path, args, needle):
    config = tmp_path / "new" / "agent.toml"
    result = await vantage(
        "agent", "init", "--accept-risks", "--config", str(config), "--no-register", *args
    )
    assert_config_error(result, needle)
    assert not config.exists()


async def test_malformed_toml(vantage, agent_config, targets):
    agent_config.write_text('collector_url = "http://127.0.0.1:9"\n[network\ncountry = ', "utf-8")
    result = await vantage(
        "agent", "once", "--config", str(agent_config), "--targets", str(targets)
    )
    assert_config_error(result, "not valid TOML", str(agent_config))


@pytest.mark.parametrize(
    ("old", "new", "needle"),
    [
        ('network_type = "mobile"', 'network_type = "carrier-pigeon"', "network_type"),
        ('country = "XA"', 'country = "Xanadu"', "country"),
        ("asn = 64500", 'asn = "64500"', "asn"),
        ('carrier = "Test"\n', "", "carrier"),
        ("timeout = 5.0", "timeout = -1", "timeout"),
        ("concurrency = 8", "concurrency = 0", "concurrency"),
        ('resolver = "127.0.0.1:53"', 'resolver = "somewhere"', "resolver"),
        ('collector_url = "http://127.0.0.1:9"', 'collector_url = "gopher://x"', "collector URL"),
    ],
)
async def test_bad_config_values(vantage, agent_config, targets, old, new, needle):
    text = agent_config.read_text("utf-8")
    assert old in text
    agent_config.write_text(text.replace(old, new), "utf-8")
    result = await vantage(
        "agent", "once", "--config", str(agent_config), "--targets", str(targets)
    )
    assert_config_error(result, needle)


async def test_target_list_bad_url_on_line_3(vantage, agent_config, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(
        "url,category_code,category_description,date_added,source,notes,scope\n"
        "http://news.domestic.test/,NEWS,,2026-11-28,test,,domestic\n"
        "not a url,NEWS,,2026-11-28,test,,domestic\n"
        "http://news.world.test/,NEWS,,2026-11-28,test,,international\n"
        "http://x.world.test/,NEWS,,2026-11-28,test,,galactic\n",
        "utf-8",
    )
    result = await vantage("agent", "once", "--config", str(agent_config), "--targets", str(path))
    assert_config_error(result, f"{path}:3", f"{path}:5", "scope")
    # nothing was measured
    assert list((agent_config.parent / "spool" / "pending").glob("*")) == []


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "empty target list"),
        ("url,category_code\nhttp://a.test/,NEWS\n", "missing column(s) scope"),
        ("url,scope\n# just a comment,domestic\n", "no targets"),
    ],
)
async def test_target_list_structure_problems(vantage, agent_config, tmp_path, text, needle):
    path = tmp_path / "t.csv"
    path.write_text(text, "utf-8")
    result = await vantage("agent", "once", "--config", str(agent_config), "--targets", str(path))
    assert_config_error(result, needle)


async def test_missing_target_list(vantage, agent_config, tmp_path):
    missing = tmp_path / "nope.csv"
    result = await vantage(
        "agent", "once", "--config", str(agent_config), "--targets", str(missing)
    )
    assert_config_error(result, str(missing))


async def test_key_readable_by_others(vantage, agent_config, targets):
    key = agent_config.parent / "agent.key"
    key.chmod(0o644)
    result = await vantage(
        "agent", "once", "--config", str(agent_config), "--targets", str(targets)
    )
    assert_config_error(result, "chmod 600", str(key), "644")
    result = await vantage("agent", "status", "--config", str(agent_config))
    assert_config_error(result, "chmod")
    key.chmod(0o600)
    result = await vantage("agent", "status", "--config", str(agent_config), "--json")
    assert result.code == 0, result


async def test_damaged_and_missing_key(vantage, agent_config):
    key = agent_config.parent / "agent.key"
    key.write_bytes(b"too short")
    result = await vantage("agent", "status", "--config", str(agent_config))
    assert_config_error(result, "damaged")
    key.unlink()
    result = await vantage("agent", "status", "--config", str(agent_config))
    assert_config_error(result, "vantage agent init", str(key))


async def test_registration_refused_by_collector_is_exit_3_not_a_traceback(vantage, agent_config):
    """``register`` against a port nothing listens on: an upload error (exit 3), not a crash."""
    result = await vantage("agent", "register", "--config", str(agent_config))
    assert result.code == 3, result
    assert "cannot reach collector" in result.err
    assert "Traceback" not in result.err


# --- real bugs: these fail today ------------------------------------------------------------------


async def test_config_not_utf8(vantage, agent_config, targets):
    agent_config.write_bytes(agent_config.read_bytes().replace(b"Test", b"T\xe9st"))  # Latin-1
    result = await vantage(
        "agent", "once", "--config", str(agent_config), "--targets", str(targets)
    )
    assert_config_error(result, str(agent_config))


async def test_target_list_with_an_enormous_field(vantage, agent_config, tmp_path):
    path = tmp_path / "huge.csv"
    path.write_text(
        "url,scope\nhttp://a.test/,domestic\nhttp://b.test/" + "x" * 200_000 + ",domestic\n",
        "utf-8",
    )
    result = await vantage("agent", "once", "--config", str(agent_config), "--targets", str(path))
    assert_config_error(result, str(path), "field larger than field limit")


@pytest.mark.parametrize("resolver", ["::1", "2001:db8::53"])
async def test_init_with_bare_ipv6_resolver(vantage, tmp_path, resolver):
    config = tmp_path / "v6" / "agent.toml"
    result = await vantage(
        "agent", "init", "--accept-risks", "--config", str(config), "--collector", "http://127.0.0.1:9",
        "--resolver", resolver, "--no-register",
    )  # fmt: skip
    assert result.code == 0, result
    assert f'resolver = "[{resolver}]:53"' in config.read_text("utf-8")


async def test_init_writes_a_private_key_even_with_umask_0(vantage, tmp_path):
    config = tmp_path / "open" / "agent.toml"
    process = await vantage.spawn(
        "agent", "init", "--accept-risks", "--config", str(config), "--collector", "http://127.0.0.1:9",
        "--no-register", umask=0, stdout=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert await asyncio.wait_for(process.wait(), 30) == 0
    key = config.parent / "agent.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    result = await vantage("agent", "status", "--config", str(config), "--json")
    assert result.code == 0, result


async def test_an_unusable_path_is_a_message_not_a_traceback(vantage, tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the config directory should be")
    result = await vantage(
        "agent", "init", "--accept-risks", "--config", str(blocker / "agent.toml"),
        "--collector", "http://127.0.0.1:9", "--no-register",
    )  # fmt: skip
    assert result.code == 1
    assert "vantage: error:" in result.err and str(blocker) in result.err
    assert "Traceback" not in result.err


@pytest.mark.parametrize(
    ("args", "needle"),
    [(["--timeout", "0"], "--timeout"), (["--fingerprints", "/nonexistent.csv"], "--fingerprints")],
)
async def test_init_checks_probe_options(vantage, tmp_path, args, needle):
    config = tmp_path / "agent.toml"
    result = await vantage(
        "agent", "init", "--accept-risks", "--config", str(config),
        "--collector", "http://127.0.0.1:9", "--no-register", *args,
    )  # fmt: skip
    assert result.code == 2 and needle in result.err and not config.exists()
