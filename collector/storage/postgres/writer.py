"""The span writer on PostgreSQL: the surface of SQLite's ``SpanWriter``, for one of several replicas.

A batch is one transaction: its spans are copied (COPY) into a staging table of the connection's own, then
inserted with ``ON CONFLICT DO NOTHING RETURNING``, so that the spans returned are exactly the ones no copy
of was stored before (a client's retry, another replica's copy): only their traces are rolled up again, and
only they feed the GenAI metrics. Rollups, repeated model calls, events, evaluations and resources mean
what they mean on SQLite. A transaction rolled back for a deadlock or serialization failure is run again
with the same batch; ``write`` returns once the batch is committed, and the caller acknowledges then.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from functools import partial
from typing import Any, cast

import psycopg
from psycopg_pool import ConnectionPool

from collector.config import RetentionSettings, SnapshotSettings
from collector.model import EvaluationRecord, LogEvent, Records, Span
from collector.storage.postgres.connection import RESOURCES_LOCK, Connection, connect, open_pool, retry_conflicts
from collector.storage.postgres.errors import is_data_error
from collector.storage.postgres.retention import Retention, database_size
from collector.storage.postgres.rollups import roll_up
from collector.storage.postgres.schema import migrate
from collector.storage.postgres.settle import Settled, settle_traces
from collector.storage.sqlite.resources import resource_key
from collector.storage.sqlite.retention import Deleted
from collector.storage.sqlite.schema import GENAI_COLUMNS
from collector.storage.sqlite.writer import _EVALUATION_COLUMNS as EVALUATION_COLUMNS  # the order of evaluation_rows
from collector.storage.sqlite.writer import _EVENT_COLUMNS as EVENT_COLUMNS  # the order of event_rows
from collector.storage.sqlite.writer import NOTHING_WRITTEN, Written, evaluation_rows, event_rows
from collector.storage.sqlite.writer import ResourceIds as SqliteResourceIds

_to_json = partial(json.dumps, ensure_ascii=False, separators=(",", ":"))

SPAN_COLUMNS = (
    "trace_id",
    "span_id",
    "parent_span_id",
    "trace_state",
    "flags",
    "name",
    "kind",
    "start_time_unix_nano",
    "end_time_unix_nano",
    "duration_ns",
    "status_code",
    "status_message",
    "service_name",
    "resource_id",
    "attributes",
    "events",
    "links",
    "dropped_attributes_count",
    "dropped_events_count",
    "dropped_links_count",
    "received_at_unix_nano",
    *(name for name, _ in GENAI_COLUMNS),
)
_NO_GENAI = (None,) * (len(GENAI_COLUMNS) - 1)
_GENAI_FIELDS = len(GENAI_COLUMNS) - 1  # the last GenAI column is the span's cost, not the client's

# Made once per connection; emptied by every commit. ``ordinal`` keeps the first copy of a span a batch holds twice.
CREATE_STAGING = "CREATE TEMPORARY TABLE span_staging (LIKE spans, ordinal integer NOT NULL) ON COMMIT DELETE ROWS"
COPY_SPANS = f"COPY span_staging ({', '.join(SPAN_COLUMNS)}, ordinal) FROM STDIN"
# In key order, so that two replicas inserting the same spans wait for each other without a cycle.
INSERT_SPANS = (
    f"INSERT INTO spans ({', '.join(SPAN_COLUMNS)}) "
    f"SELECT {', '.join(SPAN_COLUMNS)} FROM span_staging "
    "ORDER BY trace_id, span_id, start_time_unix_nano, ordinal "
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


def span_rows(spans: Sequence[Span], received_at: int, resources: ResourceIds) -> list[tuple[Any, ...]]:
    """The batch's rows for ``COPY_SPANS``: ``SPAN_COLUMNS``, then the span's place in the batch."""
    rows = []
    for ordinal, span in enumerate(spans):
        genai = span.genai
        rows.append(
            (
                span.trace_id,
                span.span_id,
                span.parent_span_id,
                span.trace_state,
                span.flags,
                span.name,
                span.kind,
                span.start_time_unix_nano,
                span.end_time_unix_nano,
                span.end_time_unix_nano - span.start_time_unix_nano,
                span.status_code,
                span.status_message,
                span.service_name,
                resources(span.resource_attributes, span.scope_name, span.scope_version),
                _to_json(span.attributes),
                _to_json(span.events),
                _to_json(span.links),
                span.dropped_attributes_count,
                span.dropped_events_count,
                span.dropped_links_count,
                received_at,
                *(_NO_GENAI if genai is None else genai[:_GENAI_FIELDS]),
                span.cost_usd,
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


class PostgresSpanWriter:
    """Commits batches of spans to PostgreSQL, one transaction per batch; settles traces and applies retention
    alongside the other replicas sharing the database. Called from one thread (the pipeline's writer)."""

    def __init__(self, dsn: str, *, retention: RetentionSettings | None = None) -> None:
        with connect(dsn) as connection:
            migrate(connection)
        self.pool: ConnectionPool[Connection] = open_pool(dsn, name="genai-collector-writer", configure=_prepare)
        self._received_at = 0
        self.retention = Retention(self.pool, retention or RetentionSettings.model_validate({}))
        self.retention.upkeep(time.time_ns(), wait=True)

    def write(self, batch: Sequence[Records]) -> Written:
        """Insert and commit in one transaction; returns the spans that were new and those of them whose
        model call another span counts (as SQLite's ``SpanWriter.write``)."""
        received_at = self._received_at = max(time.time_ns(), self._received_at + 1)
        spans = [span for records in batch for span in records.spans]
        events = [event for records in batch for event in records.events]
        evaluations = [evaluation for records in batch for evaluation in records.evaluations]
        if not (spans or events or evaluations):
            return NOTHING_WRITTEN
        try:
            return retry_conflicts(lambda: self._write(spans, events, evaluations, received_at, scrub=False))
        except psycopg.Error as failure:
            if is_data_error(failure) and _refused_nul(failure):
                return retry_conflicts(lambda: self._write(spans, events, evaluations, received_at, scrub=True))
            if failure.sqlstate == "53100":  # disk_full
                self.retention.disk_full()
            raise

    def _write(
        self,
        spans: list[Span],
        events: list[LogEvent],
        evaluations: list[EvaluationRecord],
        received_at: int,
        *,
        scrub: bool,
    ) -> Written:
        with self.pool.connection() as connection, connection.transaction(), connection.cursor() as cursor:
            # Held until commit: retention does not delete a resource this batch is about to point to.
            cursor.execute("SELECT pg_advisory_xact_lock_shared(%s, %s)", RESOURCES_LOCK)
            resources = ResourceIds(cursor, scrub)
            resources.resolve(spans, events, evaluations)
            stored: list[Span] = []
            repeated_calls: frozenset[tuple[str, str]] = frozenset()
            if spans:
                rows = span_rows(spans, received_at, resources)
                with cursor.copy(COPY_SPANS) as copy:
                    for row in rows:
                        copy.write_row(scrub_row(row) if scrub else row)
                inserted = set(cursor.execute(INSERT_SPANS).fetchall())
                stored = _first_copies(spans, inserted)
            if stored:
                new = {(span.trace_id, span.span_id) for span in stored}
                repeated_calls = roll_up(cursor, {span.trace_id for span in stored}, new)
            # SQLite's row builders (one definition of the dedup keys) only call their ``resources`` argument
            lookup = cast(SqliteResourceIds, resources)
            for statement, records in (
                (INSERT_EVENT, event_rows(events, received_at, lookup) if events else []),
                (INSERT_EVALUATION, evaluation_rows(evaluations, received_at, lookup) if evaluations else []),
            ):
                if records:  # by dedup key: replicas storing the same records wait for each other without a cycle
                    records.sort(key=lambda row: row[-1])
                    cursor.executemany(statement, [scrub_row(row) for row in records] if scrub else records)
            response_ids = {span.genai.response_id for span in spans if span.genai and span.genai.response_id}
            response_ids.update(e.response_id for e in evaluations if e.trace_id is None and e.response_id)
            if response_ids:
                cursor.execute(LINK_EVALUATIONS, (sorted(response_ids),))
        return Written(stored, repeated_calls)

    def settle(self, settings: SnapshotSettings, *, limit: int = 500) -> list[Settled]:
        """Settle up to ``limit`` quiet traces no other replica is settling, and write their snapshots."""
        with self.pool.connection() as connection:
            return retry_conflicts(
                lambda: settle_traces(
                    connection,
                    settings.rules,
                    now_ns=time.time_ns(),
                    settle_after_ns=int(settings.settle_after * 1e9),
                    max_wait_ns=int(settings.max_wait * 1e9),
                    limit=limit,
                )
            )

    def oldest_unsettled(self) -> int | None:
        """When the longest-quiet unsettled trace got its last span (unix ns), or None when all are settled."""
        with self.pool.connection() as connection:
            row = connection.execute(OLDEST_UNSETTLED).fetchone()
        return None if row is None else row[0]

    def database_size(self) -> int:
        """The bytes of the collector's tables, indexes and TOAST (what ``retention.max_size`` bounds)."""
        with self.pool.connection() as connection:
            return database_size(connection)

    def retain(self) -> list[Deleted]:
        """Partition upkeep and retention, when no other replica is doing them (see ``postgres.retention``)."""
        return self.retention.step(time.time_ns())

    def close(self) -> None:
        self.pool.close()


def _prepare(connection: Connection) -> None:
    """A new pooled connection's session: room for a batch in the staging table (a batch of 2,000 GenAI spans
    is ~6 MB; past ``temp_buffers`` it would spill to files), LZ4 for the large JSON values (the COPY a third
    faster than with PostgreSQL's default pglz, measured; servers built without it keep pglz), then the staging
    table. The pool hands it back idle (autocommit)."""
    connection.execute("SET temp_buffers = '32MB'")
    try:
        connection.execute("SET default_toast_compression = 'lz4'")
    except (psycopg.errors.InvalidParameterValue, psycopg.errors.UndefinedObject):
        pass  # no LZ4 in this build, or a server before 14
    connection.execute(CREATE_STAGING)


def _first_copies(spans: Sequence[Span], inserted: set[tuple[str, str, int]]) -> list[Span]:
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
