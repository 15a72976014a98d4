"""The dashboard's pages: overview heatmap, time series, disruption feed, measurement search.

Each page reads through the same functions as the research API (``storage.aggregate``,
``research.timeseries``, ``research.search``, ``disruptions.list_disruptions``) with the same parameter
parsers, so a page and its JSON twin (linked from every page) always show the same numbers. All state
lives in the query string: a link is the view. Form fields left at "all" arrive empty and are dropped.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web

from protocol import NetworkType, utc_now

from ..aggregate import FILTERS, parse_time_param
from ..app import STORAGE
from ..detector import PATTERNS
from ..disruptions import floor_hour, list_disruptions
from ..errors import CollectorError
from ..research import check_known, parse_choice, parse_disruption_query, search, timeseries
from ..storage import AggregateQuery, Storage, StorageUnavailable
from .charts import SCOPES, legend, ratio_class, timeseries_svg
from .html import (
    anchor,
    api_link,
    esc,
    filter_form,
    link,
    notice,
    page,
    percent,
    select,
    short_time,
    table,
    text_input,
)

WINDOWS = {
    "6h": timedelta(hours=6),
    "24h": timedelta(hours=24),
    "48h": timedelta(hours=48),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
    "90d": timedelta(days=90),
}
WINDOW_NAMES = (
    ("6h", "last 6 hours"),
    ("24h", "last 24 hours"),
    ("48h", "last 48 hours"),
    ("7d", "last 7 days"),
    ("30d", "last 30 days"),
    ("90d", "last 90 days"),
)
NETWORK_TYPE_OPTIONS = [("", "all network types")] + [(t.value, t.value) for t in NetworkType]
FEW_AGENTS = 3  # below this a cell is one or two volunteers, not a province: say so

View = Callable[[web.Request], Awaitable[web.Response]]


def clean(query: Mapping[str, str]) -> dict[str, str]:
    """The query string without empty values (a form's "all" choice)."""
    return {k: v for k, v in query.items() if v != ""}


def html_errors(active: str) -> Callable[[View], View]:
    """A bad parameter or a missing item becomes an explained HTML page, not JSON."""

    def wrap(handler: View) -> View:
        async def run(request: web.Request) -> web.Response:
            try:
                return await handler(request)
            except CollectorError as exc:
                heading = (
                    "Not found"
                    if exc.status == 404
                    else "This address asks for something the dashboard cannot show"
                )
                body = notice(
                    "error",
                    heading,
                    f"<p>{esc(exc.message)}</p><p>{anchor(request.path, 'Start again without filters')}"
                    " or go to the " + anchor("/", "overview") + ".</p>",
                )
                return page(heading, body, active=active, status=exc.status)
            except StorageUnavailable as exc:
                body = notice(
                    "error",
                    "The collector's database is not answering",
                    f"<p>{esc(exc)}</p><p>Measurements already stored are safe; try again in a"
                    " moment.</p>",
                )
                return page("Database unavailable", body, active=active, status=503)

        return run

    return wrap


def parse_window(params: Mapping[str, str], default: str) -> tuple[str, datetime, datetime]:
    """``(window name, since, until)``: ``until`` defaults to the end of the current hour."""
    name = parse_choice({"window": params.get("window", default)}, "window", tuple(WINDOWS))
    until = parse_time_param("until", params.get("until"))
    if until is None:
        until = floor_hour(utc_now()) + timedelta(hours=1)
    return name, until - WINDOWS[name], until


def place_filters(params: Mapping[str, str], names: tuple[str, ...]) -> dict[str, Any]:
    return {name: FILTERS[name][1](params[name]) for name in names if name in params}


async def has_measurements(storage: Storage) -> bool:
    return bool(await storage.fetch("SELECT 1 FROM measurements LIMIT 1"))


async def known_networks(storage: Storage) -> tuple[list[str], list[tuple[int, str]]]:
    """Regions and carriers seen in the last 90 days (the rollups), for the selection menus."""
    since = floor_hour(utc_now()) - timedelta(days=90)
    rows = await storage.aggregate(AggregateQuery(("region", "carrier"), {}, since, None))
    regions = sorted({row["region"] for row in rows})
    carriers = sorted({(int(row["asn"]), row["carrier"]) for row in rows})
    return regions, carriers


def no_data_notice() -> str:
    return notice(
        "empty",
        "No measurements yet",
        "<p>This collector has not received any measurements. Agents upload signed batches to"
        " <code>POST /api/v1/batches</code>; a volunteer starts one with <code>vantage agent init"
        " --collector URL</code> then <code>vantage agent run</code>. To see the dashboard with"
        " sample data, run <code>vantage demo --serve</code>.</p>",
    )


def no_match_notice(path: str) -> str:
    return notice(
        "empty",
        "Nothing matches these filters",
        "<p>The collector has measurements, but none in this window with these filters. Widen"
        f" the time window or {anchor(path, 'clear the filters')}.</p>",
    )


# --- overview: region × carrier heatmap --------------------------------------------------------------


def heatmap(rows: Sequence[Mapping[str, Any]], network_type: str | None, window: str) -> str:
    cells = {(r["region"], int(r["asn"]), r["scope"]): r for r in rows}
    regions = sorted({r["region"] for r in rows})
    carriers = sorted({(int(r["asn"]), r["carrier"]) for r in rows})
    top = "".join(
        f"<th scope=colgroup colspan=2>{esc(name)}<br><span class=asn>AS{asn}</span></th>"
        for asn, name in carriers
    )
    sub = "".join("<th scope=col>domestic</th><th scope=col>international</th>" for _ in carriers)
    body = []
    for region in regions:
        tds = []
        for asn, name in carriers:
            for scope in SCOPES:
                row = cells.get((region, asn, scope))
                label = f"{region}, {name} AS{asn}, {scope}"
                if row is None or not int(row["measurements"]):
                    tds.append(
                        f"<td class='cell none' data-region='{esc(region)}' data-asn={asn}"
                        f" data-scope={scope}><span class=sr>{esc(label)}: </span>—</td>"
                    )
                    continue
                n, ok, agents = int(row["measurements"]), int(row["ok"]), int(row["agents"])
                ratio = ok / n
                few = " few" if agents < FEW_AGENTS else ""
                href = link(
                    "/dashboard/timeseries",
                    {"region": region, "asn": asn, "network_type": network_type, "window": window},
                )
                tds.append(
                    f"<td class='cell {ratio_class(ratio)}{few}' data-region='{esc(region)}'"
                    f" data-asn={asn} data-scope={scope} data-ratio='{ratio:.4f}' data-n={n}>"
                    f"<a href='{esc(href)}' title='{esc(label)}: {ok} of {n} measurements ok,"
                    f" {agents} agent(s)'><span class=sr>{esc(label)}: </span>"
                    f"<span class=pct>{percent(ok, n)}</span><span class=n>n={n}</span></a></td>"
                )
        body.append(f"<tr><th scope=row>{esc(region)}</th>{''.join(tds)}</tr>")
    return (
        "<div class=scroll><table class=heatmap><caption>Share of measurements that succeeded, by"
        " province (rows) and carrier (columns), domestic and international side by side. Each"
        " cell links to its time series.</caption>"
        f"<thead><tr><th scope=col rowspan=2>Region</th>{top}</tr><tr>{sub}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def disruption_summary(items: Sequence[Mapping[str, Any]]) -> str:
    if not items:
        return "<p class=calm>No disruption is active.</p>"
    lines = "".join(
        f"<li>{anchor(link('/dashboard/disruptions', {'region': d['region'], 'asn': d['asn']}), title_of(d))}"
        f" since {esc(short_time(d['started_at']))}</li>"
        for d in items
    )
    return f"<ul class=active-list>{lines}</ul>"


def title_of(item: Mapping[str, Any]) -> str:
    what = item["pattern"].replace("_", " ")
    if item.get("domain"):
        what += f" of {item['domain']}"
    return f"{what.capitalize()} — {item['region']}, {item['carrier']} AS{item['asn']} ({item['network_type']})"


@html_errors("/")
async def overview(request: web.Request) -> web.Response:
    params = clean(request.query)
    check_known(params, {"network_type", "country", "window", "until"})
    filters = place_filters(params, ("country", "network_type"))
    window, since, until = parse_window(params, "24h")
    storage = request.app[STORAGE]
    query = AggregateQuery(("region", "carrier", "scope"), filters, since, until)
    rows = [dict(row) for row in await storage.aggregate(query)]
    active = await list_disruptions(storage, {"active": True}, 20)
    form = filter_form(
        "/",
        [
            select(
                "network_type", "Network type", NETWORK_TYPE_OPTIONS, params.get("network_type")
            ),
            select("window", "Time window", WINDOW_NAMES, window),
            text_input("country", "Country", params.get("country"), "e.g. IR"),
        ],
    )
    api = link(
        "/api/v1/aggregate",
        {
            "by": "region,carrier,scope",
            **params,
            "window": None,
            "since": since.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "until": until.strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
    )
    if rows:
        picture = heatmap(rows, params.get("network_type"), window) + legend()
    elif await has_measurements(storage):
        picture = no_match_notice("/")
    else:
        picture = no_data_notice()
    body = (
        "<p class=lede>Reachability of domestic and international sites measured by volunteers'"
        f" agents, {esc(short_time(since.isoformat()))} to {esc(short_time(until.isoformat()))} UTC."
        " A province where international sites fail while domestic ones work is the signature of"
        " an international cut.</p>"
        + form
        + "<section aria-labelledby=h-heat><h2 id=h-heat>Province × carrier</h2>"
        + picture
        + api_link(api)
        + "</section><section aria-labelledby=h-active><h2 id=h-active>Active disruptions</h2>"
        + disruption_summary(active)
        + f"<p>{anchor('/dashboard/disruptions', 'All disruptions, active and past')}</p></section>"
    )
    return page("Overview", body, active="/", generated=utc_now())


# --- time series ---------------------------------------------------------------------------------------


def selection_name(params: Mapping[str, str], carriers: dict[int, str]) -> str:
    parts = [params.get("country", ""), params.get("region", "all regions")]
    if "asn" in params:
        asn = FILTERS["asn"][1](params["asn"])
        parts.append(f"{carriers.get(asn, 'carrier')} AS{asn}")
    else:
        parts.append("all carriers")
    parts.append(params.get("network_type", "all network types"))
    return ", ".join(p for p in parts if p)


@html_errors("/dashboard/timeseries")
async def timeseries_view(request: web.Request) -> web.Response:
    params = clean(request.query)
    check_known(params, {"country", "region", "asn", "network_type", "interval", "window", "until"})
    window, since, until = parse_window(params, "48h")
    interval = parse_choice(params, "interval", ("hour", "day"))
    place: dict[str, str] = {
        k: params[k] for k in ("country", "region", "asn", "network_type") if k in params
    }
    api_params: dict[str, str] = {
        **place,
        "interval": interval,
        "since": since.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "until": until.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    storage = request.app[STORAGE]
    document = await timeseries(storage, api_params)
    filters, _ = parse_disruption_query(
        {**place, "since": document["since"], "until": document["until"]}
    )
    disruptions = await list_disruptions(storage, filters, 200)
    regions, carriers = await known_networks(storage)
    names = dict(carriers)
    form = filter_form(
        "/dashboard/timeseries",
        [
            select(
                "region",
                "Region",
                [("", "all regions")] + [(r, r) for r in regions],
                params.get("region"),
            ),
            select(
                "asn",
                "Carrier",
                [("", "all carriers")] + [(str(a), f"{n} (AS{a})") for a, n in carriers],
                str(FILTERS["asn"][1](params["asn"])) if "asn" in params else None,
            ),
            select(
                "network_type", "Network type", NETWORK_TYPE_OPTIONS, params.get("network_type")
            ),
            select("interval", "Bucket", [("hour", "hour"), ("day", "day")], interval),
            select("window", "Time window", WINDOW_NAMES, window),
        ],
        "Selection",
    )
    title = f"Success ratio: {selection_name(params, names)}"
    measured = [p for p in document["points"] if p["domestic"] or p["international"]]
    if measured:
        chart = timeseries_svg(document, disruptions, title) + (
            "<ul class=legend aria-label='Chart key'><li><span class='key domestic'"
            " aria-hidden=true></span>domestic</li><li><span class='key international'"
            " aria-hidden=true></span>international (dashed)</li><li><span class='swatch shade'"
            " aria-hidden=true></span>detected disruption</li></ul>"
        )
        rows = [
            [esc(short_time(p["bucket"]))]
            + [
                (
                    f"<span data-scope={s}>{percent(p[s]['ok'], p[s]['measurements'])}</span>"
                    f" <span class=n>of {p[s]['measurements']}</span>"
                    if p[s]
                    else "—"
                )
                for s in SCOPES
            ]
            for p in measured
        ]
        chart += (
            "<details class=values><summary>The chart's values as a table</summary>"
            + table(
                "Success ratio per bucket (buckets with no measurements are left out)",
                ["bucket (UTC)", "domestic", "international"],
                rows,
            )
            + "</details>"
        )
    elif await has_measurements(storage):
        chart = no_match_notice("/dashboard/timeseries")
    else:
        chart = no_data_notice()
    feed = "".join(disruption_card(item) for item in disruptions)
    body = (
        form
        + f"<section aria-labelledby=h-chart><h2 id=h-chart>{esc(title)}</h2>{chart}"
        + api_link(link("/api/v1/timeseries", api_params))
        + "</section><section aria-labelledby=h-dis><h2 id=h-dis>Disruptions in this selection</h2>"
        + (
            f"<div class=feed>{feed}</div>"
            if feed
            else "<p class=calm>None detected in this window.</p>"
        )
        + "</section>"
    )
    return page("Time series", body, active="/dashboard/timeseries", generated=utc_now())


# --- disruption feed --------------------------------------------------------------------------------


def measurements_link(item: Mapping[str, Any]) -> str:
    """The measurement search that holds a disruption's evidence."""
    params: dict[str, Any] = {
        "country": item["country"],
        "region": item["region"],
        "asn": item["asn"],
        "network_type": item["network_type"],
        "since": item["started_at"],
        "until": item["ended_at"],
    }
    if item["scope"] in SCOPES:
        params["scope"] = item["scope"]
    if item.get("domain"):
        params["domain"] = item["domain"]
    return link("/dashboard/measurements", params)


def disruption_card(item: Mapping[str, Any]) -> str:
    evidence = item["evidence"]
    counts = "".join(
        f"<li><span class=k>{esc(k.replace('_', ' '))}</span> <span data-evidence='{esc(k)}'>{esc(v)}</span></li>"
        for k, v in sorted(evidence.items())
        if isinstance(v, int | float) and not isinstance(v, bool)
    )
    ended = item["ended_at"]
    baseline = "—" if item["baseline"] is None else f"{round(100 * item['baseline'])}%"
    current = "—" if item["current"] is None else f"{round(100 * item['current'])}%"
    series = link(
        "/dashboard/timeseries",
        {
            "region": item["region"],
            "asn": item["asn"],
            "network_type": item["network_type"],
            "window": "7d",
        },
    )
    state = "ongoing" if ended is None else "ended"
    confirmed = "" if item["confirmed"] else " <span class=tag>unconfirmed</span>"
    return (
        f"<article class='disruption-card {esc(item['severity'])} {state}' data-id='{esc(item['id'])}'"
        f" data-pattern='{esc(item['pattern'])}'>"
        f"<h3>{esc(title_of(item))}</h3>"
        f"<p class=badges><span class='tag {esc(item['severity'])}'>{esc(item['severity'])}</span>"
        f" <span class='tag {state}'>{state}</span>{confirmed}</p>"
        "<dl>"
        f"<dt>Pattern</dt><dd data-field=pattern>{esc(item['pattern'])}</dd>"
        f"<dt>Region</dt><dd data-field=region>{esc(item['country'])} {esc(item['region'])}</dd>"
        f"<dt>Carrier</dt><dd data-field=carrier>{esc(item['carrier'])} AS{esc(item['asn'])}"
        f" ({esc(item['network_type'])})</dd>"
        f"<dt>Scope</dt><dd data-field=scope>{esc(item['scope'])}</dd>"
        f"<dt>Start</dt><dd data-field=start>{esc(short_time(item['started_at']))}</dd>"
        f"<dt>End</dt><dd data-field=end>{esc(short_time(ended) or 'ongoing')}</dd>"
        f"<dt>Success</dt><dd data-field=success>{current} (baseline {baseline})</dd>"
        f"<dt>Agents</dt><dd data-field=agents>{esc(item['agents'])}</dd>"
        f"</dl><ul class=evidence aria-label='Evidence counts'>{counts}</ul>"
        f"<p class=links>{anchor(measurements_link(item), 'Measurements behind it')}"
        f" · {anchor(series, 'Time series')}"
        f" · {anchor(link('/api/v1/disruptions', {'region': item['region'], 'asn': item['asn']}), 'JSON')}</p>"
        "</article>"
    )


@html_errors("/dashboard/disruptions")
async def disruptions_view(request: web.Request) -> web.Response:
    params = clean(request.query)
    filters, limit = parse_disruption_query({**params, "limit": params.get("limit", "200")})
    items = await list_disruptions(request.app[STORAGE], filters, limit)
    form = filter_form(
        "/dashboard/disruptions",
        [
            select(
                "active",
                "State",
                [("", "active and ended"), ("true", "active"), ("false", "ended")],
                params.get("active"),
            ),
            select(
                "pattern",
                "Pattern",
                [("", "all patterns")] + [(p, p.replace("_", " ")) for p in PATTERNS],
                params.get("pattern"),
            ),
            select(
                "scope",
                "Scope",
                [
                    ("", "all scopes"),
                    ("international", "international"),
                    ("domestic", "domestic"),
                    ("all", "both (outage)"),
                ],
                params.get("scope"),
            ),
            select(
                "network_type", "Network type", NETWORK_TYPE_OPTIONS, params.get("network_type")
            ),
            text_input("region", "Region", params.get("region"), "e.g. IR-07"),
            text_input("asn", "Carrier ASN", params.get("asn"), "e.g. 44244"),
        ],
    )
    if items:
        feed = f"<div class=feed>{''.join(disruption_card(i) for i in items)}</div>"
    elif params:
        feed = notice(
            "empty",
            "No disruption matches these filters",
            f"<p>{anchor('/dashboard/disruptions', 'Show all disruptions')}.</p>",
        )
    else:
        feed = notice(
            "empty",
            "No disruption detected",
            "<p>The detector compares each province, carrier and network type with its own history"
            " (or with its peers while history is short) and has found nothing unusual. New"
            " disruptions also appear in the <a href='/api/v1/disruptions.atom'>Atom feed</a>.</p>",
        )
    body = (
        "<p class=lede>Disruptions the collector's detector found: international cuts, full outages,"
        " targeted blocking of one site, and silence (agents that stopped reporting).</p>"
        + form
        + f"<p class=count>{len(items)} disruption(s).</p>"
        + feed
        + api_link(link("/api/v1/disruptions", params))
    )
    return page("Disruptions", body, active="/dashboard/disruptions", generated=utc_now())


# --- measurement search ----------------------------------------------------------------------------------

MEASUREMENT_PARAMS = ("country", "region", "asn", "network_type", "scope", "verdict", "domain")


@html_errors("/dashboard/measurements")
async def measurements_view(request: web.Request) -> web.Response:
    params = clean(request.query)
    page_params = {**params, "limit": params.get("limit", "50")}
    document = await search(request.app[STORAGE], page_params)
    form = filter_form(
        "/dashboard/measurements",
        [
            text_input("region", "Region", params.get("region"), "e.g. IR-07"),
            text_input("asn", "Carrier ASN", params.get("asn"), "e.g. 44244"),
            select(
                "network_type", "Network type", NETWORK_TYPE_OPTIONS, params.get("network_type")
            ),
            select(
                "scope",
                "Scope",
                [("", "all scopes"), ("domestic", "domestic"), ("international", "international")],
                params.get("scope"),
            ),
            select(
                "verdict",
                "Verdict",
                [("", "all verdicts")]
                + [(v, v) for v in ("ok", "anomaly", "confirmed", "failure")],
                params.get("verdict"),
            ),
            text_input("domain", "Site", params.get("domain"), "host name"),
        ]
        + [
            f"<input type=hidden name='{esc(k)}' value='{esc(params[k])}'>"
            for k in ("since", "until", "agent_id", "batch_id")
            if k in params
        ],
    )
    rows = [
        [
            anchor(
                f"/dashboard/measurements/{m['uid']}",
                short_time(m["measured_at"]) + " ›",
                aria_label=f"Measurement {m['uid']}",
            ),
            esc(m["region"]),
            f"{esc(m['carrier'])} AS{esc(m['asn'])}",
            esc(m["network_type"]),
            esc(m["scope"]),
            f"<code>{esc(m['host'])}</code>",
            f"<span class='verdict {esc(m['verdict'])}'>{esc(m['verdict'])}</span>",
            esc(m["failure"] or ""),
        ]
        for m in document["measurements"]
    ]
    if rows:
        listing = table(
            "Measurements, newest first",
            [
                "measured (UTC)",
                "region",
                "carrier",
                "network",
                "scope",
                "site",
                "verdict",
                "failure",
            ],
            rows,
            cls="measurements",
        )
        if document["next_cursor"]:
            listing += f"<p>{anchor(link(request.path, {**params, 'cursor': document['next_cursor']}), 'Next page ›', rel='next')}</p>"
    elif await has_measurements(request.app[STORAGE]):
        listing = no_match_notice("/dashboard/measurements")
    else:
        listing = no_data_notice()
    window = ""
    if "since" in params or "until" in params:
        window = f"<p class=lede>From {esc(short_time(params.get('since')) or 'the first')} to {esc(short_time(params.get('until')) or 'now')} UTC.</p>"
    body = form + window + listing + api_link(link("/api/v1/measurements", page_params))
    return page("Measurements", body, active="/dashboard/measurements", generated=utc_now())
