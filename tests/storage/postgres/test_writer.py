"""The PostgreSQL span writer against a real server: the rows SQLite's writer makes, and no double counting."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from collector.config import SnapshotSettings
from collector.maintenance.settle import settle
from collector.model import Records, summarize
from collector.otlp.protobuf import decode_spans
from collector.storage import RowsRefused, StorageError
from collector.storage.postgres.errors import is_data_error, is_retryable
from collector.storage.postgres.writer import PostgresSpanWriter
from collector.storage.sqlite.writer import SpanWriter
from tests.helpers import otlp_request
from tests.postgres import Cluster
from tests.storage.postgres.batches import COMPARED, batches, normalized

SETTINGS = SnapshotSettings(
    settle_after="0s",
    max_wait="0s",
    rules=[
        {"metric": "latency_ms", "above": 5},
        {"metric": "cost_usd", "above": 0.001},
        {"metric": "total_tokens", "above": 2000, "service": "support-agent"},
        {"metric": "error_count", "above": 0},
        {"metric": "ttft_ms", "above": 300},
        {"metric": "eval:faithfulness", "below": 0.5},
    ],
)


@pytest.fixture
def database(postgres_cluster: Cluster) -> Iterator[str]:
    with postgres_cluster.database() as dsn:
        yield dsn


@pytest.fixture
def writer(database: str) -> Iterator[PostgresSpanWriter]:
    writer = PostgresSpanWriter(database)
    yield writer
    writer.close()


def query(writer: PostgresSpanWriter, sql: str, *parameters: Any) -> list[tuple[Any, ...]]:
    with writer.pool.connection() as connection:
        return connection.execute(sql, parameters or None).fetchall()


def test_the_same_batches_give_the_same_rows_as_on_sqlite(writer: PostgresSpanWriter, tmp_path: Path) -> None:
    """Spans, rollups, snapshots, events, evaluations and resources, compared by SQL on both sides."""
    sqlite = SpanWriter(tmp_path / "collector.db")
    base = time.time_ns()
    for batch in batches(7, traces=60, base_ns=base):
        expected = sqlite.write(batch)
        written = writer.write(batch)
        assert written.stored == expected.stored
        assert written.repeated_calls == expected.repeated_calls
    now = base + 3600 * 10**9
    settled = [settle(store, SETTINGS, limit=10_000, now_ns=now) for store in (sqlite, writer)]
    on_sqlite, on_postgres = ({(one.figures.trace_id, len(one.newly_breached)) for one in done} for done in settled)
    assert on_postgres == on_sqlite
    for table, (columns, order) in COMPARED.items():
        select = f"SELECT {columns} FROM {table} ORDER BY {order}"
        on_sqlite = normalized(columns, sqlite.connection.execute(select))
        on_postgres = normalized(columns, query(writer, select))
        assert on_postgres == on_sqlite, table
        assert on_sqlite, f"the batches put nothing in {table}"
    repeated = query(writer, "SELECT count(*) FROM spans WHERE duplicate_of IS NOT NULL")
    breaches = query(writer, "SELECT count(DISTINCT metric) FROM metric_snapshots WHERE breached = 1")
    assert repeated[0][0] > 5 and breaches[0][0] >= 4  # the batches exercise what they are meant to
    sqlite.close()


def test_the_writer_session_compiles_no_query(writer: PostgresSpanWriter) -> None:
    """JIT is on in a default server; the writer turns it off for its own sessions (see ``_prepare``)."""
    with writer.pool.connection() as connection:
        assert connection.execute("SHOW jit").fetchone() == ("off",)
        assert connection.execute("SELECT reset_val FROM pg_settings WHERE name = 'jit'").fetchone() == ("on",)


def test_a_retried_batch_changes_no_rollup_and_stores_nothing(writer: PostgresSpanWriter) -> None:
    all_batches = batches(11, traces=20, base_ns=time.time_ns())
    for batch in all_batches:
        writer.write(batch)
    rollups = query(writer, "SELECT * FROM traces ORDER BY trace_id")
    counts = query(writer, "SELECT (SELECT count(*) FROM spans), (SELECT count(*) FROM events)")
    for batch in all_batches:  # every request sent again, in other batches
        assert writer.write(batch[::-1]).stored == []
    assert query(writer, "SELECT * FROM traces ORDER BY trace_id") == rollups
    assert query(writer, "SELECT (SELECT count(*) FROM spans), (SELECT count(*) FROM events)") == counts


def test_the_writer_names_the_spans_that_were_new(writer: PostgresSpanWriter) -> None:
    """Stored before, or twice in one batch: only the first copy is new (as on SQLite)."""
    spans, _ = decode_spans(otlp_request(4))
    writer.write([Records(spans=spans[:2])])
    written = writer.write([Records(spans=[spans[1], spans[2]]), Records(spans=[spans[2], spans[3], spans[0]])])
    assert written.stored == summarize([spans[2], spans[3]])
    assert query(writer, "SELECT span_count FROM traces") == [(4,)]


def test_a_retried_span_does_not_unsettle_its_trace(writer: PostgresSpanWriter) -> None:
    spans, _ = decode_spans(otlp_request(2))
    writer.write([Records(spans=spans)])
    query(writer, "UPDATE traces SET settled_at_unix_nano = 1 RETURNING 1")
    writer.write([Records(spans=spans[:1])])
    assert query(writer, "SELECT settled_at_unix_nano FROM traces") == [(1,)]
    assert writer.oldest_unsettled() is None


def test_settling_through_the_writer_records_breaches_once(writer: PostgresSpanWriter) -> None:
    spans, _ = decode_spans(otlp_request(3))
    writer.write([Records(spans=spans)])
    settings = SnapshotSettings(settle_after="0s", max_wait="0s", rules=[{"metric": "latency_ms", "above": 0}])
    first = settle(writer, settings)
    assert [len(settled.newly_breached) for settled in first] == [1]
    query(writer, "UPDATE traces SET settled_at_unix_nano = NULL RETURNING 1")
    again = settle(writer, settings)
    assert [len(settled.newly_breached) for settled in again] == [0]  # recomputed in place, not new
    assert query(writer, "SELECT count(*) FROM metric_snapshots WHERE breached = 1") == [(1,)]


def test_a_nul_character_is_stored_as_a_replacement_character(writer: PostgresSpanWriter) -> None:
    """PostgreSQL stores no NUL (in text or jsonb): the span is kept, its NUL replaced, not refused."""
    spans, _ = decode_spans(otlp_request(1, attributes={"tool.output": "a\x00b"}))
    spans = [spans[0]._replace(name="name\x00")]
    assert writer.write([Records(spans=spans)]).stored == summarize(spans)
    assert query(writer, "SELECT name, attributes ->> 'tool.output' FROM spans") == [("name\ufffd", "a\ufffdb")]


def test_a_request_with_data_the_database_refuses_fails_alone(writer: PostgresSpanWriter) -> None:
    """As the pipeline isolates a batch refused for its data: the batch fails whole (nothing of it is stored),
    then each request alone: the good ones are stored, the bad one is refused as a data error."""
    good_1, _ = decode_spans(otlp_request(2))
    good_2, _ = decode_spans(otlp_request(2))
    bad, _ = decode_spans(otlp_request(1))
    bad = [bad[0]._replace(dropped_attributes_count=2**63)]  # past bigint, as past SQLite's INTEGER
    batch = [Records(spans=good_1), Records(spans=bad), Records(spans=good_2)]
    with pytest.raises(RowsRefused) as refused:
        writer.write(batch)
    assert is_data_error(refused.value.__cause__)
    assert query(writer, "SELECT count(*) FROM spans") == [(0,)]
    outcomes = []
    for request in batch:
        try:
            outcomes.append(len(writer.write([request]).stored))
        except StorageError as failure:
            outcomes.append("data" if isinstance(failure, RowsRefused) else "other")
    assert outcomes == [2, "data", 2]
    assert query(writer, "SELECT count(*), sum(span_count) FROM (SELECT * FROM traces) t")[0][0] == 2


def test_a_name_too_long_for_an_index_refuses_its_request_as_data(writer: PostgresSpanWriter) -> None:
    """A btree index row holds at most ~2.7 kB: a service name past that is refused (not retried for ever);
    SQLite stores it (docs/postgresql.md)."""
    spans, _ = decode_spans(otlp_request(1, service=os.urandom(3000).hex()))  # incompressible
    with pytest.raises(RowsRefused) as refused:
        writer.write([Records(spans=spans)])
    assert refused.value.kind == "54000" and not is_retryable(refused.value.__cause__)
