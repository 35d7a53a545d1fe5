"""Retention and partition upkeep on PostgreSQL: whole days of spans dropped, one replica at a time.

Each transaction of this job first takes ``MAINTENANCE_LOCK`` with ``pg_try_advisory_xact_lock``: while
another replica holds it, this one skips the work (it finds it done, or does it at its next step).

- **Upkeep** makes the day partitions ahead (``partitions.ensure``).
- **By age** a day's partition goes once the day ended ``max_age`` ago: first, in small transactions, the
  traces that started that day (their rollup, events, evaluations, and the spans they have in later days),
  then, in one short transaction, the partition itself (``DROP TABLE``, which waits for the writers of
  ``spans`` in flight and holds the next ones back for a moment; ``lock_timeout`` bounds the wait, and a
  step that times out tries again later). Traces whose spans went to the default partition (a client clock
  far off) are deleted row by row as on SQLite, once their last span arrived ``max_age`` ago; so are the
  events and evaluations of no stored trace, and ``metric_snapshots`` go by their own age.
- **By size** the oldest day partitions before today are dropped the same way while the tables (with their
  indexes and TOAST, ``pg_total_relation_size``) are over ``max_size``'s trigger, down to ``low_water_mark``.
  Deleting rows frees nothing PostgreSQL gives back to the file system; dropping a partition does.
- Resources no longer used go in a transaction holding ``RESOURCES_LOCK`` exclusively, which writers share
  while they look resources up.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool

from collector.config import RetentionSettings
from collector.storage.postgres import partitions
from collector.storage.postgres.connection import (
    MAINTENANCE_CONNECT_TIMEOUT,
    MAINTENANCE_LOCK,
    RESOURCES_LOCK,
    Connection,
    try_lock,
)
from collector.storage.postgres.partitions import DAY_NS, Partition
from collector.storage.retention import SizeBound
from collector.storage.store import Deleted

ROWS_PER_TRANSACTION = 2_000  # traces (or events, evaluations, snapshots) deleted per transaction at most
DROP_LOCK_TIMEOUT = "2s"  # how long dropping a partition waits for the writers and readers of spans
UPKEEP_MARGIN_NS = 2 * DAY_NS  # upkeep runs when the partitions made cover less than this ahead

TRACES_STARTED_IN = """
SELECT trace_id FROM traces WHERE start_time_unix_nano >= %s AND start_time_unix_nano < %s
ORDER BY start_time_unix_nano LIMIT %s
"""
# Traces all of whose spans went to the default partition: they started before the oldest day partition or
# after the newest, and they go by the age of their last span, as on SQLite.
OLD_DEFAULT_TRACES = """
SELECT trace_id FROM traces
WHERE (start_time_unix_nano < %(lower)s OR start_time_unix_nano >= %(upper)s) AND last_span_at_unix_nano < %(cutoff)s
ORDER BY last_span_at_unix_nano LIMIT %(limit)s
"""
DELETE_TRACES = """
DELETE FROM traces WHERE trace_id = ANY(%s) RETURNING trace_id, span_count, start_time_unix_nano, end_time_unix_nano
"""
# The spans of deleted traces outside the partition that is going (a trace started late one day and went on
# the next; or whose spans are in the default partition).
DELETE_SPANS_OUTSIDE = """
DELETE FROM spans WHERE trace_id = ANY(%s) AND (start_time_unix_nano < %s OR start_time_unix_nano >= %s)
RETURNING resource_id
"""
DELETE_OF_TRACES = {
    table: f"DELETE FROM {table} WHERE trace_id = ANY(%s) RETURNING resource_id" for table in ("events", "evaluations")
}
# Rows of no stored trace that arrived before ``cutoff``; scanned only before the oldest day partition's first
# day (records of the traces that partition keeps arrived on or after it, as its spans did).
ORPHANS = {
    table: f"""
DELETE FROM {table} WHERE id IN (
    SELECT id FROM {table}
    WHERE received_at_unix_nano < %s
      AND (trace_id IS NULL OR NOT EXISTS (SELECT 1 FROM traces WHERE traces.trace_id = {table}.trace_id))
    ORDER BY received_at_unix_nano LIMIT %s
) RETURNING resource_id
"""
    for table in ("events", "evaluations")
}
OLD_SNAPSHOTS = """
DELETE FROM metric_snapshots WHERE id IN (
    SELECT id FROM metric_snapshots WHERE computed_at < %s ORDER BY computed_at LIMIT %s
)
"""
DELETE_UNUSED_RESOURCES = """
DELETE FROM resources
WHERE id = ANY(%s)
  AND NOT EXISTS (SELECT 1 FROM spans WHERE spans.resource_id = resources.id)
  AND NOT EXISTS (SELECT 1 FROM events WHERE events.resource_id = resources.id)
  AND NOT EXISTS (SELECT 1 FROM evaluations WHERE evaluations.resource_id = resources.id)
"""
OLDEST_TRACE = "SELECT min(last_span_at_unix_nano) FROM traces"
TABLES = ("traces", "metric_snapshots", "events", "evaluations", "resources", "schema_migrations")
DATABASE_SIZE = f"""
SELECT coalesce(sum(pg_total_relation_size(relid)), 0) FROM pg_partition_tree('spans'::regclass)
UNION ALL
SELECT coalesce(sum(pg_total_relation_size(to_regclass(name))), 0) FROM unnest(ARRAY{list(TABLES)}) AS name
"""


def database_size(connection: Connection) -> int:
    """The bytes of the collector's tables: rows, indexes and TOAST, every partition of ``spans`` included."""
    return sum(int(row[0]) for row in connection.execute(DATABASE_SIZE))


@dataclass
class Retention(SizeBound):
    """The retention and upkeep job of one replica (see the module's docstring); ``step`` does a piece."""

    pool: ConnectionPool[Connection]
    settings: RetentionSettings
    rows_per_transaction: int = ROWS_PER_TRANSACTION
    oldest_trace_ns: int | None = None  # when the oldest stored trace got its last span, after the last step
    _covered_until: int | None = field(default=None, init=False)  # the partitions made reach this start time

    def upkeep(self, now_ns: int, *, wait: bool = False) -> list[str]:
        """Make the day partitions ahead when they run short; ``wait`` for another replica doing it (at start)
        rather than skip. Returns the partitions made."""
        if not wait and self._covered_until is not None and self._covered_until - now_ns > UPKEEP_MARGIN_NS:
            return []
        with self.pool.connection(timeout=None if wait else MAINTENANCE_CONNECT_TIMEOUT) as connection:
            if wait:
                with connection.transaction():
                    connection.execute("SELECT pg_advisory_xact_lock(%s, %s)", MAINTENANCE_LOCK)
                    made = partitions.ensure(connection, now_ns)
            else:
                with try_lock(connection, MAINTENANCE_LOCK) as held:
                    made = partitions.ensure(connection, now_ns) if held else []
            self._covered_until = partitions.covered_until(connection)
        return made

    def step(self, now_ns: int) -> list[Deleted]:
        """Do a piece of each kind of work that is due; a result's ``more`` asks to be called again after the
        next batch (as SQLite's ``Retention.step``)."""
        self.upkeep(now_ns)
        done: list[Deleted] = []
        with self.pool.connection(timeout=MAINTENANCE_CONNECT_TIMEOUT) as connection:
            if self.size_due:
                done.append(self._by_size(connection, now_ns))
            if self.settings.max_age > 0 and not any(result.more for result in done):
                done.append(self._by_age(connection, now_ns - int(self.settings.max_age * 1e9)))
            if self.settings.snapshots_max_age > 0:
                done.append(self._old_snapshots(connection, now_ns - int(self.settings.snapshots_max_age * 1e9)))
            row = connection.execute(OLDEST_TRACE).fetchone()
            self.oldest_trace_ns = None if row is None else row[0]
        return done

    def _by_age(self, connection: Connection, cutoff_ns: int) -> Deleted:
        result = Deleted(reason="age")
        for partition in partitions.day_partitions(connection):
            if partition.upper > cutoff_ns:
                break
            piece = self._drop(connection, partition, "age")
            if piece is None:
                return result  # another replica is at it
            result.traces += piece.traces
            result.spans += piece.spans
            if piece.more:
                result.more = True  # its traces go a piece at a time; the partition itself at a later step
                return result
        days = partitions.day_partitions(connection)
        lower = days[0].lower if days else cutoff_ns
        upper = days[-1].upper if days else cutoff_ns
        with try_lock(connection, MAINTENANCE_LOCK) as held, connection.cursor() as cursor:
            if not held:
                return result
            limit = self.rows_per_transaction
            ids = [
                row[0]
                for row in cursor.execute(
                    OLD_DEFAULT_TRACES, {"lower": lower, "upper": upper, "cutoff": cutoff_ns, "limit": limit}
                )
            ]
            resources: set[int] = set()
            if ids:
                result.traces, result.spans = self._delete_traces(cursor, ids, None, resources)
            orphans = 0
            for statement in ORPHANS.values():
                deleted = cursor.execute(statement, (min(cutoff_ns, lower), limit)).fetchall()
                resources.update(row[0] for row in deleted if row[0] is not None)
                orphans = max(orphans, len(deleted))
            result.more = result.more or len(ids) >= limit or orphans >= limit
        self._delete_unused_resources(connection, resources)
        return result

    def _by_size(self, connection: Connection, now_ns: int) -> Deleted:
        size = database_size(connection)
        target = self.size_target(size)
        if target is None:
            return Deleted()
        if size > target:
            # Whole days before today only: the day being written is never dropped.
            past = [p for p in partitions.day_partitions(connection) if p.upper <= partitions.day_start(now_ns)]
            if past:
                deleted = self._drop(connection, past[0], self._reason)
                if deleted is None:
                    return Deleted()  # another replica is at it; measured again at the next step
                deleted.reclaimed_bytes = max(0, size - database_size(connection))
                deleted.more = True  # measured again at the next step
                return deleted
        self._target = None  # down to the mark, or nothing more can be dropped
        return Deleted()

    def _drop(self, connection: Connection, partition: Partition, reason: str) -> Deleted | None:
        """A piece of dropping ``partition``: its traces in a small transaction while there are more, then the
        partition itself. ``more`` while traces of it remain (they go a transaction at a time); None when another
        replica holds the job: this one looks again at its next interval."""
        result = Deleted(reason=reason, more=True)
        resources: set[int] = set()
        with try_lock(connection, MAINTENANCE_LOCK) as held, connection.cursor() as cursor:
            if not held:
                return None
            ids = [
                row[0]
                for row in cursor.execute(
                    TRACES_STARTED_IN, (partition.lower, partition.upper, self.rows_per_transaction)
                )
            ]
            if ids:
                result.traces, result.spans = self._delete_traces(cursor, ids, partition, resources)
        if not ids:
            try:
                with try_lock(connection, MAINTENANCE_LOCK) as held, connection.cursor() as cursor:
                    if not held:
                        return None
                    cursor.execute(f"SET LOCAL lock_timeout = '{DROP_LOCK_TIMEOUT}'")
                    table = sql.Identifier(partition.name)
                    # Taken first: from here no writer adds spans (nor traces) until the commit.
                    cursor.execute(sql.SQL("LOCK TABLE spans IN ACCESS EXCLUSIVE MODE"))
                    resources.update(
                        row[0]
                        for row in cursor.execute(
                            sql.SQL("SELECT DISTINCT resource_id FROM {} WHERE resource_id IS NOT NULL").format(table)
                        )
                    )
                    # The traces writers started in it since the last piece.
                    late = [
                        row[0] for row in cursor.execute(TRACES_STARTED_IN, (partition.lower, partition.upper, None))
                    ]
                    if late:
                        traces, spans = self._delete_traces(cursor, late, partition, resources)
                        result.traces += traces
                        result.spans += spans
                    cursor.execute(sql.SQL("DROP TABLE {}").format(table))
                    result.more = False
            except psycopg.errors.LockNotAvailable:
                return result  # readers or writers held spans longer than lock_timeout: again at the next step
        self._delete_unused_resources(connection, resources)
        return result

    def _delete_traces(
        self, cursor: psycopg.Cursor[Any], ids: list[str], partition: Partition | None, resources: set[int]
    ) -> tuple[int, int]:
        """Delete these traces whole but for their spans in ``partition`` (dropped with it); returns how many
        traces and spans went (those in ``partition`` counted)."""
        deleted = cursor.execute(DELETE_TRACES, (sorted(ids),)).fetchall()
        gone = sorted(row[0] for row in deleted)
        if partition is None:
            outside = gone
            lower = upper = 0  # every span: none is in [0, 0)
        else:
            outside = [row[0] for row in deleted if row[2] < partition.lower or row[3] >= partition.upper]
            lower, upper = partition.lower, partition.upper
        if outside:
            resources.update(_ids(cursor.execute(DELETE_SPANS_OUTSIDE, (outside, lower, upper))))
        for statement in DELETE_OF_TRACES.values():
            resources.update(_ids(cursor.execute(statement, (gone,))))
        return len(gone), sum(row[1] for row in deleted)

    def _old_snapshots(self, connection: Connection, before_ns: int) -> Deleted:
        with try_lock(connection, MAINTENANCE_LOCK) as held:
            count = connection.execute(OLD_SNAPSHOTS, (before_ns, self.rows_per_transaction)).rowcount if held else 0
        return Deleted(reason="age", snapshots=count, more=count >= self.rows_per_transaction)

    def _delete_unused_resources(self, connection: Connection, resources: set[int]) -> None:
        if not resources:
            return
        with connection.transaction():
            connection.execute("SELECT pg_advisory_xact_lock(%s, %s)", RESOURCES_LOCK)
            connection.execute(DELETE_UNUSED_RESOURCES, (sorted(resources),))


def _ids(rows: Iterable[tuple[Any, ...]]) -> Iterable[int]:
    return (row[0] for row in rows if row[0] is not None)
