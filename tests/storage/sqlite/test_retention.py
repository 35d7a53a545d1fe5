"""Retention on a real database through the writer that owns it: whole traces by age and by size,
rows of no trace, snapshots, resources no longer used, and the pages handed back."""

from __future__ import annotations

import os
import time
from pathlib import Path

from collector.config import RetentionSettings
from collector.model import EvaluationRecord, LogEvent, Records
from collector.otlp import decode_spans
from collector.storage.sqlite.retention import measure
from collector.storage.sqlite.writer import SpanWriter
from tests.helpers import otlp_request, trace_request

HOUR_NS = 3600 * 10**9


def spans_of(request: object) -> Records:
    spans, _ = decode_spans(request)  # type: ignore[arg-type]
    return Records(spans=spans)


def event(trace_id: str | None, resource: dict[str, str]) -> LogEvent:
    return LogEvent(trace_id, None, 1, None, "gen_ai.user.message", "log", None, None, "hi", {}, "svc", None, resource)


def count(writer: SpanWriter, sql: str) -> int:
    return writer.connection.execute(sql).fetchall()[0][0]


def last_span_at(writer: SpanWriter, trace_id: bytes) -> int:
    return count(writer, f"SELECT last_span_at_unix_nano FROM traces WHERE trace_id = '{trace_id.hex()}'")


def test_age_deletes_exactly_the_traces_whose_last_span_is_older(tmp_path: Path) -> None:
    writer = SpanWriter(tmp_path / "age.db", retention=RetentionSettings(max_age="1h"))
    old, mixed, new = os.urandom(16), os.urandom(16), os.urandom(16)
    old_spans = [{"span_id": b"\1" * 8}, {"span_id": b"\2" * 8, "parent": b"\1" * 8}]
    old_request = trace_request(old, old_spans, service="gone")
    records = spans_of(old_request)
    records.events.append(event(old.hex(), {"service.name": "gone"}))
    records.events.append(event(None, {"service.name": "orphan"}))
    records.evaluations.append(EvaluationRecord(old.hex(), "01" * 8, None, "faithfulness", 0.5, None, None, "log", 1))
    writer.write([records, spans_of(trace_request(mixed, [{"span_id": b"\3" * 8}]))])
    time.sleep(0.01)
    later = [trace_request(mixed, [{"span_id": b"\4" * 8}]), trace_request(new, [{"span_id": b"\5" * 8}])]
    writer.write([spans_of(request) for request in later])
    assert count(writer, "SELECT count(*) FROM resources WHERE resource_attributes LIKE '%\"gone\"%'") == 1

    # an hour after the first write: the old trace is past the age, the mixed one got a span since
    now = (last_span_at(writer, old) + last_span_at(writer, mixed)) // 2 + HOUR_NS
    deleted = writer.retention.step(now)
    assert [(d.reason, d.traces, d.spans) for d in deleted if d.traces] == [("age", 1, 2)]
    assert {row[0] for row in writer.connection.execute("SELECT trace_id FROM traces")} == {mixed.hex(), new.hex()}
    assert count(writer, f"SELECT count(*) FROM spans WHERE trace_id = '{mixed.hex()}'") == 2
    assert count(writer, f"SELECT count(*) FROM spans WHERE trace_id = '{old.hex()}'") == 0
    assert count(writer, "SELECT count(*) FROM events") == 0  # its trace's, and the one of no trace
    assert count(writer, "SELECT count(*) FROM evaluations") == 0
    assert count(writer, "SELECT count(*) FROM resources WHERE resource_attributes LIKE '%\"gone\"%'") == 0
    assert count(writer, "SELECT count(*) FROM resources WHERE resource_attributes LIKE '%agent-service%'") == 1
    assert writer.retention.oldest_trace_ns == last_span_at(writer, mixed)

    assert [d.traces for d in writer.retention.step(now)] == [0, 0]  # nothing more is past the age
    writer.close()


def test_age_zero_keeps_everything_and_snapshots_go_by_their_own_age(tmp_path: Path) -> None:
    writer = SpanWriter(tmp_path / "forever.db", retention=RetentionSettings(max_age=0, snapshots_max_age="1d"))
    writer.write([spans_of(otlp_request(3))])
    with writer.connection:
        for index, computed_at in enumerate((time.time_ns() - 2 * 24 * HOUR_NS, time.time_ns())):
            writer.connection.execute(
                "INSERT INTO metric_snapshots (trace_id, metric, value, computed_at) VALUES (?, 'latency_ms', 1, ?)",
                (f"{index:032x}", computed_at),
            )
    assert sum(d.snapshots for d in writer.retention.step(time.time_ns())) == 1
    assert count(writer, "SELECT count(*) FROM metric_snapshots") == 1
    ten_years_on = time.time_ns() + 10 * 365 * 24 * HOUR_NS
    assert sum(d.traces for d in writer.retention.step(ten_years_on)) == 0
    assert count(writer, "SELECT count(*) FROM spans") == 3
    writer.close()


def test_size_deletes_the_oldest_traces_down_to_the_low_water_mark_and_hands_the_pages_back(tmp_path: Path) -> None:
    path = tmp_path / "size.db"
    max_size = 2 * 1024 * 1024
    writer = SpanWriter(path, retention=RetentionSettings(max_age=0, max_size=max_size, low_water_mark=0.8))
    writer.retention.rows_per_transaction = 50
    traces = []
    for _ in range(120):  # ~6 MiB of spans: three times the bound
        request = otlp_request(10, attributes={"gen_ai.prompt": os.urandom(2500).hex()})
        traces.append(request.resource_spans[0].scope_spans[0].spans[0].trace_id.hex())
        writer.write([spans_of(request)])
    assert measure(writer.connection, path).file_bytes > 2 * max_size

    steps = 0
    while any(d.more for d in writer.retention.step(time.time_ns())):
        steps += 1
        assert steps < 1000
    size = measure(writer.connection, path)
    assert size.incremental
    assert size.file_bytes <= max_size
    by_age = "SELECT trace_id FROM traces ORDER BY last_span_at_unix_nano"
    stored = [row[0] for row in writer.connection.execute(by_age)]
    assert stored == traces[-len(stored) :]  # the newest kept, whole
    assert count(writer, "SELECT count(*) FROM spans") == 10 * len(stored)
    assert 0.5 * max_size < size.used_bytes <= 0.8 * max_size
    writer.close()
