"""The PostgreSQL implementation of ``TraceReader``: the reads that are PostgreSQL's own (summaries, spans, the
skeleton, percentiles); the statements and reads both engines share are ``storage/sql.py``'s and
``storage/sql_reader.py``'s, spelt by ``postgres/dialect.py``.

The answers are SQLite's reader's (``storage.sqlite.read``), shape for shape and value for value: the same
filters, the same keyset cursors, the same percentiles (the nearest rank of the values counted in SQLite's
histogram bins, ``storage/latency_bins.py``: counted when read, where SQLite keeps them counted), NULL groups
first and names compared byte by byte.

Reads run in read-only REPEATABLE READ transactions (one snapshot per call, as one SQLite read transaction)
on a pool of connections of their own, never the writer's, from worker threads so that a call never blocks
the event loop (and a caller on any loop may use it). ``statement_timeout`` is the server's: a statement
past it is refused as too broad; a server that is down or unreachable is ``ReadBusy``, answered 503 with a
retry hint, and the next call connects again.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

import orjson
import psycopg
from psycopg.types.json import set_json_loads
from psycopg_pool import PoolTimeout

from collector.storage.latency_bins import PERCENTILES, bin_sql, bin_value, latency_series
from collector.storage.postgres.connection import Connection, open_pool
from collector.storage.postgres.dialect import POSTGRES
from collector.storage.postgres.errors import is_retryable
from collector.storage.postgres.notify import SettledListener
from collector.storage.read import (
    SKELETON_FIELDS,
    EvaluationPoint,
    EvaluationSeries,
    LatencyGroup,
    LatencyOf,
    LatencyPoint,
    LatencySeries,
    Page,
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
from collector.storage.schema import GENAI_COLUMNS
from collector.storage.sql import (
    SPAN_EVALUATION_FIELDS,
    Where,
    breaches_of,
    genai_calls,
    search_where,
    skeleton_columns,
    span_evaluations,
    span_events,
    span_groups,
    trace_list_sql,
    traces_of,
)
from collector.storage.sql_reader import SqlReader, first_traces, too_broad

T = TypeVar("T")

# Per sort or hash table of a read, on each of the reader's connections (``query.read_connections``).
READ_WORK_MEM = "32MB"

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

_TRACES_OF = traces_of(POSTGRES, _SUMMARY_COLUMNS)
_BREACHES_OF = breaches_of(POSTGRES)


def _summaries(connection: Connection, rows: Sequence[tuple[Any, ...]]) -> list[TraceSummary]:
    breaches: dict[str, list[Any]] = {}
    if rows:
        for trace_id, metric, rule, value, threshold in _rows(
            connection, _BREACHES_OF, {"ids": [row[0] for row in rows]}
        ):
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


# --- spans -----------------------------------------------------------------------------------------

_SKELETON = (
    f"SELECT {', '.join(skeleton_columns('', duration_ms='duration_ns / 1e6::float8').values())} "
    "FROM spans WHERE trace_id = %s"
)


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
    """The matching spans' traces, newest span first and, at the same start, by trace id: each trace first comes at
    its newest matching span, so the first ``limit`` distinct ids are the traces by their newest matching span (ties
    by id). Read through a cursor and left there: a fast-start plan down the (service, start) index reads the
    newest spans only, instead of grouping every match of the range."""
    where = search_where(POSTGRES, search)
    sql = f"SELECT trace_id FROM spans WHERE {where} ORDER BY start_time_unix_nano DESC, trace_id"
    return POSTGRES.statement(sql), where.params


_SEARCH_ROWS_PER_FETCH = 200  # a Jaeger search's 20 traces are ~150 spans of one service

# --- stats -----------------------------------------------------------------------------------------

_LATENCY_SOURCES: dict[str, tuple[str, str, str]] = {
    # of: (table and alias, time column, value in milliseconds: a double, as SQLite's histograms bin it)
    "trace": ("traces t", "t.start_time_unix_nano", "t.duration_ns / 1e6::float8"),
    "span": ("spans s", "s.start_time_unix_nano", "s.duration_ns / 1e6::float8"),
    "llm": ("spans s", "s.start_time_unix_nano", "s.duration_ns / 1e6::float8"),
    "ttft": ("spans s", "s.start_time_unix_nano", "s.ttft_ms"),
}
_SPAN_GROUPS = span_groups(POSTGRES)


def _nearest_rank(counted: str) -> str:
    """``latency_bins.nearest_rank`` in SQL, so that a few rows cross to Python instead of every counted bin: of
    ``counted``, (bucket, grp, bin, n) rows, one row per (bucket, grp) with its count and the bin of each
    percentile's rank (the first bin whose running count reaches ``ceil(p × count / 100)``, i.e.
    ``100 × running >= p × count``). ``counted`` is planned on its own (``MATERIALIZED``): the planner cannot
    tell how few bins there are, and would otherwise sort every value to feed the window in order."""
    ranks = ", ".join(f"min(bin) FILTER (WHERE 100 * running >= {p} * total)" for p in PERCENTILES)
    return f"""WITH counted AS MATERIALIZED ({counted})
SELECT bucket, grp, max(total), {ranks} FROM (
    SELECT bucket, grp, bin, sum(n) OVER (PARTITION BY bucket, grp ORDER BY bin)::bigint AS running,
           sum(n) OVER (PARTITION BY bucket, grp)::bigint AS total
    FROM counted
) ranked GROUP BY bucket, grp"""


def latency_sql(stats: StatsRange, of: LatencyOf, group_by: LatencyGroup) -> tuple[str, dict[str, Any]]:
    """(bucket, group, count, and the bin of each of ``PERCENTILES``) of the range's values: the values counted in
    the bins of SQLite's histograms (``storage/latency_bins.py``) by a hash aggregate, instead of a sort of every
    value, and the nearest rank read off the counts."""
    table, time_column, value = _LATENCY_SOURCES[of]
    where = Where(
        POSTGRES,
        start_ns=stats.start_ns,
        end_ns=stats.end_ns,
        bucket_ns=stats.bucket_ns,
        service=stats.service,
        model=stats.model,
    )
    where.add(f"{time_column} >= :start_ns")
    where.add(f"{time_column} < :end_ns")
    joins = ""
    if of == "trace":
        where.add("t.settled_at_unix_nano IS NOT NULL")  # a trace counts once settled, its duration final
        groups = {"none": POSTGRES.null_text, "service": "t.service_name", "model": "g.value", "agent": "g.value"}
        group = groups[group_by]
        if group_by in ("model", "agent"):
            joins = f" CROSS JOIN LATERAL jsonb_array_elements_text(t.{group_by}s) AS g(value)"
        if stats.service is not None:
            where.add("t.service_name = :service")
        if stats.model is not None:
            where.add(POSTGRES.contains("t.models", ":model"))
    else:
        group = _SPAN_GROUPS[group_by]
        if of in ("llm", "ttft"):
            where.add(genai_calls("s."))
        if of == "llm":
            where.add("s.category = 'llm'")
        if of == "ttft":
            where.add("s.ttft_ms IS NOT NULL")
        if stats.service is not None:
            where.add("s.service_name = :service")
        if stats.model is not None:
            where.add("coalesce(s.response_model, s.request_model) = :model")
    counted = f"""SELECT ({time_column} / :bucket_ns) * :bucket_ns AS bucket, {group} AS grp,
    {bin_sql(value, greatest="greatest")} AS bin, count(*) AS n
FROM {table}{joins} WHERE {where} GROUP BY 1, 2, 3"""
    return POSTGRES.statement(_nearest_rank(counted)), where.params


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


_SPAN_EVENTS = span_events(POSTGRES)
_SPAN_EVALUATIONS = span_evaluations(POSTGRES)


class PostgresTraceReader(SqlReader[Connection]):
    """``TraceReader`` over a PostgreSQL database: a pool of ``connections`` read-only connections."""

    dialect = POSTGRES

    def __init__(self, dsn: str, *, connections: int = 4, statement_timeout: float = 5.0) -> None:
        super().__init__(connections)
        self.statement_timeout = statement_timeout
        self._dsn = dsn
        timeout_ms = max(1, round(statement_timeout * 1000))

        def configure(connection: Connection) -> None:
            connection.execute(f"SET statement_timeout = {timeout_ms}")
            # As the writer's sessions (``postgres/writer.py``): a read over a day of spans passes jit_above_cost,
            # and compiling it costs more than it saves. And room for the sorts and hash tables a read needs
            # (the percentiles' bins, the windows over them), so that none spills to disk.
            connection.execute("SET jit = off")
            connection.execute(f"SET work_mem = '{READ_WORK_MEM}'")
            set_json_loads(orjson.loads, connection)  # stored documents parsed as SQLite's reader parses them
            connection.execute("SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            connection.execute("SET application_name = 'genai-collector reader'")

        # Waiting for a connection longer than the statement timeout would only hide a database that is away.
        self._pool = open_pool(
            dsn, name="trace-reader", max_size=connections, configure=configure, timeout=statement_timeout
        )

    # -- the pool --

    def _call(self, work: Callable[[Connection], T]) -> T:
        try:
            with self._pool.connection() as connection, connection.transaction():
                return work(connection)
        except psycopg.errors.QueryCanceled:
            raise too_broad(self.statement_timeout) from None
        except PoolTimeout:
            raise ReadBusy("the database did not answer in time; retry shortly") from None
        except psycopg.Error as failure:
            if is_retryable(failure):
                raise ReadBusy(
                    f"the database is unavailable ({failure.sqlstate or 'no connection'}); retry shortly"
                ) from failure
            raise

    def _rows(self, connection: Connection, sql: str, params: Any) -> list[tuple[Any, ...]]:
        return _rows(connection, sql, params)

    def listen_settled(self, on_settled: Callable[[list[str]], None]) -> Callable[[], None]:
        """Call ``on_settled`` with the traces any replica settles (``postgres.notify``); returns the stop."""
        listener = SettledListener(self._dsn, on_settled)
        listener.start()
        return listener.stop

    def close(self) -> None:
        self._shut_down()
        self._pool.close()

    # -- traces --

    async def traces(self, query: TraceQuery) -> Page:
        sql, params = trace_list_sql(POSTGRES, query, _SUMMARY_COLUMNS)

        def work(connection: Connection) -> Page:
            rows = _rows(connection, sql, params)
            more = len(rows) > query.limit
            rows = rows[: query.limit]
            after = (rows[-1][-1], rows[-1][0]) if more and rows else None
            return Page(data=_summaries(connection, [row[:-1] for row in rows]), after=after)

        return await self._run(work)

    async def trace_summaries(self, trace_ids: Sequence[str]) -> list[TraceSummary]:
        sql = POSTGRES.statement(
            f"SELECT {_SUMMARY_COLUMNS} FROM traces t WHERE {POSTGRES.in_list('t.trace_id', ':ids')}"
        )
        ids = {"ids": POSTGRES.list_value(trace_ids)}
        return await self._run(lambda connection: _summaries(connection, _rows(connection, sql, ids)))

    async def trace_skeleton(self, trace_id: str, offset: int, limit: int) -> SkeletonPage | None:
        summary_sql = f"SELECT {_SUMMARY_COLUMNS} FROM traces t WHERE t.trace_id = %s"

        def work(connection: Connection) -> SkeletonPage | None:
            summaries = _summaries(connection, _rows(connection, summary_sql, (trace_id,)))
            if not summaries:
                return None
            spans = [dict(zip(SKELETON_FIELDS, row, strict=True)) for row in _rows(connection, _SKELETON, (trace_id,))]
            page = depth_first(spans)[offset : offset + limit]
            return SkeletonPage(trace=summaries[0], spans_json=orjson.dumps(page).decode(), total_spans=len(spans))

        return await self._run(work)

    async def span_detail(self, trace_id: str, span_id: str) -> SpanDetail | None:
        span_sql = f"SELECT {_SPAN_COLUMNS} FROM spans WHERE trace_id = %s AND span_id = %s"
        event_fields = ("name", "time_unix_nano", "source", "body", "attributes", "severity_text")
        ids = {"trace_id": trace_id, "span_id": span_id}

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
                dict(zip(event_fields, row, strict=True)) for row in _rows(connection, _SPAN_EVENTS, ids)
            ]
            span["evaluations"] = [
                dict(zip(SPAN_EVALUATION_FIELDS, row, strict=True)) for row in _rows(connection, _SPAN_EVALUATIONS, ids)
            ]
            return cast("SpanDetail", span)

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

        def work(connection: Connection) -> list[str]:
            with connection.cursor(name="search") as cursor:  # server-side: rows are read only as far as needed
                cursor.itersize = _SEARCH_ROWS_PER_FETCH
                return first_traces(cursor.execute(sql, params), search.limit)

        return await self._run(work)

    # -- stats --

    async def latency(self, stats: StatsRange, of: LatencyOf, group_by: LatencyGroup) -> list[LatencySeries]:
        sql, params = latency_sql(stats, of, group_by)

        def work(connection: Connection) -> list[LatencySeries]:
            points: dict[int, dict[Any, LatencyPoint]] = {}
            for bucket, group, count, p50, p95, p99 in _rows(connection, sql, params):
                points.setdefault(bucket, {})[group] = LatencyPoint(
                    time_unix_nano=bucket,
                    count=count,
                    p50_ms=bin_value(p50),
                    p95_ms=bin_value(p95),
                    p99_ms=bin_value(p99),
                )
            return latency_series(points)

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

    # -- what the filters can offer --
