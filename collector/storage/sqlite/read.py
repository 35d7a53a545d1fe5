"""The SQLite implementation of ``TraceReader``: the reads that are SQLite's own (summaries, spans, the skeleton
walk, percentiles from histograms); the statements and reads both engines share are ``storage/sql.py``'s and
``storage/sql_reader.py``'s, spelt by ``sqlite/dialect.py``.

Reads run on a small pool of read-only connections of their own (WAL lets them read while the writer
commits), one per worker thread, never on the event loop and never on the writer's connection. A
progress handler interrupts a statement past ``statement_timeout``; a query interrupted that way is
refused as too broad rather than left running.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar, cast

import apsw
import orjson

from collector.storage.read import (
    CostGroup,
    EvaluationSeries,
    LatencyGroup,
    LatencyOf,
    LatencySeries,
    Page,
    Resource,
    SkeletonPage,
    SpanDetail,
    SpanSearch,
    StatsRange,
    StoredSpan,
    TraceQuery,
    TraceSummary,
    depth_first_places,
)
from collector.storage.schema import GENAI_COLUMNS
from collector.storage.sql import (
    SPAN_EVALUATION_FIELDS,
    breaches_of,
    search_where,
    skeleton_columns,
    span_evaluations,
    span_events,
    trace_list_sql,
    traces_of,
)
from collector.storage.sql import cost_sql as neutral_cost_sql
from collector.storage.sql_reader import SqlReader, first_traces, too_broad
from collector.storage.sqlite.connection import open_connection
from collector.storage.sqlite.dialect import SQLITE
from collector.storage.sqlite.percentiles import BucketCache, read_latency

T = TypeVar("T")

_PROGRESS_STEPS = 1_000


def named_rows(cursor: apsw.Cursor) -> Iterator[dict[str, Any]]:
    """The rows of an executed statement as dicts by column name: the SQL's aliases name the record's fields."""
    names: list[str] | None = None
    for row in cursor:
        if names is None:
            names = [name for name, _ in cursor.get_description()]
        yield dict(zip(names, row, strict=True))


def document(text: str) -> Any:
    """A stored JSON document. orjson parses it several times faster than ``json``; what it refuses (an infinite
    double, stored by SQLite as 9e999) goes to ``json``."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


# --- resource attributes: read in one place ----------------------------------------------------------


# Of ``spans_with_resource``, after a span's own columns: where its resource is stored.
RESOURCE_COLUMNS = "resource_id, resource_attributes, scope_name, scope_version"
_NO_RESOURCE = Resource(attributes={}, scope_name=None, scope_version=None)


class Resources:
    """The resources of one read, each parsed once: spans of one resource share it (read, never change it)."""

    def __init__(self) -> None:
        self._by_id: dict[int, Resource] = {}

    def __call__(self, row: dict[str, Any]) -> Resource:
        """The resource of a row that ends with ``RESOURCE_COLUMNS``, whose columns it takes out of the row."""
        resource_id, attributes = row.pop("resource_id"), row.pop("resource_attributes")
        scope, version = row.pop("scope_name"), row.pop("scope_version")
        if resource_id is None:
            return _NO_RESOURCE
        found = self._by_id.get(resource_id)
        if found is None:
            found = self._by_id[resource_id] = Resource(
                attributes=document(attributes) if attributes else {}, scope_name=scope, scope_version=version
            )
        return found


# --- trace summaries ------------------------------------------------------------------------------

# In ``TraceSummary`` order, named as its fields are.
_SUMMARY_COLUMNS = """t.trace_id, t.root_span_name, t.service_name, t.start_time_unix_nano, t.end_time_unix_nano,
t.duration_ns / 1e6 AS duration_ms, t.span_count, t.error_count, t.llm_calls, t.input_tokens, t.output_tokens,
t.total_tokens, t.cache_read_tokens, t.cache_write_tokens, t.reasoning_tokens, t.cost_usd, t.models, t.agents,
t.has_root, t.settled_at_unix_nano IS NOT NULL AS settled"""

_TRACES_OF = traces_of(SQLITE, _SUMMARY_COLUMNS)
_BREACHES_OF = breaches_of(SQLITE)


def _summaries(connection: apsw.Connection, rows: list[dict[str, Any]]) -> list[TraceSummary]:
    """Rows of ``_SUMMARY_COLUMNS`` made summaries, in place: JSON columns decoded, flags made booleans, and the
    trace's breaches added."""
    breaches: dict[str, list[Any]] = {}
    if rows:
        ids = SQLITE.list_value(row["trace_id"] for row in rows)
        for trace_id, metric, rule, value, threshold in connection.execute(_BREACHES_OF, {"ids": ids}):
            breaches.setdefault(trace_id, []).append(
                {"metric": metric, "rule": rule, "value": value, "threshold": threshold}
            )
    for row in rows:
        row["models"] = document(row["models"])
        row["agents"] = document(row["agents"])
        row["has_root"] = bool(row["has_root"])
        row["settled"] = bool(row["settled"])
        row["breaches"] = breaches.get(row["trace_id"], [])
    return cast("list[TraceSummary]", rows)  # the rows now hold a summary's fields


# --- spans -----------------------------------------------------------------------------------------

# A span of the skeleton (``SkeletonSpan``): its fields, as SQLite puts them in a JSON object.
_SKELETON_COLUMNS = skeleton_columns("s.", duration_ms="s.duration_ns / 1e6")

# A trace's tree, what ``read.depth_first_places`` needs: its spans' rowids, ids and parent ids as three JSON arrays,
# in the order of their start time then span id (the subquery's order, which SQLite keeps for an aggregate such as
# ``json_group_array``). Three narrow columns of each row: ordering them in Python holds the GIL about half a
# millisecond per thousand spans, where the same walk in SQL (a recursive CTE with a priority queue, its
# materialized steps and a second sort of the objects) took half the CPU of the whole read (docs/performance.md).
SKELETON_TREE = """SELECT json_group_array(row), json_group_array(span_id), json_group_array(parent_span_id)
FROM (
    SELECT rowid AS row, span_id, parent_span_id FROM spans WHERE trace_id = ?
    ORDER BY start_time_unix_nano, span_id
)"""

# One page of a trace's skeleton as one JSON array, built by SQLite (which runs without the GIL): ``:page`` holds
# the page's spans in depth-first order, each as ``[rowid, depth, orphan, child_count]``, and the spans are read by
# rowid in that order (the CROSS JOIN keeps ``jsonb_each`` the outer loop, so ``group_concat`` receives the objects
# in order and does not sort them again).
SKELETON_PAGE = f"""SELECT '[' || coalesce(group_concat(json_object(
    'depth', p.value ->> 1, 'orphan', p.value -> 2, 'child_count', p.value ->> 3,
    {", ".join(f"'{name}', {column}" for name, column in _SKELETON_COLUMNS.items())}
), ','), '') || ']'
FROM jsonb_each(:page) p CROSS JOIN spans s ON s.rowid = p.value ->> 0"""


def skeleton_page(connection: apsw.Connection, trace_id: str, offset: int, limit: int) -> str:
    """The spans ``offset`` to ``offset + limit`` of a trace's skeleton (``SkeletonSpan``) as one JSON array: the
    tree read in one statement, ordered by ``depth_first_places`` and the page's objects built by SQLite.
    In one read transaction, so that the rowids still name the same spans."""
    ((rows_json, span_ids_json, parent_ids_json),) = connection.execute(SKELETON_TREE, (trace_id,))
    rows = orjson.loads(rows_json)
    places = depth_first_places(orjson.loads(span_ids_json), orjson.loads(parent_ids_json))[offset : offset + limit]
    page = [(rows[index], depth, orphan, child_count) for index, depth, orphan, child_count in places]
    # as text: bytes would be bound as a BLOB, which SQLite's JSON functions first try to read as JSONB
    ((spans_json,),) = connection.execute(SKELETON_PAGE, {"page": orjson.dumps(page).decode()})
    return cast("str", spans_json)


_GENAI_NAMES = tuple(name for name, _ in GENAI_COLUMNS)
_SPAN_COLUMNS = (
    "trace_id, span_id, parent_span_id, trace_state, flags, name, kind, start_time_unix_nano, end_time_unix_nano, "
    "status_code, status_message, service_name, attributes, events, links, dropped_attributes_count, "
    "dropped_events_count, dropped_links_count, " + ", ".join(_GENAI_NAMES)
)
_STORED_SPANS = f"SELECT {_SPAN_COLUMNS}, {RESOURCE_COLUMNS} FROM spans_with_resource"


def _stored_span(row: dict[str, Any], resources: Resources) -> StoredSpan:
    """A row of ``_STORED_SPANS`` made a ``StoredSpan``, in place: JSON columns decoded, the GenAI columns
    gathered into ``genai``, the resource added."""
    genai = {name: row.pop(name) for name in _GENAI_NAMES}
    if genai["finish_reasons"] is not None:
        genai["finish_reasons"] = document(genai["finish_reasons"])
    for name in ("attributes", "events", "links"):
        row[name] = document(row[name])
    row["genai"] = genai
    row["resource"] = resources(row)
    return cast("StoredSpan", row)  # the row now holds a stored span's fields


# --- stats -----------------------------------------------------------------------------------------


def cost_sql(stats: StatsRange, group_by: CostGroup) -> tuple[str, dict[str, Any]]:
    """The cost statement as SQLite runs it (its tests hold its plan to the covering index of model calls)."""
    return neutral_cost_sql(SQLITE, stats, group_by)


_EVALUATION_STATS = """WITH thresholds(name, threshold) AS (SELECT key, value FROM json_each(:thresholds)),
sample AS (
    SELECT (time_unix_nano / :bucket_ns) * :bucket_ns AS bucket, name, score,
           row_number() OVER (PARTITION BY (time_unix_nano / :bucket_ns), name ORDER BY score) AS rn,
           count(*) OVER (PARTITION BY (time_unix_nano / :bucket_ns), name) AS n
    FROM evaluations
    WHERE time_unix_nano >= :start_ns AND time_unix_nano < :end_ns AND score IS NOT NULL
      AND (:name IS NULL OR name = :name)
)
SELECT bucket, sample.name, n, avg(score), max(CASE WHEN rn = max(1, (50 * n + 99) / 100) THEN score END),
       thresholds.threshold, avg(score < thresholds.threshold)
FROM sample LEFT JOIN thresholds USING (name)
GROUP BY bucket, sample.name ORDER BY sample.name, bucket"""


def _search_sql(search: SpanSearch) -> tuple[str, dict[str, Any]]:
    where = search_where(SQLITE, search)
    return f"SELECT trace_id FROM spans WHERE {where} ORDER BY start_time_unix_nano DESC", where.params


_SPAN_EVENTS = span_events(SQLITE)
_SPAN_EVALUATIONS = span_evaluations(SQLITE)


class SqliteTraceReader(SqlReader[apsw.Connection]):
    """``TraceReader`` over a SQLite file: ``connections`` read-only connections, one per worker thread."""

    dialect = SQLITE

    def __init__(self, path: Path, *, connections: int = 4, statement_timeout: float = 5.0) -> None:
        super().__init__(connections)
        self.path = path
        self.statement_timeout = statement_timeout
        self._local = threading.local()
        self._connections: list[apsw.Connection] = []
        self._lock = threading.Lock()
        self._percentiles = BucketCache()

    # -- the pool --

    def _connection(self) -> apsw.Connection:
        connection: apsw.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = open_connection(self.path, readonly=True)
            connection.pragma("query_only", True)
            connection.set_progress_handler(self._past_deadline, _PROGRESS_STEPS)
            self._local.connection = connection
            with self._lock:
                self._connections.append(connection)
        return connection

    def _past_deadline(self) -> bool:
        deadline: float = self._local.deadline
        return time.monotonic() > deadline

    def _call(self, work: Callable[[apsw.Connection], T]) -> T:
        connection = self._connection()
        self._local.deadline = time.monotonic() + self.statement_timeout
        try:
            with connection:  # one read transaction: every statement of ``work`` sees the same snapshot
                result = work(connection)
        except apsw.InterruptError:
            raise too_broad(self.statement_timeout) from None
        return result

    def _rows(self, connection: apsw.Connection, sql: str, params: Any) -> apsw.Cursor:
        return connection.execute(sql, params)

    def close(self) -> None:
        self._shut_down()
        with self._lock:
            for connection in self._connections:
                connection.close()
            self._connections.clear()

    # -- traces --

    async def traces(self, query: TraceQuery) -> Page:
        sql, params = trace_list_sql(SQLITE, query, _SUMMARY_COLUMNS)

        def work(connection: apsw.Connection) -> Page:
            rows = list(named_rows(connection.execute(sql, params)))
            more = len(rows) > query.limit
            rows = rows[: query.limit]
            after = (rows[-1]["sort_key"], rows[-1]["trace_id"]) if more and rows else None
            for row in rows:
                del row["sort_key"]
            return Page(data=_summaries(connection, rows), after=after)

        return await self._run(work)

    async def trace_summaries(self, trace_ids: Sequence[str]) -> list[TraceSummary]:
        ids = {"ids": SQLITE.list_value(trace_ids)}
        return await self._run(
            lambda connection: _summaries(connection, list(named_rows(connection.execute(_TRACES_OF, ids))))
        )

    async def trace_skeleton(self, trace_id: str, offset: int, limit: int) -> SkeletonPage | None:
        summary_sql = f"SELECT {_SUMMARY_COLUMNS} FROM traces t WHERE t.trace_id = ?"

        def work(connection: apsw.Connection) -> SkeletonPage | None:
            summaries = _summaries(connection, list(named_rows(connection.execute(summary_sql, (trace_id,)))))
            if not summaries:
                return None
            summary = summaries[0]
            spans_json = skeleton_page(connection, trace_id, offset, limit)
            return SkeletonPage(trace=summary, spans_json=spans_json, total_spans=summary["span_count"])

        return await self._run(work)

    async def span_detail(self, trace_id: str, span_id: str) -> SpanDetail | None:
        span_sql = f"{_STORED_SPANS} WHERE trace_id = ? AND span_id = ?"

        ids = {"trace_id": trace_id, "span_id": span_id}

        def work(connection: apsw.Connection) -> SpanDetail | None:
            rows = list(named_rows(connection.execute(span_sql, (trace_id, span_id))))
            if not rows:
                return None
            span: dict[str, Any] = dict(_stored_span(rows[0], Resources()))
            span["duration_ms"] = (span["end_time_unix_nano"] - span["start_time_unix_nano"]) / 1e6
            span["genai_events"] = [
                {
                    "name": name,
                    "time_unix_nano": time_ns,
                    "source": source,
                    "body": document(body) if body is not None else None,
                    "attributes": document(attributes),
                    "severity_text": severity,
                }
                for name, time_ns, source, body, attributes, severity in connection.execute(_SPAN_EVENTS, ids)
            ]
            span["evaluations"] = [
                dict(zip(SPAN_EVALUATION_FIELDS, row, strict=True))
                for row in connection.execute(_SPAN_EVALUATIONS, ids)
            ]
            return cast("SpanDetail", span)

        return await self._run(work)

    async def trace_spans(self, trace_ids: Sequence[str]) -> dict[str, list[StoredSpan]]:
        sql = (
            f"{_STORED_SPANS} WHERE trace_id IN (SELECT value FROM json_each(?)) "
            "ORDER BY trace_id, start_time_unix_nano, span_id"
        )

        def work(connection: apsw.Connection) -> dict[str, list[StoredSpan]]:
            resources = Resources()
            found: dict[str, list[StoredSpan]] = {}
            for row in named_rows(connection.execute(sql, (json.dumps(list(trace_ids)),))):
                found.setdefault(row["trace_id"], []).append(_stored_span(row, resources))
            return found

        return await self._run(work)

    async def search_traces(self, search: SpanSearch) -> list[str]:
        """Newest first: walk matching spans by start time and stop at ``limit`` distinct traces."""
        sql, params = _search_sql(search)

        def work(connection: apsw.Connection) -> list[str]:
            return first_traces(connection.execute(sql, params), search.limit)

        return await self._run(work)

    # -- stats --

    async def latency(self, stats: StatsRange, of: LatencyOf, group_by: LatencyGroup) -> list[LatencySeries]:
        return await self._run(lambda connection: read_latency(connection, stats, of, group_by, self._percentiles))

    async def evaluation_stats(self, stats: StatsRange) -> list[EvaluationSeries]:
        params = {
            "start_ns": stats.start_ns,
            "end_ns": stats.end_ns,
            "bucket_ns": stats.bucket_ns,
            "name": stats.name,
            "thresholds": json.dumps(stats.thresholds),
        }

        def work(connection: apsw.Connection) -> list[EvaluationSeries]:
            series: dict[str, Any] = {}
            for bucket, name, count, mean, p50, threshold, below in connection.execute(_EVALUATION_STATS, params):
                entry = series.setdefault(name, {"name": name, "threshold": threshold, "points": []})
                entry["points"].append(
                    {"time_unix_nano": bucket, "count": count, "mean": mean, "p50": p50, "share_below": below}
                )
            return list(series.values())

        return await self._run(work)

    # -- feeds --

    # -- what the filters can offer --
