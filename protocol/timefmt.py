"""UTC timestamps on the wire: ISO 8601 with microseconds and a ``Z`` (one form only)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from .errors import LocalProtocolError

_WIRE_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z")


def utc_now() -> datetime:
    return datetime.now(UTC)


def format_time(moment: datetime) -> str:
    if moment.tzinfo is UTC:  # the common case (everything parse_time makes): no conversion
        return moment.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise LocalProtocolError("timestamps must be timezone-aware (UTC)")
    # isoformat, unlike strftime("%Y"), always writes four year digits
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def parse_time(text: str) -> datetime:
    """Parse a wire timestamp. Raises ``LocalProtocolError`` (callers decoding peer data rewrap it)."""
    if not isinstance(text, str) or not _WIRE_TIME.fullmatch(text):
        raise LocalProtocolError(f"not a UTC timestamp like 2026-01-31T12:00:00.000000Z: {text!r}")
    try:
        # The regex fixed the shape (ASCII digits only); fromisoformat is several times faster
        # than strptime and rejects impossible dates the same way.
        return datetime.fromisoformat(text[:-1]).replace(tzinfo=UTC)
    except ValueError as exc:
        raise LocalProtocolError(f"impossible date: {text!r}") from exc
