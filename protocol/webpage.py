"""Pure helpers for what an HTTP response looks like: its title, its headers as we record them.

Used by the agent's HTTP probe and the collector's control helper, so both describe a page the same
way and the verdict compares like with like.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from typing import Final

#: Response headers whose values are kept (they say who answered: a CDN, a filter, a proxy).
SELECTED_HEADERS: Final = frozenset(
    {
        "server",
        "content-type",
        "content-length",
        "location",
        "via",
        "x-cache",
        "x-powered-by",
        "cf-ray",
        "x-served-by",
    }
)
MAX_TITLE: Final = 256
_TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$")


def extract_title(body: bytes) -> str | None:
    """The page's ``<title>``, unescaped, whitespace collapsed, at most 256 characters."""
    match = _TITLE.search(body[:65536])
    if not match:
        return None
    text = html.unescape(match.group(1).decode("utf-8", "replace"))
    text = "".join(ch for ch in text if ord(ch) >= 0x20)
    return " ".join(text.split())[:MAX_TITLE] or None


def header_names(names: Iterable[str], limit: int = 48) -> tuple[str, ...]:
    """Lowercase, de-duplicated, sorted header names (odd ones dropped), at most ``limit``."""
    clean = sorted({name.lower() for name in names if _HEADER_NAME.match(name)})
    return tuple(clean[:limit])


def selected_headers(items: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """The values of ``SELECTED_HEADERS`` (first occurrence), trimmed to fit a measurement."""
    kept: dict[str, str] = {}
    for name, value in items:
        key = name.lower()
        if key in SELECTED_HEADERS and key not in kept:
            kept[key] = "".join(ch for ch in value if ord(ch) >= 0x20)[:MAX_TITLE]
    return tuple(sorted(kept.items()))
