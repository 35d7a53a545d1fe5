"""The write side: one transaction per batch, idempotent, and what was new reported back."""

from __future__ import annotations

import re

import pytest

from collector.config import SnapshotSettings
from collector.genai.normalize import normalize
from collector.maintenance.settle import settle
from collector.model import EvaluationRecord, Records, summarize
from collector.otlp import decode_spans
from collector.storage import RowsRefused, StorageError
from collector.storage.read import EvaluationQuery, TraceQuery
from tests.helpers import otlp_request
from tests.storage.contract.conftest import Backend, run

SETTLE_NOW = SnapshotSettings.model_validate({"settle_after": "0s"})


def test_a_committed_batch_is_readable_from_the_readers_own_connections(store: Backend) -> None:
    spans, _ = decode_spans(otlp_request(3, service="billing", attributes={"gen_ai.request.model": "gpt-4o"}))
    assert len(store.store.write([Records(spans=spans)]).stored) == 3
    found = run(store.reader().trace_spans([spans[0].trace_id]))[spans[0].trace_id]
    assert len(found) == 3
    span = found[0]
    assert span["service_name"] == "billing"
    assert span["attributes"] == {"gen_ai.request.model": "gpt-4o"}
    assert span["resource"]["attributes"] == {"service.name": "billing"}
    assert span["end_time_unix_nano"] - span["start_time_unix_nano"] == 1_000_000


def test_a_span_written_twice_is_stored_once(store: Backend) -> None:
    spans, _ = decode_spans(otlp_request(4))
    assert store.store.write([Records(spans=spans)]).stored == summarize(spans)
    assert store.store.write([Records(spans=spans[1:]), Records(spans=spans[:1])]).stored == []
    assert len(run(store.reader().trace_spans([spans[0].trace_id]))[spans[0].trace_id]) == 4
    (summary,) = run(store.reader().trace_summaries([spans[0].trace_id]))
    assert summary["span_count"] == 4


def test_a_span_sent_again_with_another_start_time_is_stored_once_as_first_sent(store: Backend) -> None:
    """A span's ids are its key: sent again with another start time (a day later: another of PostgreSQL's day
    partitions), in a later batch or twice in one, it is stored once, as first sent, and counted once."""
    spans, _ = decode_spans(otlp_request(3))
    day = 86_400 * 10**9
    moved = [
        span._replace(
            start_time_unix_nano=span.start_time_unix_nano + day, end_time_unix_nano=span.end_time_unix_nano + day
        )
        for span in spans
    ]
    assert store.store.write([Records(spans=spans[:2])]).stored == summarize(spans[:2])
    assert store.store.write([Records(spans=[moved[0], spans[2], moved[2]])]).stored == summarize([spans[2]])
    trace_id = spans[0].trace_id
    found = run(store.reader().trace_spans([trace_id]))[trace_id]
    assert sorted((s["span_id"], s["start_time_unix_nano"]) for s in found) == sorted(
        (s.span_id, s.start_time_unix_nano) for s in spans
    )
    (summary,) = run(store.reader().trace_summaries([trace_id]))
    assert summary["span_count"] == 3


def test_the_writer_names_the_spans_that_were_new(store: Backend) -> None:
    """Stored before, or twice in one batch: only the first copy is new (the GenAI metrics count only those)."""
    spans, _ = decode_spans(otlp_request(4))
    store.store.write([Records(spans=spans[:2])])
    written = store.store.write([Records(spans=[spans[1], spans[2]]), Records(spans=[spans[2], spans[3], spans[0]])])
    assert written.stored == summarize([spans[2], spans[3]])


def test_a_retried_span_does_not_unsettle_its_trace(store: Backend) -> None:
    spans, _ = decode_spans(otlp_request(2))
    store.store.write([Records(spans=spans)])
    assert len(settle(store.store, SETTLE_NOW)) == 1
    store.store.write([Records(spans=spans[:1])])
    (summary,) = run(store.reader().trace_summaries([spans[0].trace_id]))
    assert summary["settled"]
    assert store.store.oldest_unsettled() is None
    assert settle(store.store, SETTLE_NOW) == []


def test_an_evaluation_sent_twice_is_stored_once_and_finds_its_span_by_response_id(store: Backend) -> None:
    records = store.records(otlp_request(1, attributes={"gen_ai.response.id": "resp-1"}))
    (span,) = records.spans
    judged = EvaluationRecord(None, None, "resp-1", "relevance", 0.4, None, None, "log", 5)
    store.store.write([Records(evaluations=[judged])])
    store.store.write([records, Records(evaluations=[judged])])
    page = run(store.reader().evaluations(EvaluationQuery(name="relevance")))
    assert [(e["trace_id"], e["span_id"], e["score"]) for e in page["data"]] == [(span.trace_id, span.span_id, 0.4)]


def test_an_evaluation_finds_its_span_by_response_id_after_it_and_in_its_batch(store: Backend) -> None:
    """The span first, its evaluation in a later batch that holds no span; and a span with its evaluation in one
    batch, beside an evaluation that waits for a span not yet sent."""
    (earlier,) = store.records(otlp_request(1, attributes={"gen_ai.response.id": "resp-early"})).spans
    store.store.write([Records(spans=[earlier])])
    late = EvaluationRecord(None, None, "resp-early", "relevance", 0.9, None, None, "log", 5)
    store.store.write([Records(evaluations=[late])])
    records = store.records(otlp_request(1, attributes={"gen_ai.response.id": "resp-same"}))
    (span,) = records.spans
    same = EvaluationRecord(None, None, "resp-same", "relevance", 0.7, None, None, "log", 6)
    waiting = EvaluationRecord(None, None, "resp-never", "relevance", 0.1, None, None, "log", 7)
    store.store.write([records, Records(evaluations=[same, waiting])])
    page = run(store.reader().evaluations(EvaluationQuery(name="relevance")))
    assert [(e["trace_id"], e["span_id"], e["score"]) for e in page["data"]] == [
        (None, None, 0.1),
        (span.trace_id, span.span_id, 0.7),
        (earlier.trace_id, earlier.span_id, 0.9),
    ]


def test_rows_the_store_refuses_are_a_data_error_and_nothing_of_the_batch_is_stored(store: Backend) -> None:
    """Token counts that overflow the rollup's sum (written past the transform): retrying cannot help."""
    huge = normalize({"gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 2**62})
    bad, _ = decode_spans(otlp_request(2))
    good, _ = decode_spans(otlp_request(3))
    with pytest.raises(RowsRefused) as refused:
        store.store.write([Records(spans=[span._replace(genai=huge) for span in bad]), Records(spans=good)])
    assert isinstance(refused.value, StorageError) and not refused.value.retryable
    assert re.search("integer overflow|bigint out of range", str(refused.value))  # SQLite's words, PostgreSQL's
    assert run(store.reader().traces(TraceQuery()))["data"] == []
    # the same store goes on: the request that carried no bad data is stored alone
    assert store.store.write([Records(spans=good)]).stored == summarize(good)
    assert [t["trace_id"] for t in run(store.reader().traces(TraceQuery()))["data"]] == [good[0].trace_id]
