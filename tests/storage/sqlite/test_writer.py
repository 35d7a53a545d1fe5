"""The SQLite writer's rows: JSON columns, the spans_with_resource view, resources stored once (idempotency,
what was new and the rest of the write contract: tests/storage/contract)."""

from __future__ import annotations

import json
from pathlib import Path

from collector.model import Records, summarize
from collector.otlp import decode_spans
from collector.storage.sqlite.writer import SpanWriter
from tests.helpers import otlp_request


def test_batch_is_committed_and_readable_from_another_connection(tmp_path: Path) -> None:
    writer = SpanWriter(tmp_path / "spans.db")
    spans, _ = decode_spans(otlp_request(3, service="billing", attributes={"gen_ai.request.model": "gpt-4o"}))
    assert len(writer.write([Records(spans=spans)]).stored) == 3
    reader = SpanWriter(tmp_path / "spans.db").connection
    rows = list(
        reader.execute("SELECT service_name, attributes, resource_attributes, duration_ns FROM spans_with_resource")
    )
    assert len(rows) == 3
    service, attributes, resource, duration = rows[0]
    assert service == "billing"
    assert json.loads(attributes) == {"gen_ai.request.model": "gpt-4o"}
    assert json.loads(resource) == {"service.name": "billing"}
    assert duration == 1_000_000


def test_a_resource_is_stored_once_for_its_spans_and_evaluations_across_batches(tmp_path: Path) -> None:
    from collector.config import Settings
    from collector.genai.transform import Transform

    writer = SpanWriter(tmp_path / "spans.db")
    transform = Transform(Settings())
    evaluation = {"evaluations.0.evaluation.name": "relevance", "evaluations.0.evaluation.score": 0.4}
    for _ in range(3):  # three requests from one process: the same resource each time
        spans, _ = decode_spans(otlp_request(5, service="billing", attributes=evaluation))
        records, _ = transform.spans(spans)
        writer.write([records])
    connection = writer.connection
    assert connection.execute("SELECT count(*) FROM resources").fetchall() == [(1,)]
    assert connection.execute("SELECT count(DISTINCT resource_id), count(*) FROM spans").fetchall() == [(1, 15)]
    assert connection.execute(
        "SELECT count(*) FROM evaluations e JOIN spans s USING (trace_id, span_id) WHERE e.resource_id = s.resource_id"
    ).fetchall() == [(15,)]
    assert connection.execute("SELECT DISTINCT scope_name FROM spans_with_resource").fetchall() == [("tests",)]


def test_the_span_columns_derived_from_the_records_are_the_schemas(tmp_path: Path) -> None:
    """The insert's columns come from ``Span`` and ``GenAI``; the SQL contract must not move with them."""
    from collector.storage.sqlite.writer import SPAN_COLUMNS

    connection = SpanWriter(tmp_path / "spans.db").connection
    schema = [row[1] for row in connection.execute("PRAGMA table_info(spans)")]
    assert sorted(SPAN_COLUMNS) == sorted(set(schema) - {"duplicate_of"})
    assert len(SPAN_COLUMNS) == len(set(SPAN_COLUMNS))


def test_rows_prepared_on_another_thread_are_stored_as_rows_encoded_by_the_writer(tmp_path: Path) -> None:
    """``SpanWriter.prepare`` (what the ingest threads call) changes nothing of what is stored: the bench corpus
    (four conventions, several resources per request, events, errors) written prepared and not prepared, in
    batches of several requests, gives the same rows and resources and names the same spans stored, and a
    prepared batch survives pickling without its spans (what an ingest worker hands the main process)."""
    import pickle

    from bench.redaction import corpus_spans
    from collector.config import Settings
    from collector.genai.transform import Transform

    spans = corpus_spans(4, 50)
    transform = Transform(Settings())
    requests = [transform.spans(spans[start : start + 50])[0] for start in range(0, len(spans), 50)]
    prepared = [
        pickle.loads(pickle.dumps(SpanWriter.prepare(Records(spans=records.spans)).without_spans()))
        for records in requests
    ]
    assert all(records.prepared is not None and not records.spans for records in prepared)
    assert [records.count for records in prepared] == [len(records.spans) for records in requests]
    stored = []
    for name, batch in (("plain", [Records(spans=records.spans) for records in requests]), ("prepared", prepared)):
        writer = SpanWriter(tmp_path / f"{name}.db")
        written = writer.write(batch[:2]).stored + writer.write(batch[2:]).stored
        assert written == summarize([span for records in requests for span in records.spans])
        columns = [row[1] for row in writer.connection.execute("PRAGMA table_info(spans_with_resource)")]
        kept = [column for column in columns if column not in ("received_at_unix_nano", "resource_id")]
        stored.append(
            (
                writer.connection.execute(
                    f"SELECT {', '.join(kept)} FROM spans_with_resource ORDER BY span_id"
                ).fetchall(),
                writer.connection.execute("SELECT * FROM resources ORDER BY id").fetchall(),
            )
        )
    assert stored[0] == stored[1]
    assert len(stored[0][0]) == len(spans) and len(stored[0][1]) > 1


def test_a_batch_bigger_than_a_statement_stores_each_span_once_in_order(tmp_path: Path) -> None:
    """``insert_rows`` splits a batch into statements of fixed sizes (128, 64, ... rows): copies of a span
    across those statements, inside one of them and from an earlier batch are stored once, the first copy in
    the batch's order, and the write names exactly the spans it stored. Every statement size stays small enough
    for apsw to cache its preparation."""
    from collector.storage.sqlite.writer import MOST_ROWS, insert_spans_statement

    writer = SpanWriter(tmp_path / "spans.db")
    earlier, _ = decode_spans(otlp_request(20, service="earlier"))
    assert len(writer.write([Records(spans=earlier)]).stored) == 20
    first, _ = decode_spans(otlp_request(150, service="first"))
    second, _ = decode_spans(otlp_request(93, service="second"))
    requests = [first, [*second[:50], first[3], first[140], *earlier[:5], second[0], *second[50:]]]
    written = writer.write([Records(spans=spans) for spans in requests])
    assert written.stored == summarize([*first, *second])
    stored = writer.connection.execute(
        "SELECT span_id, resource_attributes ->> 'service.name' FROM spans"
        " JOIN resources ON resources.id = spans.resource_id ORDER BY spans.rowid"
    ).fetchall()
    assert stored == [(span.span_id, span.service_name) for span in (*earlier, *first, *second)]
    assert writer.connection.execute("SELECT count(DISTINCT received_at_unix_nano) FROM spans").fetchall() == [(2,)]
    assert all(
        len(insert_spans_statement(1 << power).encode()) <= writer.connection.cache_stats()["max_cacheable_bytes"]
        for power in range(MOST_ROWS.bit_length())
    )


def test_the_wal_is_checkpointed_at_half_its_bound_not_at_sqlites_thousand_pages(tmp_path: Path) -> None:
    """A batch writes about a page per span; checkpointing every 1,000 pages rewrote the hot pages and fsynced
    the database file every other batch (connection.bound_wal)."""
    import apsw

    from collector.storage.sqlite.connection import WAL_SIZE_LIMIT

    writer = SpanWriter(tmp_path / "spans.db")
    for _ in range(6):  # 6 transactions of ~500 pages each: 3,000 pages, each transaction under 1,000
        spans, _ = decode_spans(otlp_request(500, attributes={"gen_ai.prompt": "a long prompt " * 250}))
        writer.write([Records(spans=spans)])
    in_wal, _ = writer.connection.wal_checkpoint(mode=apsw.SQLITE_CHECKPOINT_PASSIVE)
    assert in_wal > 2_000
    assert writer.connection.pragma("wal_autocheckpoint") == WAL_SIZE_LIMIT // 4096 // 2


def test_the_writer_keeps_its_statement_journals_and_a_batchs_pages_in_memory_and_vacuum_does_not(
    tmp_path: Path,
) -> None:
    """The multi-row insert's statement journal spilled ~10 KB a span into a temporary file, and a batch's pages
    did not fit in the default page cache; ``VACUUM``, on a connection of its own, must still build its copy of
    the database on disk."""
    from collector.storage.sqlite.connection import open_connection
    from collector.storage.sqlite.writer import WRITER_CACHE_KIB

    connection = SpanWriter(tmp_path / "spans.db").connection
    assert connection.pragma("temp_store") == 2  # MEMORY
    assert connection.pragma("cache_size") == -WRITER_CACHE_KIB
    other = open_connection(tmp_path / "spans.db")
    assert other.pragma("temp_store") == 0  # the default: files
    assert other.pragma("cache_size") == -2000  # SQLite's default
