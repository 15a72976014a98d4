"""``vantage operator ...``: operator keys, signed key sets (rotation, revocation), agent management.

The rules for key sets (thresholds, rotation, revocation) are in ``protocol/keyset.py``'s docstring.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from protocol import LocalProtocolError, RemoteProtocolError, utc_now
from protocol.keyset import (
    KeySet,
    OperatorKey,
    decode_keyset,
    format_public_key,
    pinned_root,
    sign_keyset,
    successor,
    verify_successor,
)
from protocol.signed_doc import add_signature, key_id_for
from protocol.tables import render_table

from .operator_files import (
    OperatorError,
    create_operator_key,
    load_operator_key,
    post,
    pub_path,
    read_document,
    read_public_key,
    write_document,
)

EXAMPLES = """examples:
  vantage operator keygen --out ~/.vantage/ops-alice.key      writes the key (0600) and .pub
  cat ops-alice.key.pub ops-bob.key.pub > operator-keys.txt   pin: collector --operator-keys, agent config
  vantage collector serve --operator-keys operator-keys.txt

  # rotate: replace alice's key by a new one (old keys authorise, the new key signs too)
  vantage operator keyset new --root operator-keys.txt --add ops-carol.key.pub \\
      --revoke $(vantage operator keyid ops-alice.key.pub) --sign ops-bob.key --sign ops-carol.key \\
      --out keyset-1.vks
  vantage operator keyset sign keyset-1.vks --key ops-alice.key       co-sign offline if needed
  vantage operator keyset publish keyset-1.vks --collector https://collector.example
  # next change: --previous keyset-1.vks instead of --root

  vantage operator agents --collector https://collector.example --key ops-bob.key
  vantage operator revoke-agent 3f2a...e9 --collector https://collector.example --key ops-bob.key

exit codes: 0 ok, 1 the collector refused or is unreachable, 2 bad input (file, flag, signature count)
"""


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    def parser(
        parent: argparse._SubParsersAction[argparse.ArgumentParser], name: str, text: str
    ) -> argparse.ArgumentParser:
        p = parent.add_parser(
            name, help=text, description=text, epilog=EXAMPLES,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )  # fmt: skip
        p.add_argument("--json", action="store_true", help="print machine-readable JSON")
        return p

    operator = subparsers.add_parser(
        "operator",
        help="operator keys, key rotation and revocation, agent management (operators)",
        description="Operator keys sign test lists and key sets; agents and collectors pin them.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = operator.add_subparsers(dest="operator_command", metavar="COMMAND", required=True)

    keygen = parser(commands, "keygen", "create an Ed25519 operator key (mode 0600) and its .pub")
    keygen.add_argument("--out", type=Path, required=True, help="private key file to create")
    keygen.set_defaults(handler=cmd_keygen)

    keyid = parser(commands, "keyid", "print the key id of a public key (.pub, base64 or key file)")
    keyid.add_argument("key")
    keyid.set_defaults(handler=cmd_keyid)

    keyset = commands.add_parser(
        "keyset", help="signed key sets: rotate and revoke operator keys", epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    ks = keyset.add_subparsers(dest="keyset_command", metavar="COMMAND", required=True)
    new = parser(ks, "new", "write the next key set (rotation, revocation, thresholds)")
    base = new.add_mutually_exclusive_group(required=True)
    base.add_argument("--root", type=Path, help="the pinned keys file (for key set version 1)")
    base.add_argument("--previous", type=Path, help="the current key set document")
    new.add_argument("--add", action="append", default=[], metavar="PUB", help="key to add")
    new.add_argument(
        "--revoke", action="append", default=[], metavar="KEY_ID", help="key to revoke"
    )
    new.add_argument("--threshold", type=int, help="signatures needed to change the key set")
    new.add_argument("--list-threshold", type=int, help="signatures needed on a test list")
    new.add_argument("--expires-days", type=float, default=365.0, help="validity (default 365)")
    new.add_argument("--sign", action="append", default=[], type=Path, metavar="KEY", help="sign")
    new.add_argument("--out", type=Path, required=True)
    new.set_defaults(handler=cmd_keyset_new)
    sign = parser(ks, "sign", "add a signature to a key set document (offline co-signing)")
    sign.add_argument("document", type=Path)
    sign.add_argument("--key", type=Path, required=True)
    sign.set_defaults(handler=cmd_keyset_sign)
    show = parser(ks, "show", "show a key set document and who signed it")
    show.add_argument("document", type=Path)
    show.add_argument("--previous", type=Path, help="check it against this earlier key set")
    show.add_argument("--root", type=Path, help="check it against the pinned keys file")
    show.set_defaults(handler=cmd_keyset_show)
    publish = parser(ks, "publish", "upload a key set to a collector")
    publish.add_argument("document", type=Path)
    publish.add_argument("--collector", required=True, help="collector base URL")
    publish.set_defaults(handler=cmd_keyset_publish)

    for name, text, handler in (
        ("revoke-agent", "make the collector refuse an agent's uploads", cmd_revoke_agent),
        ("agents", "list agents: last seen, context, counts", cmd_agents),
    ):
        p = parser(commands, name, text)
        if name == "revoke-agent":
            p.add_argument("agent_id")
        p.add_argument("--collector", help="collector base URL (request signed with --key)")
        p.add_argument("--key", type=Path, help="operator key that signs the request")
        p.add_argument(
            "--db", help="instead: the collector's database (SQLite path or postgresql:// URL)"
        )
        p.set_defaults(handler=handler)


def _emit(args: argparse.Namespace, document: Any, text: str) -> None:
    print(json.dumps(document, indent=2) if args.json else text)


def cmd_keygen(args: argparse.Namespace) -> int:
    key = create_operator_key(args.out)
    public = format_public_key(key.public_key)
    key_id = key_id_for(key.public_key)
    _emit(
        args,
        {
            "key_file": str(args.out),
            "public_key": public,
            "key_id": key_id,
            "pub_file": str(pub_path(args.out)),
        },
        f"operator key {key_id}\nprivate  {args.out} (mode 0600; keep it offline if you can)\n"
        f"public   {pub_path(args.out)}: {public}",
    )
    return 0


def cmd_keyid(args: argparse.Namespace) -> int:
    public = read_public_key(args.key)
    _emit(
        args,
        {"key_id": key_id_for(public), "public_key": format_public_key(public)},
        key_id_for(public),
    )
    return 0


def read_root(path: Path) -> KeySet:
    from .testlists import load_operator_keys

    try:
        return pinned_root(load_operator_keys(path))
    except ValueError as exc:
        raise OperatorError(str(exc)) from exc


def read_keyset(path: Path) -> KeySet:
    try:
        return decode_keyset(read_document(path))[1]
    except RemoteProtocolError as exc:
        raise OperatorError(f"{path}: {exc}") from exc


def _signature_status(previous: KeySet, data: bytes) -> str:
    try:
        verify_successor(previous, data)
    except RemoteProtocolError as exc:
        return f"incomplete: {exc}"
    return "complete: verifies against version " + str(previous.version)


def cmd_keyset_new(args: argparse.Namespace) -> int:
    previous = read_root(args.root) if args.root else read_keyset(args.previous)
    now = utc_now()
    try:
        keyset = successor(
            previous,
            issued=now,
            expires=now + timedelta(days=args.expires_days),
            add=[OperatorKey(read_public_key(text)) for text in args.add],
            revoke=args.revoke,
            threshold=args.threshold,
            list_threshold=args.list_threshold,
        )
        envelope = sign_keyset(keyset, [load_operator_key(path) for path in args.sign])
    except LocalProtocolError as exc:  # a key set the rules forbid
        raise OperatorError(f"cannot build that key set: {exc}") from exc
    data = envelope.to_bytes()
    write_document(args.out, data)
    status = _signature_status(previous, data)
    _emit(
        args,
        {**_keyset_json(keyset), "file": str(args.out), "signatures": status},
        _keyset_text(keyset) + f"\nwritten  {args.out}\nsigned   {status}",
    )
    return 0


def cmd_keyset_sign(args: argparse.Namespace) -> int:
    from protocol.signed_doc import decode_signed_document

    try:
        envelope = decode_signed_document(read_document(args.document), "keyset")
    except RemoteProtocolError as exc:
        raise OperatorError(f"{args.document}: {exc}") from exc
    key = load_operator_key(args.key)
    updated = add_signature(envelope, key)
    write_document(args.document, updated.to_bytes())
    signers = [s.key_id for s in updated.signatures]
    _emit(
        args, {"file": str(args.document), "signed_by": signers}, f"signed by {', '.join(signers)}"
    )
    return 0


def _keyset_json(keyset: KeySet) -> dict[str, Any]:
    return {
        "version": keyset.version,
        "keys": [
            {"key_id": k.key_id, "public_key": format_public_key(k.public_key)} for k in keyset.keys
        ],
        "threshold": keyset.threshold,
        "list_threshold": keyset.list_threshold,
        "revoked": sorted(keyset.revoked),
        "expires": keyset.expires.isoformat() if keyset.expires else None,
    }


def _keyset_text(keyset: KeySet) -> str:
    lines = [
        f"key set  version {keyset.version}, expires {keyset.expires:%Y-%m-%d}"
        if keyset.expires
        else "",
        f"         {keyset.threshold} signature(s) to change it, {keyset.list_threshold} to sign a list",
    ]
    lines += [f"key      {k.key_id}  {format_public_key(k.public_key)}" for k in keyset.keys]
    lines += [f"revoked  {key_id}" for key_id in sorted(keyset.revoked)]
    return "\n".join(line for line in lines if line)


def cmd_keyset_show(args: argparse.Namespace) -> int:
    data = read_document(args.document)
    try:
        envelope, keyset = decode_keyset(data)
    except RemoteProtocolError as exc:
        raise OperatorError(f"{args.document}: {exc}") from exc
    document = {**_keyset_json(keyset), "signed_by": [s.key_id for s in envelope.signatures]}
    text = (
        _keyset_text(keyset) + "\nsigned   by " + ", ".join(s.key_id for s in envelope.signatures)
    )
    code = 0
    if args.previous or args.root:
        previous = read_root(args.root) if args.root else read_keyset(args.previous)
        status = _signature_status(previous, data)
        document["check"] = status
        text += f"\ncheck    {status}"
        code = 0 if status.startswith("complete") else 2
    _emit(args, document, text)
    return code


def cmd_keyset_publish(args: argparse.Namespace) -> int:
    answer = post(args.collector, "/api/v1/keysets", read_document(args.document))
    _emit(args, answer, f"published key set version {answer.get('version')} to {args.collector}")
    return 0


def _operator_request(
    args: argparse.Namespace, action: str, params: dict[str, Any]
) -> dict[str, Any]:
    from protocol.signed_requests import sign_operator_request

    if not args.collector or not args.key:
        raise OperatorError(
            "give --collector URL and --key FILE (or --db FILE on the collector host)"
        )
    body = sign_operator_request(load_operator_key(args.key), action, params, utc_now())
    path = (
        "/api/v1/operator/revoke-agent" if action == "revoke-agent" else "/api/v1/operator/agents"
    )
    return post(args.collector, path, body)


def _with_db(db: str, work: Any) -> Any:
    """Run ``work`` on the collector's database (SQLite path or postgresql:// URL) directly."""
    from .backends import StorageUrlError, parse_storage_url
    from .cli import with_storage
    from .migrations import SchemaMismatch
    from .storage import StorageUnavailable

    try:
        url = parse_storage_url(db)
    except StorageUrlError as exc:
        raise OperatorError(str(exc)) from exc
    if url.backend == "sqlite" and not Path(url.target).exists():
        raise OperatorError(f"no collector database at {url.target}")  # never create an empty one
    try:
        return with_storage(db, work, None)
    except (SchemaMismatch, StorageUnavailable, OSError) as exc:
        raise OperatorError(f"cannot use the database {url.display}: {exc}") from exc


def cmd_revoke_agent(args: argparse.Namespace) -> int:
    if args.db:

        async def revoke(storage: Any) -> dict[str, Any]:
            if await storage.get_agent(args.agent_id) is None:
                raise OperatorError(f"no agent {args.agent_id} in {args.db}")
            done = await storage.revoke_agent(args.agent_id, utc_now())
            return {"agent_id": args.agent_id, "status": "revoked" if done else "already_revoked"}

        answer = _with_db(args.db, revoke)
    else:
        answer = _operator_request(args, "revoke-agent", {"agent_id": args.agent_id})
    _emit(
        args,
        answer,
        f"agent {answer['agent_id']}: {answer['status'].replace('_', ' ')};"
        " the collector refuses its uploads from now on",
    )
    return 0


def cmd_agents(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    if args.db:

        async def overview(storage: Any) -> dict[str, Any]:
            return {"agents": [asdict(a) for a in await storage.agent_overview()]}

        answer = _with_db(args.db, overview)
    else:
        answer = _operator_request(args, "list-agents", {})
    rows = [
        [
            a["agent_id"],
            "revoked" if a["revoked_at"] else "active",
            a["last_seen"] or "never",
            " ".join(str(a[k]) for k in ("country", "region") if a[k]) or "-",
            f"AS{a['asn']} {a['carrier'] or ''}".strip() if a["asn"] is not None else "-",
            a["network_type"] or "-",
            a["batches"],
            a["measurements"],
            a["refusals"],
        ]
        for a in answer["agents"]
    ]
    headers = [
        "agent",
        "status",
        "last seen",
        "where",
        "carrier",
        "network",
        "batches",
        "measured",
        "refusals",
    ]
    _emit(args, answer, render_table(headers, rows) if rows else "no agents")
    if not args.json and not rows:
        print("(agents appear after `vantage agent init` registers them)", file=sys.stderr)
    return 0
