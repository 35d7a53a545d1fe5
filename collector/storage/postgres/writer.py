"""The span writer on PostgreSQL: the surface of SQLite's ``SpanWriter``, for one of several replicas.

A batch is one transaction: its spans are copied (COPY) into a staging table of the connection's own, then
inserted with ``ON CONFLICT DO NOTHING RETURNING``, so that the spans returned are exactly the ones no copy
of was stored before (a client's retry, another replica's copy): only their traces are rolled up again, and
only they feed the GenAI metrics. Rollups, repeated model calls, events, evaluations and resources mean
what they mean on SQLite. A transaction rolled back for a deadlock or serialization failure is run again
with the same batch; ``write`` returns once the batch is committed, and the caller acknowledges then.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Sequence
from functools import partial
from operator import attrgetter
from typing import Any, cast

import psycopg
from psycopg_pool import ConnectionPool

from collector.config import RetentionSettings
from collector.genai.normalize import GenAI
from collector.model import EvaluationRecord, LogEvent, Records, Span, SpanSummary
from collector.storage.postgres.connection import (
    MAINTENANCE_CONNECT_TIMEOUT,
    RESOURCES_LOCK,
    Connection,
    connect,
    open_pool,
    retry_conflicts,
)
from collector.storage.postgres.errors import is_data_error, translate, translated
from collector.storage.postgres.retention import Retention, database_size
from collector.storage.postgres.rollups import roll_up
from collector.storage.postgres.schema import migrate
from collector.storage.postgres.settle import settle_traces
from collector.storage.sqlite.resources import resource_key
from collector.storage.sqlite.rows import SPAN_COLUMNS
from collector.storage.sqlite.writer import _EVALUATION_COLUMNS as EVALUATION_COLUMNS  # the order of evaluation_rows
from collector.storage.sqlite.writer import _EVENT_COLUMNS as EVENT_COLUMNS  # the order of event_rows
from collector.storage.sqlite.writer import ResourceIds as SqliteResourceIds
from collector.storage.sqlite.writer import evaluation_rows, event_rows
from collector.storage.store import (
    NOTHING_WRITTEN,
    Deleted,
    Judge,
    SettledTrace,
    SettlePlan,
    SettleReader,
    SettleWindow,
    Written,
)

WRITE_CONNECT_TIMEOUT = 3.0  # seconds

_to_json = partial(json.dumps, ensure_ascii=False, separators=(",", ":"))

# The ``spans`` columns SQLite's writer derives from the record types (``SPAN_COLUMNS``), in the order the rows
# below are built: the span's own fields, the canonical GenAI fields, then what the writer adds.
_SPAN_FIELDS = tuple(name for name in SPAN_COLUMNS if name in Span._fields and name != "cost_usd")
_GENAI_FIELDS = tuple(name for name in SPAN_COLUMNS if name in GenAI._fields)
COPY_COLUMNS = (*_SPAN_FIELDS, *_GENAI_FIELDS, "cost_usd", "duration_ns", "resource_id", "received_at_unix_nano")
if sorted(COPY_COLUMNS) != sorted(SPAN_COLUMNS):
    raise RuntimeError(f"the span row built here is not SPAN_COLUMNS: {sorted(set(COPY_COLUMNS) ^ set(SPAN_COLUMNS))}")
_JSON_FIELDS = frozenset({"attributes", "events", "links"})
_span_values = attrgetter(*_SPAN_FIELDS)
_genai_values = attrgetter(*_GENAI_FIELDS)
_NO_GENAI = (None,) * len(_GENAI_FIELDS)
_JSON_AT = tuple(index for index, name in enumerate(_SPAN_FIELDS) if name in _JSON_FIELDS)

# Made once per connection; emptied by every commit. ``ordinal`` keeps the first copy of a span a batch holds twice.
CREATE_STAGING = "CREATE TEMPORARY TABLE span_staging (LIKE spans, ordinal integer NOT NULL) ON COMMIT DELETE ROWS"
COPY_SPANS = f"COPY span_staging ({', '.join(COPY_COLUMNS)}, ordinal) FROM STDIN"
# The first copy of each span of the batch, in key order, so that two replicas inserting the same spans wait for
# each other without a cycle. A copy with another start time is stored by this insert (the primary key holds the
# start time, the partition key) and deleted again by ``rollups.roll_up`` once it holds the trace's lock.
INSERT_SPANS = (
    f"INSERT INTO spans ({', '.join(SPAN_COLUMNS)}) "
    f"SELECT DISTINCT ON (trace_id, span_id) {', '.join(SPAN_COLUMNS)} FROM span_staging "
    "ORDER BY trace_id, span_id, ordinal "
    "ON CONFLICT DO NOTHING RETURNING trace_id, span_id, start_time_unix_nano"
)


def _insert(table: str, columns: Sequence[str]) -> str:
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})"
        " ON CONFLICT (dedup_key) DO NOTHING"
    )


INSERT_EVENT = _insert("events", EVENT_COLUMNS)
INSERT_EVALUATION = _insert("evaluations", EVALUATION_COLUMNS)
LINK_EVALUATIONS = """
UPDATE evaluations SET (trace_id, span_id) = (
    SELECT trace_id, span_id FROM spans WHERE spans.response_id = evaluations.response_id LIMIT 1
)
WHERE trace_id IS NULL AND response_id = ANY(%s)
"""
OLDEST_UNSETTLED = "SELECT min(last_span_at_unix_nano) FROM traces WHERE settled_at_unix_nano IS NULL"

FIND_RESOURCES = "SELECT hash, id FROM resources WHERE hash = ANY(%s)"
ADD_RESOURCES = """
INSERT INTO resources (hash, resource_attributes, scope_name, scope_version)
SELECT * FROM unnest(%s::bytea[], %s::jsonb[], %s::text[], %s::text[]) ORDER BY 1
ON CONFLICT (hash) DO NOTHING RETURNING hash, id
"""


class ResourceIds:
    """The ``resources`` row of each (resource attributes, scope) of one batch, found or added at once, in
    hash order (two replicas adding the same new resources wait for each other without a cycle). The key is
    SQLite's (``storage.sqlite.resources``), so both engines key a resource alike.

    Records of one resource share its attributes dict, so the dict's identity finds the row again without
    encoding or hashing the attributes a second time.
    """

    def __init__(self, cursor: psycopg.Cursor[Any], scrub: bool = False) -> None:
        self._cursor = cursor
        self._scrub = scrub
        self._ids: dict[tuple[int, str | None, str | None], int] = {}

    def resolve(
        self, spans: Sequence[Span], events: Sequence[LogEvent], evaluations: Sequence[EvaluationRecord]
    ) -> None:
        """Find or add the resources of a batch's records; call once, before ``__call__``."""
        wanted: dict[tuple[int, str | None, str | None], tuple[Any, ...]] = {}
        for attributes, scope_name, scope_version in (
            *((span.resource_attributes, span.scope_name, span.scope_version) for span in spans),
            *((event.resource_attributes, event.scope_name, None) for event in events),
            *(
                (e.resource_attributes, e.scope_name, e.scope_version)
                for e in evaluations
                if e.resource_attributes is not None
            ),
        ):
            key = (id(attributes), scope_name, scope_version)
            if key not in wanted:
                attributes_json = _to_json(attributes or {})
                row = (
                    resource_key(attributes_json, scope_name, scope_version),
                    attributes_json,
                    scope_name,
                    scope_version,
                )
                wanted[key] = scrub_row(row) if self._scrub else row
        by_hash = {row[0]: row for row in wanted.values()}
        found: dict[bytes, int] = {}
        for attempt in range(3):  # found; added; found after another replica added them meanwhile
            missing = sorted(set(by_hash) - set(found))
            if not missing:
                break
            if attempt == 1:
                rows = [by_hash[hash_] for hash_ in missing]
                result = self._cursor.execute(ADD_RESOURCES, [list(column) for column in zip(*rows, strict=True)])
            else:
                result = self._cursor.execute(FIND_RESOURCES, (missing,))
            found.update((bytes(hash_), int(id_)) for hash_, id_ in result)
        self._ids = {key: found[row[0]] for key, row in wanted.items()}

    def __call__(self, attributes: dict[str, Any] | None, scope_name: str | None, scope_version: str | None) -> int:
        return self._ids[id(attributes), scope_name, scope_version]


_FINISH_REASONS_AT = _GENAI_FIELDS.index("finish_reasons")


def _stored_genai(genai: GenAI) -> tuple[Any, ...]:
    """A span's GenAI columns as stored: its finish reasons as JSON text (SQLite's), not an array literal."""
    values = _genai_values(genai)
    reasons = values[_FINISH_REASONS_AT]
    if reasons is None:
        return tuple(values)
    return (*values[:_FINISH_REASONS_AT], _to_json(reasons), *values[_FINISH_REASONS_AT + 1 :])


def span_rows(spans: Sequence[Span], received_at: int, resources: ResourceIds) -> list[tuple[Any, ...]]:
    """The batch's rows for ``COPY_SPANS``: ``COPY_COLUMNS`` (JSON columns as JSON text), then the span's place in
    the batch."""
    rows = []
    for ordinal, span in enumerate(spans):
        values = list(_span_values(span))
        for index in _JSON_AT:
            values[index] = _to_json(values[index])
        genai = span.genai
        rows.append(
            (
                *values,
                *(_NO_GENAI if genai is None else _stored_genai(genai)),
                span.cost_usd,
                span.end_time_unix_nano - span.start_time_unix_nano,
                resources(span.resource_attributes, span.scope_name, span.scope_version),
                received_at,
                ordinal,
            )
        )
    return rows


# PostgreSQL cannot store the character NUL: not in text, and not as ``\u0000`` in jsonb. A batch it refused
# for one is written again with NUL replaced by U+FFFD (in JSON text, its escape; an escaped backslash before
# ``u0000`` is left alone). SQLite stores NUL as it is.
_JSON_NUL = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")
_NUL_REFUSED = frozenset({"22021", "22P05"})  # character_not_in_repertoire, untranslatable_character


def scrub_row(row: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(
        _JSON_NUL.sub("\\1\\\\ufffd", value.replace("\x00", "\ufffd")) if isinstance(value, str) else value
        for value in row
    )


def _refused_nul(failure: psycopg.Error) -> bool:
    return failure.sqlstate in _NUL_REFUSED or (failure.sqlstate is None and "NUL" in str(failure))


def prepare(records: Records) -> Records:
    """``SpanStore.prepare``: nothing ahead here, the rows go to COPY as Python values at write time."""
    return records


class PostgresSpanWriter:
    """The PostgreSQL ``Store``: commits batches of spans, one transaction per batch; settles traces and applies
    retention alongside the other replicas sharing the database. Called from one thread (the pipeline's writer),
    but ``disk_usage`` (scrape time). Its public methods raise ``StorageError``, never ``psycopg.Error``."""

    def __init__(self, dsn: str, *, retention: RetentionSettings | None = None) -> None:
        with translated(), connect(dsn) as connection:
            migrate(connection)
        # A batch waits at most WRITE_CONNECT_TIMEOUT for a connection: with PostgreSQL away, the pipeline answers
        # 503 with a retry hint well within an OTLP exporter's own 10 s timeout, rather than the client timing out.
        self.pool: ConnectionPool[Connection] = open_pool(
            dsn, name="genai-collector-writer", configure=_prepare, timeout=WRITE_CONNECT_TIMEOUT
        )
        self._received_at = 0
        self.retention = Retention(self.pool, retention or RetentionSettings.model_validate({}))
        with translated():
            self.retention.upkeep(time.time_ns(), wait=True)

    prepare = staticmethod(prepare)

    def write(self, batch: Sequence[Records]) -> Written:
        """Insert and commit in one transaction; returns the spans that were new and those of them whose
        model call another span counts (as SQLite's ``SpanWriter.write``)."""
        received_at = self._received_at = max(time.time_ns(), self._received_at + 1)
        spans = [span for records in batch for span in records.spans]
        summaries = [summary for records in batch for summary in records.summarize()]
        if len(spans) != len(summaries):  # a worker left the spans out: only for an engine that encodes ahead
            raise RuntimeError("records without their spans reached the PostgreSQL writer, which encodes them")
        events = [event for records in batch for event in records.events]
        evaluations = [evaluation for records in batch for evaluation in records.evaluations]
        if not (spans or events or evaluations):
            return NOTHING_WRITTEN

        def write(scrub: bool) -> Written:
            return self._write(spans, summaries, events, evaluations, received_at, scrub=scrub)

        try:
            try:
                return retry_conflicts(lambda: write(False))
            except psycopg.Error as failure:
                if not (is_data_error(failure) and _refused_nul(failure)):
                    raise
            return retry_conflicts(lambda: write(True))
        except psycopg.Error as failure:
            if failure.sqlstate == "53100":  # disk_full: with a size bound, retention drops a day
                self.retention.disk_full()
            raise translate(failure) from failure

    def _write(
        self,
        spans: list[Span],
        summaries: list[SpanSummary],
        events: list[LogEvent],
        evaluations: list[EvaluationRecord],
        received_at: int,
        *,
        scrub: bool,
    ) -> Written:
        """``summaries``: those of ``spans``, in their order (``Written`` holds the stored spans' summaries)."""
        with self.pool.connection() as connection, connection.transaction(), connection.cursor() as cursor:
            # Held until commit: retention does not delete a resource this batch is about to point to.
            cursor.execute("SELECT pg_advisory_xact_lock_shared(%s, %s)", RESOURCES_LOCK)
            resources = ResourceIds(cursor, scrub)
            resources.resolve(spans, events, evaluations)
            stored: list[SpanSummary] = []
            repeated_calls: frozenset[tuple[str, str]] = frozenset()
            if spans:
                rows = span_rows(spans, received_at, resources)
                with cursor.copy(COPY_SPANS) as copy:
                    for row in rows:
                        copy.write_row(scrub_row(row) if scrub else row)
                inserted = set(cursor.execute(INSERT_SPANS).fetchall())
                stored = _first_copies(summaries, inserted)
            if stored:
                new = {(span.trace_id, span.span_id): span.start_time_unix_nano for span in stored}
                repeated_calls, stored_before = roll_up(cursor, {span.trace_id for span in stored}, new)
                if stored_before:
                    stored = [span for span in stored if (span.trace_id, span.span_id) not in stored_before]
            # SQLite's row builders (one definition of the dedup keys) only call their ``resources`` argument
            lookup = cast(SqliteResourceIds, resources)
            for statement, records in (
                (INSERT_EVENT, event_rows(events, received_at, lookup) if events else []),
                (INSERT_EVALUATION, evaluation_rows(evaluations, received_at, lookup) if evaluations else []),
            ):
                if records:  # by dedup key: replicas storing the same records wait for each other without a cycle
                    records.sort(key=lambda row: row[-1])
                    cursor.executemany(statement, [scrub_row(row) for row in records] if scrub else records)
            response_ids = {span.response_id for span in summaries if span.response_id}
            response_ids.update(e.response_id for e in evaluations if e.trace_id is None and e.response_id)
            if response_ids:
                cursor.execute(LINK_EVALUATIONS, (sorted(response_ids),))
        return Written(stored, repeated_calls)

    def settle(self, window: SettleWindow, judge: Judge) -> list[SettledTrace]:
        """Claim the traces ``window`` makes due that no other replica is settling, and write the snapshots
        ``judge`` gives them (see ``storage.postgres.settle``)."""
        with translated(), self.pool.connection(timeout=MAINTENANCE_CONNECT_TIMEOUT) as connection:
            return retry_conflicts(lambda: settle_traces(connection, window, judge))

    def settle_reader(self) -> SettleReader | None:
        """None: ``settle`` runs whole, in a transaction of its own on a pooled connection."""
        return None

    def apply_settled(self, plan: SettlePlan) -> list[SettledTrace]:
        raise TypeError("PostgreSQL settles in one transaction of its own (settle); it makes no plans to apply")

    def oldest_unsettled(self) -> int | None:
        """When the longest-quiet unsettled trace got its last span (unix ns), or None when all are settled."""
        with translated(), self.pool.connection(timeout=MAINTENANCE_CONNECT_TIMEOUT) as connection:
            row = connection.execute(OLDEST_UNSETTLED).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def ping(self) -> None:
        """A round trip on a pooled connection (checked as the pool hands it out; one cut while idle is made
        again), waiting at most ``MAINTENANCE_CONNECT_TIMEOUT`` for it."""
        with translated(), self.pool.connection(timeout=MAINTENANCE_CONNECT_TIMEOUT) as connection:
            connection.execute("SELECT 1")

    def retain(self, now_ns: int | None = None) -> list[Deleted]:
        """Partition upkeep and retention, when no other replica is doing them (see ``postgres.retention``)."""
        with translated():
            return self.retention.step(time.time_ns() if now_ns is None else now_ns)

    def flush(self) -> None:
        """Nothing to do: every change to what is stored is made in the transaction that stores it."""

    @property
    def oldest_trace_ns(self) -> int | None:
        return self.retention.oldest_trace_ns

    def database_size(self) -> int:
        """The bytes of the collector's tables, indexes and TOAST (what ``retention.max_size`` bounds)."""
        with translated(), self.pool.connection() as connection:
            return database_size(connection)

    def disk_usage(self) -> dict[str, int]:
        """The collector's tables (``tables``), for the size gauge at scrape time: empty when the database does
        not answer within a second (a scrape never waits out an outage)."""
        try:
            with self.pool.connection(timeout=1.0) as connection:
                return {"tables": database_size(connection)}
        except psycopg.Error:
            return {}

    def close(self) -> None:
        self.pool.close()


def _prepare(connection: Connection) -> None:
    """A new pooled connection's session: room for a batch in the staging table (a batch of 2,000 GenAI spans
    is ~6 MB; past ``temp_buffers`` it would spill to files), LZ4 for the large JSON values (the COPY a third
    faster than with PostgreSQL's default pglz, measured; servers built without it keep pglz), then the staging
    table. The pool hands it back idle (autocommit).

    JIT compilation is off for the writer's session: the planner's cost estimates for the batch's statements
    (the repeated-call lookup in particular) pass ``jit_above_cost`` once ``spans`` holds a few hundred thousand
    rows, and compiling them took ~330 ms of every batch for statements that run in milliseconds (ingest fell
    to 80 spans/s at 1,000,000 stored spans, measured with ``bench/query.py --postgres``)."""
    connection.execute("SET temp_buffers = '32MB'")
    connection.execute("SET jit = off")
    # no LZ4 in this build, or a server before 14
    with contextlib.suppress(psycopg.errors.InvalidParameterValue, psycopg.errors.UndefinedObject):
        connection.execute("SET default_toast_compression = 'lz4'")
    connection.execute(CREATE_STAGING)


def _first_copies(spans: Sequence[SpanSummary], inserted: set[tuple[str, str, int]]) -> list[SpanSummary]:
    """The spans the insert stored, in batch order: for a span the batch holds twice, its first copy."""
    if not inserted:
        return []
    stored = []
    for span in spans:
        key = (span.trace_id, span.span_id, span.start_time_unix_nano)
        if key in inserted:
            inserted.discard(key)
            stored.append(span)
    return stored
