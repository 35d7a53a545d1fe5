"""The PostgreSQL implementation of ``TraceReader``: every statement of the read side on PostgreSQL.

The answers are SQLite's reader's (``storage.sqlite.read``), shape for shape and value for value: the same
filters, the same keyset cursors, nearest-rank percentiles (``percentile_disc``: rank ceil(p × n), as SQLite's
window computes them), NULL groups first and names compared byte by byte. Queries differ only by dialect
(``jsonb`` operators instead of ``json_each``, casts where PostgreSQL's ``sum`` of ``bigint`` is ``numeric``).

Reads run in read-only REPEATABLE READ transactions (one snapshot per call, as one SQLite read transaction)
on a pool of connections of their own, never the writer's, from worker threads so that a call never blocks
the event loop (and a caller on any loop may use it). ``statement_timeout`` is the server's: a statement
past it is refused as too broad; a server that is down or unreachable is ``ReadBusy``, answered 503 with a
retry hint, and the next call connects again.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import orjson
import psycopg
from psycopg_pool import PoolTimeout

from collector.storage.postgres.connection import Connection, open_pool
from collector.storage.postgres.errors import is_retryable
from collector.storage.postgres.notify import SettledListener
from collector.storage.read import (
    BreachQuery,
    CostGroup,
    EvaluationPoint,
    EvaluationQuery,
    EvaluationSeries,
    LatencyGroup,
    LatencyOf,
    LatencyPoint,
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
    depth_first,
)
from collector.storage.sqlite.read import OPERATIONS_SCAN
from collector.storage.sqlite.schema import GENAI_COLUMNS

T = TypeVar("T")

# Token and cost figures count LLM and embedding calls only, each model call once (the partial index
# spans_genai_calls is written with this predicate, so that the stats can use it).
GENAI_CALLS = "category IN ('llm', 'embedding') AND duplicate_of IS NULL"
_GENAI_CALLS_OF_S = "s.category IN ('llm', 'embedding') AND s.duplicate_of IS NULL"
MODEL = "coalesce(response_model, request_model)"
_WAITING_PER_CONNECTION = 16
_NO_RESOURCE = Resource(attributes={}, scope_name=None, scope_version=None)


def _rows(connection: Connection, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    return connection.execute(sql, params).fetchall()


# --- resource attributes: read in one place ----------------------------------------------------------


def read_resources(connection: Connection, trace_ids: Sequence[str]) -> dict[tuple[str, str], Resource]:
    """The resource (attributes, scope) of every span of these traces, by (trace_id, span_id)."""
    rows = _rows(
        connection,
        "SELECT trace_id, span_id, resource_attributes, scope_name, scope_version FROM spans_with_resource "
        "WHERE trace_id = ANY(%s)",
        (list(trace_ids),),
    )
    return {
        (trace_id, span_id): Resource(attributes=attributes or {}, scope_name=scope, scope_version=version)
        for trace_id, span_id, attributes, scope, version in rows
    }


# --- trace summaries ------------------------------------------------------------------------------

_SUMMARY_COLUMNS = """t.trace_id, t.root_span_name, t.service_name, t.start_time_unix_nano, t.end_time_unix_nano,
t.duration_ns, t.span_count, t.error_count, t.llm_calls, t.input_tokens, t.output_tokens, t.total_tokens,
t.cache_read_tokens, t.cache_write_tokens, t.reasoning_tokens, t.cost_usd, t.models, t.agents, t.has_root,
t.settled_at_unix_nano IS NOT NULL"""

_BREACHES_OF = """SELECT trace_id, metric, rule, value, threshold FROM metric_snapshots
WHERE breached <> 0 AND trace_id = ANY(%s) ORDER BY trace_id, metric"""

_SORT_KEYS = {
    "start_time": "t.start_time_unix_nano",
    "duration": "t.duration_ns",
    "cost": "coalesce(t.cost_usd, -1.0)",
}


def _summaries(connection: Connection, rows: Sequence[tuple[Any, ...]]) -> list[TraceSummary]:
    breaches: dict[str, list[Any]] = {}
    if rows:
        for trace_id, metric, rule, value, threshold in _rows(connection, _BREACHES_OF, ([row[0] for row in rows],)):
            breaches.setdefault(trace_id, []).append(
                {"metric": metric, "rule": rule, "value": value, "threshold": threshold}
            )
    return [
        TraceSummary(
            trace_id=row[0],
            root_span_name=row[1],
            service_name=row[2],
            start_time_unix_nano=row[3],
            end_time_unix_nano=row[4],
            duration_ms=row[5] / 1e6,
            span_count=row[6],
            error_count=row[7],
            llm_calls=row[8],
            input_tokens=row[9],
            output_tokens=row[10],
            total_tokens=row[11],
            cache_read_tokens=row[12],
            cache_write_tokens=row[13],
            reasoning_tokens=row[14],
            cost_usd=row[15],
            models=list(row[16]),
            agents=list(row[17]),
            has_root=bool(row[18]),
            settled=bool(row[19]),
            breaches=breaches.get(row[0], []),
        )
        for row in rows
    ]


def _json_values(value: Any) -> list[str]:
    """The stored JSON values a filter value matches, as SQLite's ``->>`` compares them: there booleans are
    the integers 0 and 1, so ``true`` and ``1`` match each other."""
    if isinstance(value, bool):
        return [json.dumps(value), json.dumps(int(value))]
    if isinstance(value, int) and value in (0, 1):
        return [json.dumps(value), json.dumps(bool(value))]
    return [json.dumps(value)]


def _attribute_filters(column: str, attributes: tuple[tuple[str, Any], ...], params: dict[str, Any]) -> list[str]:
    conditions = []
    for index, (key, value) in enumerate(attributes):
        conditions.append(f"{column} -> %(attr_key{index})s = ANY(%(attr_value{index})s::jsonb[])")
        params[f"attr_key{index}"] = key
        params[f"attr_value{index}"] = _json_values(value)
    return conditions


def _time_range(column: str, start_ns: int | None, end_ns: int | None, params: dict[str, Any]) -> list[str]:
    conditions = []
    if start_ns is not None:
        conditions.append(f"{column} >= %(start_ns)s")
        params["start_ns"] = start_ns
    if end_ns is not None:
        conditions.append(f"{column} < %(end_ns)s")
        params["end_ns"] = end_ns
    return conditions


def trace_list_sql(query: TraceQuery) -> tuple[str, dict[str, Any]]:
    params: dict[str, Any] = {"limit": query.limit + 1}
    where = _time_range("t.start_time_unix_nano", query.start_ns, query.end_ns, params)
    where.append("t.start_time_unix_nano IS NOT NULL")

    def span_has(condition: str) -> str:
        return f"EXISTS (SELECT 1 FROM spans s WHERE s.trace_id = t.trace_id AND {condition})"

    for index, (column, value) in enumerate((("t.service_name", query.service), ("t.root_span_name", query.root_name))):
        if value is not None:
            where.append(f"{column} = %(eq{index})s")
            params[f"eq{index}"] = value
    if query.status == "error":
        where.append("t.error_count > 0")
    elif query.status == "ok":
        where.append("t.error_count = 0")
    if query.model is not None:
        where.append("t.models @> jsonb_build_array(%(model)s::text)")
        params["model"] = query.model
    if query.agent is not None:
        where.append("t.agents @> jsonb_build_array(%(agent)s::text)")
        params["agent"] = query.agent
    for name, column in (("provider", "provider"), ("conversation_id", "conversation_id"), ("user_id", "user_id")):
        value = getattr(query, name)
        if value is not None:
            where.append(span_has(f"s.{column} = %({name})s"))
            params[name] = value
    where.extend(span_has(condition) for condition in _attribute_filters("s.attributes", query.attributes, params))
    for name, column, bound, comparison in (
        ("min_duration_ns", "t.duration_ns", query.min_duration_ns, ">="),
        ("max_duration_ns", "t.duration_ns", query.max_duration_ns, "<="),
        ("min_cost_usd", "t.cost_usd", query.min_cost_usd, ">="),
        ("max_cost_usd", "t.cost_usd", query.max_cost_usd, "<="),
    ):
        if bound is not None:
            where.append(f"{column} {comparison} %({name})s")
            params[name] = bound
    if query.breached_metric is not None:
        where.append(
            "EXISTS (SELECT 1 FROM metric_snapshots m WHERE m.trace_id = t.trace_id "
            "AND m.metric = %(breached_metric)s AND m.breached <> 0)"
        )
        params["breached_metric"] = query.breached_metric
    elif query.breached is not None:
        exists = "EXISTS (SELECT 1 FROM metric_snapshots m WHERE m.trace_id = t.trace_id AND m.breached <> 0)"
        where.append(exists if query.breached else "NOT " + exists)
    if query.evaluation_below is not None:
        condition = "e.trace_id = t.trace_id AND e.score < %(evaluation_below)s"
        params["evaluation_below"] = query.evaluation_below
        if query.evaluation is not None:
            condition += " AND e.name = %(evaluation)s"
            params["evaluation"] = query.evaluation
        where.append(f"EXISTS (SELECT 1 FROM evaluations e WHERE {condition})")
    key = _SORT_KEYS[query.sort]
    direction = "DESC" if query.order == "desc" else "ASC"
    if query.after is not None:
        # Written so that the index on the sort key bounds the scan: key <= k, then the tie on the id.
        before, strictly = ("<=", "<") if query.order == "desc" else (">=", ">")
        where.append(
            f"{key} {before} %(after_key)s AND ({key} {strictly} %(after_key)s OR t.trace_id {strictly} %(after_id)s)"
        )
        params["after_key"], params["after_id"] = query.after
    sql = (
        f"SELECT {_SUMMARY_COLUMNS}, {key} FROM traces t WHERE {' AND '.join(where)} "
        f"ORDER BY {key} {direction}, t.trace_id {direction} LIMIT %(limit)s"
    )
    return sql, params


# --- spans -----------------------------------------------------------------------------------------

_SKELETON_FIELDS = (
    "span_id",
    "parent_span_id",
    "name",
    "kind",
    "status_code",
    "status_message",
    "service_name",
    "start_time_unix_nano",
    "end_time_unix_nano",
    "duration_ms",
    "category",
    "operation",
    "provider",
    "model",
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
_SKELETON = f"""SELECT span_id, parent_span_id, name, kind, status_code, status_message, service_name,
start_time_unix_nano, end_time_unix_nano, duration_ns / 1e6::float8, category, operation, provider, {MODEL},
input_tokens, output_tokens, total_tokens, cache_read_tokens, reasoning_tokens, cost_usd, ttft_ms, agent_name,
tool_name, duplicate_of FROM spans WHERE trace_id = %s"""

_GENAI_NAMES = tuple(name for name, _ in GENAI_COLUMNS)
_SPAN_COLUMNS = (
    "trace_id, span_id, parent_span_id, trace_state, flags, name, kind, start_time_unix_nano, end_time_unix_nano, "
    "status_code, status_message, service_name, attributes, events, links, dropped_attributes_count, "
    "dropped_events_count, dropped_links_count, " + ", ".join(_GENAI_NAMES)
)


def _stored_span(row: tuple[Any, ...], resources: dict[tuple[str, str], Resource]) -> StoredSpan:
    genai = dict(zip(_GENAI_NAMES, row[18:], strict=True))
    if genai["finish_reasons"] is not None:
        genai["finish_reasons"] = json.loads(genai["finish_reasons"])
    return StoredSpan(
        trace_id=row[0],
        span_id=row[1],
        parent_span_id=row[2],
        trace_state=row[3],
        flags=row[4],
        name=row[5],
        kind=row[6],
        start_time_unix_nano=row[7],
        end_time_unix_nano=row[8],
        status_code=row[9],
        status_message=row[10],
        service_name=row[11],
        attributes=row[12],
        events=row[13],
        links=row[14],
        dropped_attributes_count=row[15],
        dropped_events_count=row[16],
        dropped_links_count=row[17],
        genai=genai,
        resource=resources.get((row[0], row[1]), _NO_RESOURCE),
    )


def _search_sql(search: SpanSearch) -> tuple[str, dict[str, Any]]:
    """Newest first: the traces of the matching spans by their newest matching span, ``limit`` of them."""
    params: dict[str, Any] = {"start_ns": search.start_ns, "end_ns": search.end_ns, "limit": search.limit}
    where = ["start_time_unix_nano >= %(start_ns)s", "start_time_unix_nano < %(end_ns)s"]
    for column, value in (("service_name", search.service), ("name", search.operation), ("kind", search.kind)):
        if value is not None:
            where.append(f"{column} = %({column})s")
            params[column] = value
    if search.error is not None:
        where.append("status_code = 'error'" if search.error else "status_code <> 'error'")
    if search.min_duration_ns is not None:
        where.append("duration_ns >= %(min_duration_ns)s")
        params["min_duration_ns"] = search.min_duration_ns
    if search.max_duration_ns is not None:
        where.append("duration_ns <= %(max_duration_ns)s")
        params["max_duration_ns"] = search.max_duration_ns
    where.extend(_attribute_filters("attributes", search.attributes, params))
    sql = (
        f"SELECT trace_id FROM spans WHERE {' AND '.join(where)} "
        "GROUP BY trace_id ORDER BY max(start_time_unix_nano) DESC, trace_id LIMIT %(limit)s"
    )
    return sql, params


# --- stats -----------------------------------------------------------------------------------------

_LATENCY_SOURCES: dict[str, tuple[str, str, str]] = {
    # of: (table and alias, time column, value in milliseconds)
    "trace": ("traces t", "t.start_time_unix_nano", "t.duration_ns / 1e6::float8"),
    "span": ("spans s", "s.start_time_unix_nano", "s.duration_ns / 1e6::float8"),
    "llm": ("spans s", "s.start_time_unix_nano", "s.duration_ns / 1e6::float8"),
    "ttft": ("spans s", "s.start_time_unix_nano", "s.ttft_ms"),
}
_SPAN_GROUPS = {
    "none": "NULL::text",
    "service": "s.service_name",
    "model": "coalesce(s.response_model, s.request_model)",
    "operation": "s.operation",
    "agent": "s.agent_name",
    "provider": "s.provider",
    "user": "s.user_id",
}


def _in_group_order(sql: str) -> str:
    """A statement of (bucket, grp, ...) rows in SQLite's order: the NULL group first, names byte by byte."""
    return f'SELECT * FROM ({sql}) figures ORDER BY grp COLLATE "C" ASC NULLS FIRST, bucket'


def latency_sql(stats: StatsRange, of: LatencyOf, group_by: LatencyGroup) -> tuple[str, dict[str, Any]]:
    """Nearest-rank percentiles per (bucket, group): the value of rank ceil(p × n), as SQLite's reader."""
    table, time_column, value = _LATENCY_SOURCES[of]
    params: dict[str, Any] = {
        "start_ns": stats.start_ns,
        "end_ns": stats.end_ns,
        "bucket_ns": stats.bucket_ns,
        "service": stats.service,
        "model": stats.model,
    }
    joins = ""
    where = [f"{time_column} >= %(start_ns)s", f"{time_column} < %(end_ns)s"]
    if of == "trace":
        where.append("t.settled_at_unix_nano IS NOT NULL")  # a trace counts once settled, its duration final
        groups = {"none": "NULL::text", "service": "t.service_name", "model": "g.value", "agent": "g.value"}
        group = groups[group_by]
        if group_by in ("model", "agent"):
            joins = f" CROSS JOIN LATERAL jsonb_array_elements_text(t.{group_by}s) AS g(value)"
        if stats.service is not None:
            where.append("t.service_name = %(service)s")
        if stats.model is not None:
            where.append("t.models @> jsonb_build_array(%(model)s::text)")
    else:
        group = _SPAN_GROUPS[group_by]
        if of in ("llm", "ttft"):
            where.append(_GENAI_CALLS_OF_S)
        if of == "llm":
            where.append("s.category = 'llm'")
        if of == "ttft":
            where.append("s.ttft_ms IS NOT NULL")
        if stats.service is not None:
            where.append("s.service_name = %(service)s")
        if stats.model is not None:
            where.append("coalesce(s.response_model, s.request_model) = %(model)s")
    sql = f"""SELECT ({time_column} / %(bucket_ns)s) * %(bucket_ns)s AS bucket, {group} AS grp, count(*),
    percentile_disc(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY {value})
FROM {table}{joins} WHERE {" AND ".join(where)} GROUP BY 1, 2"""
    return _in_group_order(sql), params


def cost_sql(stats: StatsRange, group_by: CostGroup) -> tuple[str, dict[str, Any]]:
    params: dict[str, Any] = {
        "start_ns": stats.start_ns,
        "end_ns": stats.end_ns,
        "bucket_ns": stats.bucket_ns,
        "service": stats.service,
        "model": stats.model,
        "provider": stats.provider,
    }
    where = ["s.start_time_unix_nano >= %(start_ns)s", "s.start_time_unix_nano < %(end_ns)s", _GENAI_CALLS_OF_S]
    if stats.service is not None:
        where.append("s.service_name = %(service)s")
    if stats.model is not None:
        where.append("coalesce(s.response_model, s.request_model) = %(model)s")
    if stats.provider is not None:
        where.append("s.provider = %(provider)s")
    sql = f"""SELECT (s.start_time_unix_nano / %(bucket_ns)s) * %(bucket_ns)s AS bucket,
    {_SPAN_GROUPS[group_by]} AS grp, sum(s.cost_usd),
    coalesce(sum(s.input_tokens), 0)::bigint, coalesce(sum(s.output_tokens), 0)::bigint,
    coalesce(sum(s.cache_read_tokens), 0)::bigint, coalesce(sum(s.reasoning_tokens), 0)::bigint,
    coalesce(sum(s.total_tokens), 0)::bigint, count(*) FILTER (WHERE s.category = 'llm'),
    count(*) FILTER (WHERE s.cost_usd IS NULL AND (s.input_tokens IS NOT NULL OR s.output_tokens IS NOT NULL))
FROM spans s WHERE {" AND ".join(where)} GROUP BY 1, 2"""
    return _in_group_order(sql), params


_EVALUATION_STATS = """WITH thresholds(name, threshold) AS (
    SELECT key, value::text::float8 FROM jsonb_each(%(thresholds)s::jsonb)
)
SELECT (e.time_unix_nano / %(bucket_ns)s) * %(bucket_ns)s AS bucket, e.name, count(*), avg(e.score),
       percentile_disc(0.5) WITHIN GROUP (ORDER BY e.score), min(th.threshold),
       avg((e.score < th.threshold)::int)::float8
FROM evaluations e LEFT JOIN thresholds th ON th.name = e.name
WHERE e.time_unix_nano >= %(start_ns)s AND e.time_unix_nano < %(end_ns)s AND e.score IS NOT NULL
  AND (%(name)s::text IS NULL OR e.name = %(name)s::text)
GROUP BY 1, 2 ORDER BY 2, 1"""


# --- breaches and evaluations ----------------------------------------------------------------------


def breaches_sql(query: BreachQuery) -> tuple[str, dict[str, Any]]:
    params: dict[str, Any] = {"limit": query.limit + 1, "breached": int(query.breached)}
    where = ["m.breached = %(breached)s", *_time_range("m.computed_at", query.start_ns, query.end_ns, params)]
    for column in ("metric", "rule", "service", "trace_id"):
        value = getattr(query, column)
        if value is not None:
            where.append(f"m.{'service_name' if column == 'service' else column} = %({column})s")
            params[column] = value
    if query.services is not None:
        where.append("m.service_name = ANY(%(services)s::text[])")
        params["services"] = list(query.services)
    direction, comparison = ("DESC", "<") if query.order == "desc" else ("ASC", ">")
    if query.after is not None:
        where.append(f"(m.computed_at, m.id) {comparison} (%(after_key)s, %(after_id)s)")
        params["after_key"], params["after_id"] = query.after
    sql = f"""SELECT m.id, m.trace_id, m.service_name, t.root_span_name, m.metric, m.value, m.threshold, m.breached,
m.rule, m.computed_at FROM metric_snapshots m LEFT JOIN traces t ON t.trace_id = m.trace_id
WHERE {" AND ".join(where)} ORDER BY m.computed_at {direction}, m.id {direction} LIMIT %(limit)s"""
    return sql, params


def evaluations_sql(query: EvaluationQuery) -> tuple[str, dict[str, Any]]:
    params: dict[str, Any] = {"limit": query.limit + 1}
    where = ["true", *_time_range("time_unix_nano", query.start_ns, query.end_ns, params)]
    for column in ("name", "trace_id", "span_id"):
        value = getattr(query, column)
        if value is not None:
            where.append(f"{column} = %({column})s")
            params[column] = value
    if query.below is not None:
        where.append("score < %(below)s")
        params["below"] = query.below
    if query.after is not None:
        where.append("(time_unix_nano, id) < (%(after_key)s, %(after_id)s)")
        params["after_key"], params["after_id"] = query.after
    sql = f"""SELECT id, trace_id, span_id, response_id, name, score, label, explanation, source, time_unix_nano
FROM evaluations WHERE {" AND ".join(where)} ORDER BY time_unix_nano DESC, id DESC LIMIT %(limit)s"""
    return sql, params


# Distinct services by hopping through the (service_name, start) index: one seek per service, not a scan.
_SERVICES = """WITH RECURSIVE found(name) AS (
    SELECT min(service_name) FROM spans
    UNION ALL
    SELECT (SELECT min(service_name) FROM spans WHERE service_name > found.name) FROM found WHERE found.name IS NOT NULL
)
SELECT name FROM found WHERE name IS NOT NULL"""

_DEPENDENCIES = """SELECT parent.service_name, child.service_name, count(*)
FROM spans child JOIN spans parent ON parent.trace_id = child.trace_id AND parent.span_id = child.parent_span_id
WHERE child.start_time_unix_nano >= %s AND child.start_time_unix_nano < %s
  AND child.parent_span_id IS NOT NULL AND parent.service_name IS DISTINCT FROM child.service_name
GROUP BY 1, 2 ORDER BY 1 NULLS FIRST, 2 NULLS FIRST"""

_MODELS = f"""SELECT {MODEL} AS model, provider, count(*) AS calls FROM spans
WHERE start_time_unix_nano >= %s AND start_time_unix_nano < %s AND {GENAI_CALLS} AND {MODEL} IS NOT NULL
GROUP BY 1, 2 ORDER BY calls DESC, model"""

_SPEND_BY_MODEL = f"""SELECT coalesce({MODEL}, 'unknown'), sum(cost_usd), coalesce(sum(input_tokens), 0)::bigint,
coalesce(sum(output_tokens), 0)::bigint, count(*) FILTER (WHERE category = 'llm')
FROM spans WHERE start_time_unix_nano >= %s AND {GENAI_CALLS} GROUP BY 1 ORDER BY 1"""

_BREACH_FIELDS = (
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
_EVALUATION_FIELDS = (
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
_COST_FIELDS = (
    "cost_usd",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "reasoning_tokens",
    "total_tokens",
    "llm_requests",
    "unpriced_calls",
)


class PostgresTraceReader:
    """``TraceReader`` over a PostgreSQL database: a pool of ``connections`` read-only connections."""

    def __init__(self, dsn: str, *, connections: int = 4, statement_timeout: float = 5.0) -> None:
        self.statement_timeout = statement_timeout
        self._dsn = dsn
        timeout_ms = max(1, round(statement_timeout * 1000))

        def configure(connection: Connection) -> None:
            connection.execute(f"SET statement_timeout = {timeout_ms}")
            connection.execute("SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            connection.execute("SET application_name = 'genai-collector reader'")

        # Waiting for a connection longer than the statement timeout would only hide a database that is away.
        self._pool = open_pool(
            dsn, name="trace-reader", max_size=connections, configure=configure, timeout=statement_timeout
        )
        self._executor = ThreadPoolExecutor(max_workers=connections, thread_name_prefix="trace-reader")
        self._slots = connections * _WAITING_PER_CONNECTION
        self._in_flight = 0

    # -- the pool --

    def _call(self, work: Callable[[Connection], T]) -> T:
        try:
            with self._pool.connection() as connection, connection.transaction():
                return work(connection)
        except psycopg.errors.QueryCanceled:
            raise QueryTooBroad(
                f"the query ran longer than the {self.statement_timeout:g}s statement timeout; "
                "narrow the time range or add filters"
            ) from None
        except PoolTimeout:
            raise ReadBusy("the database did not answer in time; retry shortly") from None
        except psycopg.Error as failure:
            if is_retryable(failure):
                raise ReadBusy(
                    f"the database is unavailable ({failure.sqlstate or 'no connection'}); retry shortly"
                ) from failure
            raise

    async def _run(self, work: Callable[[Connection], T]) -> T:
        if self._in_flight >= self._slots:
            raise ReadBusy("too many queries in progress; retry shortly")
        self._in_flight += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, self._call, work)
        finally:
            self._in_flight -= 1

    def listen_settled(self, on_settled: Callable[[list[str]], None]) -> Callable[[], None]:
        """Call ``on_settled`` with the traces any replica settles (``postgres.notify``); returns the stop."""
        listener = SettledListener(self._dsn, on_settled)
        listener.start()
        return listener.stop

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._pool.close()

    # -- traces --

    async def traces(self, query: TraceQuery) -> Page:
        sql, params = trace_list_sql(query)

        def work(connection: Connection) -> Page:
            rows = _rows(connection, sql, params)
            more = len(rows) > query.limit
            rows = rows[: query.limit]
            after = (rows[-1][-1], rows[-1][0]) if more and rows else None
            return Page(data=_summaries(connection, [row[:-1] for row in rows]), after=after)

        return await self._run(work)

    async def trace_summaries(self, trace_ids: Sequence[str]) -> list[TraceSummary]:
        sql = f"SELECT {_SUMMARY_COLUMNS} FROM traces t WHERE t.trace_id = ANY(%s)"
        ids = list(trace_ids)
        return await self._run(lambda connection: _summaries(connection, _rows(connection, sql, (ids,))))

    async def trace_skeleton(self, trace_id: str, offset: int, limit: int) -> SkeletonPage | None:
        summary_sql = f"SELECT {_SUMMARY_COLUMNS} FROM traces t WHERE t.trace_id = %s"

        def work(connection: Connection) -> SkeletonPage | None:
            summaries = _summaries(connection, _rows(connection, summary_sql, (trace_id,)))
            if not summaries:
                return None
            spans = [dict(zip(_SKELETON_FIELDS, row, strict=True)) for row in _rows(connection, _SKELETON, (trace_id,))]
            page = depth_first(spans)[offset : offset + limit]
            return SkeletonPage(trace=summaries[0], spans_json=orjson.dumps(page).decode(), total_spans=len(spans))

        return await self._run(work)

    async def span_detail(self, trace_id: str, span_id: str) -> SpanDetail | None:
        span_sql = f"SELECT {_SPAN_COLUMNS} FROM spans WHERE trace_id = %s AND span_id = %s"
        events_sql = """SELECT name, time_unix_nano, source, body, attributes, severity_text FROM events
            WHERE trace_id = %s AND span_id = %s ORDER BY time_unix_nano, id"""
        evaluations_sql = """SELECT name, score, label, explanation, source, time_unix_nano FROM evaluations
            WHERE trace_id = %s AND span_id = %s ORDER BY time_unix_nano, id"""
        event_fields = ("name", "time_unix_nano", "source", "body", "attributes", "severity_text")
        evaluation_fields = ("name", "score", "label", "explanation", "source", "time_unix_nano")

        def work(connection: Connection) -> SpanDetail | None:
            rows = _rows(connection, span_sql, (trace_id, span_id))
            if not rows:
                return None
            resources = {
                key: value for key, value in read_resources(connection, [trace_id]).items() if key[1] == span_id
            }
            span: dict[str, Any] = dict(_stored_span(rows[0], resources))
            span["duration_ms"] = (span["end_time_unix_nano"] - span["start_time_unix_nano"]) / 1e6
            span["genai_events"] = [
                dict(zip(event_fields, row, strict=True)) for row in _rows(connection, events_sql, (trace_id, span_id))
            ]
            span["evaluations"] = [
                dict(zip(evaluation_fields, row, strict=True))
                for row in _rows(connection, evaluations_sql, (trace_id, span_id))
            ]
            return span  # type: ignore[return-value]

        return await self._run(work)

    async def trace_spans(self, trace_ids: Sequence[str]) -> dict[str, list[StoredSpan]]:
        sql = (
            f"SELECT {_SPAN_COLUMNS} FROM spans WHERE trace_id = ANY(%s) "
            "ORDER BY trace_id, start_time_unix_nano, span_id"
        )
        ids = list(trace_ids)

        def work(connection: Connection) -> dict[str, list[StoredSpan]]:
            resources = read_resources(connection, ids)
            found: dict[str, list[StoredSpan]] = {}
            for row in _rows(connection, sql, (ids,)):
                found.setdefault(row[0], []).append(_stored_span(row, resources))
            return found

        return await self._run(work)

    async def search_traces(self, search: SpanSearch) -> list[str]:
        sql, params = _search_sql(search)
        return await self._run(lambda connection: [trace_id for (trace_id,) in _rows(connection, sql, params)])

    # -- stats --

    async def latency(self, stats: StatsRange, of: LatencyOf, group_by: LatencyGroup) -> list[LatencySeries]:
        sql, params = latency_sql(stats, of, group_by)

        def work(connection: Connection) -> list[LatencySeries]:
            series: dict[Any, list[LatencyPoint]] = {}
            for bucket, group, count, (p50, p95, p99) in _rows(connection, sql, params):
                series.setdefault(group, []).append(
                    LatencyPoint(time_unix_nano=bucket, count=count, p50_ms=p50, p95_ms=p95, p99_ms=p99)
                )
            return [LatencySeries(group=group, points=points) for group, points in series.items()]

        return await self._run(work)

    async def cost(self, stats: StatsRange, group_by: CostGroup) -> list[dict[str, Any]]:
        sql, params = cost_sql(stats, group_by)

        def work(connection: Connection) -> list[dict[str, Any]]:
            series: dict[Any, list[dict[str, Any]]] = {}
            for bucket, group, *figures in _rows(connection, sql, params):
                point = {"time_unix_nano": bucket, **dict(zip(_COST_FIELDS, figures, strict=True))}
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

        def work(connection: Connection) -> list[EvaluationSeries]:
            series: dict[str, EvaluationSeries] = {}
            for bucket, name, count, mean, p50, threshold, below in _rows(connection, _EVALUATION_STATS, params):
                entry = series.setdefault(name, EvaluationSeries(name=name, threshold=threshold, points=[]))
                entry["points"].append(
                    EvaluationPoint(time_unix_nano=bucket, count=count, mean=mean, p50=p50, share_below=below)
                )
            return list(series.values())

        return await self._run(work)

    # -- feeds --

    async def breaches(self, query: BreachQuery) -> Page:
        sql, params = breaches_sql(query)

        def work(connection: Connection) -> Page:
            rows = [dict(zip(_BREACH_FIELDS, row, strict=True)) for row in _rows(connection, sql, params)]
            for row in rows:
                row["breached"] = bool(row["breached"])
            more = len(rows) > query.limit
            rows = rows[: query.limit]
            after = (rows[-1]["computed_at_unix_nano"], rows[-1]["id"]) if more and rows else None
            return Page(data=rows, after=after)

        return await self._run(work)

    async def evaluations(self, query: EvaluationQuery) -> Page:
        sql, params = evaluations_sql(query)

        def work(connection: Connection) -> Page:
            rows = [dict(zip(_EVALUATION_FIELDS, row, strict=True)) for row in _rows(connection, sql, params)]
            more = len(rows) > query.limit
            rows = rows[: query.limit]
            after = (rows[-1]["time_unix_nano"], rows[-1]["id"]) if more and rows else None
            return Page(data=rows, after=after)

        return await self._run(work)

    # -- what the filters can offer --

    async def services(self) -> list[str]:
        return await self._run(lambda connection: [name for (name,) in _rows(connection, _SERVICES)])

    async def operations(self, service: str, kind: str | None = None) -> list[tuple[str, str]]:
        """Span names and kinds of the service's newest ``OPERATIONS_SCAN`` spans, as SQLite's reader."""
        sql = "SELECT name, kind FROM spans WHERE service_name = %s" + (" AND kind = %s" if kind else "")
        sql += " ORDER BY start_time_unix_nano DESC LIMIT %s"
        params = (service, kind, OPERATIONS_SCAN) if kind else (service, OPERATIONS_SCAN)
        return await self._run(
            lambda connection: sorted({(name, kind) for name, kind in _rows(connection, sql, params)})
        )

    async def models(self, start_ns: int, end_ns: int) -> list[Model]:
        def work(connection: Connection) -> list[Model]:
            return [
                Model(name=model, provider=provider, calls=calls)
                for model, provider, calls in _rows(connection, _MODELS, (start_ns, end_ns))
            ]

        return await self._run(work)

    async def dependencies(self, start_ns: int, end_ns: int) -> list[tuple[str, str, int]]:
        return await self._run(
            lambda connection: [
                (parent, child, count) for parent, child, count in _rows(connection, _DEPENDENCIES, (start_ns, end_ns))
            ]
        )

    async def spend_by_model(self, start_ns: int) -> list[dict[str, Any]]:
        def work(connection: Connection) -> list[dict[str, Any]]:
            return [
                {
                    "model": model,
                    "cost_usd": cost,
                    "input_tokens": tokens_in,
                    "output_tokens": tokens_out,
                    "llm_requests": requests,
                }
                for model, cost, tokens_in, tokens_out, requests in _rows(connection, _SPEND_BY_MODEL, (start_ns,))
            ]

        return await self._run(work)
