"""``--db`` parsing: plain paths stay SQLite, URLs pick a backend, passwords never reach messages."""

from __future__ import annotations

import pytest

from collector.backends import StorageUrlError, parse_storage_url


@pytest.mark.parametrize(
    ("db", "backend", "target"),
    [
        ("collector.db", "sqlite", "collector.db"),
        ("/var/lib/vantage/c.db", "sqlite", "/var/lib/vantage/c.db"),
        ("sqlite:///var/lib/vantage/c.db", "sqlite", "/var/lib/vantage/c.db"),
        ("postgresql://v@db:5432/vantage", "postgresql", "postgresql://v@db:5432/vantage"),
        ("postgres://v@db/vantage", "postgresql", "postgres://v@db/vantage"),
    ],
)
def test_backend_is_chosen_by_url(db: str, backend: str, target: str) -> None:
    url = parse_storage_url(db)
    assert (url.backend, url.target) == (backend, target)


def test_display_hides_the_password() -> None:
    url = parse_storage_url("postgresql://vantage:s3cret@db.internal:5432/vantage")
    assert "s3cret" not in url.display and url.display.startswith("postgresql://vantage:***@")


@pytest.mark.parametrize("db", ["mysql://x/y", "sqlite://"])
def test_unknown_or_empty_urls_are_clear_errors(db: str) -> None:
    with pytest.raises(StorageUrlError):
        parse_storage_url(db)
