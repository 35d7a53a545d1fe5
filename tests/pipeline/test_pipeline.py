"""Back-pressure and write failures, through real clients against a real collector.

The writer is slowed the way it is in production: another connection holds SQLite's write lock.
The disk fills for real: the database lives on a small tmpfs (needs root to mount; skipped otherwise).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.rpc import code_pb2, error_details_pb2, status_pb2
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from collector.genai.normalize import normalize
from collector.model import Records
from collector.observability.metrics import CollectorMetrics
from collector.otlp import decode_spans
from collector.pipeline import InvalidData, Pipeline
from collector.storage.sqlite.writer import SpanWriter
from tests.helpers import fill_disk, metric_value, otlp_request, scrape, wait_until, write_lock_held

PROTOBUF = {"content-type": "application/x-protobuf"}


def finished_spans(count: int) -> list[ReadableSpan]:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "pressure"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("test")
    for index in range(count):
        with tracer.start_as_current_span(f"chat {index}") as span:
            span.set_attribute("gen_ai.request.model", "gpt-4o-mini")
    return list(memory.get_finished_spans())


@pytest.mark.usefixtures("ingest_workers")
def test_full_queue_answers_503_with_retry_after_and_unavailable_with_retry_info(start_collector: Any) -> None:
    running = start_collector(queue_capacity=10, batch_size=10, retry_after="2s")
    with write_lock_held(running.settings.db):
        # The first request fills the queue and waits for a commit the lock holds back.
        waiting = threading.Thread(
            target=httpx.post,
            args=(running.http_url + "/v1/traces",),
            kwargs={"content": otlp_request(10).SerializeToString(), "headers": PROTOBUF, "timeout": 30},
        )
        waiting.start()
        wait_until(lambda: running.collector.pipeline.held_spans == 10, 10.0, "10 spans held")

        refused = httpx.post(
            running.http_url + "/v1/traces", content=otlp_request(5).SerializeToString(), headers=PROTOBUF
        )
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "2"
        status = status_pb2.Status.FromString(refused.content)
        assert status.code == code_pb2.UNAVAILABLE and "queue full" in status.message

        with grpc.insecure_channel(running.grpc_target) as channel:
            stub = trace_service_pb2_grpc.TraceServiceStub(channel)
            with pytest.raises(grpc.RpcError) as raised:
                stub.Export(otlp_request(5), timeout=5)
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
        trailers = dict(raised.value.trailing_metadata())
        retry_info = error_details_pb2.RetryInfo.FromString(trailers["google.rpc.retryinfo-bin"])
        assert retry_info.retry_delay.seconds == 2
        details = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
        assert details.details[0].Is(error_details_pb2.RetryInfo.DESCRIPTOR)

        ready = httpx.get(running.admin_url + "/readyz")
        assert ready.status_code == 503 and "the queue is saturated" in ready.json()["reasons"]
    waiting.join(timeout=10)
    metrics = scrape(running)
    for transport in ("http", "grpc"):  # the queue was full: refused at the door, before being read
        assert (
            metric_value(
                metrics,
                "genai_collector_receiver_refused_requests_total",
                receiver="otlp",
                transport=transport,
                reason="queue_full",
            )
            == 1
        )
    assert metric_value(metrics, "genai_collector_requests_total", transport="http", signal="traces", status="503") == 1
    assert (
        metric_value(metrics, "genai_collector_requests_total", transport="grpc", signal="traces", status="UNAVAILABLE")
        == 1
    )
    assert running.query("SELECT count(*) FROM spans") == [(10,)]


@pytest.mark.usefixtures("ingest_workers")
@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_sdk_exporters_retry_refusals_until_every_span_is_stored_once(
    start_collector: Any, monkeypatch: pytest.MonkeyPatch, protocol: str
) -> None:
    running = start_collector(queue_capacity=40, batch_size=20, retry_after="1s")
    port = running.collector.ports["otlp_grpc" if protocol == "grpc" else "otlp_http"]
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "30")
    exporter_type = GrpcSpanExporter if protocol == "grpc" else HttpSpanExporter
    spans = finished_spans(120)
    batches = [spans[start : start + 20] for start in range(0, len(spans), 20)]
    results: list[SpanExportResult] = []

    def export(batch: list[ReadableSpan]) -> None:
        exporter = exporter_type()
        results.append(exporter.export(batch))
        exporter.shutdown()

    with write_lock_held(running.settings.db):
        clients = [threading.Thread(target=export, args=(batch,)) for batch in batches]
        for client in clients:
            client.start()
        transport = "grpc" if protocol == "grpc" else "http"

        def refusals() -> float:  # at the door (queue full) or at reservation (not enough room left)
            exposition = scrape(running)
            return sum(
                metric_value(exposition, name, receiver="otlp", transport=transport, reason="queue_full")
                for name in (
                    "genai_collector_receiver_refused_requests_total",
                    "genai_collector_receiver_refused_spans_total",
                )
            )

        wait_until(lambda: refusals() > 0, 10.0, "a refusal")
    for client in clients:
        client.join(timeout=60)

    assert results == [SpanExportResult.SUCCESS] * len(batches)
    stored = running.query("SELECT count(*), count(DISTINCT span_id) FROM spans")
    assert stored == [(len(spans), len(spans))]
    sent_ids = {f"{span.get_span_context().span_id:016x}" for span in spans}
    assert {row[0] for row in running.query("SELECT span_id FROM spans")} == sent_ids


def test_full_disk_fails_requests_retryably_and_recovers(start_collector: Any, small_disk: Path) -> None:
    running = start_collector(db=small_disk / "collector.db")
    big_prompt = "x" * 40_000

    def send(count: int) -> httpx.Response:
        request = otlp_request(count, attributes={"gen_ai.prompt": big_prompt})
        return httpx.post(running.http_url + "/v1/traces", content=request.SerializeToString(), headers=PROTOBUF)

    assert send(5).status_code == 200
    filler = fill_disk(small_disk)

    refused = send(20)
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "1"
    assert "database write failed" in status_pb2.Status.FromString(refused.content).message
    ready = httpx.get(running.admin_url + "/readyz")
    assert ready.status_code == 503 and "the last database write failed" in ready.json()["reasons"]
    metrics = scrape(running)
    assert (
        sum(
            metric_value(metrics, "genai_collector_write_failures_total", error=error)
            for error in ("FullError", "IOError")
        )
        >= 1
    )
    assert (
        metric_value(
            metrics,
            "genai_collector_receiver_refused_spans_total",
            receiver="otlp",
            transport="http",
            reason="write_failed",
        )
        == 20
    )

    filler.unlink()  # the cause goes away: the daemon recovers without a restart
    retried = send(20)
    assert retried.status_code == 200
    assert httpx.get(running.admin_url + "/readyz").status_code == 200
    assert running.query("SELECT count(*) FROM spans") == [(25,)]


def send(running: Any, request: Any) -> httpx.Response:
    return httpx.post(running.http_url + "/v1/traces", content=request.SerializeToString(), headers=PROTOBUF)


def test_full_disk_with_max_size_frees_space_and_ingest_resumes_without_the_operator(
    start_collector: Any, small_disk: Path
) -> None:
    running = start_collector(db=small_disk / "collector.db", retention={"max_size": "8MiB", "interval": "100ms"})
    traces = []
    for _ in range(12):  # about 2 MiB of the 4 MiB disk (0.8 MiB more is the reserve): 12 traces of 4 spans
        request = otlp_request(4, attributes={"gen_ai.prompt": os.urandom(20_000).hex()})
        traces.append(request.resource_spans[0].scope_spans[0].spans[0].trace_id.hex())
        assert send(running, request).status_code == 200
    time.sleep(0.5)  # a retention pass checkpoints the WAL into the database file
    filler = fill_disk(small_disk)

    statuses: list[int] = []
    for _ in range(50):  # until the disk is full for real (the WAL and free pages hold a little more)
        request = otlp_request(2, attributes={"gen_ai.prompt": os.urandom(20_000).hex()})
        statuses.append(send(running, request).status_code)
        if statuses[-1] != 200:
            break
    assert statuses[-1] == 503, statuses
    deadline = time.monotonic() + 30
    while statuses[-1] != 200:  # the client retries after each 503, as SDKs do
        assert time.monotonic() < deadline, f"never stored again: {statuses}"
        time.sleep(1)
        statuses.append(send(running, request).status_code)
    assert filler.exists()
    assert httpx.get(running.admin_url + "/readyz").status_code == 200
    stored = {row[0] for row in running.query("SELECT trace_id FROM traces")}
    assert request.resource_spans[0].scope_spans[0].spans[0].trace_id.hex() in stored
    assert traces[0] not in stored and traces[-1] in stored  # the oldest made room
    metrics = scrape(running)
    assert metric_value(metrics, "genai_collector_retention_deleted_traces_total", reason="disk_full") >= 1


def test_requests_past_max_concurrent_requests_are_refused_before_being_read(start_collector: Any) -> None:
    running = start_collector(max_concurrent_requests=1, retry_after="1s")
    with write_lock_held(running.settings.db):
        waiting = threading.Thread(  # holds the only place until its commit
            target=httpx.post,
            args=(running.http_url + "/v1/traces",),
            kwargs={"content": otlp_request(3).SerializeToString(), "headers": PROTOBUF, "timeout": 30},
        )
        waiting.start()
        wait_until(lambda: running.collector.pipeline.held_spans == 3, 10.0, "3 spans held")
        refused = httpx.post(
            running.http_url + "/v1/traces", content=otlp_request(2).SerializeToString(), headers=PROTOBUF
        )
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        assert "requests in progress" in status_pb2.Status.FromString(refused.content).message
        with grpc.insecure_channel(running.grpc_target) as channel, pytest.raises(grpc.RpcError) as raised:
            trace_service_pb2_grpc.TraceServiceStub(channel).Export(otlp_request(2), timeout=5)
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "google.rpc.retryinfo-bin" in dict(raised.value.trailing_metadata())
    waiting.join(timeout=10)
    metrics = scrape(running)
    for transport in ("http", "grpc"):
        assert (
            metric_value(
                metrics,
                "genai_collector_receiver_refused_requests_total",
                receiver="otlp",
                transport=transport,
                reason="too_many_requests",
            )
            == 1
        )
    assert running.query("SELECT count(*) FROM spans") == [(3,)]
    after = httpx.post(running.http_url + "/v1/traces", content=otlp_request(2).SerializeToString(), headers=PROTOBUF)
    assert after.status_code == 200  # the place is free again once the first request was answered


def test_a_request_the_database_refuses_fails_alone_and_its_batch_mates_are_stored(tmp_path: Path) -> None:
    """Data that passes every check but makes the transaction fail (here token counts that overflow the
    rollup's sum, written past the transform) is answered non-retryable; the batch's other requests commit."""
    registry = CollectorRegistry()
    writer = SpanWriter(tmp_path / "isolated.db")
    pipeline = Pipeline(writer, CollectorMetrics(registry), capacity=100, batch_size=100, batch_max_age=0.2)
    pipeline.start()
    huge = normalize({"gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 2**62})
    bad_spans, _ = decode_spans(otlp_request(2))
    good_spans, _ = decode_spans(otlp_request(3))

    async def submit_both() -> list[Any]:
        bad = pipeline.submit(Records(spans=[span._replace(genai=huge) for span in bad_spans]))
        good = pipeline.submit(Records(spans=good_spans))
        return await asyncio.gather(bad, good, return_exceptions=True)

    try:
        bad, good = asyncio.run(submit_both())
    finally:
        pipeline.close(10)
    assert isinstance(bad, InvalidData) and "integer overflow" in str(bad)
    assert good is None
    assert pipeline.healthy
    stored = {row[0] for row in writer.connection.execute("SELECT span_id FROM spans")}
    assert stored == {span.span_id for span in good_spans}
    writer.close()
