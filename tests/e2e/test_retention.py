"""Retention in a running collector while clients keep sending: by age, by size, and its metrics.

Real servers on port 0, real OTLP/HTTP and gRPC clients, the database read on a connection of its own.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from tests.helpers import load, metric_value, scrape, trace_request, wait_until

PROTOBUF = {"content-type": "application/x-protobuf"}


def post(running: Any, request: Any) -> None:
    answer = httpx.post(running.http_url + "/v1/traces", content=request.SerializeToString(), headers=PROTOBUF)
    assert answer.status_code == 200, answer.text


def file_bytes(db: Path) -> int:
    return sum(os.stat(f"{db}{suffix}").st_size if os.path.exists(f"{db}{suffix}") else 0 for suffix in ("", "-wal"))


def stored_traces(running: Any) -> dict[str, int]:
    return dict(running.query("SELECT trace_id, count(*) FROM spans GROUP BY trace_id"))


def test_age_deletes_exactly_the_traces_past_the_age_while_ingest_continues(start_collector: Any) -> None:
    max_age = 4.0
    running = start_collector(retention={"max_age": f"{max_age}s", "interval": "100ms"})
    old, mixed = os.urandom(16), os.urandom(16)
    post(running, trace_request(old, [{"span_id": b"\1" * 8}, {"span_id": b"\2" * 8, "parent": b"\1" * 8}]))
    post(running, trace_request(mixed, [{"span_id": b"\3" * 8}]))
    with load(running, per_transport=1) as clients:
        time.sleep(2.5)
        post(running, trace_request(mixed, [{"span_id": b"\4" * 8, "parent": b"\3" * 8}]))  # one new span
        wait_until(lambda: old.hex() not in stored_traces(running), 15, "the old trace to be deleted")
        assert stored_traces(running)[mixed.hex()] == 2  # one old span and one new: the trace stays, whole
        time.sleep(2.0)
        before = time.time()
        traces = stored_traces(running)
        after = time.time()
    assert old.hex() not in traces
    assert running.query("SELECT count(*) FROM traces WHERE trace_id = ?", old.hex()) == [(0,)]

    checked = 0
    for client in clients:
        for trace_id, acknowledged_at in client.acknowledged_traces:
            if before > acknowledged_at > after - max_age + 0.5:  # younger than the age: kept, whole
                assert traces.get(trace_id) == client.spans_per_request, trace_id
                checked += 1
            elif acknowledged_at < before - max_age - 1.5:  # older by more than a retention pass: gone
                assert trace_id not in traces, trace_id
                checked += 1
    assert checked > 10
    metrics = scrape(running)
    assert metric_value(metrics, "genai_collector_retention_deleted_traces_total", reason="age") >= 1
    assert metric_value(metrics, "genai_collector_retention_deleted_spans_total", reason="age") >= 2
    assert 0 < metric_value(metrics, "genai_collector_retention_oldest_trace_age_seconds") <= max_age + 1.5
    assert metric_value(metrics, "genai_collector_retention_max_size_bytes") == 0  # no bound, no gauge


def test_size_keeps_the_files_under_max_size_during_ingest_several_times_larger(start_collector: Any) -> None:
    max_size = 16 * 1024 * 1024
    retention = {"max_size": max_size, "low_water_mark": 0.8, "max_age": 0, "interval": "50ms"}
    running = start_collector(retention=retention, batch_size=100)
    db = running.settings.db
    samples: list[int] = []
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.is_set():
            samples.append(file_bytes(db))
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    prompt = {"gen_ai.prompt": os.urandom(1500).hex()}  # 3 KB that does not compress: ~4 KB per span stored
    with load(running, per_transport=2, attributes=prompt) as clients:
        wait_until(
            lambda: sum(len(c.acknowledged) for c in clients) * 4000 > 5 * max_size, 180, "5x max_size acknowledged"
        )
    sampling.set()
    sampler.join()

    assert max(samples) <= max_size, f"peak {max(samples)} bytes for a bound of {max_size}"
    wait_until(lambda: file_bytes(db) <= max_size, 10, "the files back under max_size")
    metrics = scrape(running)
    assert metric_value(metrics, "genai_collector_retention_deleted_traces_total", reason="size") > 0
    assert metric_value(metrics, "genai_collector_retention_reclaimed_bytes_total") > 0
    assert metric_value(metrics, "genai_collector_retention_max_size_bytes") == max_size
    assert metric_value(metrics, "genai_collector_retention_deleted_traces_total", reason="age") == 0

    # Nothing acknowledged after the latest deletion is lost: what each client still finds is the
    # latest part of what it sent, every trace whole.
    traces = stored_traces(running)
    for client in clients:
        order = [trace_id for trace_id, _ in client.acknowledged_traces]
        kept = [trace_id in traces for trace_id in order]
        assert any(kept), client.name
        first = kept.index(True)
        assert all(kept[first:]), f"{client.name}: a trace acknowledged after a kept one is missing"
        assert all(traces[trace_id] == client.spans_per_request for trace_id in order[first:])
