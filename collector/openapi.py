"""The collector's OpenAPI 3.1 description (``GET /api/openapi.json``) and a docs page (``/api/docs``).

The spec is written here by hand, one entry per route; ``tests/integration/test_openapi_spec.py``
checks that it validates and that its paths and methods are exactly the app's routes, so a new route
without a description fails the suite. The docs page is rendered from the same spec on the server: one
self-contained HTML file, no scripts, no CDN.
"""

from __future__ import annotations

import html
import json
from typing import Any

from aiohttp import web

from . import __version__
from .aggregate import AXES
from .detector import PATTERNS
from .disruptions import CONTRACT_FIELDS

JSON = "application/json"


def _param(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema or {"type": "string"},
    }


def _enum(*values: str) -> dict[str, Any]:
    return {"type": "string", "enum": list(values)}


NETWORK_TYPES = ("mobile", "wifi", "wired", "unknown")
VERDICTS = ("ok", "anomaly", "confirmed", "failure")
BLOCKING = ("dns", "tcp_ip", "http-failure", "http-diff", "down")

PLACE = [
    _param("country", "ISO 3166-1 alpha-2 country code, e.g. IR"),
    _param("region", "ISO 3166-2 region (province) code, e.g. IR-07"),
    _param("asn", "carrier ASN: 44244 or AS44244"),
    _param("network_type", "access network type", _enum(*NETWORK_TYPES)),
]
WINDOW = [
    _param("since", "start of the time range (ISO 8601, UTC if no offset)", {"type": "string"}),
    _param("until", "end of the time range, exclusive (ISO 8601)", {"type": "string"}),
]
TARGET = [
    _param("scope", "target scope", _enum("domestic", "international")),
    _param("test", "test name, e.g. web_connectivity"),
    _param("domain", "target host name"),
    _param("category", "test-list category code, e.g. NEWS"),
    _param("verdict", "measurement verdict", _enum(*VERDICTS)),
    _param("blocking", "blocking type the measurement suspects", _enum(*BLOCKING)),
]


def _ok(
    description: str, content: str = JSON, schema: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {"description": description, "content": {content: {"schema": schema or {}}}}


ERROR = {"$ref": "#/components/responses/Error"}


def _op(
    summary: str,
    tag: str,
    responses: dict[str, Any],
    parameters: list[dict[str, Any]] | None = None,
    body: str | None = None,
    description: str = "",
) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "tags": [tag], "responses": responses}
    if description:
        op["description"] = description
    if parameters:
        op["parameters"] = parameters
    if body:
        op["requestBody"] = {"required": True, "content": {body: {"schema": {}}}}
    return op


DISRUPTION = {
    "type": "object",
    "required": list(CONTRACT_FIELDS),
    "properties": {
        "id": {"type": "string"},
        "pattern": {"type": "string", "enum": list(PATTERNS)},
        "country": {"type": "string"},
        "region": {"type": "string"},
        "asn": {"type": "integer"},
        "carrier": {"type": "string"},
        "network_type": {"type": "string"},
        "scope": {"type": "string", "enum": ["international", "domestic", "all"]},
        "domain": {"type": ["string", "null"], "description": "targeted_blocking only"},
        "started_at": {"type": "string", "description": "first anomalous hour bucket"},
        "ended_at": {"type": ["string", "null"], "description": "null while active"},
        "severity": {"type": "string", "enum": ["warning", "critical"]},
        "baseline": {
            "type": ["number", "null"],
            "description": "success ratio expected (silence: usual number of agents)",
        },
        "current": {"type": ["number", "null"], "description": "latest anomalous value"},
        "agents": {"type": "integer", "description": "distinct agents behind the evidence"},
        "confirmed": {"type": "boolean", "description": "false for silence until backfilled"},
        "evidence": {"type": "object", "description": "counts: measurements, ok, buckets, ..."},
        "opened_at": {"type": "string"},
        "updated_at": {"type": "string"},
    },
}


HTML_ERROR = {
    "description": "an explained HTML error page",
    "content": {"text/html": {"schema": {}}},
}
DASHBOARD_WINDOWS = ("6h", "24h", "48h", "7d", "30d", "90d")


def _html(summary: str, parameters: list[dict[str, Any]], description: str = "") -> dict[str, Any]:
    return _op(
        summary,
        "dashboard",
        {"200": _ok("page", "text/html"), "400": HTML_ERROR, "404": HTML_ERROR},
        parameters,
        description=description,
    )


def _path_param(name: str, description: str) -> dict[str, Any]:
    return {**_param(name, description), "in": "path", "required": True}


def dashboard_paths() -> dict[str, dict[str, Any]]:
    """The dashboard's HTML pages (collector/dashboard/): same data as the JSON endpoints."""
    window = [
        _param("window", "time window", _enum(*DASHBOARD_WINDOWS)),
        _param("until", "end of the window (ISO 8601)"),
    ]
    return {
        "/dashboard/timeseries": {
            "GET": _html(
                "Time series of a selection, disruptions shaded (HTML of /api/v1/timeseries)",
                [*PLACE, _param("interval", "bucket width", _enum("hour", "day")), *window],
            )
        },
        "/dashboard/disruptions": {
            "GET": _html(
                "Disruption feed with evidence and links (HTML of /api/v1/disruptions)",
                [
                    _param("active", "only active or ended", _enum("true", "false")),
                    _param("pattern", "named pattern", _enum(*PATTERNS)),
                    *PLACE,
                    _param("scope", "scope", _enum("international", "domestic", "all")),
                ],
            )
        },
        "/dashboard/measurements": {
            "GET": _html(
                "Measurement search (HTML of /api/v1/measurements)",
                [*PLACE, *TARGET, *WINDOW, _param("cursor", "next page")],
            )
        },
        "/dashboard/measurements/{uid}": {
            "GET": _html(
                "One measurement step by step, its batch signature verified again",
                [_path_param("uid", "measurement uid (32 hex)")],
            )
        },
        "/dashboard/static/{name}": {
            "GET": _op(
                "The dashboard's stylesheet and script (shipped in the package)",
                "dashboard",
                {
                    "200": {
                        "description": "asset",
                        "content": {
                            "text/css": {"schema": {}},
                            "text/javascript": {"schema": {}},
                            "image/svg+xml": {"schema": {}},
                        },
                    },
                    "404": ERROR,
                },
                [_path_param("name", "dashboard.css, dashboard.js or favicon.svg")],
            )
        },
    }


def build_spec() -> dict[str, Any]:
    g = "GET"
    paths: dict[str, dict[str, Any]] = {
        "/": {
            g: _op(
                "The dashboard's overview (browsers), or the service index as JSON",
                "dashboard",
                {
                    "200": {
                        "description": "HTML when Accept lists text/html, else the JSON index",
                        "content": {"text/html": {"schema": {}}, JSON: {"schema": {}}},
                    },
                    "400": HTML_ERROR,
                },
                [
                    _param("network_type", "access network type", _enum(*NETWORK_TYPES)),
                    _param("country", "ISO 3166-1 alpha-2 country code"),
                    _param("window", "time window", _enum(*DASHBOARD_WINDOWS)),
                    _param(
                        "until", "end of the window (ISO 8601); default: the current hour's end"
                    ),
                ],
                description="Province x carrier heatmap of the success ratio, domestic and"
                " international side by side. Scripts that do not ask for text/html get the JSON"
                " service index (name, version, endpoints), as before the dashboard existed.",
            )
        },
        **dashboard_paths(),
        "/healthz": {
            g: _op("Liveness: the database answers", "service", {"200": _ok("ok"), "500": ERROR})
        },
        "/metrics": {
            g: _op(
                "Prometheus metrics (ingest, latency, rejects)",
                "service",
                {"200": _ok("metrics", "text/plain")},
            )
        },
        "/api/v1/agents": {
            "POST": _op(
                "Register an agent's public key (self-signed registration)",
                "ingest",
                {"200": _ok("already registered"), "201": _ok("registered"), "400": ERROR},
                body=JSON,
            )
        },
        "/api/v1/batches": {
            "POST": _op(
                "Upload a signed batch of measurements; answers with a signed receipt",
                "ingest",
                {
                    "200": _ok("stored or duplicate"),
                    "400": ERROR,
                    "401": ERROR,
                    "403": ERROR,
                    "409": ERROR,
                    "413": ERROR,
                    "415": ERROR,
                    "422": ERROR,
                    "429": ERROR,
                    "503": ERROR,
                },
                body="application/msgpack",
            )
        },
        "/api/v1/collector-key": {
            g: _op(
                "The collector's Ed25519 public key (receipts and alert webhooks)",
                "ingest",
                {"200": _ok("key")},
            )
        },
        "/api/v1/whoami": {
            g: _op(
                "A collector-signed context token (country, region, carrier) for the caller's network",
                "ingest",
                {"200": _ok("context token"), "400": ERROR, "503": ERROR},
                [_param("agent_id", "the asking agent's id (32 hex), bound into the token")],
                description="The caller's address is looked up in the configured MMDB files and"
                " then forgotten: never stored, logged or returned.",
            )
        },
        "/api/v1/control": {
            "POST": _op(
                "Measure a URL from the collector's network (control for verdicts)",
                "ingest",
                {"200": _ok("control measurement"), "400": ERROR, "404": ERROR},
                body=JSON,
            )
        },
        "/api/v1/keysets": {
            "POST": _op(
                "Publish an operator key set chained from the pinned keys",
                "operator",
                {"201": _ok("stored"), "400": ERROR, "409": ERROR},
                body="application/msgpack",
            )
        },
        "/api/v1/testlists": {
            g: _op(
                "Key sets and the test lists matching a network (ETag, 304)",
                "operator",
                {"200": _ok("bundle", "application/msgpack"), "304": {"description": "unchanged"}},
                PLACE,
            ),
            "POST": _op(
                "Publish a signed test list",
                "operator",
                {"201": _ok("stored"), "400": ERROR, "409": ERROR},
                body="application/msgpack",
            ),
        },
        "/api/v1/testlists/refusals": {
            "POST": _op(
                "An agent's signed report of test lists it refused",
                "operator",
                {"200": _ok("stored"), "400": ERROR},
                body=JSON,
            )
        },
        "/api/v1/operator/revoke-agent": {
            "POST": _op(
                "Operator-signed request to revoke an agent",
                "operator",
                {"200": _ok("revoked"), "400": ERROR, "401": ERROR},
                body=JSON,
            )
        },
        "/api/v1/operator/agents": {
            "POST": _op(
                "Operator-signed request for the fleet overview",
                "operator",
                {"200": _ok("agents"), "400": ERROR, "401": ERROR},
                body=JSON,
            )
        },
        "/api/v1/aggregate": {
            g: _op(
                "Counts by any combination of axes",
                "research",
                {"200": _ok("rows (JSON) or CSV"), "400": ERROR},
                [
                    _param("by", f"comma-separated axes: {', '.join(AXES)}"),
                    _param("axis_x", "OONI-style first axis"),
                    _param("axis_y", "OONI-style second axis"),
                    *PLACE,
                    *TARGET,
                    *WINDOW,
                    _param("format", "output format", _enum("json", "csv")),
                ],
                description="measurements, ok, anomaly, confirmed, failure and distinct agents per"
                " group; answered from hourly rollups when the axes and filters allow.",
            )
        },
        "/api/v1/timeseries": {
            g: _op(
                "Success ratio per bucket, domestic and international side by side",
                "research",
                {"200": _ok("points"), "400": ERROR},
                [
                    _param("interval", "bucket width", _enum("hour", "day")),
                    *PLACE,
                    _param("test", "test name"),
                    *WINDOW,
                    _param("format", "output format", _enum("json", "csv")),
                ],
            )
        },
        "/api/v1/measurements": {
            g: _op(
                "Search measurements (cursor pagination, stable order)",
                "research",
                {"200": _ok("measurements and next_cursor"), "400": ERROR},
                [
                    *PLACE,
                    *TARGET,
                    _param("agent_id", "32-hex agent id"),
                    _param("batch_id", "32-hex batch id"),
                    *WINDOW,
                    _param("order", "by measured_at then uid", _enum("desc", "asc")),
                    _param(
                        "limit", "page size", {"type": "integer", "minimum": 1, "maximum": 1000}
                    ),
                    _param("cursor", "next_cursor of the previous page (opaque)"),
                ],
            )
        },
        "/api/v1/export": {
            g: _op(
                "Stream measurements as JSON Lines with signature material, or CSV",
                "research",
                {
                    "200": {
                        "description": "JSONL (batch and measurement lines) or CSV",
                        "content": {
                            "application/x-ndjson": {"schema": {}},
                            "text/csv": {"schema": {}},
                        },
                    },
                    "400": ERROR,
                },
                [
                    *PLACE,
                    *TARGET,
                    _param("agent_id", "32-hex agent id"),
                    _param("batch_id", "32-hex batch id"),
                    *WINDOW,
                    _param("format", "output format", _enum("jsonl", "csv")),
                    _param(
                        "proof",
                        "batch lines once, or inline in each line",
                        _enum("batch", "inline"),
                    ),
                ],
                description="Each batch line carries the agent's public key, the exact signed payload"
                " and its signature (base64); verify over b'vantage/batch/v1\\x00' + payload.",
            )
        },
        "/api/v1/disruptions": {
            g: _op(
                "Detected disruptions, active and past",
                "research",
                {
                    "200": _ok(
                        "disruptions",
                        schema={
                            "type": "object",
                            "properties": {
                                "disruptions": {
                                    "type": "array",
                                    "items": {"$ref": "#/components/schemas/Disruption"},
                                }
                            },
                        },
                    ),
                    "400": ERROR,
                },
                [
                    _param(
                        "active", "only active (true) or only ended (false)", _enum("true", "false")
                    ),
                    _param("pattern", "named pattern", _enum(*PATTERNS)),
                    *PLACE,
                    _param("scope", "scope", _enum("international", "domestic", "all")),
                    _param("domain", "targeted_blocking of this host"),
                    *WINDOW,
                    _param("limit", "at most", {"type": "integer", "minimum": 1, "maximum": 10000}),
                ],
            )
        },
        "/api/v1/disruptions.atom": {
            g: _op(
                "Atom feed of disruptions opened, updated, closed and retracted",
                "research",
                {"200": _ok("feed", "application/atom+xml"), "400": ERROR},
                [_param("limit", "entries", {"type": "integer", "minimum": 1, "maximum": 1000})],
            )
        },
        "/api/openapi.json": {g: _op("This document", "service", {"200": _ok("OpenAPI 3.1")})},
        "/api/docs": {
            g: _op("Human-readable API docs", "service", {"200": _ok("docs", "text/html")})
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Vantage collector API",
            "version": __version__,
            "description": "Signed censorship and shutdown measurements by region, carrier, network"
            " type and scope; aggregates, time series, exports and named disruptions.",
            "license": {"name": "AGPL-3.0-or-later", "identifier": "AGPL-3.0-or-later"},
        },
        "paths": {path: {m.lower(): op for m, op in ops.items()} for path, ops in paths.items()},
        "components": {
            "schemas": {
                "Error": {
                    "type": "object",
                    "properties": {
                        "error": {
                            "type": "object",
                            "properties": {
                                "code": {"type": "string"},
                                "message": {"type": "string"},
                            },
                        }
                    },
                },
                "Disruption": DISRUPTION,
            },
            "responses": {
                "Error": {
                    "description": "a precise error: {error: {code, message}}",
                    "content": {JSON: {"schema": {"$ref": "#/components/schemas/Error"}}},
                }
            },
        },
    }


def render_docs(spec: dict[str, Any]) -> str:
    esc = html.escape
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>{esc(spec['info']['title'])}</title>",
        "<style>body{font:15px/1.5 system-ui,sans-serif;max-width:60em;margin:2em auto;padding:0 1em}"
        "code,pre{background:#f4f4f4;padding:.1em .3em}h2{border-top:1px solid #ddd;padding-top:1em}"
        "table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:.2em .5em;text-align:left}"
        ".m{font-weight:bold;color:#06c}</style></head><body>",
        f"<h1>{esc(spec['info']['title'])} {esc(spec['info']['version'])}</h1>",
        f"<p>{esc(spec['info']['description'])}</p>",
        "<p>Machine-readable: <a href=/api/openapi.json>/api/openapi.json</a>."
        ' Errors are JSON <code>{"error": {"code", "message"}}</code>;'
        " every bad parameter is a 400.</p>",
    ]
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            parts.append(
                f"<h2 id='{esc(method)}-{esc(path)}'><span class=m>{esc(method.upper())}</span>"
                f" <code>{esc(path)}</code></h2><p>{esc(op['summary'])}</p>"
            )
            if op.get("description"):
                parts.append(f"<p>{esc(op['description'])}</p>")
            if op.get("parameters"):
                parts.append("<table><tr><th>parameter</th><th>values</th><th>meaning</th></tr>")
                for p in op["parameters"]:
                    values = " | ".join(p["schema"].get("enum", [])) or p["schema"].get("type", "")
                    parts.append(
                        f"<tr><td><code>{esc(p['name'])}</code></td><td>{esc(str(values))}</td>"
                        f"<td>{esc(p['description'])}</td></tr>"
                    )
                parts.append("</table>")
            codes = ", ".join(sorted(op["responses"]))
            parts.append(f"<p>Responses: {esc(codes)}</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


SPEC = web.AppKey("openapi_spec", dict)


async def openapi_json(request: web.Request) -> web.Response:
    return web.Response(
        text=json.dumps(request.app[SPEC], indent=1), content_type="application/json"
    )


async def docs(request: web.Request) -> web.Response:
    return web.Response(text=render_docs(request.app[SPEC]), content_type="text/html")


def add_routes(app: web.Application) -> None:
    app[SPEC] = build_spec()
    app.router.add_get("/api/openapi.json", openapi_json)
    app.router.add_get("/api/docs", docs)
