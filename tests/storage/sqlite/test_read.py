"""SQLite's read side: the statements use the indexes meant for them."""

from __future__ import annotations

import itertools

import apsw

from collector.storage.read import StatsRange
from collector.storage.sqlite.percentiles import histogram_sql, rows_sql
from collector.storage.sqlite.read import cost_sql
from collector.storage.sqlite.schema import migrate


def test_the_stats_of_model_calls_read_only_their_covering_index() -> None:
    """Percentiles (from the stored rows, at the ends of a range) and cost over a day must not read the wide span
    rows (see migration 6); the histograms are read by their key."""
    connection = apsw.Connection(":memory:")
    migrate(connection)
    day = StatsRange(0, 86_400 * 10**9, 3_600 * 10**9)
    params = {**dict.fromkeys(("of", "service", "model", "bucket_ns", "from_ns", "to_ns", "resolution_s"), 1)}
    groups = ("none", "model", "service", "operation", "agent")
    queries = [(rows_sql(of, group, day), params) for of in ("llm", "ttft") for group in groups]
    queries += [cost_sql(day, group) for group in ("none", "model", "provider", "service", "user", "agent")]
    for sql, query_params in queries:
        plan = " ".join(row[3] for row in connection.execute("EXPLAIN QUERY PLAN " + sql, query_params))
        assert "COVERING INDEX spans_genai_calls" in plan, plan
    for of, group, filters in itertools.product(("trace", "span", "llm", "ttft"), groups, ({}, {"model": "gpt-4o"})):
        sql = histogram_sql(of, group, StatsRange(0, 86_400 * 10**9, 3_600 * 10**9, **filters))
        if of != "trace" or group != "operation":
            plan = " ".join(row[3] for row in connection.execute("EXPLAIN QUERY PLAN " + sql, params))
            assert "SEARCH h USING PRIMARY KEY (resolution_s=? AND start_unix_nano>? AND start_unix_nano<?)" in plan, (
                plan
            )
