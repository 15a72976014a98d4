"""protocol.failures: the fixed failure vocabulary, plus one bounded, one-line escape hatch."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.failures import (
    KNOWN_FAILURES,
    UNKNOWN_PREFIX,
    UNKNOWN_TEXT_MAX,
    is_failure_string,
    unknown_failure,
)

FAST = settings(max_examples=200, deadline=None)
STEPS = {"dns", "tcp", "tls", "http"}


@pytest.mark.parametrize("failure", sorted(KNOWN_FAILURES))
def test_every_known_failure_is_a_failure_string(failure: str) -> None:
    assert is_failure_string(failure)
    assert KNOWN_FAILURES[failure]
    assert KNOWN_FAILURES[failure] <= STEPS


def test_known_failures_are_ooni_style_identifiers() -> None:
    for failure in KNOWN_FAILURES:
        assert failure == failure.strip().lower()
        assert " " not in failure
        assert not failure.startswith(UNKNOWN_PREFIX)


@FAST
@given(st.text())
def test_unknown_failure_output_is_always_a_failure_string(text: str) -> None:
    failure = unknown_failure(text)
    assert failure.startswith(UNKNOWN_PREFIX)
    assert is_failure_string(failure)


@FAST
@given(st.text())
def test_unknown_failure_is_one_bounded_line(text: str) -> None:
    detail = unknown_failure(text)[len(UNKNOWN_PREFIX) :]
    assert 0 < len(detail) <= UNKNOWN_TEXT_MAX
    assert "\n" not in detail and "\r" not in detail and "\t" not in detail
    assert detail == detail.strip()
    assert "  " not in detail


@FAST
@given(st.text())
def test_unknown_failure_is_idempotent_on_its_detail(text: str) -> None:
    failure = unknown_failure(text)
    assert unknown_failure(failure[len(UNKNOWN_PREFIX) :]) == failure


def test_unknown_failure_truncates() -> None:
    failure = unknown_failure("x" * 1000)
    assert failure == UNKNOWN_PREFIX + "x" * UNKNOWN_TEXT_MAX


def test_unknown_failure_joins_lines() -> None:
    assert unknown_failure("Traceback:\n  File 'x'\r\n\tboom  ") == (
        UNKNOWN_PREFIX + "Traceback: File 'x' boom"
    )


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_unknown_failure_never_has_an_empty_detail(text: str) -> None:
    assert unknown_failure(text) == UNKNOWN_PREFIX + "no detail"


@FAST
@given(st.text())
def test_random_strings_are_not_failure_strings(text: str) -> None:
    expected = text in KNOWN_FAILURES or text.startswith(UNKNOWN_PREFIX)
    if not expected:
        assert not is_failure_string(text)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "timeout",
        "DNS_NXDOMAIN_ERROR",
        "dns_nxdomain_error ",
        " dns_nxdomain_error",
        "unknown_failure:",
        "unknown_failure: ",  # empty detail
        "unknown_failure:x",  # no space after the colon
        "Unknown_failure: x",
        UNKNOWN_PREFIX + "x" * (UNKNOWN_TEXT_MAX + 1),
        UNKNOWN_PREFIX + "two\nlines",
    ],
)
def test_malformed_failure_strings_are_refused(value: str) -> None:
    assert not is_failure_string(value)


def test_the_longest_unknown_failure_is_accepted() -> None:
    assert is_failure_string(UNKNOWN_PREFIX + "x" * UNKNOWN_TEXT_MAX)


@pytest.mark.parametrize("detail", ["a\rb", "a\tb", "\x1b[2Jcleared", "nul\x00byte"])
def test_failure_strings_hold_no_control_characters(detail: str) -> None:
    assert not is_failure_string(UNKNOWN_PREFIX + detail)
    assert all(ord(ch) >= 0x20 for ch in unknown_failure(detail))
