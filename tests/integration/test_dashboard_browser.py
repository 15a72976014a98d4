"""The dashboard in a real browser: headless Chromium (Debian's ``chromium``) driven by Playwright.

A collector on 127.0.0.1 is filled through its HTTP API with the known dataset of
``dashboard_support`` (3 provinces × 2 carriers, an international cut on MobiNet in XA-01 found by the
detector). The tests read what the browser shows: heatmap cells, the chart's geometry and the
disruption feed, follow links with the mouse and keyboard, and save screenshots under
``tests/artifacts/`` (desktop and phone widths). Every request the page makes must go to the
collector itself, and the console must stay free of errors (a CSP violation would show there).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from dashboard_support import CUT, CUT_HOURS, HOURS, TARGETS, LiveCollector, expected_cells

from needs import require

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
]
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    require(Path(CHROMIUM).exists(), "Chromium absent (Debian package chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require(False, "Playwright for Python absent (pip install -e '.[dev]')")
        raise
    profile = tempfile.mkdtemp(prefix="vantage-chromium-")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport=DESKTOP,
        )
        try:
            yield context
        finally:
            context.close()
            shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveCollector, datetime]]:
    collector = LiveCollector(tmp_path_factory.mktemp("dash") / "collector.db")
    try:
        yield collector, collector.fill()
    finally:
        collector.close()


class Watched:
    """A page whose requests and console errors are recorded, checked when the test ends."""

    def __init__(self, context: Any, origin: str, viewport: dict[str, int] = DESKTOP) -> None:
        self.page = context.new_page()
        self.page.set_viewport_size(viewport)
        self.origin = origin
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.on(
            "console", lambda msg: self.errors.append(msg.text) if msg.type == "error" else None
        )

    def check_and_close(self) -> None:
        foreign = [url for url in self.requests if not url.startswith(self.origin + "/")]
        assert foreign == [], "the dashboard fetched from another host"
        assert self.errors == []
        self.page.close()


@pytest.fixture
def watched(browser: Any, live: tuple[LiveCollector, datetime]) -> Iterator[Watched]:
    w = Watched(browser, live[0].url)
    yield w
    w.check_and_close()


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def until_of(start: datetime) -> str:
    """A fixed window end, so the test cannot drift if the clock crosses an hour meanwhile."""
    return stamp(start + timedelta(hours=HOURS + 1))


def shoot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def open_overview(watched: Watched, live: tuple[LiveCollector, datetime]) -> Any:
    collector, start = live
    watched.page.goto(f"{collector.url}/?window=24h&until={until_of(start)}")
    return watched.page


def cells(page: Any) -> dict[tuple[str, int, str], dict[str, Any]]:
    found = page.eval_on_selector_all(
        "table.heatmap td.cell",
        "tds => tds.map(td => ({region: td.dataset.region, asn: +td.dataset.asn,"
        " scope: td.dataset.scope, n: td.dataset.n ? +td.dataset.n : null,"
        " pct: (td.querySelector('.pct') || {}).innerText || null}))",
    )
    return {(c["region"], c["asn"], c["scope"]): c for c in found}


def api_json(url: str) -> Any:
    with urllib.request.urlopen(url) as response:
        return json.load(response)


def test_heatmap_shows_the_known_dataset_on_desktop_and_phone(
    watched: Watched, live: tuple[LiveCollector, datetime]
) -> None:
    collector = live[0]
    page = open_overview(watched, live)
    assert page.title() == "Overview · Vantage"
    assert page.get_attribute("html", "lang") == "en"
    shown = cells(page)
    expected = expected_cells()
    assert set(shown) == set(expected)
    for key, (ok, n) in expected.items():
        assert shown[key]["n"] == n, key
        assert shown[key]["pct"] == f"{round(100 * ok / n)}%", key
    # The cut province's international cell is half (3 of 6 hours), its domestic cell whole.
    assert shown[(*CUT, "international")]["pct"] == "50%"
    assert shown[(*CUT, "domestic")]["pct"] == "100%"
    # The same numbers as the JSON API the page links to.
    api = page.get_attribute("p.api a", "href")
    for row in api_json(collector.url + api)["rows"]:
        cell = shown[(row["region"], row["asn"], row["scope"])]
        assert cell["n"] == row["measurements"]
        assert cell["pct"] == f"{round(100 * row['ok'] / row['measurements'])}%"
    assert "International cut — XA-01, MobiNet AS64500 (mobile)" in page.inner_text(
        "ul.active-list"
    )
    shoot(page, "overview-desktop")
    page.set_viewport_size(PHONE)
    page.reload()
    # On a phone the page does not overflow sideways; only the heatmap's own box scrolls.
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    assert page.is_visible("table.heatmap")
    shoot(page, "overview-phone")


#: WCAG 2 contrast of every element's own text against the first opaque background behind it.
CONTRAST = """() => {
  const rgb = c => c.match(/[\\d.]+/g).map(Number);
  const lum = ([r, g, b]) => [r, g, b].map(v => v / 255)
    .map(v => v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4)
    .reduce((sum, v, i) => sum + v * [0.2126, 0.7152, 0.0722][i], 0);
  const background = e => {
    for (; e; e = e.parentElement) {
      const c = rgb(getComputedStyle(e).backgroundColor);
      if (c.length < 4 || c[3] > 0) return c;
    }
    return [255, 255, 255];
  };
  const out = [];
  for (const e of document.querySelectorAll('body *')) {
    const own = [...e.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
    if (!own || !e.getClientRects().length || e.closest('.sr, svg')) continue;
    const [a, b] = [lum(rgb(getComputedStyle(e).color)), lum(background(e))];
    out.push([e.tagName + '.' + e.className, (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05)]);
  }
  return out;
}"""


def test_text_contrast_meets_wcag_aa_on_every_view(
    watched: Watched, live: tuple[LiveCollector, datetime]
) -> None:
    collector, start = live
    for path in (
        f"/?until={until_of(start)}",
        f"/dashboard/timeseries?region={CUT[0]}&asn={CUT[1]}&until={until_of(start)}",
        "/dashboard/disruptions",
        "/dashboard/measurements",
    ):
        watched.page.goto(collector.url + path)
        ratios = watched.page.evaluate(CONTRAST)
        assert len(ratios) > 20
        low = [(name, round(ratio, 2)) for name, ratio in ratios if ratio < 4.5]
        assert low == [], path


def test_network_type_filter_lives_in_the_url(
    watched: Watched, live: tuple[LiveCollector, datetime]
) -> None:
    page = open_overview(watched, live)
    page.select_option("#f-network_type", "mobile")
    page.focus("form.filters button")
    page.keyboard.press("Enter")
    page.wait_for_url("**network_type=mobile**")
    assert {key[1] for key in cells(page)} == {64500}
    shared = page.url
    again = watched.page.context.new_page()
    again.goto(shared)  # a shared link shows the same view
    assert cells(again) == cells(page)
    assert again.input_value("#f-network_type") == "mobile"
    again.close()


def test_keyboard_reaches_skip_link_navigation_controls_and_cells(
    watched: Watched, live: tuple[LiveCollector, datetime]
) -> None:
    page = open_overview(watched, live)
    reached = []
    for _ in range(20):
        page.keyboard.press("Tab")
        reached.append(
            page.evaluate(
                "(() => { const e = document.activeElement;"
                " return e.id || e.getAttribute('href') || e.tagName; })()"
            )
        )
    assert reached[0] == "#main"  # the skip link comes first
    for control in ("/dashboard/disruptions", "f-network_type", "f-window", "f-country"):
        assert control in reached, reached
    assert "BUTTON" in reached
    assert any(str(r).startswith("/dashboard/timeseries?region=") for r in reached), reached
    # Focus is visible: the focused element draws an outline.
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"
    # The skip link moves focus to the main content.
    page.keyboard.press("Shift+Tab")
    page.focus("a.skip")
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"


def test_time_series_draws_both_scopes_and_shades_the_cut(
    watched: Watched, live: tuple[LiveCollector, datetime]
) -> None:
    collector, start = live
    page = watched.page
    page.goto(
        f"{collector.url}/dashboard/timeseries?region={CUT[0]}&asn={CUT[1]}"
        f"&network_type=mobile&window=24h&until={until_of(start)}"
    )
    assert page.get_attribute("path[data-scope=international]", "data-points") == str(HOURS)
    assert page.get_attribute("path[data-scope=domestic]", "data-points") == str(HOURS)
    (disruption,) = api_json(f"{collector.url}/api/v1/disruptions")["disruptions"]
    shades = page.query_selector_all("svg.chart rect.disruption")
    assert [s.get_attribute("data-id") for s in shades] == [disruption["id"]]
    # The shaded band covers exactly the international points of the cut hours, which are at 0 %.
    x = float(shades[0].get_attribute("x"))
    width = float(shades[0].get_attribute("width"))
    dots = page.eval_on_selector_all(
        "circle.dot.international",
        "cs => cs.map(c => [+c.getAttribute('cx'), c.querySelector('title').textContent])",
    )
    inside = [title for cx, title in dots if x <= cx <= x + width]
    assert len(dots) == HOURS and len(inside) == len(CUT_HOURS)
    assert all(" international: 0% of " in title for title in inside)
    # The table equivalent holds the same values, hour by hour.
    page.click("details.values summary")
    international = page.eval_on_selector_all(
        "details.values tbody td span[data-scope=international]", "s => s.map(x => x.innerText)"
    )
    per_hour = 2 * REPEATS_INTERNATIONAL
    assert international == ["100%"] * (HOURS - len(CUT_HOURS)) + ["0%"] * len(CUT_HOURS)
    assert page.inner_text("details.values tbody tr:first-child").count(f"of {per_hour}") == 2
    shoot(page, "timeseries-desktop")


REPEATS_INTERNATIONAL = sum(1 for t in TARGETS if t.scope == "international")


def test_disruption_feed_links_to_verified_measurements(
    browser: Any, live: tuple[LiveCollector, datetime]
) -> None:
    collector, start = live
    w = Watched(browser, collector.url, PHONE)
    page = w.page
    page.goto(f"{collector.url}/dashboard/disruptions")
    (card,) = page.query_selector_all("article.disruption-card")
    field = lambda name: card.query_selector(f"[data-field={name}]").inner_text()  # noqa: E731
    assert field("pattern") == "international_cut"
    assert field("region") == "XA XA-01"
    assert field("carrier") == "MobiNet AS64500 (mobile)"
    assert field("scope") == "international"
    cut_start = start + timedelta(hours=CUT_HOURS[0])
    assert field("start") == cut_start.strftime("%Y-%m-%d %H:%M")
    assert field("end") == "ongoing"
    evidence = {
        e.get_attribute("data-evidence"): e.inner_text()
        for e in card.query_selector_all("[data-evidence]")
    }
    cut_measurements = len(CUT_HOURS) * 2 * REPEATS_INTERNATIONAL
    assert evidence["international_measurements"] == str(cut_measurements)
    assert evidence["international_ok"] == "0"
    assert evidence["buckets"] == str(len(CUT_HOURS))
    shoot(page, "disruptions-phone")

    page.click("text=Measurements behind it")
    page.wait_for_url("**/dashboard/measurements?**")
    rows = page.query_selector_all("table.measurements tbody tr")
    assert len(rows) == cut_measurements
    verdicts = {r.query_selector(".verdict").inner_text() for r in rows}
    assert verdicts == {"anomaly"}
    rows[0].query_selector("a").click()
    page.wait_for_url("**/dashboard/measurements/*")
    assert page.get_attribute(".signature", "data-signature") == "verified"
    assert "Signature verified" in page.inner_text(".signature")
    assert "generic_timeout_error" in page.inner_text("[data-step=tcp]")
    assert page.inner_text("[data-field=verdict]") == "anomaly"
    assert page.inner_text("[data-field=blocking]") == "tcp_ip"
    shoot(page, "measurement-phone")
    w.check_and_close()


def test_empty_collector_explains_itself_and_says_when_it_is_gone(
    browser: Any, tmp_path: Path
) -> None:
    empty = LiveCollector(tmp_path / "empty.db")
    try:
        w = Watched(browser, empty.url)
        page = w.page
        page.goto(empty.url + "/")
        assert "No measurements yet" in page.inner_text("main")
        assert page.is_hidden("#status")
        assert page.evaluate("window.vantageDashboard.check()") is True
        shoot(page, "empty-desktop")
        empty.stop()
        assert page.evaluate("window.vantageDashboard.check()") is False
        assert page.is_visible("#status")
        assert "The collector is unreachable" in page.inner_text("#status")
        shoot(page, "unreachable-desktop")
        w.errors = [e for e in w.errors if "Failed to load resource" not in e]
        w.errors = [e for e in w.errors if "ERR_CONNECTION_REFUSED" not in e]
        w.check_and_close()
    finally:
        empty.close()
