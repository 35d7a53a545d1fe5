"""Retention: whole traces deleted by age and by size, snapshots by their own age, pages handed back.

Runs on the writer thread with the writer's connection, one small transaction per ``step`` so that
batches of spans keep being committed in between. A trace is deleted with all its spans, events,
evaluations and its rollup; events and evaluations that belong to no stored trace go by the time
they arrived. Age is measured by the collector's clock (when the trace's last span arrived), never
by the timestamps a client put in its spans.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import apsw

from collector.config import RetentionSettings
from collector.storage.retention import SizeBound
from collector.storage.sqlite import latency
from collector.storage.sqlite.connection import WAL_SIZE_LIMIT, bound_wal, write_transaction
from collector.storage.store import Deleted

ROWS_PER_TRANSACTION = 2_000  # spans deleted per transaction at most (a single larger trace goes alone)
VACUUM_PAGES_PER_STEP = 2_048  # pages handed back to the file system per transaction at most
FIRST_SIZE_DELETION = 16  # spans deleted by size before their size on disk is known
CHECKPOINT_WAIT = 1.0  # seconds a checkpoint of the size bound waits for the routine one at most

OLDEST_TRACES = """
SELECT trace_id, span_count, last_span_at_unix_nano FROM traces
WHERE last_span_at_unix_nano < ?
ORDER BY last_span_at_unix_nano
LIMIT ?
"""

RESOURCES_OF_TRACES = """
SELECT json_group_array(DISTINCT resource_id) FROM (
    SELECT resource_id FROM spans WHERE trace_id IN (SELECT value FROM json_each(?1))
    UNION ALL SELECT resource_id FROM events WHERE trace_id IN (SELECT value FROM json_each(?1))
    UNION ALL SELECT resource_id FROM evaluations WHERE trace_id IN (SELECT value FROM json_each(?1))
) WHERE resource_id IS NOT NULL
"""

DELETE_TRACE_ROWS = tuple(
    f"DELETE FROM {table} WHERE trace_id IN (SELECT value FROM json_each(?))"
    for table in ("spans", "events", "evaluations", "traces")
)

# Rows of no stored trace (no trace id, or their spans never came, or came and went), oldest first.
# Found first, deleted by id only when there are some: a step with nothing to do never asks for the
# write lock (which another connection may hold).
ORPHANS = {
    table: f"""
SELECT id, resource_id FROM {table}
WHERE received_at_unix_nano < ?
  AND (trace_id IS NULL OR NOT EXISTS (SELECT 1 FROM traces WHERE traces.trace_id = {table}.trace_id))
ORDER BY received_at_unix_nano
LIMIT ?
"""
    for table in ("events", "evaluations")
}
DELETE_BY_ID = {
    table: f"DELETE FROM {table} WHERE id IN (SELECT value FROM json_each(?))"
    for table in ("events", "evaluations", "metric_snapshots")
}

OLD_SNAPSHOTS = "SELECT id FROM metric_snapshots WHERE computed_at < ? ORDER BY computed_at LIMIT ?"

DELETE_UNUSED_RESOURCES = """
DELETE FROM resources
WHERE id IN (SELECT value FROM json_each(?))
  AND NOT EXISTS (SELECT 1 FROM spans WHERE spans.resource_id = resources.id)
  AND NOT EXISTS (SELECT 1 FROM events WHERE events.resource_id = resources.id)
  AND NOT EXISTS (SELECT 1 FROM evaluations WHERE evaluations.resource_id = resources.id)
"""

OLDEST_TRACE = "SELECT min(last_span_at_unix_nano) FROM traces"


@dataclass(frozen=True)
class DatabaseSize:
    """The database's files on disk and how much of them holds data."""

    main_bytes: int
    wal_bytes: int
    page_size: int
    free_pages: int
    incremental: bool  # auto_vacuum=INCREMENTAL: free pages can be handed back to the file system

    @property
    def file_bytes(self) -> int:
        return self.main_bytes + self.wal_bytes

    @property
    def used_bytes(self) -> int:
        return self.file_bytes - self.free_pages * self.page_size

    @property
    def bounded_bytes(self) -> int:
        """What ``max_size`` bounds: the files, or, when free pages cannot be handed back (a database
        created before auto_vacuum=INCREMENTAL), the part that holds data: the file stops growing
        since new rows reuse the free pages."""
        return self.file_bytes if self.incremental else self.used_bytes


def file_sizes(path: Path) -> dict[str, int]:
    """Bytes on disk of the database file (``main``) and its write-ahead log (``wal``); 0 for one missing."""

    def size(file: str) -> int:
        try:
            return os.stat(file).st_size
        except OSError:
            return 0

    return {"main": size(str(path)), "wal": size(f"{path}-wal")}


def measure(connection: apsw.Connection, path: Path) -> DatabaseSize:
    files = file_sizes(path)
    return DatabaseSize(
        main_bytes=files["main"],
        wal_bytes=files["wal"],
        page_size=connection.pragma("page_size"),
        free_pages=connection.pragma("freelist_count"),
        incremental=connection.pragma("auto_vacuum") == 2,
    )


@dataclass
class _Chosen:
    traces: list[str] = field(default_factory=list)
    orphans: dict[str, list[tuple[int, int | None]]] = field(default_factory=dict)
    truncated: bool = False  # more traces are past the cutoff than this chunk takes

    @property
    def anything(self) -> bool:
        return bool(self.traces) or any(self.orphans.values())


@dataclass
class Retention(SizeBound):
    """The retention job of one database, run by its writer between batches (see ``step``)."""

    connection: apsw.Connection
    path: Path
    settings: RetentionSettings
    rows_per_transaction: int = ROWS_PER_TRANSACTION
    vacuum_pages: int = VACUUM_PAGES_PER_STEP
    oldest_trace_ns: int | None = None  # when the oldest stored trace got its last span, after the last step
    _span_bytes: float | None = field(default=None, init=False)  # what deleting a span freed, lately

    def __post_init__(self) -> None:
        self.reserve = Path(f"{self.path}-reserve")
        self._reserve_bytes = 0
        if self.max_size is not None:
            # The WAL is part of the bound: keep it to a tenth of it (checkpoint sooner, cut it back).
            wal_limit = min(WAL_SIZE_LIMIT, self.max_size // 10)
            self._reserve_bytes = wal_limit
            self._make_reserve()
            wal_pages = bound_wal(self.connection, wal_limit)
            # A deletion rewrites about a page per row, a vacuum every page it moves: they must fit in the WAL too.
            self.rows_per_transaction = max(50, min(self.rows_per_transaction, wal_pages // 2))
            self.vacuum_pages = max(16, min(self.vacuum_pages, wal_pages // 2))

    def step(self, now_ns: int) -> list[Deleted]:
        """Do a piece of each kind of work that is due, each in one small transaction; a result's
        ``more`` asks to be called again after the next batch."""
        settings = self.settings
        done: list[Deleted] = []
        if self.size_due:
            done.append(self._by_size())
        if settings.max_age > 0 and not any(result.more for result in done):
            done.append(self._delete_traces(now_ns - int(settings.max_age * 1e9), "age"))
        if settings.snapshots_max_age > 0:
            before_ns = now_ns - int(settings.snapshots_max_age * 1e9)
            ids = [row[0] for row in self.connection.execute(OLD_SNAPSHOTS, (before_ns, self.rows_per_transaction))]
            if ids:
                with write_transaction(self.connection):
                    self.connection.execute(DELETE_BY_ID["metric_snapshots"], (json.dumps(ids),))
            done.append(Deleted(reason="age", snapshots=len(ids), more=len(ids) >= self.rows_per_transaction))
        ((self.oldest_trace_ns,),) = self.connection.execute(OLDEST_TRACE)
        # The routine checkpoint, which keeps the WAL short (the data in the main file where deletions can
        # free it, the WAL's own space reused, so that a full disk still has room for the deletions), runs on
        # a thread of its own (``checkpoint.WalCheckpointer``): here it held the batches behind it.
        return done

    def _by_size(self) -> Deleted:
        size = measure(self.connection, self.path)
        if self._disk_full and self._target is None:
            self._use_reserve()
        target = self.size_target(size.bounded_bytes)
        if target is None:
            return Deleted()
        if size.used_bytes > target:
            # No more than the excess: spans' size is learnt from what the previous deletions freed.
            if self._span_bytes is None:
                spans = FIRST_SIZE_DELETION
            else:
                spans = math.ceil((size.used_bytes - target) / self._span_bytes)
            deleted = self._delete_traces(None, self._reason, max(1, min(spans, self.rows_per_transaction)))
            freed = size.used_bytes - measure(self.connection, self.path).used_bytes
            if deleted.spans and freed > 0:
                self._span_bytes = freed / deleted.spans
            if deleted.more:
                return deleted
        elif size.incremental and size.free_pages and size.file_bytes > target:
            reclaimed = self._hand_back(size, size.file_bytes - target)
            if reclaimed > 0:
                return Deleted(reason=self._reason, reclaimed_bytes=reclaimed, more=True)
        self._target = None  # down to the mark, or nothing more can be done this time
        self._checkpoint()
        self._make_reserve()
        return Deleted()

    def _delete_traces(self, before_ns: int | None, reason: str, limit: int | None = None) -> Deleted:
        """Delete the oldest traces (all of them, or those whose last span arrived before ``before_ns``)
        up to ``limit`` spans (``rows_per_transaction``), then the rows of no trace that arrived before them."""
        connection = self.connection
        limit = limit or self.rows_per_transaction
        result = Deleted(reason=reason)
        if not self._choose(before_ns, limit).anything:
            return result  # nothing to delete: the write lock is not even asked for
        with write_transaction(connection):
            chosen = self._choose(before_ns, limit)  # again under the lock: another writer may share the file
            resources: set[int] = set()
            if chosen.traces:
                ids = json.dumps(chosen.traces)
                ((used,),) = connection.execute(RESOURCES_OF_TRACES, (ids,))
                resources.update(json.loads(used))
                latency.take_over(connection, latency.spans_of_traces(ids))  # whichever writer has them pending
                latency.remove_spans(connection, latency.spans_of_traces(ids))
                latency.remove_traces(connection, latency.traces_by_id(ids))
                counts = []
                for statement in DELETE_TRACE_ROWS:
                    connection.execute(statement, (ids,))
                    counts.append(connection.changes())
                result.spans, result.traces = counts[0], counts[-1]
            for table, rows in chosen.orphans.items():
                if rows:
                    connection.execute(DELETE_BY_ID[table], (json.dumps([row[0] for row in rows]),))
                    resources.update(row[1] for row in rows if row[1] is not None)
            if resources:
                connection.execute(DELETE_UNUSED_RESOURCES, (json.dumps(sorted(resources)),))
        # By size, the caller measures whether to go on; by age, a full chunk means there may be more.
        result.more = before_ns is None or chosen.truncated or max(map(len, chosen.orphans.values())) >= limit
        return result

    def _choose(self, before_ns: int | None, limit: int) -> _Chosen:
        """The oldest traces to delete (up to ``limit`` spans, at least one trace) and the rows of no trace
        that arrived before them (by age: before ``before_ns``)."""
        cutoff = before_ns if before_ns is not None else 2**63 - 1
        candidates = cast(
            "list[tuple[str, int, int]]", self.connection.execute(OLDEST_TRACES, (cutoff, limit)).fetchall()
        )
        chosen = _Chosen()
        spans = 0
        newest = None
        for trace_id, span_count, last_span_at in candidates:
            if chosen.traces and spans + span_count > limit:
                break
            chosen.traces.append(trace_id)
            spans += span_count
            newest = last_span_at
        chosen.truncated = len(candidates) > len(chosen.traces) or len(candidates) == limit
        orphans_before = newest if before_ns is None and newest is not None else cutoff
        chosen.orphans = {
            table: cast(
                "list[tuple[int, int | None]]", self.connection.execute(query, (orphans_before, limit)).fetchall()
            )
            for table, query in ORPHANS.items()
        }
        return chosen

    def _hand_back(self, size: DatabaseSize, excess: int) -> int:
        """Return free pages to the file system (at most ``vacuum_pages``); the bytes it saved."""
        pages = min(size.free_pages, self.vacuum_pages, -(-excess // size.page_size))
        with write_transaction(self.connection):
            # one page per step of the statement: it must be run to the end
            self.connection.execute(f"PRAGMA incremental_vacuum({int(pages)})").fetchall()
        self._checkpoint()  # in WAL mode the file shrinks when the checkpoint copies the change back
        return size.file_bytes - measure(self.connection, self.path).file_bytes

    def _make_reserve(self) -> None:
        """Keep ``<db>-reserve``, a file of zeros the size of the WAL's bound, while the disk has room
        for it twice. On a full disk nothing can be deleted from a WAL database without some space
        (the WAL must be checkpointed into the database file before it can be reused), so the
        reserve is given up first (see ``disk_full``)."""
        if not self._reserve_bytes or self.reserve.exists():
            return
        try:
            if shutil.disk_usage(self.reserve.parent).free < 2 * self._reserve_bytes:
                return
            with open(self.reserve, "wb") as reserve:
                for _ in range(0, self._reserve_bytes, 1 << 20):
                    reserve.write(bytes(min(1 << 20, self._reserve_bytes)))
                os.fsync(reserve.fileno())
        except OSError:
            self.reserve.unlink(missing_ok=True)

    def _use_reserve(self) -> None:
        with contextlib.suppress(OSError):
            self.reserve.unlink(missing_ok=True)
        self._checkpoint()

    def _checkpoint(self) -> None:
        """A checkpoint that never waits for readers: the WAL is then restarted, and cut back to
        ``journal_size_limit``, by the next write.

        On a full disk it fails while the WAL holds pages past the end of the database file; the
        deletions and the vacuum that follow shrink the database in the WAL first, and the checkpoint
        then only writes pages inside the file, and cuts it. While the routine checkpoint
        (``checkpoint.WalCheckpointer``) runs, it waits for it, up to ``CHECKPOINT_WAIT``: a second
        checkpointer gets ``SQLITE_BUSY`` at once, which no busy timeout waits out.
        """
        deadline = time.monotonic() + CHECKPOINT_WAIT
        while True:
            try:
                self.connection.wal_checkpoint(mode=apsw.SQLITE_CHECKPOINT_PASSIVE)
                return
            except apsw.FullError:
                return
            except apsw.BusyError:  # the routine checkpoint is running (SQLite waits for no other checkpointer)
                if time.monotonic() > deadline:
                    return
                time.sleep(0.005)


def convert_to_incremental(path: Path) -> tuple[int, int]:
    """Rewrite a database created before ``auto_vacuum=INCREMENTAL`` so that retention can hand its
    freed pages back (``genai-collector vacuum``); returns its size in bytes before and after.

    ``VACUUM`` copies the whole database: it needs the collector stopped and free space about the
    size of the database; it also compacts a database that already is incremental.
    """
    from collector.storage.sqlite.connection import open_connection
    from collector.storage.sqlite.schema import migrate

    connection = open_connection(path)
    try:
        migrate(connection)
        with write_transaction(connection):  # VACUUM may renumber the spans' rowids that pending ranges name
            latency.take_over(connection)
        connection.wal_checkpoint(mode=apsw.SQLITE_CHECKPOINT_TRUNCATE)
        before = measure(connection, path).file_bytes
        connection.pragma("auto_vacuum", "incremental")
        connection.execute("VACUUM")
        connection.wal_checkpoint(mode=apsw.SQLITE_CHECKPOINT_TRUNCATE)
        return before, measure(connection, path).file_bytes
    finally:
        connection.close()
