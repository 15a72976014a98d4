"""The dashboard's pages over plain HTTP (no browser): status codes, content types, headers, what the
HTML says for a known dataset and for an empty collector, explained errors, a tampered batch, and
that no page or asset points anywhere but the collector itself."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from dashboard_support import CUT, TARGETS, config, expected_cells, run_detector, upload

from collector.server import RunningCollector, start_collector

HTML = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
PAGES = (
    "/",
    "/dashboard/timeseries",
    "/dashboard/disruptions",
    "/dashboard/measurements",
)
ASSETS = {
    "/dashboard/static/dashboard.css": "text/css",
    "/dashboard/static/dashboard.js": "text/javascript",
    "/dashboard/static/favicon.svg": "image/svg+xml",
}
#: A namespace name inside the SVG icon: an identifier, never fetched.
SVG_NAMESPACE = "http://www.w3.org/2000/svg"


@pytest.fixture
async def filled(tmp_path: Path) -> AsyncIterator[tuple[RunningCollector, Path]]:
    db = tmp_path / "collector.db"
    running = await start_collector(config(db))
    try:
        await upload(running.url)
        await run_detector(db)
        yield running, db
    finally:
        await running.stop()


@pytest.fixture
async def empty(tmp_path: Path) -> AsyncIterator[RunningCollector]:
    running = await start_collector(config(tmp_path / "empty.db"))
    try:
        yield running
    finally:
        await running.stop()


async def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str, str, Any]:
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers or HTML) as r:
        return r.status, r.content_type, await r.text(), r.headers


class Cells(HTMLParser):
    """``data-*`` attributes of the heatmap's cells, keyed by (region, asn, scope)."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: dict[tuple[str, int, str], dict[str, str]] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "td" and "cell" in a.get("class", "").split():
            self.cells[(a["data-region"], int(a["data-asn"]), a["data-scope"])] = a


def parse_cells(page: str) -> dict[tuple[str, int, str], dict[str, str]]:
    parser = Cells()
    parser.feed(page)
    return parser.cells


def urls_in(text: str) -> list[str]:
    """Absolute and protocol-relative URLs anywhere in the text."""
    return re.findall(r"(?:https?:)?//[^\s\"'<>)]+", text)


def attribute_urls(page: str) -> list[str]:
    return re.findall(r"(?:href|src|action)\s*=\s*['\"]?([^'\"\s>]+)", page)


async def first_detail(url: str) -> str:
    """The path of the newest measurement's page, as the search page links it."""
    _, _, listing, _ = await get(url + "/dashboard/measurements?limit=1")
    (detail,) = re.findall(r"href='(/dashboard/measurements/[0-9a-f]{32})'", listing)
    return str(detail)


async def test_pages_and_assets_answer_with_the_right_types_and_headers(
    filled: tuple[RunningCollector, Path],
) -> None:
    running, _ = filled
    for path in PAGES:
        status, content_type, page, headers = await get(running.url + path)
        assert (status, content_type) == (200, "text/html"), path
        assert page.startswith("<!doctype html>") and '<html lang="en">' in page
        assert "default-src 'none'" in headers["Content-Security-Policy"]
        assert "<title>" in page and "<h1>" in page and '<main id="main"' in page
    for path, expected in ASSETS.items():
        status, content_type, _, headers = await get(running.url + path)
        assert (status, content_type) == (200, expected), path
        assert headers["X-Content-Type-Options"] == "nosniff"
    status, _, _, _ = await get(running.url + "/dashboard/static/../app.py")
    assert status == 404
    status, content_type, _, _ = await get(running.url + "/dashboard/static/secrets.txt")
    assert (status, content_type) == (404, "application/json")


async def test_scripts_keep_getting_the_json_index_at_the_root(empty: RunningCollector) -> None:
    for accept in ("*/*", "application/json"):
        status, content_type, _, _ = await get(empty.url + "/", {"Accept": accept})
        assert (status, content_type) == (200, "application/json")
    async with aiohttp.ClientSession() as http, http.get(empty.url + "/") as response:
        document = await response.json()  # aiohttp's default Accept is */*
    assert document["service"] == "vantage-collector"
    assert "GET /dashboard/disruptions" in document["endpoints"]


async def test_no_page_or_asset_points_to_another_host(
    filled: tuple[RunningCollector, Path],
) -> None:
    running, _ = filled
    detail = await first_detail(running.url)
    measured = {target.url for target in TARGETS}
    for path in (*PAGES, detail, "/api/docs"):
        _, _, page, _ = await get(running.url + path)
        for url in attribute_urls(page):
            assert url.startswith(("/", "#")) and not url.startswith("//"), (path, url)
        # Absolute URLs appear only as text: the measured targets, never as something to load.
        assert set(urls_in(page)) <= measured, path
    for path in ASSETS:
        _, _, text, _ = await get(running.url + path)
        assert set(urls_in(text)) <= {SVG_NAMESPACE}, path
        assert "@import" not in text and "url(" not in text


async def test_heatmap_cells_are_the_dataset_and_the_api(
    filled: tuple[RunningCollector, Path],
) -> None:
    running, _ = filled
    _, _, page, _ = await get(running.url + "/")
    cells = parse_cells(page)
    for key, (ok, n) in expected_cells().items():
        assert cells[key]["data-n"] == str(n)
        assert cells[key]["data-ratio"] == f"{ok / n:.4f}"
    (api,) = re.findall(r"Same data from the API: <a href='([^']+)'", page)
    async with (
        aiohttp.ClientSession() as http,
        http.get(running.url + api.replace("&amp;", "&")) as r,
    ):
        rows = (await r.json())["rows"]
    assert {(row["region"], row["asn"], row["scope"]) for row in rows} == set(cells)
    # The network type filter keeps only that type's carriers.
    _, _, mobile, _ = await get(running.url + "/?network_type=mobile")
    assert {key[1] for key in parse_cells(mobile)} == {64500}
    assert "<option value='mobile' selected>" in mobile


async def test_feed_and_timeseries_show_the_detected_cut(
    filled: tuple[RunningCollector, Path],
) -> None:
    running, _ = filled
    _, _, feed, _ = await get(running.url + "/dashboard/disruptions")
    assert feed.count("<article class='disruption-card") == 1
    assert "data-pattern='international_cut'" in feed
    assert f"<dd data-field=carrier>MobiNet AS{CUT[1]} (mobile)</dd>" in feed
    _, _, series, _ = await get(
        running.url + f"/dashboard/timeseries?region={CUT[0]}&asn={CUT[1]}&interval=day&window=7d"
    )
    assert series.count("<rect class=disruption") == 1
    _, _, other, _ = await get(running.url + "/dashboard/timeseries?region=XA-03&asn=64501")
    assert "<rect class=disruption" not in other and "None detected in this window" in other


async def test_an_altered_batch_is_shown_as_not_verifying(
    filled: tuple[RunningCollector, Path],
) -> None:
    running, db = filled
    detail = await first_detail(running.url)
    _, _, page, _ = await get(running.url + detail)
    assert "data-signature=verified" in page and "data-step=tls" in page
    with sqlite3.connect(db) as connection:
        (batch_id,) = connection.execute(
            "SELECT batch_id FROM measurements WHERE uid = ?", [detail.rsplit("/", 1)[1]]
        ).fetchone()
        payload = connection.execute(
            "SELECT payload FROM batches WHERE batch_id = ?", [batch_id]
        ).fetchone()[0]
        altered = payload.replace(b"XA-", b"XB-", 1)
        assert altered != payload
        connection.execute("UPDATE batches SET payload = ? WHERE batch_id = ?", [altered, batch_id])
    status, _, page, _ = await get(running.url + detail)
    assert status == 200
    assert "data-signature=failed" in page and "Signature does NOT verify" in page
    assert "data-step=" not in page  # nothing from the unverifiable payload is shown


async def test_empty_collector_and_bad_addresses_explain_themselves(
    empty: RunningCollector,
) -> None:
    for path in PAGES:
        status, _, page, _ = await get(empty.url + path)
        assert status == 200
        if path != "/dashboard/disruptions":
            assert "No measurements yet" in page, path
    _, _, feed, _ = await get(empty.url + "/dashboard/disruptions")
    assert "No disruption detected" in feed
    status, content_type, page, _ = await get(empty.url + "/?network_type=satellite")
    assert (status, content_type) == (400, "text/html")
    assert "unknown value &#x27;satellite&#x27;" in page and "Start again without filters" in page
    status, _, page, _ = await get(empty.url + "/dashboard/measurements/" + "0" * 32)
    assert status == 404 and "no measurement 000" in page
    status, _, page, _ = await get(empty.url + "/dashboard/measurements/nothex")
    assert status == 400 and "32 lowercase hex" in page
    status, _, page, _ = await get(empty.url + "/dashboard/disruptions?colour=red")
    assert status == 400 and "unknown query parameter(s): colour" in page


async def test_demo_serve_keeps_the_dashboard_up_until_interrupted(tmp_path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "vantagepoint", "demo", "--serve", "--workdir", str(tmp_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "HOME": str(tmp_path)},
    )  # fmt: skip
    assert process.stdout is not None
    try:
        url = ""
        while not url:
            line = (await asyncio.wait_for(process.stdout.readline(), 90)).decode()
            assert line, "the demo ended without serving its dashboard"
            if line.startswith("dashboard"):
                url = line.split()[1]
        status, content_type, page, _ = await get(url)
        assert (status, content_type) == (200, "text/html")
        cells = parse_cells(page)
        assert cells[("XA-NORTH", 64500, "international")]["data-ratio"] == "0.0000"
        assert cells[("XA-NORTH", 64500, "domestic")]["data-ratio"] == "1.0000"
    finally:
        process.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(process.wait(), 30)
    assert code == 0
