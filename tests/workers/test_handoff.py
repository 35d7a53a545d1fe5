"""What an ingest worker hands the main process: each request's encoded rows and its spans' summaries
(``collector.model.summarize``), not the spans. The summaries are a pure function of the spans; the main
process makes of them what it made of whole spans in one process: the same rows, rollups and GenAI metrics."""

from __future__ import annotations

import asyncio
import pickle
import re
import socket
import struct
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.redaction import corpus_spans
from bench.traces import build_templates
from collector.config import Settings
from collector.genai.normalize import NOT_GENAI, GenAI
from collector.genai.transform import Transform
from collector.model import Records, Span, SpanSummary, summarize
from collector.storage.sqlite.writer import prepare
from collector.workers.link import Link, submission, submitted
from tests.helpers import Daemon, query_db, scrape

PROTOBUF = {"Content-Type": "application/x-protobuf"}


def span(status: str = "ok", attributes: dict[str, Any] | None = None, genai: GenAI | None = None) -> Span:
    return Span(
        "0af7651916cd43dd8448eb211c80319c",
        "b7ad6b7169203331",
        None,
        None,
        0,
        "chat gpt-4o",
        "client",
        1_000,
        3_000,
        status,
        None,
        "agent-service",
        "scope",
        None,
        {"service.name": "agent-service"},
        attributes or {},
        [],
        [],
        0,
        0,
        0,
        genai,
        0.25 if genai else None,
    )


def test_a_summary_holds_what_the_writer_process_reads_of_a_span() -> None:
    call = NOT_GENAI._replace(
        category="llm",
        provider="openai",
        request_model="gpt-4o",
        response_model="gpt-4o-2024-08-06",
        operation="chat",
        input_tokens=12,
        output_tokens=34,
        total_tokens=46,
        response_id="chatcmpl-1",
        ttft_ms=120.5,
        agent_name="planner",
        tool_name="search",
    )
    (summary,) = summarize([span("error", {"error.type": "RateLimitError"}, call)])
    assert summary == SpanSummary(
        "0af7651916cd43dd8448eb211c80319c",
        "b7ad6b7169203331",
        1_000,
        3_000,
        "error",
        "RateLimitError",
        "agent-service",
        "llm",
        "openai",
        "gpt-4o",
        "gpt-4o-2024-08-06",
        "chat",
        "planner",
        "search",
        "chatcmpl-1",
        12,
        34,
        120.5,
        0.25,
    )
    assert type(summary) is SpanSummary and summary.cost_usd == 0.25


def test_a_summary_keeps_the_error_type_of_failed_spans_only_and_only_a_usable_one() -> None:
    cases = [
        (span("error", {"error.type": "timeout"}), "timeout"),
        (span("error", {"error.type": ""}), None),
        (span("error", {"error.type": 429}), None),
        (span("error"), None),
        (span("ok", {"error.type": "ignored"}), None),
    ]
    assert [summary.error_type for summary in summarize([case for case, _ in cases])] == [want for _, want in cases]
    (plain,) = summarize([span()])  # no GenAI columns: not normalized
    assert plain.category is None and plain.input_tokens is None and plain.cost_usd is None


def test_records_without_spans_count_and_survive_pickling_as_the_writer_takes_them() -> None:
    transform = Transform(Settings())
    records = prepare(transform.spans(corpus_spans(1, 50))[0])
    handed = pickle.loads(pickle.dumps(records.without_spans(), protocol=5))
    assert handed.spans == [] and handed.prepared == records.prepared
    assert handed.summaries == summarize(records.spans) and handed.count == records.count == 50
    not_encoded = Records(spans=records.spans)  # an engine that encodes at write time (PostgreSQL) gets the spans
    assert not_encoded.without_spans() is not_encoded


def test_a_submission_arrives_over_the_link_as_the_records_it_was() -> None:
    transform = Transform(Settings())
    records = prepare(transform.spans(corpus_spans(1, 50))[0])
    sent = records.without_spans()

    async def carry() -> Records:
        ours, theirs = socket.socketpair()
        sender, receiver = await Link.open(theirs), await Link.open(ours)
        sender.send(submission(7, records))
        message = await receiver.receive()
        sender.close()
        receiver.close()
        assert message is not None and message[:2] == ("submit", 7)
        return submitted(message)

    handed = asyncio.run(carry())
    assert handed == sent and handed.summaries is not None
    assert all(type(summary) is SpanSummary for summary in handed.summaries)
    assert records.summaries == sent.summaries  # the worker's records are left as they were


def test_the_link_delivers_frames_of_every_size_in_order_and_then_none() -> None:
    """Small frames many to a read, frames larger than the receiving buffer, and one larger than the buffer it keeps
    afterwards, each in the order sent, whatever the reads cut them into."""
    sizes = [0, 10, 70_000, 3, 300_000, 5_000_000, 1, 65_530, 65_540, 2, 0]
    messages = [("blob", index, bytes([index]) * size) for index, size in enumerate(sizes)]

    async def carry() -> list[Any]:
        ours, theirs = socket.socketpair()
        sender, receiver = await Link.open(theirs), await Link.open(ours)
        for message in messages:
            sender.send(message)
        await sender.flush()
        received = [await receiver.receive() for _ in messages]
        sender.close()
        received.append(await receiver.receive())  # the other end is gone
        receiver.close()
        return received

    assert asyncio.run(carry()) == [*messages, None]


def test_a_frame_that_cannot_be_unpickled_closes_the_link_after_the_frames_before_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def carry() -> list[Any]:
        ours, theirs = socket.socketpair()
        receiver = await Link.open(ours)
        answer = pickle.dumps(("done", 1, None), protocol=5)
        good = struct.pack("!I", len(answer)) + answer
        theirs.sendall(good + struct.pack("!I", 5) + b"nope." + good)  # the frame after the bad one is not read
        received = [await receiver.receive(), await receiver.receive()]
        theirs.close()
        receiver.close()
        return received

    assert asyncio.run(carry()) == [("done", 1, None), None]
    assert "unreadable message" in caplog.text


def _rows(db: Path, table: str, order: str, leaving_out: set[str]) -> list[tuple[Any, ...]]:
    columns = [row[1] for row in query_db(db, f"PRAGMA table_info({table})") if row[1] not in leaving_out]
    return query_db(db, f"SELECT {', '.join(columns)} FROM {table} ORDER BY {order}")


def _metrics_and_rows(
    db: Path, bodies: list[bytes], *arguments: str
) -> tuple[list[str], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """``bodies`` sent request by request over OTLP/HTTP; the GenAI metrics and the stored spans and
    rollups (without what depends on the time of receipt)."""
    with Daemon(db, *arguments) as daemon:
        daemon.wait_listening()
        with httpx.Client(base_url=daemon.http_url, timeout=30) as client:
            for body in bodies:
                assert client.post("/v1/traces", content=body, headers=PROTOBUF).status_code == 200
        metrics = sorted(
            line
            for line in scrape(daemon).splitlines()
            if line.startswith(("gen_ai_", "genai_collector_cost")) and "_created" not in line
        )
    spans = _rows(db, "spans_with_resource", "trace_id, span_id", {"received_at_unix_nano", "resource_id"})
    receipt = {"first_span_at_unix_nano", "last_span_at_unix_nano", "settled_at_unix_nano"}
    rollups = _rows(db, "traces", "trace_id", receipt)
    return metrics, spans, rollups


def test_the_main_process_stores_and_counts_a_workers_spans_as_one_process_does(tmp_path: Path) -> None:
    bodies = [template.body for template in build_templates(12, 50, "http-protobuf", seed=7)]  # the bench corpus
    one = _metrics_and_rows(tmp_path / "one.db", bodies, "--ingest-workers", "1")
    workers = _metrics_and_rows(tmp_path / "workers.db", bodies, "--ingest-workers", "2")
    metrics, spans, rollups = one
    assert any(re.match(r"gen_ai_client_token_usage_bucket", line) for line in metrics)
    assert any('error_type="' in line and 'error_type=""' not in line for line in metrics)  # a failed call counted
    assert len(spans) == 600 and rollups
    assert workers == one
