"""``vantage agent ...``: init, register, once, upload, status."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

EXAMPLES = """examples:
  vantage agent init --collector https://collector.example --country IR --region IR-07 \\
      --asn 44244 --carrier Irancell --network-type mobile
  vantage agent once --targets lists/ir.csv          measure, spool, upload, print a table
  vantage agent once --targets lists/ir.csv --json   the same, as JSON for scripts
  vantage agent pulse --anchors anchors.csv          one connectivity pulse (DNS + TCP/443)
  vantage agent upload                               retry uploading what is still spooled
  vantage agent fetch-list                           fetch and verify the operator-signed test lists
  vantage agent once --list                          measure the verified lists aimed at this agent

exit codes: 0 done, 1 error, 2 bad config or input, 3 measured but not uploaded (kept in the spool),
  4 test lists not updated (collector unreachable or a list refused): the last good lists are used
"""


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    agent = subparsers.add_parser(
        "agent",
        help="run measurements on this device (volunteers)",
        description="Measure DNS/TCP/HTTP reachability and upload signed results.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = agent.add_subparsers(dest="agent_command", metavar="COMMAND", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--config",
            type=Path,
            help="agent config file (default: $VANTAGE_CONFIG or $XDG_CONFIG_HOME/vantage/agent.toml)",
        )
        p.add_argument("--json", action="store_true", help="print machine-readable JSON")

    init = commands.add_parser(
        "init",
        help="create this agent's key and config, and register with the collector",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common(init)
    init.add_argument("--collector", required=True, help="collector base URL")
    init.add_argument("--country", default="ZZ", help="ISO 3166-1 alpha-2 country code")
    init.add_argument("--region", default="", help="province/state, e.g. ISO 3166-2 'IR-07'")
    init.add_argument("--asn", type=int, default=0, help="carrier's AS number")
    init.add_argument("--carrier", default="", help="carrier name")
    init.add_argument(
        "--network-type", default="unknown", choices=["mobile", "wifi", "wired", "unknown"]
    )
    init.add_argument("--resolver", default="system", help="'system' or an address[:port]")
    init.add_argument(
        "--extra-resolver",
        action="append",
        default=[],
        help="also ask this resolver, to compare (udp://, tcp:// or https:// DoH); repeatable",
    )
    init.add_argument(
        "--routable-prefix",
        action="append",
        default=[],
        help="treat DNS answers in this prefix as routable, not bogons (labs only); repeatable",
    )
    init.add_argument(
        "--no-control", action="store_true", help="do not ask the collector's control helper"
    )
    init.add_argument("--ca-file", help="extra CA bundle to trust for HTTPS targets")
    init.add_argument("--key-file", type=Path, help="where to write the key (mode 0600)")
    init.add_argument("--spool-dir", type=Path, help="where to keep unsent results")
    init.add_argument("--no-register", action="store_true", help="do not contact the collector")
    init.add_argument(
        "--operator-key",
        action="append",
        default=[],
        metavar="KEY",
        help="pin an operator public key (base64, or a .pub file) for signed test lists; repeatable",
    )
    init.set_defaults(handler=cmd_init)

    register = commands.add_parser("register", help="(re-)register this agent's key")
    common(register)
    register.set_defaults(handler=cmd_register)

    once = commands.add_parser(
        "once",
        help="measure a target list once, spool and upload the results",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common(once)
    source = once.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--targets",
        type=Path,
        help="CSV with Citizen Lab columns (url,category_code,...) plus scope",
    )
    source.add_argument(
        "--list",
        action="store_true",
        help="measure the operator-signed test lists (fetched and verified; else the last good ones)",
    )
    once.add_argument(
        "--no-fetch", action="store_true", help="with --list: use the last good lists"
    )
    once.add_argument("--no-upload", action="store_true", help="measure and spool only")
    once.set_defaults(handler=cmd_once)

    fetch = commands.add_parser(
        "fetch-list",
        help="fetch the signed test lists for this agent and verify them",
        description=(
            "Fetch test lists from the collector (ETag), verify them against the operator keys"
            " pinned in the config, refuse expired, rolled-back or wrongly signed ones, and keep"
            " the last good lists. Refusals are reported to the collector."
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common(fetch)
    fetch.set_defaults(handler=cmd_fetch_list)

    pulse = commands.add_parser(
        "pulse",
        help="one connectivity pulse: a DNS query and a TCP connect per anchor",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common(pulse)
    pulse.add_argument(
        "--anchors",
        type=Path,
        required=True,
        help="CSV like a target list (url, scope): a few domestic and international anchors",
    )
    pulse.add_argument("--no-upload", action="store_true", help="measure and spool only")
    pulse.set_defaults(handler=cmd_pulse)

    upload = commands.add_parser("upload", help="upload what is in the spool")
    common(upload)
    upload.set_defaults(handler=cmd_upload)

    service = commands.add_parser(
        "install-service",
        help="run the agent in the background (systemd user unit, or launchd on macOS)",
        description="Write and enable a per-user service that runs `vantage agent run`.",
        epilog="example:\n  vantage agent install-service          # after `vantage agent init`",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common(service)
    service.add_argument("--no-enable", action="store_true", help="only write the unit file")
    service.add_argument("--print", action="store_true", help="print the unit, write nothing")
    service.set_defaults(handler=cmd_install_service)

    status = commands.add_parser("status", help="show identity, config and spool contents")
    common(status)
    status.set_defaults(handler=cmd_status)


def _config_path(args: argparse.Namespace) -> Path:
    from .paths import default_config_path

    return Path(args.config) if args.config else default_config_path()


def _emit(args: argparse.Namespace, document: dict[str, Any], text: str) -> None:
    print(json.dumps(document, indent=2) if args.json else text)


def cmd_init(args: argparse.Namespace) -> int:
    from protocol import LocalProtocolError, NetworkContext
    from protocol.bogons import parse_prefixes

    from .config import AgentConfig, check_collector_url, write_config
    from .errors import ConfigError
    from .keyfile import create_key
    from .paths import default_key_path, default_spool_dir
    from .probes.dns_probe import ResolverSpec
    from .web_connectivity import ProbeSettings

    path = _config_path(args)
    if path.exists():
        raise ConfigError(f"{path} already exists; edit it, or pass --config for a new agent")
    explicit = args.config is not None
    key_file = args.key_file or (path.parent / "agent.key" if explicit else default_key_path())
    spool_dir = args.spool_dir or (path.parent / "spool" if explicit else default_spool_dir())
    try:
        network = NetworkContext(
            args.country.upper(), args.region, args.asn, args.carrier, args.network_type
        )
        resolver = ResolverSpec.parse(args.resolver)
        extra = tuple(ResolverSpec.parse(text) for text in args.extra_resolver)
        parse_prefixes(args.routable_prefix)
    except (LocalProtocolError, ValueError) as exc:
        raise ConfigError(str(exc)) from exc
    operator_keys = tuple(_operator_key(text) for text in args.operator_key)
    collector_url = check_collector_url(args.collector)
    config = AgentConfig(
        path=path,
        operator_keys=operator_keys,
        collector_url=collector_url,
        key_file=Path(key_file).absolute(),
        spool_dir=Path(spool_dir).absolute(),
        network=network,
        probe=ProbeSettings(
            resolver=resolver,
            ca_file=args.ca_file,
            extra_resolvers=extra,
            routable_prefixes=tuple(args.routable_prefix),
            control_url=None if args.no_control else collector_url,
        ),
    )
    key = create_key(config.key_file)
    write_config(config)
    registered = None
    if not args.no_register:
        registered = _register(config, key)
    _emit(
        args,
        {
            "agent_id": key.agent_id,
            "config": str(path),
            "key_file": str(config.key_file),
            "registered": registered,
        },
        f"agent {key.agent_id}\nconfig  {path}\nkey     {config.key_file} (mode 0600)\n"
        + ("registered with " + config.collector_url if registered else "not registered yet"),
    )
    return 0


def _register(config: Any, key: Any) -> str:
    from .collector_client import CollectorClient

    async def run() -> str:
        import aiohttp

        async with aiohttp.ClientSession() as session:
            answer = await CollectorClient(config.collector_url, session).register(key)
        return str(answer.get("status", "registered"))

    return asyncio.run(run())


def cmd_register(args: argparse.Namespace) -> int:
    from .config import load_config
    from .keyfile import load_key

    config = load_config(_config_path(args))
    key = load_key(config.key_file)
    status = _register(config, key)
    _emit(args, {"agent_id": key.agent_id, "status": status}, f"agent {key.agent_id}: {status}")
    return 0


def cmd_once(args: argparse.Namespace) -> int:
    from .targets import load_targets
    from .web_connectivity import measure_target

    targets = load_targets(args.targets) if args.targets else None
    return _measure_and_upload(args, targets, measure_target)


def cmd_pulse(args: argparse.Namespace) -> int:
    from .pulse import measure_pulse
    from .targets import load_targets

    return _measure_and_upload(args, load_targets(args.anchors), measure_pulse)


def _measure_and_upload(args: argparse.Namespace, targets: list[Any] | None, measure: Any) -> int:
    from .config import load_config
    from .keyfile import load_key
    from .spool import Spool
    from .summary import measurement_table
    from .uploader import drain
    from .web_connectivity import measure_targets

    config = load_config(_config_path(args))
    key = load_key(config.key_file)
    if targets is None:  # --list: the verified test lists for this agent's context
        targets = _list_targets(args, config, key)
    spool = Spool(config.spool_dir)
    done = 0

    def on_result(measurement: Any) -> None:
        nonlocal done
        spool.add(measurement)  # on disk before anything else happens
        done += 1
        if not args.json:
            print(
                f"[{done}/{len(targets)}] {measurement.verdict.value:9} {measurement.target.url}",
                file=sys.stderr,
            )

    results = asyncio.run(
        measure_targets(targets, key.agent_id, config.network, config.probe, on_result, measure)
    )
    report = None
    if not args.no_upload:
        report = asyncio.run(
            drain(spool, key, config.collector_url, collector_key=config.collector_key)
        )
    document = {
        "agent_id": key.agent_id,
        "measurements": [m.to_wire() for m in results],
        "upload": None if report is None else vars(report),
    }
    text = measurement_table(results)
    if report is not None:
        text += (
            f"\n\nuploaded {report.batches} batch(es): {report.stored} stored,"
            f" {report.duplicates} already there; {report.left} batch(es) still spooled"
        )
        for error in report.errors:
            text += f"\nupload problem: {error}"
    _emit(args, document, text)
    return 3 if report is not None and report.left else 0


def cmd_upload(args: argparse.Namespace) -> int:
    from .config import load_config
    from .keyfile import load_key
    from .spool import Spool
    from .uploader import drain

    config = load_config(_config_path(args))
    key = load_key(config.key_file)
    report = asyncio.run(
        drain(
            Spool(config.spool_dir), key, config.collector_url, collector_key=config.collector_key
        )
    )
    text = f"uploaded {report.batches} batch(es), {report.left} left"
    text += "".join(f"\nupload problem: {error}" for error in report.errors)
    _emit(args, vars(report), text)
    return 3 if report.left else 0


def cmd_status(args: argparse.Namespace) -> int:
    from .config import load_config
    from .keyfile import load_key
    from .spool import Spool

    config = load_config(_config_path(args))
    key = load_key(config.key_file)
    counts = Spool(config.spool_dir).counts()
    document = {
        "agent_id": key.agent_id,
        "config": str(config.path),
        "collector_url": config.collector_url,
        "network": config.network.to_wire(),
        "spool": counts,
    }
    text = "\n".join(
        [
            f"agent      {key.agent_id}",
            f"config     {config.path}",
            f"collector  {config.collector_url}",
            f"network    {config.network.country} {config.network.region}"
            f" AS{config.network.asn} {config.network.carrier} ({config.network.network_type})",
            f"spool      {counts['pending']} pending, {counts['outbox']} batches to upload,"
            f" {counts['corrupt']} corrupt",
        ]
    )
    _emit(args, document, text)
    return 0


def _operator_key(text: str) -> bytes:
    from protocol import RemoteProtocolError
    from protocol.keyset import parse_public_key

    from .errors import ConfigError

    candidate = Path(text)
    try:
        return parse_public_key(candidate.read_text() if candidate.is_file() else text)
    except (RemoteProtocolError, OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--operator-key {text}: {exc}") from exc


def _fetch(config: Any, key: Any) -> tuple[Any, Any]:
    from .testlists import ListStore, OperatorTrust, refresh, state_dir_for

    store = ListStore(
        state_dir_for(config.spool_dir),
        OperatorTrust(config.operator_keys, config.operator_threshold),
    )
    report = asyncio.run(refresh(store, config.collector_url, key, config.network))
    return store, report


def cmd_fetch_list(args: argparse.Namespace) -> int:
    from protocol import utc_now

    from .config import load_config
    from .keyfile import load_key
    from .testlists import EXIT_KEPT_LAST_GOOD, describe

    config = load_config(_config_path(args))
    key = load_key(config.key_file)
    store, report = _fetch(config, key)
    usable, problems = store.usable(config.network, utc_now())
    document = {
        **report.to_json(),
        "usable": [
            {
                "list_id": v.testlist.list_id,
                "version": v.testlist.version,
                "entries": len(v.testlist.entries),
            }
            for v in usable
        ],
        "problems": problems,
    }
    text = describe(report)
    text += "".join(
        f"\nusing {v.testlist.list_id} v{v.testlist.version} ({len(v.testlist.entries)} entries,"
        f" expires {v.testlist.expires:%Y-%m-%d %H:%M}Z)"
        for v in usable
    )
    text += "".join(f"\n{problem}" for problem in problems)
    _emit(args, document, text)
    return (
        EXIT_KEPT_LAST_GOOD
        if report.refused or report.status not in ("updated", "not_modified")
        else 0
    )


def _list_targets(args: argparse.Namespace, config: Any, key: Any) -> list[Any]:
    from protocol import utc_now

    from .errors import ConfigError
    from .testlists import ListStore, OperatorTrust, describe, list_targets, state_dir_for

    if args.no_fetch:
        store = ListStore(
            state_dir_for(config.spool_dir),
            OperatorTrust(config.operator_keys, config.operator_threshold),
        )
    else:
        store, report = _fetch(config, key)
        if report.refused or report.status not in ("updated", "not_modified"):
            print(describe(report), file=sys.stderr)
    usable, problems = store.usable(config.network, utc_now())
    for problem in problems:
        print(f"vantage: {problem}", file=sys.stderr)
    targets = list_targets(usable)
    if not targets:
        raise ConfigError(
            "no verified, unexpired test list for this agent; run `vantage agent fetch-list`"
        )
    return targets


def cmd_install_service(args: argparse.Namespace) -> int:
    from .errors import ConfigError
    from .service_install import install_service, user_unit, vantage_executable

    config = _config_path(args).absolute()
    if args.print:
        print(user_unit(vantage_executable(), config), end="")
        return 0
    if not config.exists():
        raise ConfigError(f"no agent config at {config}; run `vantage agent init` first")
    result = install_service(config, enable=not args.no_enable)
    document = {"unit": str(result.path), "enabled": result.enabled, "run_by_hand": result.commands}
    text = f"wrote {result.path}\n" + (
        "enabled and started"
        if result.enabled
        else "not enabled here; run:\n  " + "\n  ".join(result.commands)
    )
    _emit(args, document, text)
    return 0 if result.enabled or args.no_enable else 1
