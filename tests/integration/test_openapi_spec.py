"""The OpenAPI document validates, describes exactly the app's routes, and the docs page is served."""

from __future__ import annotations

from pathlib import Path

import aiohttp
from openapi_spec_validator import validate

from collector.app import CollectorConfig, create_app
from collector.openapi import build_spec
from collector.server import start_collector


def app_routes(tmp_path: Path) -> set[tuple[str, str]]:
    app = create_app(CollectorConfig(tmp_path / "c.db", detect_interval=0))
    return {
        (route.resource.canonical, route.method.lower())
        for route in app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }


def test_spec_validates_and_matches_the_routes_exactly(tmp_path: Path) -> None:
    spec = build_spec()
    validate(spec)
    described = {(path, method) for path, ops in spec["paths"].items() for method in ops}
    routes = app_routes(tmp_path)
    assert routes - described == set(), "routes without a description in collector/openapi.py"
    assert described - routes == set(), "described paths the app does not serve"


async def test_spec_and_docs_are_served(tmp_path: Path) -> None:
    running = await start_collector(CollectorConfig(tmp_path / "c.db", detect_interval=0))
    try:
        async with aiohttp.ClientSession(running.url) as http:
            async with http.get("/api/openapi.json") as response:
                assert response.status == 200
                served = await response.json()
            async with http.get("/api/docs") as response:
                assert response.content_type == "text/html"
                page = await response.text()
    finally:
        await running.stop()
    assert served == build_spec()
    for path in served["paths"]:
        assert f"<code>{path}</code>" in page
    assert "<script" not in page and "http://" not in page and "https://" not in page
