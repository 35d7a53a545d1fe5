"""The SQLite implementation of ``TraceReader``: every SQL statement of the read side lives here.

Reads run on a small pool of read-only connections of their own (WAL lets them read while the writer
commits), one per worker thread, never on the event loop and never on the writer's connection. A
progress handler interrupts a statement past ``statement_timeout``; a query interrupted that way is
refused as too broad rather than left running.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import apsw
import orjson

from collector.storage.read import (
    BreachQuery,
    CostGroup,
    EvaluationQuery,
    EvaluationSeries,
    LatencyGroup,
    LatencyOf,
    LatencySeries,
    Model,
    Page,
    QueryTooBroad,
    ReadBusy,
    Resource,
    SkeletonPage,
    SpanDetail,
    SpanSearch,
    StatsRange,
    StoredSpan,
    TraceQuery,
    TraceSummary,
)
from collector.storage.sqlite.conditions import GENAI_CALLS, genai_calls
from collector.storage.sqlite.connection import open_connection
from collector.storage.sqlite.percentiles import SPAN_GROUPS, BucketCache, read_latency
from collector.storage.sqlite.schema import GENAI_COLUMNS

T = TypeVar("T")

# Token and cost figures count LLM and embedding calls only, each model call once (as the rollups do); written
# as the partial index spans_genai_calls is, so that the stats can use it.
_GENAI_CALLS_OF_S = genai_calls("s.")
MODEL = "coalesce(response_model, request_model)"
_PROGRESS_STEPS = 1_000
OPERATIONS_SCAN = 50_000
_WAITING_PER_CONNECTION = 16


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

_BREACHES_OF = """SELECT trace_id, metric, rule, value, threshold FROM metric_snapshots
WHERE breached AND trace_id IN (SELECT value FROM json_each(?)) ORDER BY trace_id, metric"""

_SORT_KEYS = {
    "start_time": "t.start_time_unix_nano",
    "duration": "t.duration_ns",
    "cost": "coalesce(t.cost_usd, -1.0)",
}


def _summaries(connection: apsw.Connection, rows: list[dict[str, Any]]) -> list[TraceSummary]:
    """Rows of ``_SUMMARY_COLUMNS`` made summaries, in place: JSON columns decoded, flags made booleans, and the
    trace's breaches added."""
    breaches: dict[str, list[Any]] = {}
    if rows:
        ids = json.dumps([row["trace_id"] for row in rows])
        for trace_id, metric, rule, value, threshold in connection.execute(_BREACHES_OF, (ids,)):
            breaches.setdefault(trace_id, []).append(
                {"metric": metric, "rule": rule, "value": value, "threshold": threshold}
            )
    for row in rows:
        row["models"] = document(row["models"])
        row["agents"] = document(row["agents"])
        row["has_root"] = bool(row["has_root"])
        row["settled"] = bool(row["settled"])
        row["breaches"] = breaches.get(row["trace_id"], [])
    return rows  # type: ignore[return-value]


def _json_path(key: str) -> str:
    """A JSON path naming one attribute key, dots and all: ``$."gen_ai.request.model"``."""
    return '$."' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _sql_value(value: Any) -> Any:
    """A JSON-parsed filter value as SQLite's ``->>`` gives it (booleans are integers)."""
    return int(value) if isinstance(value, bool) else value


def _time_range(column: str, start_ns: int | None, end_ns: int | None, params: dict[str, Any]) -> list[str]:
    conditions = []
    if start_ns is not None:
        conditions.append(f"{column} >= :start_ns")
        params["start_ns"] = start_ns
    if end_ns is not None:
        conditions.append(f"{column} < :end_ns")
        params["end_ns"] = end_ns
    return conditions


def trace_list_sql(query: TraceQuery) -> tuple[str, dict[str, Any]]:
    params: dict[str, Any] = {"limit": query.limit + 1}
    where = _time_range("t.start_time_unix_nano", query.start_ns, query.end_ns, params)
    where.append("t.start_time_unix_nano IS NOT NULL")

    def span_has(condition: str) -> str:
        return f"EXISTS (SELECT 1 FROM spans s WHERE s.trace_id = t.trace_id AND {condition})"

    equal = {
        "t.service_name": query.service,
        "t.root_span_name": query.root_name,
    }
    for index, (column, value) in enumerate(equal.items()):
        if value is not None:
            where.append(f"{column} = :eq{index}")
            params[f"eq{index}"] = value
    if query.status == "error":
        where.append("t.error_count > 0")
    elif query.status == "ok":
        where.append("t.error_count = 0")
    if query.model is not None:
        where.append("EXISTS (SELECT 1 FROM json_each(t.models) WHERE value = :model)")
        params["model"] = query.model
    if query.agent is not None:
        where.append("EXISTS (SELECT 1 FROM json_each(t.agents) WHERE value = :agent)")
        params["agent"] = query.agent
    if query.provider is not None:
        where.append(span_has("s.provider = :provider"))
        params["provider"] = query.provider
    if query.conversation_id is not None:
        where.append(span_has("s.conversation_id = :conversation_id"))
        params["conversation_id"] = query.conversation_id
    if query.user_id is not None:
        where.append(span_has("s.user_id = :user_id"))
        params["user_id"] = query.user_id
    for index, (key, value) in enumerate(query.attributes):
        where.append(span_has(f"s.attributes ->> :attr_key{index} = :attr_value{index}"))
        params[f"attr_key{index}"] = _json_path(key)
        params[f"attr_value{index}"] = _sql_value(value)
    for name, column, bound, comparison in (
        ("min_duration_ns", "t.duration_ns", query.min_duration_ns, ">="),
        ("max_duration_ns", "t.duration_ns", query.max_duration_ns, "<="),
        ("min_cost_usd", "t.cost_usd", query.min_cost_usd, ">="),
        ("max_cost_usd", "t.cost_usd", query.max_cost_usd, "<="),
    ):
        if bound is not None:
            where.append(f"{column} {comparison} :{name}")
            params[name] = bound
    if query.breached_metric is not None:
        where.append(
            "EXISTS (SELECT 1 FROM metric_snapshots m WHERE m.trace_id = t.trace_id AND m.metric = :breached_metric "
            "AND m.breached)"
        )
        params["breached_metric"] = query.breached_metric
    elif query.breached is not None:
        exists = "EXISTS (SELECT 1 FROM metric_snapshots m WHERE m.trace_id = t.trace_id AND m.breached)"
        where.append(exists if query.breached else "NOT " + exists)
    if query.evaluation_below is not None:
        condition = "e.trace_id = t.trace_id AND e.score < :evaluation_below"
        params["evaluation_below"] = query.evaluation_below
        if query.evaluation is not None:
            condition += " AND e.name = :evaluation"
            params["evaluation"] = query.evaluation
        where.append(f"EXISTS (SELECT 1 FROM evaluations e WHERE {condition})")
    key = _SORT_KEYS[query.sort]
    direction = "DESC" if query.order == "desc" else "ASC"
    if query.after is not None:
        # Written so that the index on the sort key bounds the scan: key <= k, then the tie on the id.
        before, strictly = ("<=", "<") if query.order == "desc" else (">=", ">")
        where.append(f"{key} {before} :after_key AND ({key} {strictly} :after_key OR t.trace_id {strictly} :after_id)")
        params["after_key"], params["after_id"] = query.after
    sql = (
        f"SELECT {_SUMMARY_COLUMNS}, {key} AS sort_key FROM traces t WHERE {' AND '.join(where)} "
        f"ORDER BY {key} {direction}, t.trace_id {direction} LIMIT :limit"
    )
    return sql, params


# --- spans -----------------------------------------------------------------------------------------

# A span of the skeleton (``SkeletonSpan``): its fields, as SQLite puts them in a JSON object.
_SKELETON_FIELDS = {
    **{
        name: f"s.{name}"
        for name in (
            "span_id",
            "parent_span_id",
            "name",
            "kind",
            "status_code",
            "status_message",
            "service_name",
            "start_time_unix_nano",
            "end_time_unix_nano",
        )
    },
    "duration_ms": "s.duration_ns / 1e6",
    "category": "s.category",
    "operation": "s.operation",
    "provider": "s.provider",
    "model": "coalesce(s.response_model, s.request_model)",
    **{
        name: f"s.{name}"
        for name in (
            "input_tokens",
            "output_tokens",
            "total_tokens",
            "cache_read_tokens",
            "reasoning_tokens",
            "cost_usd",
            "ttft_ms",
            "agent_name",
            "tool_name",
            "duplicate_of",
        )
    },
}

# One page of a trace's skeleton as one JSON array, built by SQLite (which runs without the GIL) in the order of
# ``read.depth_first``: a recursive walk that takes the deepest queued span next, children by start time then span
# id, then the spans on a cycle of parents (never reached from a root) as roots, by start. The walk's rows come out
# in the order it takes them; ``position`` numbers them so that the page keeps that order.
SKELETON_PAGE = f"""WITH RECURSIVE
placed AS MATERIALIZED (
    SELECT s.span_id, s.parent_span_id, s.start_time_unix_nano,
           p.span_id IS NOT NULL AND s.parent_span_id != s.span_id AS has_parent
    FROM spans s LEFT JOIN spans p ON p.trace_id = s.trace_id AND p.span_id = s.parent_span_id
    WHERE s.trace_id = :trace_id
),
walk(span_id, depth, start, orphan) AS (
    SELECT span_id, 0, start_time_unix_nano, parent_span_id IS NOT NULL FROM placed WHERE NOT has_parent
    UNION ALL
    SELECT c.span_id, w.depth + 1, c.start_time_unix_nano, 0
    FROM walk w JOIN placed c ON c.parent_span_id = w.span_id AND c.has_parent
    ORDER BY 2 DESC, 3, 1
),
ordered(position, span_id, depth, orphan) AS MATERIALIZED (
    SELECT row_number() OVER (), * FROM (
        SELECT span_id, depth, orphan FROM walk
        UNION ALL
        SELECT * FROM (
            SELECT span_id, NULL, 1 FROM placed WHERE span_id NOT IN (SELECT span_id FROM walk)
            ORDER BY start_time_unix_nano, span_id
        )
    )
),
children(span_id, count) AS (SELECT parent_span_id, count(*) FROM placed WHERE has_parent GROUP BY 1)
SELECT '[' || coalesce(group_concat(json_object(
    'depth', coalesce(o.depth, 0), 'orphan', json(iif(o.orphan, 'true', 'false')),
    'child_count', iif(o.depth IS NULL, 0, coalesce(c.count, 0)),
    {", ".join(f"'{name}', {column}" for name, column in _SKELETON_FIELDS.items())}
), ',' ORDER BY o.position), '') || ']'
FROM (SELECT * FROM ordered ORDER BY position LIMIT :limit OFFSET :offset) o
JOIN spans s ON s.trace_id = :trace_id AND s.span_id = o.span_id
LEFT JOIN children c ON c.span_id = o.span_id"""


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
    return row  # type: ignore[return-value]


# --- stats -----------------------------------------------------------------------------------------


def cost_sql(stats: StatsRange, group_by: CostGroup) -> tuple[str, dict[str, Any]]:
    params: dict[str, Any] = {
        "start_ns": stats.start_ns,
        "end_ns": stats.end_ns,
        "bucket_ns": stats.bucket_ns,
        "service": stats.service,
        "model": stats.model,
        "provider": stats.provider,
    }
    where = ["s.start_time_unix_nano >= :start_ns", "s.start_time_unix_nano < :end_ns", _GENAI_CALLS_OF_S]
    if stats.service is not None:
        where.append("s.service_name = :service")
    if stats.model is not None:
        where.append("coalesce(s.response_model, s.request_model) = :model")
    if stats.provider is not None:
        where.append("s.provider = :provider")
    sql = f"""SELECT (s.start_time_unix_nano / :bucket_ns) * :bucket_ns AS bucket, {SPAN_GROUPS[group_by]} AS grp,
    sum(s.cost_usd), coalesce(sum(s.input_tokens), 0), coalesce(sum(s.output_tokens), 0),
    coalesce(sum(s.cache_read_tokens), 0), coalesce(sum(s.reasoning_tokens), 0), coalesce(sum(s.total_tokens), 0),
    count(*) FILTER (WHERE s.category = 'llm'),
    count(*) FILTER (WHERE s.cost_usd IS NULL AND (s.input_tokens IS NOT NULL OR s.output_tokens IS NOT NULL))
FROM spans s WHERE {" AND ".join(where)} GROUP BY bucket, grp ORDER BY grp, bucket"""
    return sql, params


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


# --- breaches and evaluations ----------------------------------------------------------------------


def breaches_sql(query: BreachQuery) -> tuple[str, dict[str, Any]]:
    params: dict[str, Any] = {"limit": query.limit + 1, "breached": int(query.breached)}
    where = ["m.breached = :breached", *_time_range("m.computed_at", query.start_ns, query.end_ns, params)]
    for column in ("metric", "rule", "service", "trace_id"):
        value = getattr(query, column)
        if value is not None:
            where.append(f"m.{'service_name' if column == 'service' else column} = :{column}")
            params[column] = value
    if query.services is not None:
        where.append("m.service_name IN (SELECT value FROM json_each(:services))")
        params["services"] = json.dumps(query.services)
    direction, comparison = ("DESC", "<") if query.order == "desc" else ("ASC", ">")
    if query.after is not None:
        where.append(f"(m.computed_at, m.id) {comparison} (:after_key, :after_id)")
        params["after_key"], params["after_id"] = query.after
    sql = f"""SELECT m.id, m.trace_id, m.service_name, t.root_span_name, m.metric, m.value, m.threshold, m.breached,
m.rule, m.computed_at FROM metric_snapshots m LEFT JOIN traces t ON t.trace_id = m.trace_id
WHERE {" AND ".join(where)} ORDER BY m.computed_at {direction}, m.id {direction} LIMIT :limit"""
    return sql, params


def evaluations_sql(query: EvaluationQuery) -> tuple[str, dict[str, Any]]:
    params: dict[str, Any] = {"limit": query.limit + 1}
    where = ["true", *_time_range("time_unix_nano", query.start_ns, query.end_ns, params)]
    for column in ("name", "trace_id", "span_id"):
        value = getattr(query, column)
        if value is not None:
            where.append(f"{column} = :{column}")
            params[column] = value
    if query.below is not None:
        where.append("score < :below")
        params["below"] = query.below
    if query.after is not None:
        where.append("(time_unix_nano, id) < (:after_key, :after_id)")
        params["after_key"], params["after_id"] = query.after
    sql = f"""SELECT id, trace_id, span_id, response_id, name, score, label, explanation, source, time_unix_nano
FROM evaluations WHERE {" AND ".join(where)} ORDER BY time_unix_nano DESC, id DESC LIMIT :limit"""
    return sql, params


# Distinct services by hopping through the (service_name, start) index: one seek per service, not a scan.
_SERVICES = """WITH RECURSIVE found(name) AS (
    SELECT min(service_name) FROM spans
    UNION ALL
    SELECT (SELECT min(service_name) FROM spans WHERE service_name > found.name) FROM found WHERE found.name IS NOT NULL
)
SELECT name FROM found WHERE name IS NOT NULL"""


def _search_sql(search: SpanSearch) -> tuple[str, dict[str, Any]]:
    params: dict[str, Any] = {"start_ns": search.start_ns, "end_ns": search.end_ns}
    where = ["start_time_unix_nano >= :start_ns", "start_time_unix_nano < :end_ns"]
    for column, value in (("service_name", search.service), ("name", search.operation), ("kind", search.kind)):
        if value is not None:
            where.append(f"{column} = :{column}")
            params[column] = value
    if search.error is not None:
        where.append("status_code = 'error'" if search.error else "status_code != 'error'")
    if search.min_duration_ns is not None:
        where.append("duration_ns >= :min_duration_ns")
        params["min_duration_ns"] = search.min_duration_ns
    if search.max_duration_ns is not None:
        where.append("duration_ns <= :max_duration_ns")
        params["max_duration_ns"] = search.max_duration_ns
    for index, (key, value) in enumerate(search.attributes):
        where.append(f"attributes ->> :attr_key{index} = :attr_value{index}")
        params[f"attr_key{index}"] = _json_path(key)
        params[f"attr_value{index}"] = _sql_value(value)
    sql = f"SELECT trace_id FROM spans WHERE {' AND '.join(where)} ORDER BY start_time_unix_nano DESC"
    return sql, params


_DEPENDENCIES = """SELECT parent.service_name, child.service_name, count(*)
FROM spans child JOIN spans parent ON parent.trace_id = child.trace_id AND parent.span_id = child.parent_span_id
WHERE child.start_time_unix_nano >= ? AND child.start_time_unix_nano < ?
  AND child.parent_span_id IS NOT NULL AND parent.service_name IS NOT child.service_name
GROUP BY 1, 2 ORDER BY 1, 2"""

_MODELS = f"""SELECT {MODEL} AS model, provider, count(*) AS calls FROM spans
WHERE start_time_unix_nano >= ? AND start_time_unix_nano < ? AND {GENAI_CALLS} AND {MODEL} IS NOT NULL
GROUP BY model, provider ORDER BY calls DESC, model"""

_SPEND_BY_MODEL = f"""SELECT coalesce({MODEL}, 'unknown'), sum(cost_usd), coalesce(sum(input_tokens), 0),
coalesce(sum(output_tokens), 0), count(*) FILTER (WHERE category = 'llm')
FROM spans WHERE start_time_unix_nano >= ? AND {GENAI_CALLS} GROUP BY 1"""


class SqliteTraceReader:
    """``TraceReader`` over a SQLite file: ``connections`` read-only connections, one per worker thread."""

    def __init__(self, path: Path, *, connections: int = 4, statement_timeout: float = 5.0) -> None:
        self.path = path
        self.statement_timeout = statement_timeout
        self._local = threading.local()
        self._connections: list[apsw.Connection] = []
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=connections, thread_name_prefix="trace-reader")
        self._slots = connections * _WAITING_PER_CONNECTION
        self._in_flight = 0
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
            raise QueryTooBroad(
                f"the query ran longer than the {self.statement_timeout:g}s statement timeout; "
                "narrow the time range or add filters"
            ) from None
        return result

    async def _run(self, work: Callable[[apsw.Connection], T]) -> T:
        if self._in_flight >= self._slots:
            raise ReadBusy("too many queries in progress; retry shortly")
        self._in_flight += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, self._call, work)
        finally:
            self._in_flight -= 1

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            for connection in self._connections:
                connection.close()
            self._connections.clear()

    # -- traces --

    async def traces(self, query: TraceQuery) -> Page:
        sql, params = trace_list_sql(query)

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
        sql = f"SELECT {_SUMMARY_COLUMNS} FROM traces t WHERE t.trace_id IN (SELECT value FROM json_each(?))"
        ids = json.dumps(list(trace_ids))
        return await self._run(
            lambda connection: _summaries(connection, list(named_rows(connection.execute(sql, (ids,)))))
        )

    async def trace_skeleton(self, trace_id: str, offset: int, limit: int) -> SkeletonPage | None:
        summary_sql = f"SELECT {_SUMMARY_COLUMNS} FROM traces t WHERE t.trace_id = ?"

        def work(connection: apsw.Connection) -> SkeletonPage | None:
            summaries = _summaries(connection, list(named_rows(connection.execute(summary_sql, (trace_id,)))))
            if not summaries:
                return None
            summary = summaries[0]
            params = {"trace_id": trace_id, "offset": offset, "limit": limit}
            ((spans_json,),) = connection.execute(SKELETON_PAGE, params)
            return SkeletonPage(trace=summary, spans_json=spans_json, total_spans=summary["span_count"])

        return await self._run(work)

    async def span_detail(self, trace_id: str, span_id: str) -> SpanDetail | None:
        span_sql = f"{_STORED_SPANS} WHERE trace_id = ? AND span_id = ?"
        events_sql = """SELECT name, time_unix_nano, source, body, attributes, severity_text FROM events
            WHERE trace_id = ? AND span_id = ? ORDER BY time_unix_nano, id"""
        evaluations_sql = """SELECT name, score, label, explanation, source, time_unix_nano FROM evaluations
            WHERE trace_id = ? AND span_id = ? ORDER BY time_unix_nano, id"""

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
                for name, time_ns, source, body, attributes, severity in connection.execute(
                    events_sql, (trace_id, span_id)
                )
            ]
            span["evaluations"] = [
                dict(zip(("name", "score", "label", "explanation", "source", "time_unix_nano"), row, strict=True))
                for row in connection.execute(evaluations_sql, (trace_id, span_id))
            ]
            return span  # type: ignore[return-value]

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
            found: dict[str, None] = {}
            for (trace_id,) in connection.execute(sql, params):
                found[trace_id] = None
                if len(found) >= search.limit:
                    break
            return list(found)

        return await self._run(work)

    # -- stats --

    async def latency(self, stats: StatsRange, of: LatencyOf, group_by: LatencyGroup) -> list[LatencySeries]:
        return await self._run(lambda connection: read_latency(connection, stats, of, group_by, self._percentiles))

    async def cost(self, stats: StatsRange, group_by: CostGroup) -> list[dict[str, Any]]:
        sql, params = cost_sql(stats, group_by)
        fields = (
            "cost_usd",
            "input_tokens",
            "output_tokens",
            "cache_read_tokens",
            "reasoning_tokens",
            "total_tokens",
            "llm_requests",
            "unpriced_calls",
        )

        def work(connection: apsw.Connection) -> list[dict[str, Any]]:
            series: dict[Any, list[dict[str, Any]]] = {}
            for bucket, group, *figures in connection.execute(sql, params):
                point = {"time_unix_nano": bucket, **dict(zip(fields, figures, strict=True))}
                series.setdefault(group, []).append(point)
            return [{"group": group, "points": points} for group, points in series.items()]

        return await self._run(work)

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

    async def breaches(self, query: BreachQuery) -> Page:
        sql, params = breaches_sql(query)
        names = (
            "id",
            "trace_id",
            "service_name",
            "root_span_name",
            "metric",
            "value",
            "threshold",
            "breached",
            "rule",
            "computed_at_unix_nano",
        )

        def work(connection: apsw.Connection) -> Page:
            rows = [dict(zip(names, row, strict=True)) for row in connection.execute(sql, params)]
            for row in rows:
                row["breached"] = bool(row["breached"])
            more = len(rows) > query.limit
            rows = rows[: query.limit]
            after = (rows[-1]["computed_at_unix_nano"], rows[-1]["id"]) if more and rows else None
            return Page(data=rows, after=after)

        return await self._run(work)

    async def evaluations(self, query: EvaluationQuery) -> Page:
        sql, params = evaluations_sql(query)
        names = (
            "id",
            "trace_id",
            "span_id",
            "response_id",
            "name",
            "score",
            "label",
            "explanation",
            "source",
            "time_unix_nano",
        )

        def work(connection: apsw.Connection) -> Page:
            rows = [dict(zip(names, row, strict=True)) for row in connection.execute(sql, params)]
            more = len(rows) > query.limit
            rows = rows[: query.limit]
            after = (rows[-1]["time_unix_nano"], rows[-1]["id"]) if more and rows else None
            return Page(data=rows, after=after)

        return await self._run(work)

    # -- what the filters can offer --

    async def services(self) -> list[str]:
        return await self._run(lambda connection: [name for (name,) in connection.execute(_SERVICES)])

    async def operations(self, service: str, kind: str | None = None) -> list[tuple[str, str]]:
        """Span names and kinds of the service's newest ``OPERATIONS_SCAN`` spans: a dropdown's worth, read
        newest first through the (service, start) index, without reading every span the service ever sent."""
        sql = "SELECT name, kind FROM spans WHERE service_name = ?" + (" AND kind = ?" if kind else "")
        sql += " ORDER BY start_time_unix_nano DESC LIMIT ?"
        params = (service, kind, OPERATIONS_SCAN) if kind else (service, OPERATIONS_SCAN)
        return await self._run(lambda connection: sorted(set(connection.execute(sql, params))))

    async def models(self, start_ns: int, end_ns: int) -> list[Model]:
        def work(connection: apsw.Connection) -> list[Model]:
            return [
                Model(name=model, provider=provider, calls=calls)
                for model, provider, calls in connection.execute(_MODELS, (start_ns, end_ns))
            ]

        return await self._run(work)

    async def dependencies(self, start_ns: int, end_ns: int) -> list[tuple[str, str, int]]:
        return await self._run(lambda connection: list(connection.execute(_DEPENDENCIES, (start_ns, end_ns))))

    async def spend_by_model(self, start_ns: int) -> list[dict[str, Any]]:
        def work(connection: apsw.Connection) -> list[dict[str, Any]]:
            return [
                {
                    "model": model,
                    "cost_usd": cost,
                    "input_tokens": tokens_in,
                    "output_tokens": tokens_out,
                    "llm_requests": requests,
                }
                for model, cost, tokens_in, tokens_out, requests in connection.execute(_SPEND_BY_MODEL, (start_ns,))
            ]

        return await self._run(work)
