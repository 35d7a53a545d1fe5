"""SQLite's read side: the statements use the indexes meant for them."""

from __future__ import annotations


def test_the_stats_of_model_calls_read_only_their_covering_index() -> None:
    """Percentiles and cost over a day must not read the wide span rows (see migration 6)."""
    import apsw

    from collector.storage.read import StatsRange
    from collector.storage.sqlite.read import cost_sql, latency_sql
    from collector.storage.sqlite.schema import migrate

    connection = apsw.Connection(":memory:")
    migrate(connection)
    day = StatsRange(0, 86_400 * 10**9, 3_600 * 10**9)
    queries = [
        latency_sql(day, of, group)
        for of in ("llm", "ttft")
        for group in ("none", "model", "service", "operation", "agent")
    ]
    queries += [cost_sql(day, group) for group in ("none", "model", "provider", "service", "user", "agent")]
    for sql, params in queries:
        plan = " ".join(row[3] for row in connection.execute("EXPLAIN QUERY PLAN " + sql, params))
        assert "COVERING INDEX spans_genai_calls" in plan, plan
