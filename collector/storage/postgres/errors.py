"""What a PostgreSQL error means for the request that met it, translated into the ``StorageError`` family at
the engine's boundary (as ``storage.sqlite.errors`` does for SQLite).

The rows refused (``RowsRefused``): the pipeline retries their batch request by request, so that only the
request carrying the bad data gets 400 / INVALID_ARGUMENT. Anything else is ``StorageUnavailable`` (503 /
UNAVAILABLE with a retry hint): the server down, restarting or failing over, the connection lost, another
transaction in the way (``is_retryable``), and a bug of ours (a syntax error, a missing table), logged.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import psycopg

from collector.storage.errors import RowsRefused, StorageError, StorageUnavailable

# SQLSTATE classes and codes (https://www.postgresql.org/docs/current/errcodes-appendix.html).
_DATA_CLASSES = (
    "22",  # data exception: a value out of range, a NUL character, invalid JSON
    "23",  # integrity constraint violation
    "54",  # program limit exceeded: a value too large for an index row
)
_RETRYABLE_CLASSES = (
    "08",  # connection exception
    "40",  # transaction rollback: serialization failure, deadlock
    "53",  # insufficient resources: disk full, out of memory, too many connections
    "58",  # system error: I/O
)
_RETRYABLE_CODES = frozenset(
    {
        "55P03",  # lock_not_available (lock_timeout)
        "57014",  # query_canceled (statement_timeout)
        "57P01",  # admin_shutdown
        "57P02",  # crash_shutdown
        "57P03",  # cannot_connect_now (starting up, recovering)
        "57P05",  # idle_session_timeout
        "25006",  # read_only_sql_transaction: a standby after a failover, until the DSN reaches the new primary
    }
)
# Retried inside the writer with the same batch, since another replica's transaction caused them.
_CONFLICT_CODES = frozenset({"40001", "40P01"})  # serialization_failure, deadlock_detected


def is_data_error(failure: BaseException) -> bool:
    """Whether the rows written caused ``failure``: retrying the same request cannot succeed."""
    if not isinstance(failure, psycopg.Error):
        return False
    state = failure.sqlstate
    if state is None:  # raised by psycopg before the server saw it (a NUL byte in a text value)
        return isinstance(failure, psycopg.DataError)
    return state.startswith(_DATA_CLASSES)


def is_retryable(failure: BaseException) -> bool:
    """Whether the same request may succeed later: the server is down, restarting or failing over, the
    connection was lost, or another transaction was in the way."""
    if not isinstance(failure, psycopg.Error):
        return False
    state = failure.sqlstate
    if state is None:  # no answer from a server: the connection broke or could not be made (pool timeout too)
        return isinstance(failure, psycopg.OperationalError | psycopg.InterfaceError)
    return state.startswith(_RETRYABLE_CLASSES) or state in _RETRYABLE_CODES


def is_conflict(failure: BaseException) -> bool:
    """A serialization failure or deadlock: rolled back by the server for another transaction's sake."""
    return isinstance(failure, psycopg.Error) and failure.sqlstate in _CONFLICT_CODES


# What the refusals a client can cause mean, in the words SQLite's answer would use (the 400's message).
_REFUSALS = {
    "22003": "integer overflow",  # numeric_value_out_of_range
    "54000": "a value too long to index",  # program_limit_exceeded
}


def translate(failure: psycopg.Error) -> StorageError:
    """The storage error ``failure`` means; ``kind`` is its SQLSTATE, or psycopg's class name without one."""
    kind = failure.sqlstate or type(failure).__name__
    message = str(failure).strip()
    if is_data_error(failure):
        meaning = _REFUSALS.get(kind)
        return RowsRefused(f"{meaning}: {message}" if meaning else message, kind=kind)
    return StorageUnavailable(message, kind=kind)


@contextlib.contextmanager
def translated() -> Iterator[None]:
    """Raise any ``psycopg.Error`` of the block as the ``StorageError`` it means (the original as its cause)."""
    try:
        yield
    except psycopg.Error as failure:
        raise translate(failure) from failure
