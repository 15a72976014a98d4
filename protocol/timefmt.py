"""UTC timestamps on the wire: ISO 8601 with microseconds and a ``Z`` (one form only)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from .errors import LocalProtocolError

_WIRE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")


def utc_now() -> datetime:
    return datetime.now(UTC)


def format_time(moment: datetime) -> str:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise LocalProtocolError("timestamps must be timezone-aware (UTC)")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> datetime:
    """Parse a wire timestamp. Raises ``LocalProtocolError`` (callers decoding peer data rewrap it)."""
    if not isinstance(text, str) or not _WIRE_TIME.match(text):
        raise LocalProtocolError(f"not a UTC timestamp like 2026-01-31T12:00:00.000000Z: {text!r}")
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    except ValueError as exc:
        raise LocalProtocolError(f"impossible date: {text!r}") from exc
