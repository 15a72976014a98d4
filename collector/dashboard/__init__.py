"""The collector's web dashboard, served at ``/``: for researchers and journalists who would rather look.

Pages (all state in the query string, so every view is a shareable link):

- ``/``: province × carrier heatmap of the success ratio, domestic and international side by side, with
  a network-type filter and the active disruptions. Clients that do not ask for HTML (scripts, curl)
  get the JSON service index at ``/`` as before.
- ``/dashboard/timeseries``: success ratio per hour or day for a selection, disruptions shaded.
- ``/dashboard/disruptions``: the disruption feed, each with its evidence and measurements.
- ``/dashboard/measurements`` and ``/dashboard/measurements/{uid}``: search, and one measurement step by
  step with its batch signature verified again.
- ``/dashboard/static/{name}``: the stylesheet and script, shipped inside this package.

Charts are SVG rendered on the server (``charts.py``): no charting library, no CDN, nothing fetched
from another host, and the pages work without JavaScript. The small script only adds a banner when the
collector stops answering while a page is open.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from importlib import resources

from aiohttp import web

from ..errors import NotFound
from .detail import measurement_detail
from .views import disruptions_view, measurements_view, overview, timeseries_view

ASSET_TYPES = {
    "dashboard.css": "text/css",
    "dashboard.js": "text/javascript",
    "favicon.svg": "image/svg+xml",
}
ASSETS = web.AppKey("dashboard_assets", dict)


def load_assets() -> dict[str, bytes]:
    folder = resources.files(__name__).joinpath("static")
    return {name: folder.joinpath(name).read_bytes() for name in ASSET_TYPES}


async def static_asset(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in ASSET_TYPES:
        raise NotFound(f"no dashboard asset {name!r}")
    response = web.Response(
        body=request.app[ASSETS][name], content_type=ASSET_TYPES[name], charset="utf-8"
    )
    response.headers["Cache-Control"] = "public, max-age=300"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def wants_html(request: web.Request) -> bool:
    """Browsers list text/html in Accept; scripts send */* or nothing and keep getting JSON."""
    return "text/html" in request.headers.get("Accept", "")


def add_routes(
    app: web.Application, json_index: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> None:
    """Mount the dashboard; ``/`` answers HTML to browsers and ``json_index`` to everyone else."""
    app[ASSETS] = load_assets()

    async def root(request: web.Request) -> web.StreamResponse:
        if wants_html(request):
            return await overview(request)
        return await json_index(request)

    app.router.add_get("/", root)
    app.router.add_get("/dashboard/timeseries", timeseries_view)
    app.router.add_get("/dashboard/disruptions", disruptions_view)
    app.router.add_get("/dashboard/measurements", measurements_view)
    app.router.add_get("/dashboard/measurements/{uid}", measurement_detail)
    app.router.add_get("/dashboard/static/{name}", static_asset)
