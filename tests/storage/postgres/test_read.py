"""The PostgreSQL reader against a real server: for the same batches, every read answers what SQLite's does.

The contract suite checks each read against expected values on a small data set; this compares the two
engines' answers on a larger, randomized one (nested calls, repeated calls, breaches, events, evaluations),
filter by filter and page by page.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import apsw
import psycopg
import pytest

from collector.maintenance.settle import settle
from collector.storage.latency_bins import GAMMA, bin_sql
from collector.storage.postgres.read import READ_WORK_MEM, PostgresTraceReader
from collector.storage.postgres.writer import PostgresSpanWriter
from collector.storage.read import (
    BreachQuery,
    EvaluationQuery,
    QueryTooBroad,
    SpanSearch,
    StatsRange,
    TraceQuery,
    TraceReader,
)
from collector.storage.sqlite.read import SqliteTraceReader
from collector.storage.sqlite.writer import SpanWriter
from tests.storage.postgres.batches import MODELS, SERVICES, batches
from tests.storage.postgres.test_writer import SETTINGS as SETTLE_AT_ONCE

T = TypeVar("T")
BASE = (time.time_ns() // 3_600_000_000_000) * 3_600_000_000_000 - 7_200_000_000_000
HOUR = 3_600_000_000_000


def run(read: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(read)


@pytest.fixture(scope="module")
def readers(postgres_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TraceReader, TraceReader]]:
    """(SQLite's reader, PostgreSQL's reader) of the same batches, written and settled by each engine."""
    path: Path = tmp_path_factory.mktemp("parity") / "collector.db"
    sqlite, postgres = SpanWriter(path), PostgresSpanWriter(postgres_dsn)
    for batch in batches(5, traces=80, base_ns=BASE):
        sqlite.write(batch)
        postgres.write(batch)
    now = BASE + 10 * HOUR
    for store in (sqlite, postgres):
        settle(store, SETTLE_AT_ONCE, limit=10_000, now_ns=now)
    sqlite.close()
    postgres.close()
    on_sqlite, on_postgres = SqliteTraceReader(path), PostgresTraceReader(postgres_dsn)
    yield on_sqlite, on_postgres
    on_sqlite.close()
    on_postgres.close()


def both(readers: tuple[TraceReader, TraceReader], method: str, *args: Any) -> tuple[Any, Any]:
    sqlite, postgres = readers
    return run(getattr(sqlite, method)(*args)), run(getattr(postgres, method)(*args))


def rounded(value: Any) -> Any:
    """Sums of floating-point costs may differ in the last bits with the order the engines add them in."""
    if isinstance(value, float):
        return round(value, 9)
    if isinstance(value, dict):
        return {key: rounded(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(rounded(item) for item in value)
    return value


def pages(reader: TraceReader, query: TraceQuery) -> list[list[str]]:
    """Every page of a trace list, following the keyset cursor."""
    found = []
    while True:
        page = run(reader.traces(query))
        found.append([summary["trace_id"] for summary in page["data"]])
        if page["after"] is None:
            return found
        query = TraceQuery(**{**{f: getattr(query, f) for f in query.__dataclass_fields__}, "after": page["after"]})


TRACE_QUERIES = [
    TraceQuery(limit=500),
    TraceQuery(service=SERVICES[0]),
    TraceQuery(status="error"),
    TraceQuery(status="ok", order="asc"),
    TraceQuery(model=MODELS[1]),
    TraceQuery(agent="a"),
    TraceQuery(provider="openai", start_ns=BASE, end_ns=BASE + 2 * HOUR),
    TraceQuery(min_duration_ns=1, max_duration_ns=9_000_000_000),
    TraceQuery(min_cost_usd=0.0001, sort="cost"),
    TraceQuery(breached=True),
    TraceQuery(breached=False),
    TraceQuery(breached_metric="latency_ms"),
    TraceQuery(evaluation_below=0.5, start_ns=BASE, end_ns=BASE + 2 * HOUR),
    TraceQuery(evaluation="faithfulness", evaluation_below=0.9, start_ns=BASE, end_ns=BASE + 2 * HOUR),
    TraceQuery(attributes=(("gen_ai.request.model", MODELS[0]),), start_ns=BASE, end_ns=BASE + 2 * HOUR),
    TraceQuery(attributes=(("gen_ai.operation.name", "chat"),), start_ns=BASE, end_ns=BASE + 2 * HOUR),
]


@pytest.mark.parametrize("query", TRACE_QUERIES, ids=lambda query: repr(query)[11:60])
def test_trace_lists_and_their_summaries(readers: tuple[TraceReader, TraceReader], query: TraceQuery) -> None:
    on_sqlite, on_postgres = both(readers, "traces", query)
    assert rounded(on_postgres) == rounded(on_sqlite)
    # Every query finds something, but by provider (the batches name none) and the traces without a breach.
    assert on_sqlite["data"] or query.provider or query.breached is False


@pytest.mark.parametrize("sort", ["start_time", "duration", "cost"])
@pytest.mark.parametrize("order", ["asc", "desc"])
def test_keyset_pages(readers: tuple[TraceReader, TraceReader], sort: Any, order: Any) -> None:
    query = TraceQuery(sort=sort, order=order, limit=7)
    sqlite_pages, postgres_pages = pages(readers[0], query), pages(readers[1], query)
    assert postgres_pages == sqlite_pages
    assert len(sqlite_pages) > 3


def decoded(page: Any) -> Any:
    """A skeleton page with its spans decoded from the JSON the reader gives."""
    return {
        **{key: value for key, value in page.items() if key != "spans_json"},
        "spans": json.loads(page["spans_json"]),
    }


def test_skeletons_spans_and_details(readers: tuple[TraceReader, TraceReader]) -> None:
    trace_ids = [summary["trace_id"] for summary in run(readers[0].traces(TraceQuery(limit=500)))["data"]]
    on_sqlite, on_postgres = both(readers, "trace_summaries", trace_ids[:20])
    assert rounded(sorted(on_postgres, key=str)) == rounded(sorted(on_sqlite, key=str))
    on_sqlite, on_postgres = both(readers, "trace_spans", trace_ids[:20])
    assert rounded(on_postgres) == rounded(on_sqlite)
    for trace_id in trace_ids[:10]:
        on_sqlite, on_postgres = both(readers, "trace_skeleton", trace_id, 0, 10_000)
        assert rounded(decoded(on_postgres)) == rounded(decoded(on_sqlite))
        for span in decoded(on_sqlite)["spans"]:
            detail_sqlite, detail_postgres = both(readers, "span_detail", trace_id, span["span_id"])
            assert rounded(detail_postgres) == rounded(detail_sqlite)
    assert both(readers, "trace_skeleton", "0" * 32, 0, 10_000) == (None, None)
    assert both(readers, "span_detail", trace_ids[0], "0" * 16) == (None, None)


@pytest.mark.parametrize(
    "search",
    [
        SpanSearch(start_ns=BASE, end_ns=BASE + 2 * HOUR, limit=1000),
        SpanSearch(start_ns=BASE, end_ns=BASE + 2 * HOUR, service=SERVICES[1], limit=1000),
        SpanSearch(start_ns=BASE, end_ns=BASE + 2 * HOUR, operation="plan", error=False, limit=1000),
        SpanSearch(start_ns=BASE, end_ns=BASE + 2 * HOUR, min_duration_ns=10**9, limit=1000),
        SpanSearch(start_ns=BASE, end_ns=BASE + 2 * HOUR, attributes=(("gen_ai.request.model", MODELS[2]),)),
    ],
)
def test_search(readers: tuple[TraceReader, TraceReader], search: SpanSearch) -> None:
    on_sqlite, on_postgres = both(readers, "search_traces", search)
    assert sorted(on_postgres) == sorted(on_sqlite) and on_sqlite


STATS = StatsRange(start_ns=BASE - HOUR, end_ns=BASE + 3 * HOUR, bucket_ns=HOUR // 4)


@pytest.mark.parametrize(
    ("of", "group_by"),
    [
        ("trace", "none"),
        ("trace", "service"),
        ("trace", "model"),
        ("trace", "agent"),
        ("span", "operation"),
        ("llm", "model"),
        ("llm", "service"),
        ("ttft", "none"),
        ("span", "agent"),
    ],
)
def test_latency(readers: tuple[TraceReader, TraceReader], of: Any, group_by: Any) -> None:
    on_sqlite, on_postgres = both(readers, "latency", STATS, of, group_by)
    assert on_sqlite and on_postgres == on_sqlite  # the same bins, so the same values


@pytest.mark.parametrize("group_by", ["none", "model", "provider", "service", "user", "agent"])
def test_cost(readers: tuple[TraceReader, TraceReader], group_by: Any) -> None:
    on_sqlite, on_postgres = both(readers, "cost", STATS, group_by)
    assert rounded(on_postgres) == rounded(on_sqlite) and on_sqlite


def test_filtered_stats(readers: tuple[TraceReader, TraceReader]) -> None:
    narrow = StatsRange(
        start_ns=STATS.start_ns, end_ns=STATS.end_ns, bucket_ns=HOUR, service=SERVICES[0], model=MODELS[0]
    )
    for args in (("llm", "none"), ("trace", "model")):
        on_sqlite, on_postgres = both(readers, "latency", narrow, *args)
        assert on_sqlite and on_postgres == on_sqlite  # the same bins, so the same values
    on_sqlite, on_postgres = both(readers, "cost", narrow, "model")
    assert rounded(on_postgres) == rounded(on_sqlite) and on_sqlite


def test_evaluation_stats(readers: tuple[TraceReader, TraceReader]) -> None:
    stats = StatsRange(start_ns=STATS.start_ns, end_ns=STATS.end_ns, bucket_ns=HOUR, thresholds={"faithfulness": 0.5})
    on_sqlite, on_postgres = both(readers, "evaluation_stats", stats)
    assert rounded(on_postgres) == rounded(on_sqlite) and on_sqlite


def all_breaches(reader: TraceReader, query: BreachQuery) -> list[dict[str, Any]]:
    """Every page of a breach feed, without the ids (each engine numbers snapshots in its own settling order)."""
    found: list[dict[str, Any]] = []
    while True:
        page = run(reader.breaches(query))
        found.extend({key: value for key, value in row.items() if key != "id"} for row in page["data"])
        if page["after"] is None:
            return sorted(rounded(found), key=lambda row: sorted(row.items(), key=str).__repr__())
        query = BreachQuery(**{**{f: getattr(query, f) for f in query.__dataclass_fields__}, "after": page["after"]})


@pytest.mark.parametrize(
    "query",
    [
        BreachQuery(limit=5),
        BreachQuery(limit=5, order="asc", metric="latency_ms"),
        BreachQuery(breached=False, limit=50),
        BreachQuery(services=(SERVICES[0], SERVICES[2]), limit=20),
        BreachQuery(service=SERVICES[1], rule="latency_ms > 5", limit=20),
    ],
)
def test_breach_feeds(readers: tuple[TraceReader, TraceReader], query: BreachQuery) -> None:
    on_sqlite, on_postgres = all_breaches(readers[0], query), all_breaches(readers[1], query)
    assert on_postgres == on_sqlite and on_sqlite


def test_evaluations(readers: tuple[TraceReader, TraceReader]) -> None:
    """Ids aside (each engine numbers evaluations in its own insert order): the same rows, the same cursor time."""
    for query in (EvaluationQuery(limit=3), EvaluationQuery(name="faithfulness", below=0.9)):
        on_sqlite, on_postgres = both(readers, "evaluations", query)
        assert [row.pop("id") > 0 for row in on_postgres["data"]] == [row.pop("id") > 0 for row in on_sqlite["data"]]
        assert rounded(on_postgres["data"]) == rounded(on_sqlite["data"]) and on_sqlite["data"]
        assert (on_postgres["after"] or (None,))[0] == (on_sqlite["after"] or (None,))[0]


def test_what_the_filters_offer(readers: tuple[TraceReader, TraceReader]) -> None:
    on_sqlite, on_postgres = both(readers, "services")
    assert on_postgres == on_sqlite == sorted(SERVICES)
    for service in SERVICES:
        for kind in (None, "SPAN_KIND_INTERNAL", "SPAN_KIND_CLIENT"):
            on_sqlite, on_postgres = both(readers, "operations", service, kind)
            assert on_postgres == on_sqlite
    for method, args in (("models", (STATS.start_ns, STATS.end_ns)), ("dependencies", (STATS.start_ns, STATS.end_ns))):
        on_sqlite, on_postgres = both(readers, method, *args)
        assert on_postgres == on_sqlite
    on_sqlite, on_postgres = both(readers, "spend_by_model", STATS.start_ns)
    assert rounded(sorted(on_postgres, key=str)) == rounded(sorted(on_sqlite, key=str)) and on_sqlite


def test_a_statement_past_the_timeout_is_too_broad(postgres_dsn: str) -> None:
    reader = PostgresTraceReader(postgres_dsn, statement_timeout=0.05)
    try:
        with pytest.raises(QueryTooBroad):
            run(reader._run(lambda connection: connection.execute("SELECT pg_sleep(1)").fetchall()))
        assert run(reader.services()) == sorted(SERVICES)  # the connection serves the next query
    finally:
        reader.close()


def test_the_reader_session_compiles_no_query_and_sorts_in_memory(postgres_dsn: str) -> None:
    """As the writer's: JIT off (on in a default server); and a ``work_mem`` that holds the counted bins."""
    reader = PostgresTraceReader(postgres_dsn)
    try:
        settings = run(reader._run(lambda connection: connection.execute("SHOW jit").fetchall()))
        memory = run(reader._run(lambda connection: connection.execute("SHOW work_mem").fetchall()))
        assert (settings, memory) == ([("off",)], [(READ_WORK_MEM,)])
    finally:
        reader.close()


def test_postgresql_bins_a_value_as_sqlite_does(postgres_dsn: str) -> None:
    """The latency bins PostgreSQL's reader counts are SQLite's histograms' (``storage/latency_bins.py``), value for
    value, at the edges too: 0, tiny, huge and negative values, and values on a bin's boundary."""
    rng = random.Random(5)
    values = [0.0, 1e-300, 1e-9, 0.001, 1.0, 100.0, 9.2e12, *(10 ** rng.uniform(-6, 12) for _ in range(5_000))]
    values += [GAMMA**index for index in range(-50, 2_000, 7)]
    values += [-value for value in values[1:200]]
    on_sqlite = [
        row[0]
        for row in apsw.Connection(":memory:").execute(
            f"SELECT {bin_sql('value')} FROM json_each(?) ORDER BY key", (json.dumps(values),)
        )
    ]
    binned = bin_sql("v.value", greatest="greatest")
    with psycopg.connect(postgres_dsn) as connection:
        on_postgres = [
            row[0]
            for row in connection.execute(
                f"SELECT {binned} FROM unnest(%s::float8[]) WITH ORDINALITY v(value, i) ORDER BY i", (values,)
            )
        ]
    assert on_postgres == on_sqlite
    assert len(set(on_sqlite)) > 1_000
