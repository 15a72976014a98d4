"""protocol.timefmt: one wire form for a moment, ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` in UTC."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.errors import LocalProtocolError
from protocol.timefmt import format_time, parse_time, utc_now

FAST = settings(max_examples=200, deadline=None)
WIRE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z")
OFFSETS = st.integers(-23 * 60, 23 * 60).map(lambda minutes: timezone(timedelta(minutes=minutes)))


@FAST
@given(
    st.datetimes(
        min_value=datetime(1000, 1, 1), max_value=datetime(9999, 12, 31), timezones=st.just(UTC)
    )
)
def test_round_trip(moment: datetime) -> None:
    text = format_time(moment)
    assert WIRE.fullmatch(text)
    parsed = parse_time(text)
    assert parsed == moment
    assert parsed.tzinfo is UTC
    assert format_time(parsed) == text


@FAST
@given(
    st.datetimes(min_value=datetime(1001, 1, 1), max_value=datetime(9998, 1, 1), timezones=OFFSETS)
)
def test_other_offsets_are_written_in_utc(moment: datetime) -> None:
    text = format_time(moment)
    assert text.endswith("Z")
    assert parse_time(text) == moment  # the same instant
    assert format_time(moment.astimezone(UTC)) == text


def test_a_known_moment() -> None:
    moment = datetime(2026, 1, 31, 12, 0, 0, 5, tzinfo=UTC)
    assert format_time(moment) == "2026-01-31T12:00:00.000005Z"
    tehran = timezone(timedelta(hours=3, minutes=30))
    assert (
        format_time(datetime(2026, 1, 31, 15, 30, tzinfo=tehran)) == "2026-01-31T12:00:00.000000Z"
    )


def test_utc_now_is_aware_and_formattable() -> None:
    now = utc_now()
    assert now.utcoffset() == timedelta(0)
    assert abs(parse_time(format_time(now)) - now) < timedelta(seconds=1)


@pytest.mark.parametrize("moment", [datetime(2026, 1, 31, 12, 0), datetime.now()])
def test_naive_datetimes_are_refused(moment: datetime) -> None:
    with pytest.raises(LocalProtocolError, match="timezone"):
        format_time(moment)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "2026-01-31",
        "2026-01-31T12:00:00Z",  # no microseconds
        "2026-01-31T12:00:00.000Z",  # milliseconds only
        "2026-01-31T12:00:00.000000",  # no Z
        "2026-01-31T12:00:00.000000+00:00",
        "2026-01-31 12:00:00.000000Z",
        "2026-01-31t12:00:00.000000z",
        " 2026-01-31T12:00:00.000000Z",
        "2026-01-31T12:00:00.000000Z ",
        "2026-01-31T12:00:00.000000Z\n",
        "2026-02-30T12:00:00.000000Z",  # impossible date
        "2026-13-01T12:00:00.000000Z",
        "2026-01-31T24:00:00.000000Z",
        "2026-01-31T12:60:00.000000Z",
        "+2026-01-31T12:00:00.000000Z",
    ],
)
def test_malformed_strings_are_refused(text: str) -> None:
    with pytest.raises(LocalProtocolError):
        parse_time(text)


@pytest.mark.parametrize("value", [None, 1769860800, b"2026-01-31T12:00:00.000000Z", ["x"]])
def test_non_strings_are_refused(value: object) -> None:
    with pytest.raises(LocalProtocolError):
        parse_time(value)  # type: ignore[arg-type]


@FAST
@given(st.text(max_size=40))
def test_arbitrary_text_parses_only_in_the_one_wire_form(text: str) -> None:
    try:
        parsed = parse_time(text)
    except LocalProtocolError:
        return
    assert format_time(parsed) == text


@pytest.mark.parametrize("text", ["٢٠٢٦-01-31T12:00:00.000000Z", "２０２６-01-31T12:00:00.000000Z"])
def test_only_ascii_digits_are_accepted(text: str) -> None:
    with pytest.raises(LocalProtocolError):
        parse_time(text)


def test_years_before_1000_round_trip() -> None:
    moment = datetime(999, 1, 1, tzinfo=UTC)
    assert parse_time(format_time(moment)) == moment
