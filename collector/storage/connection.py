"""Opening a SQLite connection the one way this project does it."""

from __future__ import annotations

from pathlib import Path

import apsw
import apsw.bestpractice

BUSY_TIMEOUT_MS = 5_000


def open_connection(path: Path | str, *, synchronous: str = "full", readonly: bool = False) -> apsw.Connection:
    """A connection set up with apsw's best practice: WAL, foreign keys, no double-quoted strings.

    WAL lets readers on other connections run while the writer commits; ``synchronous``
    is ``full`` (every commit fsynced) or ``normal`` (durable across a crash of this process).
    """
    flags = apsw.SQLITE_OPEN_READONLY if readonly else apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE
    connection = apsw.Connection(str(path), flags=flags)
    if not readonly:
        apsw.bestpractice.connection_wal(connection)
    apsw.bestpractice.connection_busy_timeout(connection, BUSY_TIMEOUT_MS)
    apsw.bestpractice.connection_enable_foreign_keys(connection)
    apsw.bestpractice.connection_dqs(connection)
    connection.pragma("synchronous", synchronous)
    return connection
