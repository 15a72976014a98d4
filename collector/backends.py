"""Pick a storage backend from ``--db``: a URL, or (the original contract) a plain SQLite path.

::

    collector.db                           SQLite file (relative or absolute path)
    sqlite:///var/lib/vantage/collector.db SQLite, absolute path
    postgresql://user:pw@host:5432/vantage PostgreSQL (also postgres://)

SQLite is embedded (one process owns the file), so it applies pending migrations on open. PostgreSQL
is shared by several collectors: migrations are an explicit step (``vantage collector migrate`` or
``serve --migrate``) so that a rolling upgrade never changes the schema under a running peer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from .storage import Storage, StorageUnavailable


class StorageUrlError(ValueError):
    """``--db`` names no backend we know."""


@dataclass(frozen=True, slots=True)
class StorageUrl:
    backend: str  # "sqlite" | "postgresql"
    target: str  # the SQLite path, or the PostgreSQL DSN

    @property
    def display(self) -> str:
        """The URL with any password removed: safe for logs and error messages."""
        if self.backend == "sqlite":
            return self.target
        parts = urlsplit(self.target)
        if parts.password is None:
            return self.target
        netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))


def parse_storage_url(db: str | Path) -> StorageUrl:
    text = str(db)
    if text.startswith(("postgresql://", "postgres://")):
        return StorageUrl("postgresql", text)
    if text.startswith("sqlite://"):
        path = text.removeprefix("sqlite://")
        if not path:
            raise StorageUrlError("sqlite:// URL needs a path, e.g. sqlite:///var/lib/vantage/c.db")
        return StorageUrl("sqlite", path)
    if "://" in text:
        scheme = text.split("://", 1)[0]
        raise StorageUrlError(
            f"unknown database URL scheme {scheme!r}; use sqlite:///PATH or postgresql://..."
        )
    return StorageUrl("sqlite", text)


def storage_outage_errors() -> tuple[type[BaseException], ...]:
    """Exceptions meaning "the database cannot be reached right now" (answer 503, try later), as
    opposed to a bug (500). Connection-level only: a bad query stays a 500 and is logged as one."""
    errors: tuple[type[BaseException], ...] = (StorageUnavailable, ConnectionError)
    try:
        import asyncpg
    except ImportError:  # a SQLite-only install
        return errors
    return (*errors, asyncpg.PostgresConnectionError, asyncpg.OperatorInterventionError)


def open_storage(db: str | Path, *, migrate: bool | None = None) -> Storage:
    """A storage object for ``db`` (not yet opened). ``migrate=None``: the backend's default."""
    url = parse_storage_url(db)
    if url.backend == "postgresql":
        from .pg_store import PostgresStorage  # asyncpg is imported only when PostgreSQL is used

        return PostgresStorage(url.target, migrate=bool(migrate))
    from .sqlite_store import SqliteStorage

    return SqliteStorage(Path(url.target), migrate=True if migrate is None else migrate)
