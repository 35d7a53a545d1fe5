"""Connections to PostgreSQL the one way this backend makes them, and the advisory locks replicas share.

A DSN is anything libpq takes (``postgresql://user@host/db?sslmode=require``, or key=value words), with the
usual ``PG*`` environment variables filling what it leaves out.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import psycopg
from psycopg_pool import ConnectionPool

from collector.observability.logs import Outage
from collector.storage.postgres.errors import is_conflict

log = logging.getLogger(__name__)

T = TypeVar("T")
Connection = psycopg.Connection[tuple[Any, ...]]

# Advisory lock keys, as (class, object): the class says "genai-collector", the object which job.
_LOCK_CLASS = 0x47454E41  # "GENA"
MIGRATIONS_LOCK = (_LOCK_CLASS, 1)  # held (waiting) while one replica migrates the schema
MAINTENANCE_LOCK = (_LOCK_CLASS, 2)  # retention and partition upkeep: one replica at a time, the others skip
RESOURCES_LOCK = (_LOCK_CLASS, 3)  # shared by writers, exclusive while unused resources are deleted
SNAPSHOTS_LOCK = (_LOCK_CLASS, 4)  # from stamping a settling's snapshots to its commit: they commit in stamp order

# Settling, retention and the probe wait at most this long for a connection (a batch waits longer, see the
# writer): they run on the writer's thread between batches, and while the server is away each would hold the
# batches and the probe up for as long as it waits, for work that is simply done at the next round.
MAINTENANCE_CONNECT_TIMEOUT = 1.0  # seconds

CONFLICT_RETRIES = 5  # a batch rolled back for a deadlock or serialization failure is tried this many times more


def connect(dsn: str) -> Connection:
    """One connection outside any pool (migrations, tests), in autocommit: transactions are explicit."""
    return psycopg.connect(dsn, autocommit=True)


class _PoolOutages(logging.Filter):
    """psycopg_pool warns of every failed connection attempt, two or three a second while the server is away:
    those of the pools ``open_pool`` made go to the pool's ``Outage`` instead (one per pool name)."""

    ATTEMPT_FAILED = "error connecting in %r: %s"
    GAVE_UP = "reconnection attempt in pool %r failed after %s sec"  # after each failed attempt: reconnect_timeout=0

    def __init__(self) -> None:
        super().__init__()
        self.outages: dict[str, Outage] = {}

    def of(self, name: str) -> Outage:
        return self.outages.setdefault(name, Outage(log, f"PostgreSQL (pool {name!r})"))

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg not in (self.ATTEMPT_FAILED, self.GAVE_UP) or not isinstance(record.args, tuple):
            return True
        outage = self.outages.get(str(record.args[0]))
        if outage is None:
            return True
        if record.msg == self.ATTEMPT_FAILED:
            outage.failed(record.args[1])
        return False


_POOL_OUTAGES = _PoolOutages()


def open_pool(
    dsn: str,
    *,
    name: str,
    max_size: int = 2,
    configure: Callable[[Connection], None] | None = None,
    timeout: float = 10.0,
) -> ConnectionPool[Connection]:
    """A pool of autocommit connections (transactions are explicit, ``connection.transaction()``).

    Each connection is checked when taken (an empty query), so that one cut while idle (a restart, a
    failover) is replaced instead of failing the batch that takes it. Opening does not wait for the
    server: a collector starts while PostgreSQL is still coming up, and its writes are retryable meanwhile.
    While it is away, the failed attempts are logged as one outage (``observability.logs.Outage``).
    """
    outage = _POOL_OUTAGES.of(name)
    logging.getLogger("psycopg.pool").addFilter(_POOL_OUTAGES)  # once: a filter is added once

    def configured(connection: Connection) -> None:
        if configure is not None:
            configure(connection)
        outage.reached()

    return ConnectionPool(
        dsn,
        name=name,
        min_size=1,
        max_size=max_size,
        kwargs={"autocommit": True},
        configure=configured,
        check=ConnectionPool.check_connection,
        timeout=timeout,
        # A failed connection attempt is not retried in the background with a growing backoff (which could
        # leave the collector waiting for a minute after the database is back): the next batch tries again.
        reconnect_timeout=0,
        open=True,
    )


def retry_conflicts(work: Callable[[], T], *, retries: int = CONFLICT_RETRIES) -> T:
    """Run ``work`` (one whole transaction) again when the server rolled it back for a deadlock or a
    serialization failure, after a short random pause so that the replicas involved do not meet again."""
    for attempt in range(retries + 1):
        try:
            return work()
        except psycopg.Error as failure:
            if attempt == retries or not is_conflict(failure):
                raise
            time.sleep(random.uniform(0.001, 0.01) * 2**attempt)
    raise AssertionError("unreachable")


@contextlib.contextmanager
def try_lock(connection: Connection, key: tuple[int, int]) -> Iterator[bool]:
    """A transaction holding ``key`` when the value is True; when another replica holds it, False at once
    (the transaction is still open, and empty)."""
    with connection.transaction():
        row = connection.execute("SELECT pg_try_advisory_xact_lock(%s, %s)", key).fetchone()
        yield bool(row and row[0])
