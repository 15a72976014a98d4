"""The agent's TOML configuration: read strictly (every problem names its key), written by ``init``."""

from __future__ import annotations

import base64
import binascii
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from protocol import LocalProtocolError, NetworkContext, RemoteProtocolError
from protocol.bogons import parse_prefixes
from protocol.keyset import format_public_key, min_threshold, parse_public_key
from protocol.messages import MAX_EXTRA_RESOLVERS

from .errors import ConfigError
from .probes.dns_probe import ResolverSpec
from .settings import ServiceSettings, parse_service_settings, render_service_settings
from .socks5 import ProxySpec
from .web_connectivity import ProbeSettings


@dataclass(frozen=True, slots=True)
class AgentConfig:
    path: Path
    collector_url: str
    key_file: Path
    spool_dir: Path
    network: NetworkContext
    probe: ProbeSettings = field(default_factory=ProbeSettings)
    # Pinned operator public keys (raw 32 bytes): the only trust anchor for test lists.
    operator_keys: tuple[bytes, ...] = ()
    operator_threshold: int | None = None
    # The collector's receipt-signing key (GET /api/v1/collector-key), pinned: receipts must verify.
    collector_key: bytes | None = None
    # Mirrors tried after ``collector_url``, in order.
    collector_urls: tuple[str, ...] = ()
    proxy: str | None = None  # socks5://host:port for uploads and whoami (Tor, Psiphon)
    targets_file: Path | None = None  # the test list `run` measures (signed lists come later)
    detect_network_type: bool = True  # [network] network_type = "auto"
    service: ServiceSettings = field(default_factory=ServiceSettings)

    @property
    def collectors(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((self.collector_url, *self.collector_urls)))


def check_collector_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"collector URL must look like https://collector.example:8443, got {url!r}"
        )
    return url.rstrip("/")


def _get(table: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in table:
        raise ConfigError(f"{where}: missing key {key!r}")
    value = table[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ConfigError(f"{where}: {key!r} has the wrong type ({type(value).__name__})")
    return value


def load_config(path: Path) -> AgentConfig:
    where = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"no agent config at {path}; run `vantage agent init --collector URL`"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text: {exc}") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: not valid TOML: {exc}") from exc
    net = data.get("network", {})
    probe = data.get("probe", {})
    if not isinstance(net, dict) or not isinstance(probe, dict):
        raise ConfigError(f"{where}: [network] and [probe] must be tables")
    network_type = _get(net, "network_type", str, f"{where} [network]")
    try:
        network = NetworkContext(
            country=_get(net, "country", str, f"{where} [network]").upper(),
            region=_get(net, "region", str, f"{where} [network]"),
            asn=_get(net, "asn", int, f"{where} [network]"),
            carrier=_get(net, "carrier", str, f"{where} [network]"),
            network_type="unknown" if network_type == "auto" else network_type,  # type: ignore[arg-type]
        )
    except LocalProtocolError as exc:
        raise ConfigError(f"{where} [network]: {exc}") from exc
    collector_url = check_collector_url(_get(data, "collector_url", str, where))
    try:
        resolver = ResolverSpec.parse(str(probe.get("resolver", "system")))
        extra = tuple(
            ResolverSpec.parse(str(item))
            for item in _list_of_str(probe, "extra_resolvers", where)[:MAX_EXTRA_RESOLVERS]
        )
        routable = tuple(_list_of_str(probe, "routable_prefixes", where))
        parse_prefixes(routable)
    except ValueError as exc:
        raise ConfigError(f"{where} [probe]: {exc}") from exc
    use_control = probe.get("control", True)
    if not isinstance(use_control, bool):
        raise ConfigError(f"{where} [probe]: control must be true or false")
    control_url = probe.get("control_url", collector_url)
    if not isinstance(control_url, str):
        raise ConfigError(f"{where} [probe]: control_url must be a URL")
    timeout = probe.get("timeout", 5.0)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= 120:
        raise ConfigError(f"{where} [probe]: timeout must be a number of seconds in (0, 120]")
    base = path.parent
    settings = ProbeSettings(
        resolver=resolver,
        timeout=float(timeout),
        max_endpoints=_int_in(probe, "max_endpoints", 4, 1, 16, where),
        ca_file=str(probe["ca_file"]) if probe.get("ca_file") else None,
        concurrency=_int_in(probe, "concurrency", 8, 1, 64, where),
        extra_resolvers=extra,
        routable_prefixes=routable,
        control_url=check_collector_url(control_url) if use_control else None,
        fingerprints_file=str(base / probe["fingerprints"]) if probe.get("fingerprints") else None,
    )
    operator_keys, operator_threshold = _operator_trust(data, where)
    mirrors = data.get("collector_urls", [])
    if not isinstance(mirrors, list) or not all(isinstance(url, str) for url in mirrors):
        raise ConfigError(f"{where}: collector_urls must be a list of URLs")
    urls = [collector_url, *(check_collector_url(url) for url in mirrors)]
    proxy = data.get("proxy") or None
    if proxy is not None:
        try:
            ProxySpec.parse(str(proxy))
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from exc
    targets_file = data.get("targets_file")
    if targets_file is not None and not isinstance(targets_file, str):
        raise ConfigError(f"{where}: targets_file must be a path")
    return AgentConfig(
        collector_key=_collector_key(data.get("collector_key"), where),
        path=path,
        collector_url=collector_url,
        key_file=base / _get(data, "key_file", str, where),
        spool_dir=base / _get(data, "spool_dir", str, where),
        network=network,
        probe=settings,
        operator_keys=operator_keys,
        operator_threshold=operator_threshold,
        collector_urls=tuple(urls[1:]),
        proxy=str(proxy) if proxy else None,
        targets_file=base / targets_file if targets_file else None,
        detect_network_type=network_type == "auto",
        service=parse_service_settings(data, base, where),
    )


def _operator_trust(data: dict[str, Any], where: str) -> tuple[tuple[bytes, ...], int | None]:
    keys = data.get("operator_keys", [])
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise ConfigError(f"{where}: operator_keys must be a list of base64 strings")
    try:
        parsed = tuple(parse_public_key(k) for k in keys)
    except RemoteProtocolError as exc:
        raise ConfigError(f"{where}: operator_keys: {exc}") from exc
    threshold = data.get("operator_threshold")
    if threshold is not None and (
        isinstance(threshold, bool)
        or not isinstance(threshold, int)
        or not min_threshold(len(parsed)) <= threshold <= len(parsed)
    ):
        raise ConfigError(
            f"{where}: operator_threshold must be from {min_threshold(len(parsed))} to the number"
            " of operator_keys"
        )
    return parsed, threshold


def _collector_key(value: object, where: str) -> bytes | None:
    if value is None:
        return None
    try:
        raw = base64.b64decode(str(value), validate=True) if isinstance(value, str) else b""
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise ConfigError(
            f"{where}: collector_key must be the base64 public key from GET /api/v1/collector-key"
        )
    return raw


def _list_of_str(table: dict[str, Any], key: str, where: str) -> list[str]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigError(f"{where} [probe]: {key} must be a list of strings")
    return value


def _int_in(table: dict[str, Any], key: str, default: int, low: int, high: int, where: str) -> int:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{where} [probe]: {key} must be an integer from {low} to {high}")
    return value


def _toml_str(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # JSON string escapes are valid TOML basic strings


def render_config(config: AgentConfig) -> str:
    n, p = config.network, config.probe
    lines = [
        "# Vantage agent configuration, written by `vantage agent init`.",
        "# Relative paths are relative to this file. Docs: vantage agent --help",
        f"collector_url = {_toml_str(config.collector_url)}",
        f"key_file = {_toml_str(str(config.key_file))}",
        f"spool_dir = {_toml_str(str(config.spool_dir))}",
        "# Mirrors, tried in order when the collector above cannot be reached:",
        f"collector_urls = [{', '.join(_toml_str(url) for url in config.collector_urls)}]",
        "# Upload through a SOCKS5 proxy (Tor: socks5://127.0.0.1:9050). Empty: direct.",
        f"proxy = {_toml_str(config.proxy or '')}",
        *(
            [f"targets_file = {_toml_str(str(config.targets_file))}"]
            if config.targets_file
            else ['# targets_file = "list.csv"  # what `vantage agent run` measures']
        ),
        "",
        "# Where this agent measures from. Never includes your IP address.",
        "[network]",
        f"country = {_toml_str(n.country)}",
        f"region = {_toml_str(n.region)}",
        f"asn = {n.asn}",
        f"carrier = {_toml_str(n.carrier)}",
        f"network_type = {_toml_str('auto' if config.detect_network_type else n.network_type.value)}"
        "  # auto | mobile | wifi | wired | unknown",
        "",
        "[probe]",
        f"resolver = {_toml_str(p.resolver.label)}  # system, or an address[:port]",
        f"timeout = {p.timeout}",
        f"max_endpoints = {p.max_endpoints}",
        f"concurrency = {p.concurrency}",
    ]
    if p.ca_file:
        lines.append(f"ca_file = {_toml_str(p.ca_file)}")
    if config.operator_keys:
        keys = ", ".join(_toml_str(format_public_key(k)) for k in config.operator_keys)
        # Top-level keys cannot follow a table in TOML, so they go before [network].
        lines[5:5] = [
            "# Operator keys that sign the test lists this agent accepts (vantage agent fetch-list).",
            f"operator_keys = [{keys}]",
        ]
        if config.operator_threshold is not None:
            lines.insert(7, f"operator_threshold = {config.operator_threshold}")
    if config.collector_key:
        key = base64.b64encode(config.collector_key).decode()
        lines.insert(5, f"collector_key = {_toml_str(key)}  # receipts must be signed by this key")

    if p.extra_resolvers:
        lines.append(f"extra_resolvers = {_toml_list([s.label for s in p.extra_resolvers])}")
    lines.append("# Prefixes whose DNS answers are not bogons: labs and research networks only.")
    lines.append(f"routable_prefixes = {_toml_list(list(p.routable_prefixes))}")
    if p.control_url is None:
        lines.append("control = false  # measure without the collector's control helper")
    elif p.control_url != config.collector_url:
        lines.append(f"control_url = {_toml_str(p.control_url)}")
    if p.fingerprints_file:
        lines.append(f"fingerprints = {_toml_str(p.fingerprints_file)}  # OONI-format CSV")

    lines += render_service_settings(config.service)
    return "\n".join(lines) + "\n"


def _toml_list(values: list[str]) -> str:
    return "[" + ", ".join(_toml_str(value) for value in values) + "]"


def write_config(config: AgentConfig) -> None:
    config.path.parent.mkdir(parents=True, exist_ok=True)
    tmp = config.path.with_name(config.path.name + ".tmp")
    tmp.write_text(render_config(config), encoding="utf-8")
    tmp.replace(config.path)
