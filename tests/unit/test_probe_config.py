"""The agent config's measurement settings: written by init, read back strictly."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import AgentConfig, load_config, write_config
from agent.errors import ConfigError
from agent.probes.dns_probe import ResolverSpec
from agent.web_connectivity import ProbeSettings
from protocol import NetworkContext


def _config(tmp_path: Path, probe: ProbeSettings) -> AgentConfig:
    return AgentConfig(
        path=tmp_path / "agent.toml",
        collector_url="http://collector.test:8080",
        key_file=tmp_path / "agent.key",
        spool_dir=tmp_path / "spool",
        network=NetworkContext("XA", "XA-NORTH", 64500, "MobiNet", "mobile"),
        probe=probe,
    )


def test_probe_settings_round_trip(tmp_path: Path) -> None:
    probe = ProbeSettings(
        resolver=ResolverSpec.parse("udp://198.18.0.53:53"),
        extra_resolvers=(ResolverSpec.parse("https://dns.test/dns-query"),),
        routable_prefixes=("198.18.0.0/15",),
        control_url="http://collector.test:8080",
    )
    write_config(_config(tmp_path, probe))
    loaded = load_config(tmp_path / "agent.toml").probe
    assert loaded.resolver == probe.resolver and loaded.extra_resolvers == probe.extra_resolvers
    assert loaded.routable_prefixes == ("198.18.0.0/15",)
    assert loaded.control_url == "http://collector.test:8080"  # defaults to the collector


def test_control_can_be_switched_off(tmp_path: Path) -> None:
    write_config(_config(tmp_path, ProbeSettings(control_url=None)))
    assert load_config(tmp_path / "agent.toml").probe.control_url is None


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('routable_prefixes = ["not-a-prefix"]', "not an address prefix"),
        ("routable_prefixes = 5", "must be a list of strings"),
        ('extra_resolvers = ["dns.test"]', "resolver must be"),
        ('control = "yes"', "control must be true or false"),
    ],
)
def test_bad_probe_settings_name_the_key(tmp_path: Path, line: str, message: str) -> None:
    write_config(_config(tmp_path, ProbeSettings()))
    path = tmp_path / "agent.toml"
    lines = [x for x in path.read_text().splitlines() if not x.startswith(line.split(" ")[0])]
    at = lines.index("[probe]") + 1  # other tables may follow [probe]: put the line inside it
    path.write_text("\n".join([*lines[:at], line, *lines[at:]]) + "\n")
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_fingerprint_file_with_bad_rows_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "fp.csv"
    bad.write_text("name,location_found,pattern_type,pattern\nx,body,regex,y\n")
    with pytest.raises(ConfigError, match="line 2: pattern_type"):
        ProbeSettings(fingerprints_file=str(bad)).fingerprints()
