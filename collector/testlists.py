"""Operator endpoints: key sets, signed test lists, agents' refusal reports, signed operator requests.

The collector trusts the operator keys it was started with (``--operator-keys FILE``, key set version 0)
and every key set published since that chains from them (``protocol.keyset.verify_chain``). It accepts a
test list only if the current key set signed it and its version is newer than any stored for that list
id, and serves the exact published bytes. The collector is a convenience, not an authority: agents
verify everything again against keys they pinned themselves.

::

    POST /api/v1/keysets              signed key set (version N+1)          201 | 4xx
    POST /api/v1/testlists            signed test list                      201 | 4xx
    GET  /api/v1/testlists?country=&region=&asn=&network_type=
                                      bundle of key sets + matching lists   200 | 304 (ETag)
    POST /api/v1/testlists/refusals   agent-signed report of refused lists  200 | 4xx
    POST /api/v1/operator/revoke-agent   operator-signed request            200 | 4xx
    POST /api/v1/operator/agents         operator-signed request            200 (JSON list)
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict
from pathlib import Path

from aiohttp import web

from protocol import LocalProtocolError, NetworkContext, RemoteProtocolError, utc_now
from protocol.errors import TrustError
from protocol.keyset import KeySet, parse_public_key, pinned_root, verify_chain, verify_successor
from protocol.signed_requests import (
    refusal_report_agent,
    verify_operator_request,
    verify_refusal_report,
)
from protocol.testlist import Bundle, TestList, decode_testlist, verify_testlist

from .app import CONFIG, MSGPACK_TYPES, STORAGE, read_body
from .errors import (
    BadRequest,
    CollectorError,
    Conflict,
    Forbidden,
    NotFound,
    Unprocessable,
    from_protocol_error,
)

log = logging.getLogger("vantage.collector.testlists")

#: Decoded lists by (document sha256, key set version): None when the current keys no longer sign it.
LIST_CACHE = web.AppKey("testlist_cache", dict[tuple[str, int], TestList | None])
_CONFLICT_REASONS = frozenset({"rollback", "keyset_rollback", "keyset_gap", "equivocation"})


def load_operator_keys(path: Path) -> tuple[bytes, ...]:
    """A file of base64 operator public keys, one per line (``#`` comments), e.g. ``*.pub`` files."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ValueError(f"cannot read operator keys {path}: {exc.strerror}") from exc
    keys = []
    for number, line in enumerate(lines, start=1):
        text = line.split("#", 1)[0].strip()
        if text:
            try:
                keys.append(parse_public_key(text))
            except RemoteProtocolError as exc:
                raise ValueError(f"{path}:{number}: {exc}") from exc
    if not keys:
        raise ValueError(f"{path}: no operator keys in it")
    return tuple(keys)


def trust_error(exc: RemoteProtocolError) -> CollectorError:
    if isinstance(exc, TrustError):
        if exc.reason in _CONFLICT_REASONS:
            return Conflict(str(exc), code=exc.reason)
        if exc.reason in ("unknown_key", "threshold"):
            return Forbidden(str(exc), code=exc.reason)
        return Unprocessable(str(exc), code=exc.reason)
    return from_protocol_error(exc)


async def current_keyset(app: web.Application) -> KeySet:
    config = app[CONFIG]
    if not config.operator_keys:
        raise Forbidden(
            "this collector trusts no operator keys; start it with --operator-keys FILE",
            code="no_operator_keys",
        )
    root = pinned_root(config.operator_keys, config.operator_threshold)
    # Re-walked on each operator request (a handful of small documents): always the stored truth.
    return verify_chain(root, await app[STORAGE].keysets()).current


async def _signed_body(request: web.Request) -> bytes:
    if request.content_type not in MSGPACK_TYPES:
        raise BadRequest("send the signed document as application/msgpack", code="content_type")
    return await read_body(request, request.app[CONFIG].max_body_bytes)


async def publish_keyset(request: web.Request) -> web.Response:
    body = await _signed_body(request)
    current = await current_keyset(request.app)
    try:
        keyset = verify_successor(current, body)
    except RemoteProtocolError as exc:
        raise trust_error(exc) from exc
    if not await request.app[STORAGE].put_keyset(keyset.version, body, utc_now()):
        raise Conflict(
            f"key set version {keyset.version} is already stored", code="keyset_rollback"
        )
    log.info("operator key set version %d published (%d keys)", keyset.version, len(keyset.keys))
    return web.json_response(
        {"version": keyset.version, "keys": sorted(keyset.by_id), "threshold": keyset.threshold},
        status=201,
    )


async def publish_testlist(request: web.Request) -> web.Response:
    body = await _signed_body(request)
    keyset = await current_keyset(request.app)
    now = utc_now()
    try:
        verified = verify_testlist(body, keyset, now)
    except RemoteProtocolError as exc:
        raise trust_error(exc) from exc
    tl = verified.testlist
    latest = await request.app[STORAGE].put_testlist(
        tl.list_id, tl.version, tl.expires, body, verified.sha256, now
    )
    if latest is not None:
        raise Conflict(
            f"the collector already has {tl.list_id} v{latest}; versions only go up"
            f" (sign again with --version {latest + 1})",
            code="version_not_newer",
        )
    log.info("test list %s v%d published (%d entries)", tl.list_id, tl.version, len(tl.entries))
    return web.json_response(
        {"list_id": tl.list_id, "version": tl.version, "sha256": verified.sha256}, status=201
    )


def _context_from_query(request: web.Request) -> NetworkContext:
    """The agent's context; an absent parameter matches only lists that do not target that axis."""
    q = request.query
    try:
        asn = int(q.get("asn") or 0)
        return NetworkContext(
            (q.get("country") or "ZZ").upper(),
            q.get("region", ""),
            asn,
            "",
            q.get("network_type") or "unknown",  # type: ignore[arg-type]  # validated by NetworkContext
        )
    except (ValueError, LocalProtocolError) as exc:
        raise BadRequest(f"bad test-list query: {exc}", code="bad_query") from exc


def _trusted_list(app: web.Application, document: bytes, keyset: KeySet | None) -> TestList | None:
    sha = hashlib.sha256(document).hexdigest()
    cache = app[LIST_CACHE]
    version = keyset.version if keyset is not None else -1
    if (sha, version) not in cache:
        if len(cache) > 4096:
            cache.clear()
        try:
            if keyset is None:
                cache[(sha, version)] = decode_testlist(document)[1]
            else:
                cache[(sha, version)] = verify_testlist(document, keyset, utc_now()).testlist
        except RemoteProtocolError as exc:
            # A list whose signer has since been revoked: stop serving it, keep it stored.
            log.info("not serving a stored test list: %s", exc)
            cache[(sha, version)] = None
    return cache[(sha, version)]


async def serve_testlists(request: web.Request) -> web.Response:
    network = _context_from_query(request)
    storage = request.app[STORAGE]
    keyset = await current_keyset(request.app) if request.app[CONFIG].operator_keys else None
    lists = []
    for document in await storage.current_testlists(utc_now()):
        testlist = _trusted_list(request.app, document, keyset)
        if testlist is not None and testlist.targeting.matches(network):
            lists.append(document)
    body = Bundle(tuple(await storage.keysets()), tuple(lists)).to_bytes()
    etag = '"' + hashlib.sha256(body).hexdigest()[:40] + '"'
    headers = {"ETag": etag, "Cache-Control": "no-cache", "Vary": "Accept"}
    if etag in [tag.strip() for tag in request.headers.get("If-None-Match", "").split(",")]:
        return web.Response(status=304, headers=headers)
    return web.Response(body=body, content_type="application/msgpack", headers=headers)


async def receive_refusals(request: web.Request) -> web.Response:
    body = await _signed_body(request)
    storage = request.app[STORAGE]
    try:
        envelope, agent_id = refusal_report_agent(body)
        agent = await storage.get_agent(agent_id)
        if agent is None:
            raise Forbidden(f"agent {agent_id} is not registered", code="unknown_agent")
        if agent.revoked_at is not None:
            raise Forbidden(f"agent {agent_id} was revoked", code="revoked")
        refusals = verify_refusal_report(envelope, agent.public_key)
    except RemoteProtocolError as exc:
        raise trust_error(exc) from exc
    stored = await storage.record_refusals(agent_id, refusals, utc_now())
    for refusal in refusals:
        log.warning(
            "agent %s refused test list %s v%d: %s",
            agent_id,
            refusal.list_id or "?",
            refusal.version,
            refusal.reason,
        )
    return web.json_response({"stored": stored})


async def _operator_params(request: web.Request, action: str) -> dict[str, object]:
    body = await _signed_body(request)
    keyset = await current_keyset(request.app)
    try:
        key_id, params = verify_operator_request(body, action, keyset, utc_now())
    except RemoteProtocolError as exc:
        raise trust_error(exc) from exc
    log.info("operator key %s: %s", key_id, action)
    return params


async def operator_revoke_agent(request: web.Request) -> web.Response:
    params = await _operator_params(request, "revoke-agent")
    agent_id = params.get("agent_id")
    if not isinstance(agent_id, str):
        raise Unprocessable("revoke-agent needs params.agent_id", code="schema")
    storage = request.app[STORAGE]
    agent = await storage.get_agent(agent_id)
    if agent is None:
        raise NotFound(f"no agent {agent_id}", code="unknown_agent")
    revoked = await storage.revoke_agent(agent_id, utc_now())
    return web.json_response(
        {"agent_id": agent_id, "status": "revoked" if revoked else "already_revoked"}
    )


async def operator_agents(request: web.Request) -> web.Response:
    await _operator_params(request, "list-agents")
    agents = await request.app[STORAGE].agent_overview()
    return web.json_response({"agents": [asdict(a) for a in agents]})


def add_routes(app: web.Application) -> None:
    app[LIST_CACHE] = {}
    app.router.add_post("/api/v1/keysets", publish_keyset)
    app.router.add_post("/api/v1/testlists", publish_testlist)
    app.router.add_get("/api/v1/testlists", serve_testlists)
    app.router.add_post("/api/v1/testlists/refusals", receive_refusals)
    app.router.add_post("/api/v1/operator/revoke-agent", operator_revoke_agent)
    app.router.add_post("/api/v1/operator/agents", operator_agents)
