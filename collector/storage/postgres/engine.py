"""The PostgreSQL engine's openers, named in ``storage.engines.ENGINES``: the location is a libpq URL's rest.

``postgresql://user@host/db?sslmode=require`` (or ``postgres://...``) goes to psycopg as written, so the
usual ``PG*`` environment variables, ``sslmode`` and a ``~/.pgpass`` fill in what it leaves out.
"""

from __future__ import annotations

from collector.config import QuerySettings, Settings
from collector.storage.errors import StorageUnavailable, StoreUnopenable
from collector.storage.postgres.read import PostgresTraceReader
from collector.storage.postgres.writer import PostgresSpanWriter


def dsn(location: str) -> str:
    """The libpq URL of ``location`` (what follows ``postgresql://`` or ``postgres://``)."""
    return "postgresql://" + location


def open_store(location: str, settings: Settings) -> PostgresSpanWriter:
    """The writer of the database, its schema migrated (once, whichever replica starts first). A server that
    cannot be reached at start-up stops it with a message naming the server."""
    try:
        return PostgresSpanWriter(dsn(location), retention=settings.retention)
    except StorageUnavailable as failure:
        raise StoreUnopenable(f"cannot reach PostgreSQL to migrate its schema: {failure}", kind=failure.kind) from None


def open_reader(location: str, query: QuerySettings) -> PostgresTraceReader:
    """A pool of read-only connections of the reader's own (``query.read_connections``), never the writer's."""
    return PostgresTraceReader(
        dsn(location), connections=query.read_connections, statement_timeout=query.statement_timeout
    )
