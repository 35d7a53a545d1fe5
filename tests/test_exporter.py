"""The in-process exporters: the OpenTelemetry SDK storing into the collector's SQLite file without a daemon,
exactly what the daemon would store."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import apsw
import httpx
import pytest
from opentelemetry._logs import LogRecord
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import (
    InMemoryLogRecordExporter,
    LogRecordExportResult,
    SimpleLogRecordProcessor,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanKind, set_span_in_context

from collector.config import ConfigError
from collector.demo.runner import Demo, otlp_http_exporters
from collector.exporter import SQLiteLogRecordExporter, SQLiteSpanExporter
from tests.helpers import fill_disk, otlp_request, query_db, wait_until, write_lock_held

QUESTION = '[{"role": "user", "parts": [{"type": "text", "content": "Refund me at ana@example.com"}]}]'
EVALUATION = {
    "gen_ai.evaluation.name": "relevance",
    "gen_ai.evaluation.score.value": 0.42,
    "gen_ai.evaluation.score.label": "irrelevant",
}
QUICK_SETTLING = {"settle_after": "0s", "interval": "50ms"}


def agent_spans(prompt: str = QUESTION) -> list[ReadableSpan]:
    """An agent trace as the SDK hands it to an exporter: a root and an LLM call with tokens and a prompt."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "refund-bot"}), shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("refunds")
    with (
        tracer.start_as_current_span("invoke_agent refunds", attributes={"gen_ai.operation.name": "invoke_agent"}),
        tracer.start_as_current_span("chat gpt-4o", kind=SpanKind.CLIENT) as llm,
    ):
        llm.set_attributes(
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "gpt-4o",
                "gen_ai.usage.input_tokens": 1000,
                "gen_ai.usage.output_tokens": 100,
                "gen_ai.input.messages": prompt,
            }
        )
    provider.shutdown()
    return list(memory.get_finished_spans())


def evaluation_records(span: ReadableSpan) -> list[Any]:
    """A gen_ai.evaluation.result log record about ``span``, as the SDK hands it to a log exporter."""
    memory = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=Resource.create({"service.name": "refund-bot"}), shutdown_on_exit=False)
    provider.add_log_record_processor(SimpleLogRecordProcessor(memory))
    provider.get_logger("evals").emit(
        LogRecord(
            event_name="gen_ai.evaluation.result",
            attributes=EVALUATION,
            context=set_span_in_context(NonRecordingSpan(span.get_span_context())),
        )
    )
    provider.shutdown()
    return list(memory.get_finished_logs())


def test_export_succeeds_once_the_spans_are_committed_with_the_daemons_columns(tmp_path: Path) -> None:
    db = tmp_path / "data" / "collector.db"  # the directory is created, as the daemon does
    exporter = SQLiteSpanExporter(db)
    spans = agent_spans()

    assert exporter.export(spans) == SpanExportResult.SUCCESS
    rows = query_db(  # at once, on another connection: committed, not merely queued
        db, "SELECT name, service_name, category, provider, input_tokens, cost_usd, attributes FROM spans ORDER BY name"
    )
    assert [row[:5] for row in rows] == [
        ("chat gpt-4o", "refund-bot", "llm", "openai", 1000),
        ("invoke_agent refunds", "refund-bot", "agent", None, None),
    ]
    assert rows[0][5] == pytest.approx((1000 * 2.5 + 100 * 10.0) / 1e6)
    prompt = json.loads(json.loads(rows[0][6])["gen_ai.input.messages"])
    assert prompt[0]["parts"][0]["content"] == "Refund me at [REDACTED:email]"
    assert query_db(db, "SELECT span_count, llm_calls, has_root FROM traces") == [(2, 1, 1)]
    exporter.shutdown()


def test_log_exporter_stores_genai_events_and_evaluations(tmp_path: Path) -> None:
    db = tmp_path / "collector.db"
    spans = agent_spans()
    chat = next(span for span in spans if span.name.startswith("chat"))
    span_exporter, log_exporter = SQLiteSpanExporter(db), SQLiteLogRecordExporter(db)

    assert span_exporter.export(spans) == SpanExportResult.SUCCESS
    assert log_exporter.export(evaluation_records(chat)) == LogRecordExportResult.SUCCESS
    assert query_db(db, "SELECT name, score, label, source, span_id FROM evaluations") == [
        ("relevance", 0.42, "irrelevant", "log", f"{chat.get_span_context().span_id:016x}")
    ]
    assert query_db(db, "SELECT name, source FROM events") == [("gen_ai.evaluation.result", "log")]
    span_exporter.shutdown()
    log_exporter.shutdown()


def test_export_fails_when_the_database_stays_locked_and_succeeds_after(tmp_path: Path) -> None:
    db = tmp_path / "collector.db"
    exporter = SQLiteSpanExporter(db, busy_timeout="100ms")
    spans = agent_spans()
    with write_lock_held(db):
        started = time.monotonic()
        assert exporter.export(spans) == SpanExportResult.FAILURE
        assert time.monotonic() - started < 5  # the busy timeout, not forever
    assert query_db(db, "SELECT count(*) FROM spans") == [(0,)]
    assert exporter.export(spans) == SpanExportResult.SUCCESS
    assert query_db(db, "SELECT count(*) FROM spans") == [(2,)]
    exporter.shutdown()


def test_export_fails_on_a_full_disk_and_succeeds_once_there_is_room(small_disk: Path) -> None:
    exporter = SQLiteSpanExporter(small_disk / "collector.db")
    filler = fill_disk(small_disk)
    big = agent_spans(prompt="x" * 200_000)
    assert exporter.export(big) == SpanExportResult.FAILURE
    filler.unlink()
    assert exporter.export(big) == SpanExportResult.SUCCESS
    exporter.shutdown()


def test_shutdown_is_idempotent_and_later_exports_fail(tmp_path: Path) -> None:
    db = tmp_path / "collector.db"
    span_exporter, log_exporter = SQLiteSpanExporter(db), SQLiteLogRecordExporter(db)
    spans = agent_spans()
    records = evaluation_records(spans[0])
    assert span_exporter.force_flush(1_000) is True
    for _ in range(2):
        span_exporter.shutdown()
        log_exporter.shutdown()
    assert span_exporter.export(spans) == SpanExportResult.FAILURE
    assert log_exporter.export(records) == LogRecordExportResult.FAILURE
    assert span_exporter.force_flush() is True and log_exporter.force_flush() is True
    assert query_db(db, "SELECT count(*) FROM spans") == [(0,)]


def test_settings_come_from_the_config_file_then_keywords(tmp_path: Path) -> None:
    config = tmp_path / "collector.yaml"
    config.write_text("redaction: {detectors: {email: 'off'}}\nsnapshots: {rules: [{metric: cost_usd, above: 1}]}\n")
    db = tmp_path / "collector.db"
    rules = [{"metric": "latency_ms", "above": 0}]
    exporter = SQLiteSpanExporter(db, config=config, snapshots={**QUICK_SETTLING, "rules": rules})
    assert exporter.export(agent_spans()) == SpanExportResult.SUCCESS
    assert exporter.force_flush()
    (attributes,) = query_db(db, "SELECT attributes FROM spans WHERE category = 'llm'")[0]
    assert "ana@example.com" in attributes  # the file turned the e-mail detector off
    # the keyword replaced the file's snapshots section: its latency rule applies, the file's cost rule does not
    assert query_db(db, "SELECT metric, breached, rule FROM metric_snapshots ORDER BY metric") == [
        ("cost_usd", 0, None),
        ("latency_ms", 1, "latency_ms > 0"),
    ]
    exporter.shutdown()

    with pytest.raises(ConfigError, match="queue_capacity"):
        SQLiteSpanExporter(db, queue_capacity=0)
    with pytest.raises(ConfigError, match="snapshot"):
        SQLiteSpanExporter(db, snapshot={})
    with pytest.raises(ConfigError, match="busy_timeout"):
        SQLiteSpanExporter(db, busy_timeout="soon")
    (tmp_path / "a-file").write_text("")
    with pytest.raises(ConfigError, match="db: cannot open"):
        SQLiteSpanExporter(tmp_path / "a-file" / "collector.db")


def test_a_trace_the_exporter_settled_is_not_settled_again_by_a_daemon(tmp_path: Path, start_collector: Any) -> None:
    db = tmp_path / "collector.db"
    exporter = SQLiteSpanExporter(db, snapshots=QUICK_SETTLING)
    spans = agent_spans()
    trace_id = f"{spans[0].get_span_context().trace_id:032x}"
    assert exporter.export(spans) == SpanExportResult.SUCCESS
    assert exporter.force_flush()
    settled = query_db(db, "SELECT settled_at_unix_nano FROM traces WHERE trace_id = ?", trace_id)
    snapshots_sql = "SELECT metric, computed_at FROM metric_snapshots WHERE trace_id = ? ORDER BY metric"
    snapshots = query_db(db, snapshots_sql, trace_id)
    assert settled[0][0] is not None and len(snapshots) == 2
    exporter.shutdown()

    daemon = start_collector(db=db, snapshots=QUICK_SETTLING)
    marker = otlp_request(1)  # a trace of the daemon's own: once it is settled, the daemon has looked
    assert (
        httpx.post(
            daemon.http_url + "/v1/traces",
            content=marker.SerializeToString(),
            headers={"content-type": "application/x-protobuf"},
        ).status_code
        == 200
    )
    wait_until(lambda: query_db(db, "SELECT count(*) FROM traces WHERE settled_at_unix_nano IS NULL") == [(0,)], 10)
    assert query_db(db, "SELECT settled_at_unix_nano FROM traces WHERE trace_id = ?", trace_id) == settled
    assert query_db(db, snapshots_sql, trace_id) == snapshots


def test_exporter_and_daemon_write_one_file_at_once(tmp_path: Path, start_collector: Any) -> None:
    """Both take turns on SQLite's write lock: every export succeeds, every span is stored, and every
    trace is settled once although both settle every 20 ms."""
    settling = {"settle_after": "0s", "interval": "20ms"}
    daemon = start_collector(snapshots=settling)
    db = daemon.settings.db
    span_exporters = [SQLiteSpanExporter(db, snapshots=settling) for _ in range(2)]
    daemon_exporter = otlp_http_exporters(daemon.http_url)[0]
    results: list[Any] = []
    sent: list[str] = []

    def send(exporter: Any) -> None:
        for _ in range(25):
            spans = agent_spans()
            sent.append(f"{spans[0].get_span_context().trace_id:032x}")
            results.append(exporter.export(spans))

    threads = [threading.Thread(target=send, args=(exporter,)) for exporter in [*span_exporters, daemon_exporter]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert results == [SpanExportResult.SUCCESS] * 75
    for exporter in span_exporters:
        exporter.shutdown()
    daemon_exporter.shutdown()
    assert query_db(db, "SELECT count(*) FROM spans") == [(150,)]
    settled = "SELECT count(*) FROM traces WHERE settled_at_unix_nano IS NOT NULL"
    wait_until(lambda: query_db(db, settled) == [(75,)], 10, "every trace to settle")
    assert query_db(db, "SELECT count(*), count(DISTINCT trace_id) FROM metric_snapshots") == [(150, 75)]
    assert {row[0] for row in query_db(db, "SELECT trace_id FROM traces")} == set(sent)


# Stamped when a row is received or settled, or numbered by insertion order: everything else must be equal.
RECEIVE_TIME_COLUMNS = {
    "spans": {"received_at_unix_nano"},
    "traces": {"first_span_at_unix_nano", "last_span_at_unix_nano", "settled_at_unix_nano"},
    "events": {"id", "received_at_unix_nano"},
    "evaluations": {"id", "received_at_unix_nano"},
    "metric_snapshots": {"id", "computed_at"},
    "resources": {"id"},  # numbered in arrival order; the hash says what a resource is
    "latency_series": {"id"},  # numbered in arrival order too; the key says what a series is
    "latency_histograms": {"changed"},  # a tick per change: how many depends on how spans were batched
    "latency_clock": {"tick"},
}
# Columns that point at a row numbered in arrival order, and what they are compared by instead; JSONB objects by
# their content (their keys are in the order the values came).
COMPARED_BY = {
    "resource_id": "(SELECT hash FROM resources WHERE resources.id = resource_id)",
    "series_id": "(SELECT key FROM latency_series WHERE latency_series.id = series_id)",
    "bins": "(SELECT json_group_object(key, value) FROM (SELECT key, value FROM json_each(bins) ORDER BY key))",
}


def table_rows(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, without the receive-time columns, in a stable order."""
    connection = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        tables = [name for (name,) in connection.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")]
        rows = {}
        for table in tables:
            skipped = RECEIVE_TIME_COLUMNS.get(table, set())
            columns = [column[1] for column in connection.execute(f"PRAGMA table_info({table})")]
            kept = ", ".join(COMPARED_BY.get(column, column) for column in columns if column not in skipped)
            if not kept:  # latency_clock: nothing to compare
                continue
            rows[table] = sorted(connection.execute(f"SELECT {kept} FROM {table}"), key=repr)
        return rows
    finally:
        connection.close()


def test_the_exporter_stores_the_same_rows_as_the_daemon(tmp_path: Path, start_collector: Any) -> None:
    """The demo's agents (every span shape, errors, GenAI events, evaluations, breaches) sent by one SDK
    both to a daemon over OTLP/HTTP and to the in-process exporters."""
    options: dict[str, Any] = {
        "snapshots": {
            "settle_after": "3s",  # everything is flushed by then: no trace settles before its evaluation
            "interval": "100ms",
            "rules": [
                {"metric": "latency_ms", "above": 20_000},
                {"metric": "cost_usd", "above": 0.1},
                {"metric": "ttft_ms", "above": 3_000},
                {"metric": "eval:relevance", "below": 0.7},
            ],
        },
        "limits": {"max_attribute_length": 512},
    }
    daemon = start_collector(**options)
    exported = tmp_path / "exported.db"
    demo = Demo(
        [
            lambda: otlp_http_exporters(daemon.http_url),
            lambda: (SQLiteSpanExporter(exported, **options), SQLiteLogRecordExporter(exported, **options)),
        ],
        rate=1.0,
        seed=7,
        pace=False,
    )
    counts = demo.run(duration=40)
    assert counts.traces >= 20 and counts.evaluations >= 15

    def all_settled(db: Path) -> bool:
        return query_db(db, "SELECT count(*), count(settled_at_unix_nano) FROM traces") == [(counts.traces,) * 2]

    wait_until(lambda: all_settled(daemon.settings.db), 30, "the daemon to settle every trace")
    exporter = SQLiteSpanExporter(exported, **options)  # a later run of the app settles what was left
    wait_until(lambda: all_settled(exported), 30, "the exporter to settle every trace")
    exporter.shutdown()

    by_daemon, by_exporter = table_rows(daemon.settings.db), table_rows(exported)
    assert set(by_daemon) == set(by_exporter)
    assert {"spans", "traces", "events", "evaluations", "metric_snapshots"} <= set(by_daemon)
    for table, rows in by_daemon.items():
        assert rows == by_exporter[table], f"{table} differs"
    assert len(by_daemon["spans"]) == counts.spans
    assert len(by_daemon["evaluations"]) == counts.evaluations
    assert query_db(exported, "SELECT count(*) FROM metric_snapshots WHERE breached") != [(0,)]
