"""Routes of the research API and the detector that runs inside the collector.

``add_routes(app)`` mounts ``/api/v1/timeseries``, ``/api/v1/measurements``, ``/api/v1/export``,
``/api/v1/disruptions`` (+ ``.atom``) and the OpenAPI spec and docs page, and adds the detector task to
the app's ``cleanup_ctx``: every ``detect_interval`` seconds it runs one pass (``disruptions.detect``) and
hands what changed to the webhook sender. A failing pass is logged and retried at the next interval; it
never touches ingest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from protocol import utc_now

from .alerts import WebhookSender, render_atom
from .app import COLLECTOR_KEY, CONFIG, STORAGE
from .disruptions import detect, list_disruptions, recent_events
from .openapi import add_routes as add_openapi_routes
from .research import (
    check_known,
    export_lines,
    parse_disruption_query,
    parse_int,
    search,
    timeseries,
    timeseries_csv,
)

log = logging.getLogger("vantage.detector")

WEBHOOKS = web.AppKey("webhooks", WebhookSender)


async def get_timeseries(request: web.Request) -> web.Response:
    document = await timeseries(request.app[STORAGE], request.query)
    if request.query.get("format") == "csv":
        return web.Response(text=timeseries_csv(document), content_type="text/csv")
    return web.json_response(document)


async def get_measurements(request: web.Request) -> web.Response:
    return web.json_response(await search(request.app[STORAGE], request.query))


async def get_export(request: web.Request) -> web.StreamResponse:
    content_type, chunks = await export_lines(request.app[STORAGE], request.query)
    response = web.StreamResponse(headers={"Content-Type": content_type})
    response.enable_chunked_encoding()
    await response.prepare(request)
    async for chunk in chunks:
        await response.write(chunk)
    await response.write_eof()
    return response


async def get_disruptions(request: web.Request) -> web.Response:
    filters, limit = parse_disruption_query(request.query)
    items = await list_disruptions(request.app[STORAGE], filters, limit)
    return web.json_response({"disruptions": items})


async def get_disruptions_atom(request: web.Request) -> web.Response:
    check_known(request.query, {"limit"})
    limit = parse_int(request.query, "limit", 100, 1, 1000)
    events = await recent_events(request.app[STORAGE], limit)
    body = render_atom(events, str(request.url))
    return web.Response(body=body, content_type="application/atom+xml", charset="utf-8")


async def detector_loop(app: web.Application) -> None:
    config = app[CONFIG]
    while True:
        try:
            result = await detect(app[STORAGE], utc_now(), config.detector)
            for kind, item in result.events:
                log.info("disruption %s %s: %s", kind, item["id"], item["pattern"])
                app[WEBHOOKS].submit(kind, item)
        except Exception:
            log.exception("detection pass failed; retrying in %s s", config.detect_interval)
        await asyncio.sleep(config.detect_interval)


async def detector_ctx(app: web.Application) -> AsyncIterator[None]:
    sender = app[WEBHOOKS]
    await sender.start()
    task = asyncio.create_task(detector_loop(app)) if app[CONFIG].detect_interval > 0 else None
    yield
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await sender.close()


def add_routes(app: web.Application) -> None:
    app[WEBHOOKS] = WebhookSender(app[CONFIG].webhooks, app[COLLECTOR_KEY])
    app.cleanup_ctx.append(detector_ctx)  # after storage_ctx: it starts after and stops before it
    app.router.add_get("/api/v1/timeseries", get_timeseries)
    app.router.add_get("/api/v1/measurements", get_measurements)
    app.router.add_get("/api/v1/export", get_export)
    app.router.add_get("/api/v1/disruptions", get_disruptions)
    app.router.add_get("/api/v1/disruptions.atom", get_disruptions_atom)
    add_openapi_routes(app)
