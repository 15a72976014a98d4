"""The collector's aiohttp application: ``create_app(config)`` and its routes.

State lives in typed ``web.AppKey``s (aiohttp's "No Singletons Please"); the storage is opened and
closed in ``cleanup_ctx``. The client's address is read in exactly one place, the per-address rate
limiter, which keys on a keyed hash of it in memory; it is never stored or logged.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from aiohttp import web

from protocol import (
    Receipt,
    RemoteProtocolError,
    SigningKey,
    sign_receipt,
    utc_now,
    verify_registration,
)

from . import __version__
from .aggregate import build_aggregate_sql, parse_aggregate_query
from .backends import open_storage, parse_storage_url, storage_outage_errors
from .control import ControlHelper, ControlSettings, parse_control_request
from .detector import DetectorSettings
from .errors import (
    BadRequest,
    Busy,
    CollectorError,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    TooManyRequests,
    from_protocol_error,
)
from .ingest import IngestPolicy, ingest
from .keyfile import load_or_create_key
from .metrics import Metrics
from .ratelimit import AddressLimiter, Rate, RateLimiter, retry_after_header
from .storage import Storage
from .whoami import CONTEXT_KEYS, setup_whoami

log = logging.getLogger("vantage.collector")

MSGPACK_TYPES = frozenset(
    {"application/msgpack", "application/x-msgpack", "application/vnd.msgpack"}
)


# An agent uploading a long shutdown's backlog sends many batches in a row: allow a burst.
DEFAULT_AGENT_RATE = Rate(per_second=10, burst=60)
# Behind a load balancer every request comes from its address: set per_second=0 there.
DEFAULT_ADDRESS_RATE = Rate(per_second=20, burst=100)


@dataclass(frozen=True, slots=True)
class CollectorConfig:
    db_path: Path | str  # a SQLite path, or a storage URL (sqlite:///..., postgresql://...)
    max_body_bytes: int = 8 * 1024 * 1024
    policy: IngestPolicy = field(default_factory=IngestPolicy)
    # Pinned operator keys (key set version 0) for test lists and operator requests; see testlists.py.
    operator_keys: tuple[bytes, ...] = ()
    operator_threshold: int | None = None
    # Signs receipts. None: beside the SQLite file, or $XDG_DATA_HOME/vantage/ for PostgreSQL.
    key_path: Path | None = None
    agent_rate: Rate = DEFAULT_AGENT_RATE
    address_rate: Rate = DEFAULT_ADDRESS_RATE
    migrate: bool | None = None  # None: the backend's default (SQLite yes, PostgreSQL no)
    # Back-pressure: uploads beyond this many at once are answered 503 + Retry-After before their
    # body is read, so an overloaded collector keeps its memory bounded (agents retry with backoff).
    max_inflight_uploads: int = 256
    control: ControlSettings = field(default_factory=ControlSettings)
    geoip_paths: tuple[Path, ...] = ()  # MaxMind/DB-IP .mmdb files (City/Country and ASN)
    context_token_ttl: timedelta = timedelta(hours=6)
    # The disruption detector (collector/disruptions.py): seconds between passes (0: never), its
    # thresholds, and webhook URLs told of every open/close (collector/alerts.py).
    detect_interval: float = 60.0
    detector: DetectorSettings = field(default_factory=DetectorSettings)
    webhooks: tuple[str, ...] = ()

    @property
    def resolved_key_path(self) -> Path:
        if self.key_path is not None:
            return self.key_path
        url = parse_storage_url(self.db_path)
        if url.backend == "sqlite":
            return Path(url.target).with_name(Path(url.target).name + ".collector-key")
        data_home = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
        return Path(data_home) / "vantage" / "collector.key"


@dataclass(slots=True)
class Limits:
    per_agent: RateLimiter
    per_address: AddressLimiter


CONFIG = web.AppKey("config", CollectorConfig)
STORAGE = web.AppKey("storage", Storage)
METRICS = web.AppKey("metrics", Metrics)
COLLECTOR_KEY = web.AppKey("collector_key", SigningKey)
LIMITS = web.AppKey("limits", Limits)
ERROR_CODE = web.ResponseKey("error_code", str)
CONTROL = web.AppKey("control", ControlHelper)


def json_error(status: int, code: str, message: str) -> web.Response:
    response = web.json_response({"error": {"code": code, "message": message}}, status=status)
    response[ERROR_CODE] = code  # for the metrics middleware's rejects-by-reason
    return response


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error leaves as JSON ``{"error": {"code", "message"}}`` and the server keeps serving."""
    try:
        return await handler(request)
    except TooManyRequests as exc:
        response = json_error(exc.status, exc.code, exc.message)
        response.headers["Retry-After"] = exc.retry_after
        return response
    except CollectorError as exc:
        return json_error(exc.status, exc.code, exc.message)
    except web.HTTPRequestEntityTooLarge as exc:
        return json_error(413, "too_large", exc.text or "request body too large")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = exc.reason.lower().replace(" ", "_")
        return json_error(exc.status, code, exc.text or exc.reason)
    except Exception as exc:
        if isinstance(exc, storage_outage_errors()):
            # Not a bug: the database is down or restarting. Nothing was stored; agents keep the
            # batch in their spool and retry, so say so with a 503 they understand.
            log.warning("database unreachable on %s %s: %s", request.method, request.path, exc)
            response = json_error(
                503, "storage_unavailable", "the database is unreachable; nothing was stored"
            )
            response.headers["Retry-After"] = "10"
            return response
        log.exception("unhandled error on %s %s", request.method, request.path)
        return json_error(500, "internal", "internal error; the request was not stored")


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Latency and status of every request; rejects by reason. Outside ``error_middleware``, so it
    sees the final status of every answer."""
    started = time.perf_counter()
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    metrics = request.app[METRICS]
    status = 500
    try:
        response = await handler(request)
        status = response.status
        if 400 <= status < 500:
            metrics.rejects.labels(route, response.get(ERROR_CODE, str(status))).inc()
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        metrics.latency.labels(route, request.method).observe(time.perf_counter() - started)
        metrics.requests.labels(route, request.method, str(status)).inc()


@web.middleware
async def address_limit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Per-address limit on what writes (uploads, registrations): cheap, so it runs before parsing."""
    if request.method == "POST":
        wait = request.app[LIMITS].per_address.check(request.remote)
        if wait > 0:
            raise TooManyRequests(
                "too many requests from this address; slow down",
                retry_after=retry_after_header(wait),
            )
    return await handler(request)


async def read_body(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"body is {request.content_length} bytes, limit is {limit}")
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise PayloadTooLarge(f"body exceeds the limit of {limit} bytes") from exc


async def index(request: web.Request) -> web.Response:
    """What this collector serves, read off its router (a hand-kept list would drift)."""
    endpoints = sorted(
        {
            f"{route.method} {route.resource.canonical}"
            for route in request.app.router.routes()
            if route.method != "HEAD" and route.resource is not None
        },
        key=lambda line: (line.split(" ", 1)[1], line),
    )
    return web.json_response(
        {
            "service": "vantage-collector",
            "version": __version__,
            "dashboard": "GET / with Accept: text/html",
            "endpoints": endpoints,
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


class InflightGate:
    """Counts uploads being handled; refuses new ones at the limit (no queue that can grow)."""

    def __init__(self, limit: int) -> None:
        self.limit, self.current = limit, 0

    def enter(self) -> None:
        if self.current >= self.limit:
            raise Busy(
                f"{self.current} uploads in flight, the limit; retry shortly", retry_after="2"
            )
        self.current += 1

    def leave(self) -> None:
        self.current -= 1


INFLIGHT = web.AppKey("inflight_uploads", InflightGate)


async def upload_batch(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    if request.content_type not in MSGPACK_TYPES:
        return json_error(
            415, "unsupported_media_type", "send the signed batch as application/msgpack"
        )
    gate = request.app[INFLIGHT]
    gate.enter()
    try:
        return await _upload_batch(request, config)
    finally:
        gate.leave()


async def _upload_batch(request: web.Request, config: CollectorConfig) -> web.Response:
    body = await read_body(request, config.max_body_bytes)
    received_at = utc_now()
    limiter = request.app[LIMITS].per_agent
    context_keys: tuple[bytes, ...] = request.app[CONTEXT_KEYS]
    accepted = await ingest(
        request.app[STORAGE],
        body,
        received_at,
        config.policy,
        agent_limiter=limiter,
        context_keys=context_keys,
    )
    result = accepted.result
    request.app[METRICS].accepted(accepted.batch, result, received_at)
    log.info(
        "batch %s: %d stored, %d duplicates",
        result.batch_id,
        result.stored,
        result.duplicates,
        extra={"batch_id": result.batch_id, "stored": result.stored},
    )
    # Signed only now, after the commit: a receipt is a promise that the data is on disk.
    receipt = sign_receipt(
        request.app[COLLECTOR_KEY],
        Receipt(result.batch_id, accepted.payload_sha256, received_at),
    )
    return web.json_response(
        {
            "status": "duplicate" if result.duplicate_batch else "stored",
            "batch_id": result.batch_id,
            "stored": result.stored,
            "duplicates": result.duplicates,
            "receipt": receipt.to_json(),
        }
    )


async def collector_key(request: web.Request) -> web.Response:
    public = request.app[COLLECTOR_KEY].public_key
    return web.json_response(
        {
            "algorithm": "ed25519",
            "public_key": base64.b64encode(public).decode(),
            "receipt_domain": "vantage/receipt/v1",
        }
    )


async def metrics(request: web.Request) -> web.Response:
    return web.Response(
        body=request.app[METRICS].render(),
        headers={"Content-Type": request.app[METRICS].content_type},
    )


async def control(request: web.Request) -> web.Response:
    """Measure a URL from here, for an agent's verdict (collector/control.py)."""
    if not request.app[CONFIG].control.enabled:
        raise NotFound("this collector runs no control helper", code="control_disabled")
    body = await read_body(request, 8 * 1024)
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"control request is not JSON: {exc}", code="undecodable") from exc
    url, addrs = parse_control_request(document)
    result, cached = await request.app[CONTROL].control(url, addrs)
    response = web.json_response(result.to_wire())
    response.headers["X-Vantage-Control-Cache"] = "hit" if cached else "miss"
    return response


def rows_to_csv(rows: list[dict[str, Any]], columns: list[str]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


async def aggregate(request: web.Request) -> web.Response:
    query = parse_aggregate_query(request.query)
    fmt = request.query.get("format", "json")
    if fmt not in ("json", "csv"):
        raise BadRequest("format must be json or csv")
    rows = [
        row if type(row) is dict else dict(row)
        for row in await request.app[STORAGE].aggregate(query)
    ]
    if fmt == "csv":
        columns = list(rows[0]) if rows else build_aggregate_sql(query, lambda n: "?")[2]
        return web.Response(text=rows_to_csv(rows, columns), content_type="text/csv")
    return web.json_response(
        {
            "axes": list(query.axes),
            "filters": dict(query.filters),
            "since": query.since.isoformat() if query.since else None,
            "until": query.until.isoformat() if query.until else None,
            "rows": rows,
        }
    )


def create_app(
    config: CollectorConfig,
    storage: Storage | None = None,
    control_helper: ControlHelper | None = None,
) -> web.Application:
    app = web.Application(
        client_max_size=config.max_body_bytes,
        middlewares=[metrics_middleware, error_middleware, address_limit_middleware],
    )
    app[CONFIG] = config
    app[STORAGE] = (
        storage if storage is not None else open_storage(config.db_path, migrate=config.migrate)
    )
    app[METRICS] = Metrics()
    app[COLLECTOR_KEY] = load_or_create_key(config.resolved_key_path)
    app[LIMITS] = Limits(RateLimiter(config.agent_rate), AddressLimiter(config.address_rate))
    app[INFLIGHT] = InflightGate(config.max_inflight_uploads)
    app[CONTROL] = control_helper or ControlHelper(config.control)

    async def storage_ctx(app: web.Application) -> AsyncIterator[None]:
        await app[STORAGE].open()
        yield
        await app[STORAGE].close()

    app.cleanup_ctx.append(storage_ctx)
    from .dashboard import add_routes as add_dashboard_routes

    add_dashboard_routes(app, index)  # "/": the dashboard for browsers, this JSON index otherwise
    app.router.add_get("/healthz", healthz)
    app.router.add_post("/api/v1/agents", register_agent)
    app.router.add_post("/api/v1/batches", upload_batch)
    app.router.add_get("/api/v1/aggregate", aggregate)
    from .testlists import add_routes as add_testlist_routes

    add_testlist_routes(app)
    app.router.add_get("/api/v1/collector-key", collector_key)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/api/v1/control", control)
    setup_whoami(app, app[COLLECTOR_KEY], config.geoip_paths, config.context_token_ttl)

    from .research_api import add_routes as add_research_routes

    add_research_routes(app)
    return app


#: aiohttp's default access-log format starts with %a, the client address: never log that.
ACCESS_LOG_FORMAT = '"%r" %s %b %Tfs'
