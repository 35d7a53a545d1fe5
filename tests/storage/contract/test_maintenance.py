"""Maintenance through the protocol: retention by age and by size, the oldest trace, the size on disk."""

from __future__ import annotations

import os
import time

from collector.model import EvaluationRecord, Records
from collector.storage.read import EvaluationQuery, TraceQuery
from tests.helpers import otlp_request, trace_request
from tests.storage.contract.conftest import Backend, run

HOUR_NS = 3600 * 10**9


def stored_traces(backend: Backend) -> set[str]:
    return {t["trace_id"] for t in run(backend.reader().traces(TraceQuery(limit=1000)))["data"]}


def test_age_deletes_exactly_the_traces_whose_last_span_is_older(store: Backend) -> None:
    store.differs_on("postgres", "age is measured in whole days of span start times (docs/postgresql.md, Retention)")
    writer = store.store
    old, mixed, new = os.urandom(16), os.urandom(16), os.urandom(16)
    records = store.records(trace_request(old, [{"span_id": b"\1" * 8}, {"span_id": b"\2" * 8, "parent": b"\1" * 8}]))
    records.evaluations.append(EvaluationRecord(old.hex(), "01" * 8, None, "faithfulness", 0.5, None, None, "log", 1))
    writer.write([records, store.records(trace_request(mixed, [{"span_id": b"\3" * 8}]))])
    time.sleep(0.01)
    between = time.time_ns()
    time.sleep(0.01)
    later = [trace_request(mixed, [{"span_id": b"\4" * 8}]), trace_request(new, [{"span_id": b"\5" * 8}])]
    writer.write([store.records(request) for request in later])
    written = time.time_ns()
    # a week (the default max_age) after ``between``: the old trace is past it, the mixed one got a span since
    week_ns = 7 * 24 * HOUR_NS
    deleted = writer.retain(between + week_ns)
    assert [(d.reason, d.traces, d.spans) for d in deleted if d.traces] == [("age", 1, 2)]
    assert stored_traces(store) == {mixed.hex(), new.hex()}
    spans = run(store.reader().trace_spans([mixed.hex(), old.hex()]))
    assert len(spans[mixed.hex()]) == 2 and old.hex() not in spans
    assert run(store.reader().evaluations(EvaluationQuery()))["data"] == []  # its trace's went with it
    oldest = writer.oldest_trace_ns
    assert oldest is not None and between < oldest <= written
    assert sum(d.traces for d in writer.retain(between + week_ns)) == 0  # nothing more is past the age


def test_age_zero_keeps_everything(store: Backend) -> None:
    writer = store.open("forever", retention={"max_age": 0})
    writer.write([Records(spans=store.records(otlp_request(3)).spans)])
    ten_years_on = time.time_ns() + 10 * 365 * 24 * HOUR_NS
    assert sum(d.traces for d in writer.retain(ten_years_on)) == 0
    assert writer.oldest_trace_ns is not None


def test_size_deletes_the_oldest_traces_whole_and_ends_under_the_bound(store: Backend) -> None:
    store.differs_on("postgres", "size drops whole day partitions, never today's (docs/postgresql.md, Retention)")
    max_size = 2 * 1024 * 1024
    writer = store.open("size", retention={"max_age": 0, "max_size": max_size, "low_water_mark": 0.8})
    traces = []
    for _ in range(120):  # ~6 MiB of spans: three times the bound
        request = otlp_request(10, attributes={"gen_ai.prompt": os.urandom(2500).hex()})
        traces.append(request.resource_spans[0].scope_spans[0].spans[0].trace_id.hex())
        writer.write([store.records(request)])
    assert sum(writer.disk_usage().values()) > 2 * max_size

    steps = 0
    deleted = 0
    while True:
        done = writer.retain()
        deleted += sum(d.traces for d in done if d.reason == "size")
        if not any(d.more for d in done):
            break
        steps += 1
        assert steps < 1000
    assert sum(writer.disk_usage().values()) <= max_size
    assert 0 < deleted < len(traces)
    assert writer.oldest_trace_ns is not None


def test_disk_usage_reports_bytes_by_file(store: Backend) -> None:
    usage = store.store.disk_usage()
    assert usage and all(isinstance(size, int) and size >= 0 for size in usage.values())
    assert sum(usage.values()) > 0
