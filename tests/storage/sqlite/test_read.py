"""SQLite's read side: the statements use the indexes meant for them, and the trace skeleton SQLite builds (its
tree read in one statement, its page's objects built by SQLite) follows ``read.depth_first``, the order every
backend follows: random trees with orphans, cycles of parents, spans that are their own parent and equal start
times."""

from __future__ import annotations

import itertools
import json
import random
from typing import Any

import apsw
import pytest

from collector.storage.read import SKELETON_FIELDS, StatsRange, depth_first
from collector.storage.sqlite.percentiles import histogram_sql, rows_sql
from collector.storage.sqlite.read import cost_sql, skeleton_page
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


TRACE = "ab" * 16


def store(connection: apsw.Connection, spans: list[dict[str, Any]]) -> None:
    connection.execute("DELETE FROM spans")
    connection.executemany(
        "INSERT INTO spans (trace_id, span_id, parent_span_id, name, kind, start_time_unix_nano, end_time_unix_nano, "
        "duration_ns, status_code, attributes, events, links, received_at_unix_nano, category, request_model) "
        "VALUES (?, ?, ?, ?, 'internal', ?, ?, ?, 'unset', '{}', '[]', '[]', 0, ?, ?)",
        [
            (
                TRACE,
                s["span_id"],
                s["parent_span_id"],
                s["name"],
                s["start_time_unix_nano"],
                s["end"],
                s["end"] - s["start_time_unix_nano"],
                s["category"],
                s["model"],
            )
            for s in spans
        ],
    )


def skeleton(connection: apsw.Connection, offset: int = 0, limit: int = 100_000) -> list[dict[str, Any]]:
    return json.loads(skeleton_page(connection, TRACE, offset, limit))


def random_trace(rng: random.Random) -> list[dict[str, Any]]:
    ids = [f"{rng.randrange(16**12):012x}{index:04x}" for index in range(rng.randint(1, 60))]
    spans = []
    for span_id in ids:
        draw = rng.random()
        parent = None if draw < 0.1 else "f" * 16 if draw < 0.15 else span_id if draw < 0.18 else rng.choice(ids)
        start = rng.randint(0, 8)
        spans.append(
            {
                "span_id": span_id,
                "parent_span_id": parent,
                "name": f"step {span_id[-2:]}",
                "start_time_unix_nano": start,
                "end": start + rng.randint(0, 5_000_000),
                "category": rng.choice([None, "llm", "tool"]),
                "model": rng.choice([None, "gpt-4o"]),
            }
        )
    return spans


@pytest.fixture(scope="module")
def connection() -> apsw.Connection:
    connection = apsw.Connection(":memory:")
    migrate(connection)
    return connection


def test_the_skeleton_sqlite_builds_is_depth_first_whatever_the_tree(connection: apsw.Connection) -> None:
    rng = random.Random(5)
    for _ in range(300):
        spans = random_trace(rng)
        store(connection, spans)
        expected = depth_first([dict(span) for span in spans])
        built = skeleton(connection)
        placed = ("span_id", "depth", "orphan", "child_count")
        assert list(built[0]) == ["depth", "orphan", "child_count", *SKELETON_FIELDS]
        assert [[span[key] for key in placed] for span in built] == [[span[key] for key in placed] for span in expected]
        for span, stored in zip(built, expected, strict=True):
            assert span["duration_ms"] == (stored["end"] - stored["start_time_unix_nano"]) / 1e6
            assert (span["name"], span["category"], span["model"]) == (
                stored["name"],
                stored["category"],
                stored["model"],
            )
        middle = len(built) // 3
        assert skeleton(connection, middle, 7) == built[middle : middle + 7]


def test_a_deep_chain_is_walked_without_recursion_limits(connection: apsw.Connection) -> None:
    chain = [
        {
            "span_id": f"{index:016x}",
            "parent_span_id": f"{index - 1:016x}" if index else None,
            "name": "step",
            "start_time_unix_nano": index,
            "end": index + 1,
            "category": None,
            "model": None,
        }
        for index in range(20_000)
    ]
    store(connection, chain)
    built = skeleton(connection)
    assert [span["depth"] for span in built] == list(range(20_000))
