"""Server-rendered charts: heatmap cell classes and the time-series SVG with disruptions shaded.

Rendered on the server from the same documents the JSON API returns, so the page needs no charting
library, works without JavaScript and shows on an air-gapped collector. Colour is never the only
carrier of meaning: cells print their percentage, the international line is dashed, and every chart is
followed by a table of its values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .html import esc, short_time

#: Lower bounds of the heatmap's colour classes (r4 best), matching the legend.
RATIO_CLASSES = ((0.95, "r4"), (0.8, "r3"), (0.5, "r2"), (0.2, "r1"), (0.0, "r0"))
LEGEND = (
    ("r4", "95–100 %"),
    ("r3", "80–95 %"),
    ("r2", "50–80 %"),
    ("r1", "20–50 %"),
    ("r0", "below 20 %"),
    ("none", "no measurements"),
)
SCOPES = ("domestic", "international")

WIDTH, HEIGHT = 720, 260
LEFT, RIGHT, TOP, BOTTOM = 44, 12, 12, 30


def ratio_class(ratio: float) -> str:
    return next(cls for bound, cls in RATIO_CLASSES if ratio >= bound)


def legend() -> str:
    items = "".join(
        f"<li><span class='swatch {cls}' aria-hidden=true></span>{esc(text)}</li>"
        for cls, text in LEGEND
    )
    return (
        f"<ul class=legend aria-label='Colour key'>{items}"
        "<li><span class='swatch few' aria-hidden=true></span>fewer than 3 agents</li></ul>"
    )


def _x(index: float, count: int) -> float:
    return LEFT + (WIDTH - LEFT - RIGHT) * index / max(1, count)


def _y(ratio: float) -> float:
    return TOP + (HEIGHT - TOP - BOTTOM) * (1.0 - ratio)


def _bucket_index(buckets: Sequence[str], stamp: str, interval: str) -> int:
    """Index of the bucket holding ``stamp`` (``len`` if after the last, 0 if before the first)."""
    key = stamp[:10] + "T00:00:00Z" if interval == "day" else stamp[:13] + ":00:00Z"
    return next((i for i, bucket in enumerate(buckets) if bucket >= key), len(buckets))


def shaded_spans(
    buckets: Sequence[str], disruptions: Sequence[Mapping[str, Any]], interval: str
) -> list[tuple[int, int, Mapping[str, Any]]]:
    """``(first bucket, end bucket exclusive, item)`` for each disruption overlapping the chart."""
    spans = []
    for item in disruptions:
        start = _bucket_index(buckets, item["started_at"], interval)
        end = (
            len(buckets)
            if item["ended_at"] is None
            else _bucket_index(buckets, item["ended_at"], interval)
        )
        if item["ended_at"] is not None and end == start:
            end = start + 1  # shorter than one bucket: still visible
        if start < len(buckets) and end > 0:
            spans.append((start, min(end, len(buckets)), item))
    return spans


def _path(points: Sequence[Mapping[str, Any]], scope: str) -> tuple[str, int]:
    """An SVG path through the buckets that have data; a gap starts a new segment."""
    parts: list[str] = []
    drawn = 0
    pen_down = False
    for index, point in enumerate(points):
        cell = point[scope]
        if not cell or cell["ratio"] is None:
            pen_down = False
            continue
        x, y = _x(index + 0.5, len(points)), _y(cell["ratio"])
        parts.append(f"{'L' if pen_down else 'M'}{x:.1f} {y:.1f}")
        pen_down = True
        drawn += 1
    return " ".join(parts), drawn


def timeseries_svg(
    document: Mapping[str, Any], disruptions: Sequence[Mapping[str, Any]], title: str
) -> str:
    points = document["points"]
    buckets = [p["bucket"] for p in points]
    interval = document["interval"]
    out = [
        f"<svg class=chart viewBox='0 0 {WIDTH} {HEIGHT}' role=img"
        f" aria-labelledby='chart-title chart-desc' data-buckets='{len(points)}'>",
        f"<title id=chart-title>{esc(title)}</title>",
        "<desc id=chart-desc>Share of measurements that succeeded per "
        f"{esc(interval)}, domestic (solid line) and international (dashed line); shaded bands are"
        " detected disruptions. The table below lists the same values.</desc>",
    ]
    for start, end, item in shaded_spans(buckets, disruptions, interval):
        x0, x1 = _x(start, len(points)), _x(end, len(points))
        out.append(
            f"<rect class=disruption data-id='{esc(item['id'])}' x='{x0:.1f}' y='{TOP}'"
            f" width='{x1 - x0:.1f}' height='{HEIGHT - TOP - BOTTOM}'>"
            f"<title>{esc(item['pattern'].replace('_', ' '))}: {esc(item['region'])}"
            f" AS{esc(item['asn'])} {esc(item['scope'])}, from {esc(short_time(item['started_at']))}"
            f" to {esc(short_time(item['ended_at']) or 'now (ongoing)')}</title></rect>"
        )
    for ratio in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = _y(ratio)
        out.append(
            f"<line class=grid x1='{LEFT}' x2='{WIDTH - RIGHT}' y1='{y:.1f}' y2='{y:.1f}'/>"
            f"<text class=axis x='{LEFT - 6}' y='{y + 4:.1f}' text-anchor=end>{round(ratio * 100)}%</text>"
        )
    if buckets:
        for index, anchor in (
            (0, "start"),
            (len(buckets) // 2, "middle"),
            (len(buckets) - 1, "end"),
        ):
            x = (
                _x(index + 0.5, len(buckets))
                if anchor == "middle"
                else _x(index + (0 if anchor == "start" else 1), len(buckets))
            )
            out.append(
                f"<text class=axis x='{x:.1f}' y='{HEIGHT - 8}' text-anchor={anchor}>"
                f"{esc(short_time(buckets[index]))}</text>"
            )
    for scope in SCOPES:
        d, drawn = _path(points, scope)
        out.append(f"<path class='line {scope}' data-scope={scope} data-points={drawn} d='{d}'/>")
        if len(points) <= 200:
            for index, point in enumerate(points):
                cell = point[scope]
                if cell and cell["ratio"] is not None:
                    out.append(
                        f"<circle class='dot {scope}' cx='{_x(index + 0.5, len(points)):.1f}'"
                        f" cy='{_y(cell['ratio']):.1f}' r=3><title>{esc(short_time(point['bucket']))}"
                        f" {scope}: {round(cell['ratio'] * 100)}% of {cell['measurements']}</title>"
                        "</circle>"
                    )
    out.append("</svg>")
    return "".join(out)
