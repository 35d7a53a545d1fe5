"""Opening a SQLite connection the one way this project does it."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import apsw
import apsw.bestpractice

BUSY_TIMEOUT_MS = 5_000
WAL_SIZE_LIMIT = 64 * 1024 * 1024


def bound_wal(connection: apsw.Connection, limit: int) -> int:
    """Keep the ``-wal`` file near ``limit`` bytes; returns the pages it holds.

    SQLite's automatic checkpoint runs once the WAL holds half of them (a transaction on top still fits), and
    ``journal_size_limit`` cuts the file back to ``limit`` after a checkpoint has emptied it. Half of 64 MiB,
    rather than SQLite's default of 1,000 pages (4 MiB): a batch of 400 spans writes about 900 pages (each row
    about a page, and a page of random-keyed index leaves for every two spans), so the default checkpointed every
    other batch, rewriting the pages every batch appends to (the time-ordered indexes' last leaves) and fsyncing
    the database file each time (docs/performance.md, "The writer alone"). On the daemon's write connection the
    checkpointer's thread takes that checkpoint over at the same mark (``checkpoint.WalCheckpointer``, given the
    writer): the mark stays the WAL's bound either way.
    """
    page_size: int = connection.pragma("page_size")
    pages = limit // page_size
    connection.pragma("journal_size_limit", limit)
    connection.pragma("wal_autocheckpoint", max(16, pages // 2))
    return pages


def _wal(connection: apsw.Connection) -> None:
    """Turn on WAL. A new file's first switch takes an exclusive lock, and while another connection
    (an exporter opening the file at the same time) holds one, SQLite answers BUSY without calling the
    busy handler: wait for it here, as long as the busy timeout."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            apsw.bestpractice.connection_wal(connection)
            return
        except apsw.BusyError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.005)


def open_connection(path: Path | str, *, synchronous: str = "full", readonly: bool = False) -> apsw.Connection:
    """A connection set up with apsw's best practice: WAL, foreign keys, no double-quoted strings.

    WAL lets readers on other connections run while the writer commits; ``synchronous``
    is ``full`` (every commit fsynced) or ``normal`` (durable across a crash of this process).
    A new database gets ``auto_vacuum=INCREMENTAL`` (it can only be set before the first table, and
    before WAL mode), so that retention can hand freed pages back to the file system; on an existing
    database the pragma only takes effect at the next ``VACUUM`` (``genai-collector vacuum``).
    A connection that writes keeps the ``-wal`` file to ``WAL_SIZE_LIMIT`` (``bound_wal``).
    """
    flags = apsw.SQLITE_OPEN_READONLY if readonly else apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE
    connection = apsw.Connection(str(path), flags=flags)
    apsw.bestpractice.connection_busy_timeout(connection, BUSY_TIMEOUT_MS)
    if not readonly:
        connection.pragma("auto_vacuum", "incremental")  # before WAL: a new file is created with it
        _wal(connection)
        bound_wal(connection, WAL_SIZE_LIMIT)
    apsw.bestpractice.connection_enable_foreign_keys(connection)
    apsw.bestpractice.connection_dqs(connection)
    connection.pragma("synchronous", synchronous)
    return connection


@contextlib.contextmanager
def write_transaction(connection: apsw.Connection) -> Iterator[None]:
    """A transaction that takes the write lock at its start (``BEGIN IMMEDIATE``), waiting up to the busy timeout.

    For a transaction that reads before it writes, when another connection (an in-process exporter, a
    second process) may write the same file: begun the default way, it would find at its first write
    that the other committed since its read, and fail at once with SQLITE_BUSY_SNAPSHOT, which no busy
    timeout waits out.
    """
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:  # some errors (a full disk) have rolled it back already
            connection.execute("ROLLBACK")
        raise
