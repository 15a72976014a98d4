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
      --asn 44244 --carrier Irancell --targets-file lists/ir.csv     (asks for informed consent)
  vantage agent run                                  the background service (systemd, launchd)
  vantage agent run --interval 60 --max-rounds 3     three quick rounds, then upload and exit
  vantage agent once --targets lists/ir.csv          measure, spool, upload, print a table
  vantage agent once --targets lists/ir.csv --json   the same, as JSON for scripts
  vantage agent pulse --anchors anchors.csv          one connectivity pulse (DNS + TCP/443)
  vantage agent upload                               retry uploading what is still spooled
  vantage agent fetch-list                           fetch and verify the operator-signed test lists
  vantage agent once --list                          measure the verified lists aimed at this agent
  vantage agent status --json                        spool, last upload, context, next run

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
    init.add_argument(
        "--mirror", action="append", default=[], help="another collector URL to try (repeatable)"
    )
    init.add_argument("--proxy", help="upload through a SOCKS5 proxy, e.g. socks5://127.0.0.1:9050")
    init.add_argument("--targets-file", type=Path, help="test list that `agent run` measures")
    init.add_argument(
        "--accept-risks",
        action="store_true",
        help="for unattended installs: you have read the risks (`vantage agent init` shows them)",
    )
    init.add_argument("--country", default="ZZ", help="ISO 3166-1 alpha-2 country code")
    init.add_argument("--region", default="", help="province/state, e.g. ISO 3166-2 'IR-07'")
    init.add_argument("--asn", type=int, default=0, help="carrier's AS number")
    init.add_argument("--carrier", default="", help="carrier name")
    init.add_argument(
        "--network-type",
        default="auto",
        choices=["auto", "mobile", "wifi", "wired", "unknown"],
        help="auto: detect from the interfaces on every round (default)",
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
    init.add_argument(
        "--timeout", type=float, default=5.0, help="seconds each probe step may take (default 5)"
    )
    init.add_argument(
        "--fingerprints", type=Path, help="OONI-format blockpage fingerprint CSV to add"
    )
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

    run = commands.add_parser(
        "run",
        help="run as a service: measure on a randomized schedule, pulse, upload, until stopped",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common(run)
    run.add_argument("--targets", type=Path, help="test list CSV (default: targets_file in config)")
    run.add_argument("--interval", type=float, help="seconds between rounds (overrides config)")
    run.add_argument("--jitter", type=float, help="randomize waits by this fraction (0-0.9)")
    run.add_argument("--pulse-interval", type=float, help="seconds between pulses (0: off)")
    run.add_argument("--upload-interval", type=float, help="seconds between upload attempts")
    run.add_argument(
        "--max-rounds", type=int, help="stop after N rounds and a last upload (for tests, cron)"
    )
    run.add_argument("--quiet", action="store_true", help="do not log each measurement")
    run.set_defaults(handler=cmd_run)

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

    status = commands.add_parser(
        "status", help="show identity, spool, oldest unsent, last upload, context, next run"
    )
    common(status)
    status.set_defaults(handler=cmd_status)


def _config_path(args: argparse.Namespace) -> Path:
    from .paths import default_config_path

    return Path(args.config) if args.config else default_config_path()


def _emit(args: argparse.Namespace, document: dict[str, Any], text: str) -> None:
    print(json.dumps(document, indent=2) if args.json else text)


def cmd_init(args: argparse.Namespace) -> int:
    from protocol import LocalProtocolError, NetworkContext, NetworkType
    from protocol.bogons import parse_prefixes

    from .config import AgentConfig, check_collector_url, write_config
    from .consent import require_consent
    from .errors import ConfigError
    from .keyfile import create_key
    from .paths import default_key_path, default_spool_dir
    from .probes.dns_probe import ResolverSpec
    from .socks5 import ProxySpec
    from .web_connectivity import ProbeSettings

    path = _config_path(args)
    if path.exists():
        raise ConfigError(f"{path} already exists; edit it, or pass --config for a new agent")
    require_consent(args.accept_risks)
    explicit = args.config is not None
    key_file = args.key_file or (path.parent / "agent.key" if explicit else default_key_path())
    spool_dir = args.spool_dir or (path.parent / "spool" if explicit else default_spool_dir())
    try:
        kind = NetworkType("unknown" if args.network_type == "auto" else args.network_type)
        network = NetworkContext(args.country.upper(), args.region, args.asn, args.carrier, kind)
        resolver = ResolverSpec.parse(args.resolver)
        extra = tuple(ResolverSpec.parse(text) for text in args.extra_resolver)
        parse_prefixes(args.routable_prefix)
        if args.proxy:
            ProxySpec.parse(args.proxy)
        if not 0 < args.timeout <= 120:
            raise ValueError("--timeout must be a number of seconds in (0, 120]")
        if args.fingerprints is not None and not args.fingerprints.is_file():
            raise ValueError(f"--fingerprints: no file at {args.fingerprints}")
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
            timeout=args.timeout,
            fingerprints_file=str(args.fingerprints.absolute()) if args.fingerprints else None,
            ca_file=args.ca_file,
            extra_resolvers=extra,
            routable_prefixes=tuple(args.routable_prefix),
            control_url=None if args.no_control else collector_url,
        ),
        collector_urls=tuple(check_collector_url(url) for url in args.mirror),
        proxy=args.proxy,
        targets_file=args.targets_file.absolute() if args.targets_file else None,
        detect_network_type=args.network_type == "auto",
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
        from .socks5 import make_session

        async with make_session(config.proxy) as session:
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
    spool = Spool(config.spool_dir, config.service.spool)
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

    async def measure_all() -> list[Any]:
        from .service import make_context_resolver

        network = await make_context_resolver(config, key).current()
        return await measure_targets(
            targets, key.agent_id, network, config.probe, on_result, measure
        )

    results = asyncio.run(measure_all())
    report = None
    if not args.no_upload:
        report = asyncio.run(
            drain(
                spool,
                key,
                config.collectors,
                proxy=config.proxy,
                collector_key=config.collector_key,
            )
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
            + (f", {report.rejected} refused (kept in spool/rejected/)" if report.rejected else "")
        )
        for error in report.errors:
            text += f"\nupload problem: {error}"
    _emit(args, document, text)
    # 3: measured, but not everything reached a collector (still spooled, or refused and set aside)
    return 3 if report is not None and (report.left or report.rejected) else 0


def cmd_upload(args: argparse.Namespace) -> int:
    from .config import load_config
    from .keyfile import load_key
    from .spool import Spool
    from .uploader import drain

    config = load_config(_config_path(args))
    key = load_key(config.key_file)
    report = asyncio.run(
        drain(
            Spool(config.spool_dir, config.service.spool),
            key,
            config.collectors,
            proxy=config.proxy,
            collector_key=config.collector_key,
        )
    )
    text = f"uploaded {report.batches} batch(es), {report.left} left, {report.rejected} refused"
    text += "".join(f"\nupload problem: {error}" for error in report.errors)
    _emit(args, vars(report), text)
    return 3 if report.left or report.rejected else 0


def cmd_run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from .config import load_config
    from .errors import ConfigError
    from .keyfile import load_key
    from .service import AgentService, FileTargets, run_service

    config = load_config(_config_path(args))
    key = load_key(config.key_file)
    schedule = config.service.schedule
    overrides = {
        name: getattr(args, name)
        for name in ("interval", "jitter", "pulse_interval", "upload_interval")
        if getattr(args, name) is not None
    }
    if any(value < 0 for value in overrides.values()) or overrides.get("jitter", 0) > 0.9:
        raise ConfigError("--interval and friends must be positive; --jitter at most 0.9")
    if overrides.get("interval", 1) <= 0 or (args.max_rounds is not None and args.max_rounds < 1):
        raise ConfigError("--interval must be above 0 and --max-rounds at least 1")
    config = replace(
        config, service=replace(config.service, schedule=replace(schedule, **overrides))
    )
    source = args.targets or config.targets_file
    if source is None:
        raise ConfigError("no test list: pass --targets FILE or set targets_file in the config")
    targets = FileTargets(Path(source))
    targets.load()  # a broken list is an error now, not an hour from now

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    def on_measurement(m: Any) -> None:
        if not args.quiet:
            log(f"measured {m.uid} {m.test} {m.verdict.value} {m.target.url}")

    service = AgentService(config, key, targets, on_measurement=on_measurement, say=log)
    log(f"vantage agent {key.agent_id} running; stop with Ctrl-C or SIGTERM")
    return asyncio.run(run_service(service, args.max_rounds))


def cmd_status(args: argparse.Namespace) -> int:
    from protocol import format_time, utc_now

    from .config import load_config
    from .keyfile import load_key
    from .service import oldest_age, status_path
    from .spool import Spool, read_json

    config = load_config(_config_path(args))
    key = load_key(config.key_file)
    spool = Spool(config.spool_dir, config.service.spool)
    counts = spool.counts()
    oldest = spool.oldest_unsent()
    state = read_json(status_path(config.spool_dir))
    stats = read_json(spool.stats_path)
    context = state.get("context") or config.network.to_wire()
    document: dict[str, Any] = {
        "agent_id": key.agent_id,
        "config": str(config.path),
        "collector_url": config.collector_url,
        "collector_urls": list(config.collectors),
        "proxy": config.proxy,
        "network": context,
        "spool": {
            **counts,
            "bytes": spool.size_bytes(),
            "unsent_measurements": spool.unsent_measurements(),
            "oldest_unsent": format_time(oldest) if oldest else None,
            "dropped_total": spool.dropped_total,
            "dropped_age": stats.get("dropped_age", 0),
            "dropped_size": stats.get("dropped_size", 0),
        },
        "last_upload_at": state.get("last_upload_at"),
        "last_upload_error": state.get("last_upload_error"),
        "last_round_at": state.get("last_round_at"),
        "last_round": state.get("last_round"),
        "next_run_at": state.get("next_run_at"),
        "running": bool(state.get("started_at")) and not state.get("stopped_at"),
    }
    ctx: dict[str, Any] = context
    text = "\n".join(
        [
            f"agent        {key.agent_id}",
            f"config       {config.path}",
            f"collectors   {', '.join(config.collectors)}"
            + (f" via {config.proxy}" if config.proxy else ""),
            f"network      {ctx['country']} {ctx['region']} AS{ctx['asn']} {ctx['carrier']}"
            f" ({ctx['network_type']}, {ctx['source']})",
            f"spool        {document['spool']['unsent_measurements']} unsent measurement(s):"
            f" {counts['pending']} pending, {counts['outbox']} batch(es) to upload,"
            f" {spool.size_bytes()} bytes; {counts['rejected']} rejected, {counts['corrupt']} corrupt",
            f"oldest       {oldest_age(oldest, utc_now())}",
            f"dropped      {spool.dropped_total} measurement(s) so far (spool limits)",
            f"last upload  {document['last_upload_at'] or 'never'}"
            + (
                f" (last error: {document['last_upload_error']})"
                if document["last_upload_error"]
                else ""
            ),
            f"last round   {document['last_round_at'] or 'never'} {document['last_round'] or ''}".rstrip(),
            f"next run     {document['next_run_at'] or '- (service not running)'}",
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
