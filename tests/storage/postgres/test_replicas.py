"""Several replicas on one database: writers of overlapping batches at once, settlers at once."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from collector.config import SnapshotSettings
from collector.maintenance.settle import settle
from collector.model import Records
from collector.otlp import decode_spans
from collector.storage.postgres.connection import connect
from collector.storage.postgres.read import PostgresTraceReader
from collector.storage.postgres.writer import PostgresSpanWriter
from collector.storage.read import BreachQuery
from collector.storage.sqlite.writer import SpanWriter
from tests.helpers import otlp_request
from tests.postgres import Cluster
from tests.storage.postgres.batches import COMPARED, batches, normalized

REPLICAS = 3


@pytest.fixture
def database(postgres_cluster: Cluster) -> Iterator[str]:
    with postgres_cluster.database() as dsn:
        yield dsn


def run_at_once(work: list[Callable[[], Any]]) -> list[Any]:
    """Run each callable on its own thread, started together; their results (an exception raised is raised here)."""
    start = threading.Barrier(len(work))

    def together(job: Callable[[], Any]) -> Any:
        start.wait()
        return job()

    with ThreadPoolExecutor(len(work)) as pool:
        futures = [pool.submit(together, job) for job in work]
        return [future.result(timeout=120) for future in futures]


def deadlocks(dsn: str) -> int:
    """Deadlocks the server detected in this database; call once its other connections are closed (a backend
    reports its counts as it exits)."""
    with connect(dsn) as connection:
        others = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        deadline = time.monotonic() + 10
        while connection.execute(others).fetchone()[0] and time.monotonic() < deadline:
            time.sleep(0.05)
        row = connection.execute("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()").fetchone()
    return int(row[0]) if row else 0


def test_replicas_writing_overlapping_batches_at_once_store_each_span_once_and_sum_it_once(
    database: str, tmp_path: Path
) -> None:
    """Every replica gets every request (a client re-sending to another replica after a timeout), split into
    batches its own way and in its own order: the rows are those of one SQLite writer given each request once,
    each span is new to exactly one replica, and no transaction deadlocks."""
    requests = [request for batch in batches(21, traces=120, base_ns=time.time_ns()) for request in batch]
    reference = SpanWriter(tmp_path / "reference.db")
    for request in requests:
        reference.write([request])
    writers = [PostgresSpanWriter(database) for _ in range(REPLICAS)]

    def replica(index: int) -> Callable[[], list[tuple[str, str]]]:
        def work() -> list[tuple[str, str]]:
            rng = random.Random(index)
            mine = requests[:]
            rng.shuffle(mine)
            stored = []
            while mine:
                size = rng.randint(1, 12)
                batch, mine = mine[:size], mine[size:]
                stored.extend((span.trace_id, span.span_id) for span in writers[index].write(batch).stored)
            return stored

        return work

    stored = run_at_once([replica(index) for index in range(REPLICAS)])
    new_to = Counter(key for replica_stored in stored for key in replica_stored)
    assert set(new_to.values()) == {1}
    assert len(new_to) == reference.connection.execute("SELECT count(*) FROM spans").fetchone()[0]
    with writers[0].pool.connection() as connection:
        for table in ("spans_with_resource", "traces", "events_with_resource", "evaluations", "resources"):
            columns, order = COMPARED[table]
            select = f"SELECT {columns} FROM {table} ORDER BY {order}"
            expected = normalized(columns, reference.connection.execute(select))
            assert normalized(columns, connection.execute(select).fetchall()) == expected, table
    for writer in writers:
        writer.close()
    assert deadlocks(database) == 0


def test_replicas_settling_at_once_settle_each_trace_once_and_find_each_breach_new_once(database: str) -> None:
    writers = [PostgresSpanWriter(database) for _ in range(REPLICAS)]
    for batch in batches(5, traces=300, base_ns=time.time_ns(), split=False):
        writers[0].write(batch)
    settings = SnapshotSettings(
        settle_after="0s",
        max_wait="0s",
        rules=[{"metric": "latency_ms", "above": 0}, {"metric": "error_count", "above": 0}],
    )

    def settler(writer: PostgresSpanWriter) -> Callable[[], list[Any]]:
        def work() -> list[Any]:
            settled = []
            while chunk := settle(writer, settings, limit=20):
                settled.extend(chunk)
            return settled

        return work

    settled = run_at_once([settler(writer) for writer in writers])
    by_trace = Counter(one.figures.trace_id for replica in settled for one in replica)
    with writers[0].pool.connection() as connection:
        traces = connection.execute("SELECT count(*) FROM traces").fetchone()[0]
        breaches = connection.execute("SELECT count(*) FROM metric_snapshots WHERE breached = 1").fetchone()[0]
        unsettled = connection.execute("SELECT count(*) FROM traces WHERE settled_at_unix_nano IS NULL").fetchone()[0]
    assert len(by_trace) == traces == 300 and set(by_trace.values()) == {1} and unsettled == 0
    newly = sum(len(one.newly_breached) for replica in settled for one in replica)
    assert newly == breaches >= 300  # every trace breaches latency; each breach is new once, on one replica
    assert writers[0].oldest_unsettled() is None
    for writer in writers:
        writer.close()


def test_a_breach_committed_after_another_is_read_after_it_whatever_the_replicas_clocks(database: str) -> None:
    """The live feed reads the breaches after the last one it published, by (computed_at, id): a settling that
    commits after another must be stamped after it, even when its replica's clock is behind (or it began first
    and took longer), or the feed would never publish its breaches."""
    writers = [PostgresSpanWriter(database) for _ in range(2)]
    for batch in batches(7, traces=2, base_ns=time.time_ns(), split=False):
        writers[0].write(batch)
    settings = SnapshotSettings(settle_after="0s", max_wait="0s", rules=[{"metric": "latency_ms", "above": 0}])
    now_ns = time.time_ns()
    (ahead,) = settle(writers[0], settings, limit=1, now_ns=now_ns + 3_600 * 10**9)  # a clock an hour ahead
    (behind,) = settle(writers[1], settings, limit=1, now_ns=now_ns)
    reader = PostgresTraceReader(database)
    try:
        published = asyncio.run(reader.breaches(BreachQuery(order="asc", limit=10)))["data"]
        assert [breach["trace_id"] for breach in published] == [ahead.figures.trace_id, behind.figures.trace_id]
        cursor = (published[0]["computed_at_unix_nano"], published[0]["id"])
        later = asyncio.run(reader.breaches(BreachQuery(order="asc", limit=10, after=cursor)))["data"]
        assert [breach["trace_id"] for breach in later] == [behind.figures.trace_id]
    finally:
        reader.close()
        for writer in writers:
            writer.close()


def test_replicas_storing_one_span_with_other_start_times_at_once_keep_one_copy(database: str) -> None:
    """Each replica gets the same spans with a start time of its own (another day's partition for some): the
    copies get past the primary key, and the replica that locks a trace last drops its own."""
    spans = [span for _ in range(60) for span in decode_spans(otlp_request(3))[0]]
    writers = [PostgresSpanWriter(database) for _ in range(REPLICAS)]

    def replica(index: int) -> Callable[[], list[tuple[str, str]]]:
        shift = index * 43_200 * 10**9  # half a day apart
        mine = [s._replace(start_time_unix_nano=s.start_time_unix_nano + shift) for s in spans]
        random.Random(index).shuffle(mine)

        def work() -> list[tuple[str, str]]:
            stored = []
            for start in range(0, len(mine), 7):
                written = writers[index].write([Records(spans=mine[start : start + 7])])
                stored.extend((span.trace_id, span.span_id) for span in written.stored)
            return stored

        return work

    stored = run_at_once([replica(index) for index in range(REPLICAS)])
    new_to = Counter(key for replica_stored in stored for key in replica_stored)
    assert len(new_to) == len(spans) and set(new_to.values()) == {1}
    with writers[0].pool.connection() as connection:
        copies = connection.execute("SELECT trace_id, span_id, count(*) FROM spans GROUP BY 1, 2").fetchall()
        rollups = connection.execute("SELECT span_count, count(*) FROM traces GROUP BY 1").fetchall()
    assert len(copies) == len(spans) and {count for *_, count in copies} == {1}
    assert rollups == [(3, 60)]
    for writer in writers:
        writer.close()
    assert deadlocks(database) == 0


def test_a_trace_being_written_is_not_settled_until_its_writer_commits(database: str) -> None:
    """The settler skips a trace whose row a writer holds (SKIP LOCKED) instead of settling a half-updated rollup."""
    writer = PostgresSpanWriter(database)
    for batch in batches(3, traces=2, base_ns=time.time_ns(), split=False):
        writer.write(batch)
    settings = SnapshotSettings(settle_after="0s", max_wait="0s")
    with connect(database) as other, other.transaction():
        held = other.execute("SELECT trace_id FROM traces ORDER BY trace_id LIMIT 1 FOR UPDATE").fetchone()[0]
        settled = [one.figures.trace_id for one in settle(writer, settings)]
        assert held not in settled and len(settled) == 1
    assert [one.figures.trace_id for one in settle(writer, settings)] == [held]
    writer.close()


def test_replicas_starting_at_once_migrate_once(postgres_cluster: Cluster) -> None:
    with postgres_cluster.database() as dsn:
        writers = run_at_once([lambda: PostgresSpanWriter(dsn) for _ in range(4)])
        with connect(dsn) as connection:
            assert connection.execute("SELECT version FROM schema_migrations").fetchall() == [(1,)]
        for writer in writers:
            writer.write([Records()])
            writer.close()
