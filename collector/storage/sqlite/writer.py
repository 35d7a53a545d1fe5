"""The span writer: owns the one write connection and turns batches of spans into committed rows.

Only the pipeline's writer thread calls it (SQLite connections are not to be shared between threads here).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, cast

import apsw

from collector.config import RetentionSettings
from collector.model import EvaluationRecord, LogEvent, Records, Span, SpanSummary
from collector.storage.errors import StorageError
from collector.storage.sql import EVALUATION_COLUMNS
from collector.storage.sqlite import latency
from collector.storage.sqlite.connection import open_connection, write_transaction
from collector.storage.sqlite.errors import translated
from collector.storage.sqlite.resources import resource_id
from collector.storage.sqlite.retention import Retention, file_sizes
from collector.storage.sqlite.rollups import NewRows, mark_repeated_calls, roll_up, traces_stored_before
from collector.storage.sqlite.rows import (
    RECEIVED_AT_INDEX,
    RESOURCE_INDEX,
    SPAN_COLUMNS,
    WIDTH,
    SpanRows,
    span_rows,
    to_json,
)
from collector.storage.sqlite.schema import migrate
from collector.storage.sqlite.settle import Plan, SettleReader, apply_settled, settle_traces
from collector.storage.store import Deleted, Judge, SettledTrace, SettlePlan, SettleWindow, Written

# A span sent twice (a client retrying after a timeout) is stored once: the first copy stays.
# Rows are inserted many to a statement (``insert_rows``), in statements of a few fixed sizes that apsw prepares
# once and caches: apsw caches a statement whose text is at most 16 KiB (128 rows of ``WIDTH`` placeholders
# are about 11 KiB), and SQLite takes up to 32,766 values a statement.
MOST_ROWS = 128

WRITER_CACHE_KIB = 16 * 1024  # the write connection's page cache (``SpanWriter``)


@functools.cache
def insert_spans_statement(rows: int) -> str:
    """The insert of ``rows`` span rows (``rows.SpanRows``, whose values it binds as they are)."""
    row = f"({', '.join('?' * WIDTH)})"
    return (
        f"INSERT INTO spans ({', '.join(SPAN_COLUMNS)}) VALUES {', '.join([row] * rows)} "
        "ON CONFLICT (trace_id, span_id) DO NOTHING"
    )


_EVENT_COLUMNS = (
    "trace_id",
    "span_id",
    "time_unix_nano",
    "observed_time_unix_nano",
    "name",
    "source",
    "severity_number",
    "severity_text",
    "body",
    "attributes",
    "service_name",
    "resource_id",
    "received_at_unix_nano",
    "dedup_key",
)
_EVALUATION_COLUMNS = (*EVALUATION_COLUMNS, "resource_id", "received_at_unix_nano", "dedup_key")


def _insert(table: str, columns: Sequence[str], conflict: str) -> str:
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        f" ON CONFLICT ({conflict}) DO NOTHING"
    )


# A log record or evaluation sent twice is stored once too: they have no id, so a digest of what they say is one.
INSERT_EVENT = _insert("events", _EVENT_COLUMNS, "dedup_key")
INSERT_EVALUATION = _insert("evaluations", _EVALUATION_COLUMNS, "dedup_key")

# An evaluation that names only the response it judged gets that response's span, whichever came first.
LINK_EVALUATIONS = """
UPDATE evaluations SET (trace_id, span_id) = (
    SELECT trace_id, span_id FROM spans WHERE spans.response_id = evaluations.response_id LIMIT 1
)
WHERE trace_id IS NULL AND response_id IN (SELECT value FROM json_each(?))
"""
# Whether any evaluation waits for its response's span: one seek in the partial index of those that may.
EVALUATIONS_WAITING = """SELECT 1 FROM evaluations INDEXED BY evaluations_response
WHERE trace_id IS NULL AND response_id IS NOT NULL LIMIT 1"""


def _digest(*parts: Any) -> str:
    return hashlib.blake2b(to_json(parts).encode(), digest_size=16).hexdigest()


class ResourceIds:
    """The ``resources`` row of each (resource attributes, scope) of one batch, found or added once.

    Records of one resource share its attributes dict, so the dict's identity finds the row again
    without encoding or hashing the attributes a second time.
    """

    def __init__(self, connection: apsw.Connection) -> None:
        self._connection = connection
        self._ids: dict[tuple[int, str | None, str | None], int] = {}
        self._encoded: dict[tuple[str, str | None, str | None], int] = {}

    def __call__(self, attributes: dict[str, Any] | None, scope_name: str | None, scope_version: str | None) -> int:
        key = (id(attributes), scope_name, scope_version)
        found = self._ids.get(key)
        if found is None:
            found = self._ids[key] = self.encoded((to_json(attributes or {}), scope_name, scope_version))
        return found

    def encoded(self, resource: tuple[str, str | None, str | None]) -> int:
        """The row of a resource whose attributes are already JSON text (``rows.SpanRows.resources``)."""
        found = self._encoded.get(resource)
        if found is None:
            found = self._encoded[resource] = resource_id(self._connection, *resource)
        return found


def event_rows(events: Sequence[LogEvent], received_at: int, resources: ResourceIds) -> list[tuple[Any, ...]]:
    rows = []
    for event in events:
        body = to_json(event.body) if event.body is not None else None
        attributes = to_json(event.attributes)
        rows.append(
            (
                event.trace_id,
                event.span_id,
                event.time_unix_nano,
                event.observed_time_unix_nano,
                event.name,
                event.source,
                event.severity_number,
                event.severity_text,
                body,
                attributes,
                event.service_name,
                resources(event.resource_attributes, event.scope_name, None),
                received_at,
                _digest(event.trace_id, event.span_id, event.time_unix_nano, event.name, body, attributes),
            )
        )
    return rows


def evaluation_rows(
    evaluations: Sequence[EvaluationRecord], received_at: int, resources: ResourceIds
) -> list[tuple[Any, ...]]:
    return [
        (
            evaluation.trace_id,
            evaluation.span_id,
            evaluation.response_id,
            evaluation.name,
            evaluation.score,
            evaluation.label,
            evaluation.explanation,
            evaluation.source,
            evaluation.time_unix_nano,
            None
            if evaluation.resource_attributes is None
            else resources(evaluation.resource_attributes, evaluation.scope_name, evaluation.scope_version),
            received_at,
            _digest(
                evaluation.trace_id,
                evaluation.span_id,
                evaluation.response_id,
                evaluation.name,
                evaluation.source,
                evaluation.time_unix_nano,
            ),
        )
        for evaluation in evaluations
    ]


def insert_rows(
    connection: apsw.Connection, requests: Sequence[SpanRows], received_at: int, resources: ResourceIds
) -> int:
    """Insert the rows of a batch's requests; returns how many were new (duplicates are ignored).

    Up to ``MOST_ROWS`` rows a statement, bound in C: one ``sqlite3_step`` inserts them all. apsw releases the
    GIL around every step, and winning it back once per row (``executemany``) cost the writer a third of its
    time when the ingest threads were busy; a few steps a batch let SQLite run the whole insert while they
    decode the next requests.
    """
    values: list[Any] = []
    for request in requests:
        ids = [resources.encoded(resource) for resource in request.resources]
        start = len(values)
        values += request.values
        values[start + RESOURCE_INDEX :: WIDTH] = [ids[index] for index in request.values[RESOURCE_INDEX::WIDTH]]
    count = len(values) // WIDTH
    values[RECEIVED_AT_INDEX::WIDTH] = [received_at] * count
    before = connection.total_changes()  # after the resource rows the lookup may have added
    done = 0
    while done < count:
        rows = min(MOST_ROWS, 1 << ((count - done).bit_length() - 1))  # a power of two: 8 statements in all
        connection.execute(insert_spans_statement(rows), values[done * WIDTH : (done + rows) * WIDTH])
        done += rows
    return connection.total_changes() - before


def insert_spans(
    connection: apsw.Connection, spans: Sequence[Span], received_at: int, resources: ResourceIds | None = None
) -> int:
    """``insert_rows`` of spans not encoded ahead."""
    return insert_rows(connection, [span_rows(spans)], received_at, resources or ResourceIds(connection))


def prepare(records: Records) -> Records:
    """``SpanStore.prepare``: the records with their spans encoded (``rows.span_rows``); pure, any thread."""
    if records.spans and records.prepared is None:
        records.prepared = span_rows(records.spans)
    return records


# The spans of a batch that were already stored by an earlier transaction (their received_at differs).
STORED_BEFORE = """
SELECT trace_id, span_id FROM spans
WHERE (trace_id, span_id) IN (SELECT value ->> 0, value ->> 1 FROM json_each(?1))
  AND received_at_unix_nano != ?2
"""


def new_spans(
    connection: apsw.Connection, spans: Sequence[SpanSummary], received_at: int, inserted: int
) -> list[SpanSummary]:
    """The spans of a batch that ``insert_rows`` stored (``inserted`` of them): not those stored before,
    nor the second copy of a span the batch holds twice. Free when nothing was a duplicate."""
    if inserted == len(spans):
        return list(spans)
    keys = to_json([(span.trace_id, span.span_id) for span in spans])
    seen = set(connection.execute(STORED_BEFORE, (keys, received_at)))
    fresh = []
    for span in spans:
        key = (span.trace_id, span.span_id)
        if key not in seen:
            seen.add(key)
            fresh.append(span)
    return fresh


LAST_ROWID = "SELECT max(rowid) FROM spans"  # the rows a batch inserts come after it

OLDEST_UNSETTLED = "SELECT min(last_span_at_unix_nano) FROM traces WHERE settled_at_unix_nano IS NULL"


def _rows(records: Records) -> SpanRows:
    """The request's rows as ``prepare`` encoded them on an ingest thread, or encoded now if they were not."""
    prepared = records.prepared
    return prepared if isinstance(prepared, SpanRows) else span_rows(records.spans)


def _observed(rows: list[SpanRows], all_new: bool) -> Iterable[latency.Observed] | None:
    """What the rows a batch inserted observe in the latency histograms, as counted where they were encoded: when
    every row of the batch was inserted (``all_new``: no duplicate, whose stored copy may differ, nor a second copy
    inside the batch) and every request's were counted; None when they are to be read from the stored rows."""
    if not all_new or any(request.observed is None for request in rows):
        return None
    return itertools.chain.from_iterable(cast("list[latency.Observed]", request.observed) for request in rows)


class SpanWriter:
    """The SQLite ``Store``: commits batches of spans, one transaction per batch, and does the maintenance
    that needs the write connection. Its public methods raise ``StorageError``, never ``apsw.Error``."""

    def __init__(self, path: Path, *, synchronous: str = "full", retention: RetentionSettings | None = None) -> None:
        self.path = path
        self.connection = open_connection(path, synchronous=synchronous)
        migrate(self.connection)
        # A statement that writes many rows inside a transaction keeps a statement journal (the pages it changes,
        # as they were, so that a failing row undoes that statement alone); past 64 KiB SQLite spills it into a
        # temporary file, and the span insert's came to about 10 KB a span: in memory it is a copy, not a write.
        # After the migrations, whose queries over every row may build temporary tables as large as the data, and
        # on this connection only: ``VACUUM`` (``genai-collector vacuum``) copies the whole database into the temp
        # store.
        self.connection.pragma("temp_store", "memory")
        # A batch of 400 spans changes about 1,000 pages (4 MiB): in SQLite's default 2 MiB page cache they did not
        # fit, and the writer read about 9 pages a span back from the WAL or the database file (a system call
        # each); in 16 MiB, 2 (docs/performance.md, "The writer alone").
        self.connection.pragma("cache_size", -WRITER_CACHE_KIB)
        self._received_at = 0
        self.pending = latency.Pending()
        if self.connection.execute(latency.ANY_PENDING).fetchall():  # of a writer killed before it flushed
            with write_transaction(self.connection):
                latency.take_over(self.connection)
        self.retention = Retention(self.connection, path, retention or RetentionSettings())

    prepare = staticmethod(prepare)

    def write(self, batch: Sequence[Records]) -> Written:
        """Insert and commit in one transaction; returns the spans that were new (duplicates are ignored)
        and those of them whose model call another span counts (``storage.sqlite.rollups.mark_repeated_calls``).

        Only traces that got a new span are rolled up again: a retried span changes nothing, so its
        trace does not settle (and get counted) a second time.
        """
        with translated():
            return self._write_batch(batch)

    def _write_batch(self, batch: Sequence[Records]) -> Written:
        # Strictly increasing, so that a batch's spans are told from earlier ones by their receipt time.
        received_at = self._received_at = max(time.time_ns(), self._received_at + 1)
        spans = [span for records in batch for span in records.summarize()]
        rows = [_rows(records) for records in batch if records.span_count]
        events = [event for records in batch for event in records.events]
        evaluations = [evaluation for records in batch for evaluation in records.evaluations]
        try:
            return self._write(spans, rows, events, evaluations, received_at)
        except apsw.FullError:
            self.retention.disk_full()  # with a size bound, retention makes room before the client retries
            raise

    def _write(
        self,
        spans: list[SpanSummary],
        rows: list[SpanRows],
        events: list[LogEvent],
        evaluations: list[EvaluationRecord],
        received_at: int,
    ) -> Written:
        connection = self.connection
        with self.pending.transaction(connection):  # the resources are looked up (read) before anything is written
            resources = ResourceIds(connection)
            stored: list[SpanSummary] = []
            if spans:
                ((last_rowid,),) = connection.execute(LAST_ROWID)
                inserted = insert_rows(connection, rows, received_at, resources)
                stored = new_spans(connection, spans, received_at, inserted)
                if inserted:  # before mark_repeated_calls, which takes out and puts back what it changes
                    self.pending.add(connection, last_rowid, _observed(rows, inserted == len(spans)))
            repeated_calls: frozenset[tuple[str, str]] = frozenset()
            if stored:
                trace_ids = {span.trace_id for span in stored}
                new = None
                if inserted == len(spans):  # the batch's rows are what it stored
                    new = NewRows(rows, traces_stored_before(connection, trace_ids, last_rowid))
                repeated_calls = mark_repeated_calls(connection, trace_ids, received_at, self.pending, new)
                roll_up(connection, trace_ids, None if new is None else new.stored)
            if events:
                connection.executemany(INSERT_EVENT, event_rows(events, received_at, resources))
            if evaluations:
                connection.executemany(INSERT_EVALUATION, evaluation_rows(evaluations, received_at, resources))
            if connection.execute(EVALUATIONS_WAITING).fetchall():  # else linking would change nothing
                response_ids = {span.response_id for span in spans if span.response_id}
                response_ids.update(e.response_id for e in evaluations if e.trace_id is None and e.response_id)
                if response_ids:
                    connection.execute(LINK_EVALUATIONS, (to_json(sorted(response_ids)),))
        return Written(stored, repeated_calls)

    def settle(self, window: SettleWindow, judge: Judge) -> list[SettledTrace]:
        """Settle the traces ``window`` makes due and write the snapshots ``judge`` gives them
        (see ``storage.sqlite.settle``)."""
        with translated():
            return settle_traces(self.connection, window, judge)

    def settle_reader(self) -> SettleReader:
        """The reader of the traces due on this connection, between batches, whose plans ``apply_settled`` writes."""
        return SettleReader(self.connection)

    def apply_settled(self, plan: SettlePlan) -> list[SettledTrace]:
        """Write what a ``settle_reader`` planned, for the traces that got no span since (``storage.sqlite.settle``)."""
        assert isinstance(plan, Plan), "a plan of this engine's SettleReader"
        with translated():
            return apply_settled(self.connection, plan)

    def oldest_unsettled(self) -> int | None:
        """When the longest-quiet unsettled trace got its last span (unix ns), or None when all are settled."""
        with translated():
            ((oldest,),) = self.connection.execute(OLDEST_UNSETTLED)
        return None if oldest is None else int(oldest)

    def ping(self) -> None:
        with translated():
            self.connection.execute("SELECT 1").fetchall()

    def retain(self, now_ns: int | None = None) -> list[Deleted]:
        """Delete what the retention settings say is too old or too much, a small piece at a time."""
        with translated():
            return self.retention.step(time.time_ns() if now_ns is None else now_ns)

    def flush(self) -> None:
        """Add the spans counted in memory to the latency histograms (``latency.Pending``), once a second and at
        close; readers add the pending spans meanwhile."""
        with translated():
            if self.pending:
                with self.pending.transaction(self.connection):
                    self.pending.flush(self.connection)

    @property
    def oldest_trace_ns(self) -> int | None:
        return self.retention.oldest_trace_ns

    def disk_usage(self) -> dict[str, int]:
        """The database file and its write-ahead log (``main`` and ``wal``)."""
        return file_sizes(self.path)

    def close(self) -> None:
        with contextlib.suppress(StorageError):  # left pending: the next writer to open the file adds them
            self.flush()
        self.connection.close()
