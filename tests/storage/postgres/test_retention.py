"""Retention and partition upkeep on PostgreSQL: whole days dropped, whole traces deleted, one replica at a time."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from collector.config import RetentionSettings
from collector.model import EvaluationRecord, LogEvent, Records
from collector.otlp.protobuf import decode_spans
from collector.storage.postgres.connection import MAINTENANCE_LOCK, connect
from collector.storage.postgres.partitions import DAY_NS, day_partitions, day_start, for_day
from collector.storage.postgres.writer import PostgresSpanWriter
from collector.storage.store import Deleted
from tests.helpers import trace_request
from tests.postgres import Cluster


@pytest.fixture
def database(postgres_cluster: Cluster) -> Iterator[str]:
    with postgres_cluster.database() as dsn:
        yield dsn


@pytest.fixture
def today() -> int:
    """The start of the UTC day, read as the test starts (not when the module is collected: a run of the suite
    may cross midnight), just before it opens its writers, which make the partitions around their own reading."""
    return day_start(time.time_ns())


def open_writer(database: str, **retention: Any) -> PostgresSpanWriter:
    return PostgresSpanWriter(database, retention=RetentionSettings(**{"max_age": "1d", **retention}))


def query(writer: PostgresSpanWriter, sql: str, *parameters: Any) -> list[tuple[Any, ...]]:
    with writer.pool.connection() as connection:
        return connection.execute(sql, parameters or None).fetchall()


def write_trace(writer: PostgresSpanWriter, starts: list[int], *, service: str = "svc", size: int = 10) -> str:
    """A trace whose spans start at ``starts`` (the first is the root), with an event and an evaluation."""
    trace_id = os.urandom(16)
    spans = [
        {
            "span_id": os.urandom(8),
            "start": start,
            "end": start + 1000,
            "attributes": {"blob": os.urandom(size // 2).hex()},
        }
        for start in starts
    ]
    for span in spans[1:]:
        span["parent"] = spans[0]["span_id"]
    decoded, _ = decode_spans(trace_request(trace_id, spans, service=service))
    event = LogEvent(
        trace_id.hex(),
        None,
        1,
        None,
        "gen_ai.choice",
        "log",
        None,
        None,
        "hi",
        {},
        service,
        "s",
        {"service.name": service},
    )
    evaluation = EvaluationRecord(
        trace_id.hex(), None, None, "relevance", 0.5, None, None, "log", 1, {"service.name": f"{service}-judge"}
    )
    writer.write([Records(spans=decoded, events=[event], evaluations=[evaluation])])
    return trace_id.hex()


def step_until_done(writer: PostgresSpanWriter, now_ns: int) -> list[Deleted]:
    done: list[Deleted] = []
    for _ in range(50):
        results = writer.retention.step(now_ns)
        done.extend(results)
        if not any(result.more for result in results):
            return done
    raise AssertionError("retention kept asking for more")


def test_new_database_has_partitions_from_yesterday_to_three_days_ahead(database: str) -> None:
    before = day_start(time.time_ns())
    writer = open_writer(database)  # makes the partitions around the day of its clock reading, between these two
    after = day_start(time.time_ns())
    with connect(database) as connection:
        days = [partition.lower for partition in day_partitions(connection)]
    assert days in [[today + day * DAY_NS for day in range(-1, 4)] for today in (before, after)]
    writer.close()


def test_upkeep_makes_the_days_ahead_and_moves_their_spans_out_of_the_default_partition(
    database: str, today: int
) -> None:
    writer = open_writer(database)
    far = today + 10 * DAY_NS  # a client clock ten days ahead: no partition yet
    trace = write_trace(writer, [far + 5, far + 6])
    assert query(writer, "SELECT count(*) FROM spans_default") == [(2,)]
    made = writer.retention.upkeep(far)
    assert for_day(day_start(far)).name in made
    assert query(writer, "SELECT count(*) FROM spans_default") == [(0,)]
    assert query(writer, f"SELECT count(*) FROM {for_day(day_start(far)).name} WHERE trace_id = %s", trace) == [(2,)]
    assert writer.retention.upkeep(far) == []  # covered for days: no work, not even a lock
    writer.close()


def test_age_drops_the_day_and_deletes_its_traces_whole(database: str, today: int) -> None:
    yesterday = today - DAY_NS
    writer = open_writer(database)
    old = write_trace(writer, [yesterday + 1_000, yesterday + 2_000])
    # started yesterday, went on today: deleted whole when yesterday goes
    straddling = write_trace(writer, [today - 1_000, today + 1_000, today + 2_000], service="other")
    kept = write_trace(writer, [today + 5_000, today + 6_000], service="kept")
    assert writer.retention.step(today + DAY_NS // 2) == [Deleted(reason="age"), Deleted(reason="age")]  # not yet
    done = step_until_done(writer, today + DAY_NS + 1)  # yesterday ended a day (max_age) ago
    assert sum(result.traces for result in done) == 2 and sum(result.spans for result in done) == 5
    with connect(database) as connection:
        assert yesterday not in [partition.lower for partition in day_partitions(connection)]
    assert query(writer, "SELECT trace_id FROM traces") == [(kept,)]
    for table in ("spans", "events", "evaluations"):
        assert query(writer, f"SELECT DISTINCT trace_id FROM {table}") == [(kept,)], table
    # the resources of the deleted traces (service "other", the judges of old and straddling) went with them
    services = query(writer, "SELECT DISTINCT resource_attributes ->> 'service.name' FROM resources ORDER BY 1")
    assert services == [("kept",), ("kept-judge",)]
    assert old != straddling
    writer.close()


def test_traces_in_the_default_partition_go_by_the_age_of_their_last_span(database: str) -> None:
    """A client clock years behind: its spans go to the default partition, and are kept max_age after they
    arrived, as on SQLite (never deleted at once for their timestamps)."""
    writer = open_writer(database)
    trace = write_trace(writer, [1_000_000, 2_000_000])
    now = time.time_ns()
    step_until_done(writer, now)
    assert query(writer, "SELECT trace_id FROM traces") == [(trace,)]
    done = step_until_done(writer, now + DAY_NS + 10**9)
    assert sum(result.traces for result in done) == 1
    assert query(writer, "SELECT count(*) FROM spans") == [(0,)]
    assert query(writer, "SELECT count(*) FROM events") == [(0,)]
    writer.close()


def test_size_drops_the_oldest_days_but_never_today(database: str, today: int) -> None:
    yesterday = today - DAY_NS
    writer = open_writer(database, max_age="0", max_size="1MiB")
    for _ in range(4):
        write_trace(writer, [yesterday + 1_000 + index for index in range(40)], size=20_000)
    todays = write_trace(writer, [today + 1_000 + index for index in range(40)], size=20_000)
    before = writer.database_size()
    assert before > 1024 * 1024
    done = step_until_done(writer, time.time_ns())
    assert {result.reason for result in done if result.traces} == {"size"}
    assert sum(result.reclaimed_bytes for result in done) > 0
    with connect(database) as connection:
        lowers = [partition.lower for partition in day_partitions(connection)]
    assert yesterday not in lowers and today in lowers
    assert query(writer, "SELECT trace_id FROM traces") == [(todays,)]
    assert writer.database_size() < before - 3 * 40 * 10_000  # most of yesterday's four traces' bytes
    writer.close()


def test_one_replica_at_a_time_the_others_skip(database: str, today: int) -> None:
    yesterday = today - DAY_NS
    writer = open_writer(database)
    write_trace(writer, [yesterday + 1_000])
    with connect(database) as other, other.transaction():
        other.execute("SELECT pg_advisory_xact_lock(%s, %s)", MAINTENANCE_LOCK)
        started = time.monotonic()
        writer.retention.step(today + DAY_NS + 1)
        assert time.monotonic() - started < 1  # skipped, not waited
        assert query(writer, "SELECT count(*) FROM traces") == [(1,)]
    step_until_done(writer, today + DAY_NS + 1)
    assert query(writer, "SELECT count(*) FROM traces") == [(0,)]
    writer.close()


def test_snapshots_go_by_their_own_age(database: str, today: int) -> None:
    writer = open_writer(database, max_age="0", snapshots_max_age="1h")
    query(
        writer,
        "INSERT INTO metric_snapshots (trace_id, metric, computed_at)"
        " VALUES ('a', 'latency_ms', %s), ('b', 'latency_ms', %s) RETURNING 1",
        today,
        today + 2 * 3600 * 10**9,
    )
    done = writer.retention.step(today + 2 * 3600 * 10**9)
    assert sum(result.snapshots for result in done) == 1
    assert query(writer, "SELECT trace_id FROM metric_snapshots") == [("b",)]
    writer.close()


def test_dropping_a_day_while_replicas_write_keeps_every_rollup_the_sum_of_its_spans(database: str, today: int) -> None:
    """Writers go on (today's spans, and late spans of the day going) while another replica drops the day:
    nothing fails, and afterwards every trace's rollup counts exactly the spans stored for it."""
    yesterday = today - DAY_NS
    writers = [open_writer(database) for _ in range(2)]
    for index in range(30):
        write_trace(writers[0], [yesterday + 1_000 + index, yesterday + 2_000 + index])
    stop = threading.Event()

    def write(writer: PostgresSpanWriter) -> int:
        written = 0
        while not stop.is_set():
            day = yesterday if written % 3 == 0 else today
            write_trace(writer, [day + 1_000 + written, today + 5_000 + written])
            written += 1
        return written

    with ThreadPoolExecutor(3) as pool:
        running = [pool.submit(write, writer) for writer in writers]
        time.sleep(0.2)
        done = pool.submit(step_until_done, writers[1], today + DAY_NS + 1).result(timeout=60)
        stop.set()
        assert all(future.result(timeout=60) > 0 for future in running)
    assert sum(result.traces for result in done) >= 30
    with connect(database) as connection:
        assert yesterday not in [partition.lower for partition in day_partitions(connection)]
    mismatched = query(
        writers[0],
        "SELECT trace_id FROM traces"
        " WHERE span_count <> (SELECT count(*) FROM spans WHERE spans.trace_id = traces.trace_id)",
    )
    assert mismatched == []
    assert query(writers[0], "SELECT count(*) FROM spans WHERE trace_id NOT IN (SELECT trace_id FROM traces)") == [(0,)]
    for writer in writers:
        writer.close()
