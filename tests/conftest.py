"""Top-level test configuration. Importing this puts ``tests/`` on ``sys.path`` (pytest's prepend
import mode), so test modules can ``import builders`` and ``from needs import require``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from needs import REQUIRE_ALL, require

__all__ = ["REQUIRE_ALL", "require"]


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
