"""Shared test policy: what may be skipped where.

A test that needs something this machine lacks (root, PostgreSQL, Chromium) calls ``require``: on a
developer's laptop it is skipped with the reason; in CI (``VANTAGE_REQUIRE_ALL=1``, set by .ci/run)
the same condition is a failure, so CI can never go green by skipping.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

REQUIRE_ALL = os.environ.get("VANTAGE_REQUIRE_ALL") == "1"


def require(condition: bool, reason: str) -> None:
    if condition:
        return
    if REQUIRE_ALL:
        pytest.fail(f"required in CI but missing: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Any]:
    """A throwaway PostgreSQL server for the whole session (see tests/pg_server.py)."""
    import pg_server

    require(pg_server.available(), "PostgreSQL server binaries (Debian package postgresql) absent")
    server = pg_server.PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def storage_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    """A fresh, empty database of each backend, as a ``--db`` URL: one storage suite, two backends."""
    if request.param == "sqlite":
        return f"sqlite://{tmp_path}/collector.db"
    server = request.getfixturevalue("postgres_server")
    return str(server.new_database())
