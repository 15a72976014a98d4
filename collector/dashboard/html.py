"""HTML building blocks of the dashboard: the page shell, forms, tables, numbers, links.

Everything that reaches the page passes through ``esc`` (or is built here from escaped parts), so a
measured URL or a carrier name can never inject markup. Pages carry no inline script or style: the
Content-Security-Policy (``CSP``) allows only this collector's own files, which is also what makes the
page work on an air-gapped collector: it never asks for anything from another host.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from urllib.parse import urlencode

from aiohttp import web

from protocol import format_time

from .. import __version__

CSP = (
    "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; connect-src 'self';"
    " form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)

NAV = (
    ("/", "Overview"),
    ("/dashboard/timeseries", "Time series"),
    ("/dashboard/disruptions", "Disruptions"),
    ("/dashboard/measurements", "Measurements"),
    ("/api/docs", "API"),
)


def esc(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def link(path: str, params: Mapping[str, object] | None = None) -> str:
    """A same-origin URL with the non-empty parameters in the query string (shareable state)."""
    query = {k: str(v) for k, v in (params or {}).items() if v is not None and v != ""}
    return path + ("?" + urlencode(query) if query else "")


def anchor(href: str, text: str, **attrs: str) -> str:
    extra = "".join(f" {k.replace('_', '-')}='{esc(v)}'" for k, v in attrs.items())
    return f"<a href='{esc(href)}'{extra}>{esc(text)}</a>"


def percent(ok: int, n: int) -> str:
    return f"{round(100 * ok / n)}%" if n else "—"


def short_time(stamp: str | None) -> str:
    """``2026-11-28T21:00:00Z`` -> ``2026-11-28 21:00`` (UTC is said once, in the header)."""
    if not stamp:
        return ""
    return stamp.replace("T", " ")[:16]


def page(
    title: str,
    body: str,
    *,
    active: str,
    status: int = 200,
    generated: datetime | None = None,
) -> web.Response:
    nav = "".join(
        f"<li><a href='{esc(href)}'{' aria-current=page' if href == active else ''}>{esc(text)}</a></li>"
        for href, text in NAV
    )
    stamp = f"Data as of {format_time(generated)[:16].replace('T', ' ')} UTC. " if generated else ""
    document = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)} · Vantage</title>
<link rel="icon" href="/dashboard/static/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/dashboard/static/dashboard.css">
<script src="/dashboard/static/dashboard.js" defer></script>
</head>
<body>
<a class="skip" href="#main">Skip to content</a>
<header class="top">
<p class="brand"><a href="/">Vantage</a> <span>collector dashboard</span></p>
<nav aria-label="Dashboard sections"><ul>{nav}</ul></nav>
</header>
<div id="status" role="alert" hidden></div>
<main id="main" tabindex="-1">
<h1>{esc(title)}</h1>
{body}
</main>
<footer><p>{esc(stamp)}All times UTC. Every figure is backed by Ed25519-signed measurements;
see the <a href="/api/docs">research API</a> for the same data as JSON or CSV. Vantage collector
{esc(__version__)}.</p></footer>
</body>
</html>
"""
    response = web.Response(text=document, content_type="text/html", status=status)
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def notice(kind: str, heading: str, text: str) -> str:
    """An explained empty state or error (``kind``: empty, error)."""
    return f"<section class='notice {esc(kind)}'><h2>{esc(heading)}</h2>{text}</section>"


def select(name: str, label: str, options: Sequence[tuple[str, str]], current: str | None) -> str:
    items = "".join(
        f"<option value='{esc(value)}'{' selected' if value == (current or '') else ''}>"
        f"{esc(text)}</option>"
        for value, text in options
    )
    return (
        f"<div class=field><label for='f-{esc(name)}'>{esc(label)}</label>"
        f"<select id='f-{esc(name)}' name='{esc(name)}'>{items}</select></div>"
    )


def text_input(name: str, label: str, current: str | None, placeholder: str = "") -> str:
    return (
        f"<div class=field><label for='f-{esc(name)}'>{esc(label)}</label>"
        f"<input id='f-{esc(name)}' name='{esc(name)}' value='{esc(current or '')}'"
        f" placeholder='{esc(placeholder)}'></div>"
    )


def filter_form(action: str, fields: Iterable[str], label: str = "Filters") -> str:
    return (
        f"<form class=filters method=get action='{esc(action)}' aria-label='{esc(label)}'>"
        + "".join(fields)
        + "<div class=field><button type=submit>Apply</button></div></form>"
    )


def table(
    caption: str, headers: Sequence[str], rows: Iterable[Sequence[str]], *, cls: str = ""
) -> str:
    """A table whose cells are already HTML; wrapped so it scrolls sideways on a phone."""
    head = "".join(f"<th scope=col>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return (
        f"<div class=scroll><table class='{esc(cls)}'><caption>{esc(caption)}</caption>"
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"
    )


def api_link(href: str, text: str = "this view's data as JSON") -> str:
    return (
        f"<p class=api>Same data from the API: {anchor(href, text)} (<code>{esc(href)}</code>)</p>"
    )
