"""The collector's aiohttp application: ``create_app(config)`` and its routes.

State lives in typed ``web.AppKey``s (aiohttp's "No Singletons Please"); the storage is opened and
closed in ``cleanup_ctx``. Nothing here reads or logs the client's address.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from aiohttp import web

from protocol import RemoteProtocolError, utc_now, verify_registration

from . import __version__
from .aggregate import parse_aggregate_query
from .errors import BadRequest, CollectorError, Forbidden, PayloadTooLarge, from_protocol_error
from .ingest import IngestPolicy, ingest_batch
from .sqlite_store import SqliteStorage
from .storage import Storage
from .whoami import CONTEXT_KEYS, setup_whoami

log = logging.getLogger("vantage.collector")

MSGPACK_TYPES = frozenset(
    {"application/msgpack", "application/x-msgpack", "application/vnd.msgpack"}
)


@dataclass(frozen=True, slots=True)
class CollectorConfig:
    db_path: Path
    max_body_bytes: int = 8 * 1024 * 1024
    policy: IngestPolicy = field(default_factory=IngestPolicy)
    # Signs whoami context tokens; default: collector.key beside the database (mode 0600).
    collector_key_path: Path | None = None
    geoip_paths: tuple[Path, ...] = ()  # MaxMind/DB-IP .mmdb files (City/Country and ASN)
    context_token_ttl: timedelta = timedelta(hours=6)


CONFIG = web.AppKey("config", CollectorConfig)
STORAGE = web.AppKey("storage", Storage)


def json_error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error leaves as JSON ``{"error": {"code", "message"}}`` and the server keeps serving."""
    try:
        return await handler(request)
    except CollectorError as exc:
        return json_error(exc.status, exc.code, exc.message)
    except web.HTTPRequestEntityTooLarge as exc:
        return json_error(413, "too_large", exc.text or "request body too large")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = exc.reason.lower().replace(" ", "_")
        return json_error(exc.status, code, exc.text or exc.reason)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return json_error(500, "internal", "internal error; the request was not stored")


async def read_body(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"body is {request.content_length} bytes, limit is {limit}")
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise PayloadTooLarge(f"body exceeds the limit of {limit} bytes") from exc


async def index(request: web.Request) -> web.Response:
    return web.json_response(
        {
            "service": "vantage-collector",
            "version": __version__,
            "endpoints": [
                "POST /api/v1/agents",
                "POST /api/v1/batches",
                "GET /api/v1/aggregate",
                "GET /api/v1/whoami",
                "GET /healthz",
            ],
        }
    )


async def healthz(request: web.Request) -> web.Response:
    await request.app[STORAGE].get_agent("0" * 32)  # proves the database answers
    return web.json_response({"status": "ok"})


async def register_agent(request: web.Request) -> web.Response:
    body = await read_body(request, 16 * 1024)
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"registration body is not JSON: {exc}", code="undecodable") from exc
    try:
        agent_id, public_key = verify_registration(document, utc_now())
    except RemoteProtocolError as exc:
        raise from_protocol_error(exc) from exc
    storage = request.app[STORAGE]
    created = await storage.register_agent(agent_id, public_key, utc_now())
    if not created:
        existing = await storage.get_agent(agent_id)
        if existing is not None and existing.revoked_at is not None:
            raise Forbidden(f"agent {agent_id} was revoked", code="revoked")
    log.info("agent %s %s", agent_id, "registered" if created else "re-registered")
    return web.json_response(
        {"agent_id": agent_id, "status": "registered" if created else "already_registered"},
        status=201 if created else 200,
    )


async def upload_batch(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    if request.content_type not in MSGPACK_TYPES:
        return json_error(
            415, "unsupported_media_type", "send the signed batch as application/msgpack"
        )
    body = await read_body(request, config.max_body_bytes)
    received_at = utc_now()
    context_keys: tuple[bytes, ...] = request.app[CONTEXT_KEYS]
    result = await ingest_batch(
        request.app[STORAGE], body, received_at, config.policy, context_keys
    )
    log.info(
        "batch %s: %d stored, %d duplicates", result.batch_id, result.stored, result.duplicates
    )
    return web.json_response(
        {
            "status": "duplicate" if result.duplicate_batch else "stored",
            "batch_id": result.batch_id,
            "stored": result.stored,
            "duplicates": result.duplicates,
        }
    )


def rows_to_csv(rows: list[dict[str, Any]], columns: list[str]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


async def aggregate(request: web.Request) -> web.Response:
    query = parse_aggregate_query(request.query)
    rows = [dict(row) for row in await request.app[STORAGE].aggregate(query)]
    fmt = request.query.get("format", "json")
    if fmt == "csv":
        columns = list(rows[0]) if rows else [*query.axes, "measurements"]
        return web.Response(text=rows_to_csv(rows, columns), content_type="text/csv")
    if fmt != "json":
        raise BadRequest("format must be json or csv")
    return web.json_response(
        {
            "axes": list(query.axes),
            "filters": dict(query.filters),
            "since": query.since.isoformat() if query.since else None,
            "until": query.until.isoformat() if query.until else None,
            "rows": rows,
        }
    )


def create_app(config: CollectorConfig, storage: Storage | None = None) -> web.Application:
    app = web.Application(client_max_size=config.max_body_bytes, middlewares=[error_middleware])
    app[CONFIG] = config
    app[STORAGE] = storage if storage is not None else SqliteStorage(config.db_path)

    async def storage_ctx(app: web.Application) -> AsyncIterator[None]:
        await app[STORAGE].open()
        yield
        await app[STORAGE].close()

    app.cleanup_ctx.append(storage_ctx)
    app.router.add_get("/", index)
    app.router.add_get("/healthz", healthz)
    app.router.add_post("/api/v1/agents", register_agent)
    app.router.add_post("/api/v1/batches", upload_batch)
    app.router.add_get("/api/v1/aggregate", aggregate)
    key_path = config.collector_key_path or config.db_path.parent / "collector.key"
    setup_whoami(app, key_path, config.geoip_paths, config.context_token_ttl)
    return app


#: aiohttp's default access-log format starts with %a, the client address: never log that.
ACCESS_LOG_FORMAT = '"%r" %s %b %Tfs'
