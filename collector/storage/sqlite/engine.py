"""The SQLite engine's openers, named in ``storage.engines.ENGINES``: the location is a file path."""

from __future__ import annotations

from pathlib import Path

import apsw

from collector.component import Component
from collector.config import QuerySettings, Settings
from collector.observability.metrics import CollectorMetrics
from collector.storage.errors import StoreUnopenable
from collector.storage.sqlite.checkpoint import WalCheckpointer
from collector.storage.sqlite.read import SqliteTraceReader
from collector.storage.sqlite.writer import SpanWriter


def open_store(location: str, settings: Settings) -> SpanWriter:
    """The writer of the file at ``location``, its directory created and its schema migrated."""
    path = Path(location)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return SpanWriter(path, synchronous=settings.sqlite_synchronous, retention=settings.retention)
    except OSError as error:
        raise StoreUnopenable(
            f"cannot create the database directory {path.parent}: {error.strerror}", kind="OSError"
        ) from None
    except apsw.Error as error:
        raise StoreUnopenable(
            f"cannot open the database {path} for writing: {error}", kind=type(error).__name__
        ) from None


def companions(store: SpanWriter, metrics: CollectorMetrics) -> list[Component]:
    """The WAL's checkpoints, on a connection and a thread of its own (``checkpoint.WalCheckpointer``), the writer's
    automatic one included."""
    return [WalCheckpointer(store.path, metrics, writer=store.connection)]


def open_reader(location: str, query: QuerySettings) -> SqliteTraceReader:
    """Read-only connections of the reader's own (``query.read_connections``), never the writer's."""
    return SqliteTraceReader(
        Path(location), connections=query.read_connections, statement_timeout=query.statement_timeout
    )
