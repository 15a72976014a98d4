"""``vantage testlist ...``: import, review, sign and publish test lists.

The flow: ``import`` Citizen Lab CSVs or URL lists into a JSON *draft* (every bad row reported with its
line), ``show``/``diff`` it against what is published, ``sign`` it into a versioned, expiring, targeted
document with an operator key, ``publish`` it to the collector, which verifies it again.
"""

from __future__ import annotations

import argparse
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from protocol import LocalProtocolError, RemoteProtocolError, Scope, utc_now
from protocol.listimport import ScopeRules, draft_json, entries_from_draft, import_lists
from protocol.tables import render_table
from protocol.testlist import Entry, Schedule, Targeting, TestList, decode_testlist, sign_testlist

from .operator_files import OperatorError, load_operator_key, post, read_document, write_document

EXAMPLES = """examples:
  vantage testlist import ir.csv global.csv --domestic-tld ir --domestic-domain gov.example \\
      --out ir-draft.json                       Citizen Lab CSVs or URL lists -> a draft to review
  vantage testlist show ir-draft.json           entries, scopes and categories
  vantage testlist diff ir-mobile-v6.vtl ir-draft.json     what would change against the live list
  vantage testlist sign ir-draft.json --key ops.key --id ir-mobile --previous ir-mobile-v6.vtl \\
      --country IR --region IR-07 --region IR-23 --asn 44244 --network-type mobile \\
      --expires-days 7 --interval 3600 --priority 80 --out ir-mobile-v7.vtl
  vantage testlist publish ir-mobile-v7.vtl --collector https://collector.example

exit codes: 0 ok, 1 collector refused or unreachable (diff: the lists differ), 2 bad input or bad rows
"""


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    top = subparsers.add_parser(
        "testlist",
        help="import, review, sign and publish test lists (operators)",
        description=(
            "import Citizen Lab CSVs or URL lists into a draft (bad rows reported by line), review it"
            " (show, diff), sign it into a versioned, expiring, targeted list, publish it."
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = top.add_subparsers(dest="testlist_command", metavar="COMMAND", required=True)

    def parser(name: str, text: str) -> argparse.ArgumentParser:
        p = commands.add_parser(
            name, help=text, description=text, epilog=EXAMPLES,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )  # fmt: skip
        p.add_argument("--json", action="store_true", help="print machine-readable JSON")
        return p

    imp = parser("import", "read Citizen Lab CSVs / URL lists into a draft")
    imp.add_argument(
        "sources", nargs="+", type=Path, help="CSV (header with url) or one URL a line"
    )
    imp.add_argument("--out", type=Path, required=True, help="draft JSON to write")
    imp.add_argument("--domestic-domain", action="append", default=[], help="domestic domain")
    imp.add_argument(
        "--domestic-tld", action="append", default=[], help="country-code TLD, e.g. ir"
    )
    imp.add_argument(
        "--domestic-network", action="append", default=[], help="CIDR of domestic addresses"
    )
    imp.add_argument(
        "--default-scope",
        choices=["international", "domestic", "none"],
        default="international",
        help="scope when no column or rule decides ('none': such rows are errors)",
    )
    imp.add_argument("--skip-bad", action="store_true", help="write the good rows despite bad ones")
    imp.set_defaults(handler=cmd_import)

    show = parser("show", "show a draft or a signed list")
    show.add_argument("file", type=Path)
    show.set_defaults(handler=cmd_show)

    diff = parser("diff", "compare two drafts or signed lists (exit 1 if they differ)")
    diff.add_argument("old", type=Path)
    diff.add_argument("new", type=Path)
    diff.set_defaults(handler=cmd_diff)

    sign = parser("sign", "sign a draft into a versioned, expiring, targeted test list")
    sign.add_argument(
        "draft", type=Path, help="draft JSON (from import) or a signed list to re-sign"
    )
    sign.add_argument("--key", type=Path, action="append", required=True, help="operator key")
    sign.add_argument("--id", dest="list_id", required=True, help="list id, e.g. ir-mobile")
    sign.add_argument("--version", type=int, help="default: --previous's version + 1, else 1")
    sign.add_argument("--previous", type=Path, help="the currently published version of this list")
    sign.add_argument("--expires-days", type=float, default=7.0, help="validity (default 7)")
    sign.add_argument("--country", action="append", default=[], help="target country; repeatable")
    sign.add_argument("--region", action="append", default=[], help="target region; repeatable")
    sign.add_argument("--asn", type=int, action="append", default=[], help="target carrier ASN")
    sign.add_argument(
        "--network-type",
        action="append",
        default=[],
        choices=["mobile", "wifi", "wired", "unknown"],
    )
    sign.add_argument("--interval", type=int, default=3600, help="seconds between runs (hint)")
    sign.add_argument("--priority", type=int, default=50, help="0..100, higher runs first (hint)")
    sign.add_argument("--description", default="")
    sign.add_argument("--out", type=Path, required=True, help="signed list to write (.vtl)")
    sign.set_defaults(handler=cmd_sign)

    publish = parser("publish", "upload signed lists to a collector")
    publish.add_argument("files", nargs="+", type=Path)
    publish.add_argument("--collector", required=True, help="collector base URL")
    publish.set_defaults(handler=cmd_publish)


def _emit(args: argparse.Namespace, document: Any, text: str) -> None:
    print(json.dumps(document, indent=2) if args.json else text)


def cmd_import(args: argparse.Namespace) -> int:
    sources = []
    for path in args.sources:
        try:
            sources.append((str(path), path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as exc:
            raise OperatorError(f"cannot read {path}: {exc}") from exc
    try:
        rules = ScopeRules(
            domestic_domains=tuple(args.domestic_domain),
            domestic_tlds=tuple(args.domestic_tld),
            domestic_networks=tuple(args.domestic_network),
            default=None if args.default_scope == "none" else Scope(args.default_scope),
        )
    except LocalProtocolError as exc:
        raise OperatorError(str(exc)) from exc
    result = import_lists(sources, rules)
    written = bool(result.entries) and (not result.problems or args.skip_bad)
    if written:
        write_document(args.out, draft_json(result.entries).encode())
    counts = {s.value: sum(e.scope is s for e in result.entries) for s in Scope}
    document = {
        "entries": len(result.entries),
        "scopes": counts,
        "duplicates": result.duplicates,
        "problems": [
            {"source": p.source, "line": p.line, "message": p.message} for p in result.problems
        ],
        "written": str(args.out) if written else None,
    }
    lines = [f"bad row {problem}" for problem in result.problems]
    lines.append(
        f"{len(result.entries)} entries ({counts['domestic']} domestic,"
        f" {counts['international']} international), {result.duplicates} duplicate(s) dropped,"
        f" {len(result.problems)} bad row(s)"
    )
    if written:
        lines.append(f"wrote {args.out}")
    else:
        lines.append(
            "nothing written"
            + (" (fix the rows above, or pass --skip-bad)" if result.problems else "")
        )
    _emit(args, document, "\n".join(lines))
    return 0 if written else 2


def load_any(path: Path) -> tuple[list[Entry], TestList | None]:
    """Entries of a draft (JSON) or a signed list (.vtl), and the list's metadata if signed."""
    data = read_document(path)
    try:
        if data.lstrip().startswith(b"{"):
            return entries_from_draft(data.decode("utf-8"), str(path)), None
        testlist = decode_testlist(data)[1]
    except (RemoteProtocolError, UnicodeDecodeError) as exc:
        raise OperatorError(f"{path}: {exc}") from exc
    return list(testlist.entries), testlist


def _meta(testlist: TestList) -> dict[str, Any]:
    return {
        "list_id": testlist.list_id,
        "version": testlist.version,
        "issued": testlist.issued.isoformat(),
        "expires": testlist.expires.isoformat(),
        "targeting": testlist.targeting.to_wire(),
        "schedule": {
            "interval": testlist.schedule.interval,
            "priority": testlist.schedule.priority,
        },
        "description": testlist.description,
    }


def cmd_show(args: argparse.Namespace) -> int:
    entries, testlist = load_any(args.file)
    document: dict[str, Any] = {"entries": [e.to_wire() for e in entries]}
    header = f"draft {args.file}: {len(entries)} entries"
    if testlist is not None:
        document.update(_meta(testlist))
        header = (
            f"{testlist.list_id} v{testlist.version}: {len(entries)} entries, for"
            f" {testlist.targeting.describe()}\nissued {testlist.issued:%Y-%m-%d %H:%M}Z,"
            f" expires {testlist.expires:%Y-%m-%d %H:%M}Z; every {testlist.schedule.interval}s,"
            f" priority {testlist.schedule.priority}"
        )
    rows = [[e.scope.value, e.category, ",".join(e.tests), e.url] for e in entries]
    _emit(
        args, document, header + "\n\n" + render_table(["scope", "category", "tests", "url"], rows)
    )
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    old_entries, old_list = load_any(args.old)
    new_entries, new_list = load_any(args.new)
    old = {e.url: e for e in old_entries}
    new = {e.url: e for e in new_entries}
    added = [new[u] for u in new if u not in old]
    removed = [old[u] for u in old if u not in new]
    changed = [(old[u], new[u]) for u in new if u in old and old[u] != new[u]]
    meta: dict[str, Any] = {}
    if old_list is not None and new_list is not None:
        before, after = _meta(old_list), _meta(new_list)
        meta = {k: {"old": before[k], "new": after[k]} for k in before if before[k] != after[k]}
    document = {
        "added": [e.to_wire() for e in added],
        "removed": [e.to_wire() for e in removed],
        "changed": [{"old": a.to_wire(), "new": b.to_wire()} for a, b in changed],
        "metadata": meta,
    }
    lines = [f"+ {e.scope.value:13} {e.category:6} {e.url}" for e in added]
    lines += [f"- {e.scope.value:13} {e.category:6} {e.url}" for e in removed]
    lines += [
        f"~ {b.url}: {a.scope.value}/{a.category}/{','.join(a.tests)}"
        f" -> {b.scope.value}/{b.category}/{','.join(b.tests)}"
        for a, b in changed
    ]
    lines += [f"~ {k}: {v['old']} -> {v['new']}" for k, v in meta.items()]
    summary = f"{len(added)} added, {len(removed)} removed, {len(changed)} changed"
    _emit(args, document, "\n".join([*lines, summary]))
    return 1 if lines else 0


def cmd_sign(args: argparse.Namespace) -> int:
    entries, _ = load_any(args.draft)
    version = args.version
    if args.previous is not None:
        _, previous = load_any(args.previous)
        if previous is None:
            raise OperatorError(f"--previous {args.previous} is a draft, not a signed list")
        if previous.list_id != args.list_id:
            raise OperatorError(f"--previous is list {previous.list_id}, not {args.list_id}")
        if version is None:
            version = previous.version + 1
        elif version <= previous.version:
            raise OperatorError(
                f"version {version} is not above the previous v{previous.version}; agents would refuse it"
            )
    now = utc_now()
    try:
        testlist = TestList(
            list_id=args.list_id,
            version=version or 1,
            issued=now,
            expires=now + timedelta(days=args.expires_days),
            entries=tuple(entries),
            targeting=Targeting(
                tuple(c.upper() for c in args.country),
                tuple(args.region),
                tuple(args.asn),
                tuple(args.network_type),
            ),
            schedule=Schedule(args.interval, args.priority),
            description=args.description,
        )
    except LocalProtocolError as exc:
        raise OperatorError(f"cannot sign that list: {exc}") from exc
    envelope = sign_testlist(testlist, [load_operator_key(path) for path in args.key])
    write_document(args.out, envelope.to_bytes())
    _emit(
        args,
        {
            **_meta(testlist),
            "entries": len(entries),
            "file": str(args.out),
            "sha256": envelope.sha256,
        },
        f"signed {testlist.list_id} v{testlist.version} ({len(entries)} entries) for"
        f" {testlist.targeting.describe()}, expires {testlist.expires:%Y-%m-%d %H:%M}Z\nwrote {args.out}",
    )
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    answers = []
    for path in args.files:
        answer = post(args.collector, "/api/v1/testlists", read_document(path))
        answers.append(answer)
        if not args.json:
            print(f"published {answer['list_id']} v{answer['version']} to {args.collector}")
    if args.json:
        print(json.dumps(answers, indent=2))
    return 0
