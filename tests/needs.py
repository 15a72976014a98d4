"""What may be skipped where: ``require(condition, reason)``.

A test that needs something this machine lacks (root, PostgreSQL, Chromium, dnsmasq) calls ``require``:
on a developer's laptop it is skipped with the reason; in CI (``VANTAGE_REQUIRE_ALL=1``, set by .ci/run)
the same condition is a failure, so CI can never go green by skipping. Import it as ``from needs import
require`` (pytest puts ``tests/`` on ``sys.path`` through the top-level conftest).
"""

from __future__ import annotations

import os

import pytest

REQUIRE_ALL = os.environ.get("VANTAGE_REQUIRE_ALL") == "1"


def require(condition: bool, reason: str) -> None:
    if condition:
        return
    if REQUIRE_ALL:
        pytest.fail(f"required in CI but missing: {reason}")
    pytest.skip(reason)
