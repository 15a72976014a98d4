"""The agent's test lists: fetch, verify against pinned operator keys, keep the last good ones.

Trust comes only from ``operator_keys`` in the agent's config (key set version 0); the collector merely
delivers documents. On every fetch (``If-None-Match`` with the last ETag) the agent

1. walks any newer key sets from the ones it accepted before (rotation, revocation);
2. verifies each list: signature by the current key set, not expired, aimed at this agent's context,
   version not lower than the one accepted before (and not a different list under the same version);
3. stores each accepted list's exact bytes as the new *last good* copy of that list id.

Anything refused leaves the last good copy in place and is recorded with a stable reason. Refusals are
queued on disk and sent, signed with the agent's key, to ``POST /api/v1/testlists/refusals`` — now if
the collector answers, otherwise with the next fetch. Reporting to the very collector that may have
served the bad list is still worth it: most bad lists come from a stale mirror, a proxy or the network,
not a compromised collector, and operators watch those reports; with several collectors (issue 4) a
report reaches an honest one. The agent never *depends* on the report: it refuses either way.

Files, beside the spool (``$XDG_STATE_HOME/vantage/testlists`` by default)::

    keysets/00000001.vks   accepted key sets, re-verified from the pinned keys on every load
    lists/<list_id>.vtl    the last good signed bytes of each list id (re-verified before use)
    etag                   the collector's ETag for the last bundle accepted without refusals
    refusals.jsonl         refusals not yet acknowledged by a collector
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp

from protocol import (
    NetworkContext,
    RemoteProtocolError,
    SigningKey,
    Target,
    VantageError,
    format_time,
    utc_now,
)
from protocol.errors import TrustError
from protocol.keyset import KeySet, decode_keyset, pinned_root, verify_chain, verify_successor
from protocol.signed_requests import MAX_REFUSALS, Refusal, sign_refusal_report
from protocol.testlist import (
    VerifiedList,
    check_update,
    decode_bundle,
    decode_testlist,
    targets_of,
    verify_testlist,
)

from .collector_client import TIMEOUT, CollectorClient
from .errors import ConfigError, RejectedError, UploadError
from .spool import write_atomically

#: Exit code of ``fetch-list`` (and ``once --list``) when the last good list is used instead of news.
EXIT_KEPT_LAST_GOOD = 4


@dataclass(frozen=True, slots=True)
class OperatorTrust:
    """The pinned operator keys from the agent's config (key set version 0)."""

    keys: tuple[bytes, ...]
    threshold: int | None = None

    def root(self) -> KeySet:
        if not self.keys:
            raise ConfigError(
                'no operator keys pinned: add operator_keys = ["base64..."] to the agent config'
                " (the operator's *.pub files), or run `vantage agent once --targets FILE`"
            )
        return pinned_root(self.keys, self.threshold)


@dataclass
class FetchReport:
    status: str = "not_fetched"  # updated | not_modified | unreachable | error | not_fetched
    accepted: list[str] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)
    keyset_version: int = 0
    problem: str = ""
    reported: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "accepted": self.accepted,
            "refused": [r.to_wire() for r in self.refused],
            "keyset_version": self.keyset_version,
            "problem": self.problem,
            "refusals_reported": self.reported,
        }


def state_dir_for(spool_dir: Path) -> Path:
    return spool_dir.parent / "testlists"


class ListStore:
    """The on-disk state. Writes are atomic (temp file + rename), so a crash never leaves half a list."""

    def __init__(self, root: Path, trust: OperatorTrust) -> None:
        self.root = root
        self.trust = trust
        (root / "keysets").mkdir(parents=True, exist_ok=True)
        (root / "lists").mkdir(parents=True, exist_ok=True)

    # --- key sets -----------------------------------------------------------------------------

    def keyset(self) -> KeySet:
        stored = [p.read_bytes() for p in sorted((self.root / "keysets").glob("*.vks"))]
        try:
            return verify_chain(self.trust.root(), stored).current
        except RemoteProtocolError as exc:
            # The pinned keys changed under us (a re-configured agent): start over from them.
            print(
                f"vantage: stored key sets no longer chain from the pinned keys: {exc}",
                file=sys.stderr,
            )
            for path in (self.root / "keysets").glob("*.vks"):
                path.unlink()
            return self.trust.root()

    def save_keyset(self, version: int, data: bytes) -> None:
        write_atomically(self.root / "keysets" / f"{version:08d}.vks", data)

    # --- lists --------------------------------------------------------------------------------

    def _list_path(self, list_id: str) -> Path:
        return self.root / "lists" / f"{list_id}.vtl"

    def previous(self, list_id: str) -> VerifiedList | None:
        """The last accepted copy (trusted as local state: it was verified before it was written)."""
        path = self._list_path(list_id)
        if not path.exists():
            return None
        data = path.read_bytes()
        try:
            return VerifiedList(data, decode_testlist(data)[1])
        except RemoteProtocolError:
            return None  # damaged on disk: the next good list replaces it

    def save_list(self, verified: VerifiedList) -> None:
        write_atomically(self._list_path(verified.testlist.list_id), verified.data)

    def usable(
        self, network: NetworkContext, now: datetime
    ) -> tuple[list[VerifiedList], list[str]]:
        """Last good lists that still verify under the current key set, unexpired, aimed at us."""
        keyset = self.keyset()
        good, problems = [], []
        for path in sorted((self.root / "lists").glob("*.vtl")):
            try:
                verified = verify_testlist(path.read_bytes(), keyset, now)
            except RemoteProtocolError as exc:
                problems.append(f"{path.stem}: not usable: {exc}")
                continue
            if verified.testlist.targeting.matches(network):
                good.append(verified)
        return good, problems

    # --- etag and refusal queue ---------------------------------------------------------------

    @property
    def etag(self) -> str | None:
        path = self.root / "etag"
        return path.read_text(encoding="ascii").strip() or None if path.exists() else None

    def set_etag(self, etag: str | None) -> None:
        write_atomically(self.root / "etag", (etag or "").encode("ascii", "replace"))

    def queue_refusals(self, refusals: Sequence[Refusal]) -> None:
        with (self.root / "refusals.jsonl").open("a", encoding="utf-8") as handle:
            for refusal in refusals:
                handle.write(json.dumps(refusal.to_wire()) + "\n")

    def pending_refusals(self) -> list[Refusal]:
        path = self.root / "refusals.jsonl"
        if not path.exists():
            return []
        out = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(Refusal.from_wire(json.loads(line)))
            except (ValueError, TypeError, VantageError):
                continue  # a torn last line after a crash: drop it
        return out[-MAX_REFUSALS:]

    def clear_refusals(self) -> None:
        (self.root / "refusals.jsonl").unlink(missing_ok=True)


def _refusal(exc: RemoteProtocolError, data: bytes | None, now: datetime) -> Refusal:
    list_id, version, sha = "", 0, ""
    if data is not None:
        sha = hashlib.sha256(data).hexdigest()
        try:
            testlist = decode_testlist(data)[1]
            list_id, version = testlist.list_id, testlist.version
        except RemoteProtocolError:
            pass
    return Refusal(format_time(now), exc.reason, str(exc)[:512], list_id, version, sha)


def apply_bundle(
    store: ListStore, body: bytes, network: NetworkContext, now: datetime, report: FetchReport
) -> None:
    """Take what is trustworthy from a collector's bundle; record a refusal for everything else."""
    try:
        bundle = decode_bundle(body)
    except RemoteProtocolError as exc:
        report.refused.append(_refusal(exc, None, now))
        return
    keyset = store.keyset()
    newer = []
    for data in bundle.keysets:
        try:
            version = decode_keyset(data)[1].version
        except RemoteProtocolError as exc:
            report.refused.append(_refusal(exc, None, now))
            continue
        if version > keyset.version:
            newer.append((version, data))
    for _, data in sorted(newer, key=lambda item: item[0]):
        try:
            keyset = verify_successor(keyset, data)
        except RemoteProtocolError as exc:
            report.refused.append(_refusal(exc, None, now))
            break
        store.save_keyset(keyset.version, data)
    report.keyset_version = keyset.version
    for data in bundle.lists:
        try:
            verified = verify_testlist(data, keyset, now)
            tl = verified.testlist
            if not tl.targeting.matches(network):
                raise TrustError(
                    f"test list {tl.list_id} is for {tl.targeting.describe()}, not this agent",
                    reason="not_targeted",
                )
            if check_update(store.previous(tl.list_id), verified):
                store.save_list(verified)
                report.accepted.append(f"{tl.list_id} v{tl.version}")
        except RemoteProtocolError as exc:
            report.refused.append(_refusal(exc, data, now))


def testlist_url(collector_url: str, network: NetworkContext) -> str:
    query = {
        "country": network.country,
        "region": network.region,
        "asn": str(network.asn),
        "network_type": network.network_type.value,
    }
    return f"{collector_url.rstrip('/')}/api/v1/testlists?{urlencode(query)}"


async def report_refusals(
    store: ListStore, client: CollectorClient, key: SigningKey, now: datetime
) -> int:
    """Send queued refusals (signed by the agent); keep them queued if the collector does not ack."""
    pending = store.pending_refusals()
    if not pending:
        return 0
    body = sign_refusal_report(key, pending, now)
    for attempt in range(2):
        try:
            await client.post_signed("/api/v1/testlists/refusals", body)
        except RejectedError as exc:
            if exc.code == "unknown_agent" and attempt == 0:
                await client.register(key)
                continue
            return 0
        except UploadError:
            return 0
        store.clear_refusals()
        return len(pending)
    return 0


async def refresh(
    store: ListStore,
    collector_url: str,
    key: SigningKey,
    network: NetworkContext,
    now: datetime | None = None,
) -> FetchReport:
    """One fetch: update the last good lists from the collector if it has trustworthy news."""
    now = now or utc_now()
    report = FetchReport()
    headers = {"Accept": "application/msgpack"}
    etag = store.etag
    if etag:
        headers["If-None-Match"] = etag
    async with aiohttp.ClientSession() as session:
        try:
            async with session.get(
                testlist_url(collector_url, network), headers=headers, timeout=TIMEOUT
            ) as response:
                if response.status == 304:
                    report.status = "not_modified"
                elif response.status == 200:
                    body = await response.read()
                    apply_bundle(store, body, network, now, report)
                    report.status = "updated"
                    if not report.refused:
                        store.set_etag(response.headers.get("ETag"))
                else:
                    report.status = "error"
                    report.problem = (
                        f"collector answered {response.status}: {(await response.text())[:200]}"
                    )
        except (aiohttp.ClientError, TimeoutError) as exc:
            report.status = "unreachable"
            report.problem = (
                f"cannot reach collector at {collector_url}: {exc or type(exc).__name__}"
            )
        if report.refused:
            store.queue_refusals(report.refused)
        if report.status in ("updated", "not_modified"):
            report.reported = await report_refusals(
                store, CollectorClient(collector_url, session), key, now
            )
    if report.keyset_version == 0:
        report.keyset_version = store.keyset().version
    return report


def describe(report: FetchReport) -> str:
    lines = [
        f"test lists: {report.status.replace('_', ' ')} (operator key set v{report.keyset_version})"
    ]
    if report.problem:
        lines.append(f"  problem: {report.problem}")
    lines += [f"  accepted {item}" for item in report.accepted]
    for refusal in report.refused:
        what = f"{refusal.list_id} v{refusal.version}" if refusal.list_id else "document"
        lines.append(f"  REFUSED {what} [{refusal.reason}]: {refusal.message}")
    if report.refused:
        lines.append("  kept the last good lists")
    if report.reported:
        lines.append(f"  reported {report.reported} refusal(s) to the collector")
    return "\n".join(lines)


def list_targets(lists: Sequence[VerifiedList]) -> list[Target]:
    return targets_of([v.testlist for v in lists])
