"""What both transports do with a parsed export request: decode, transform, queue, wait for the commit, count."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple, TypeVar

from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from collector.component import Deadline
from collector.genai.transform import Transform, TransformStats
from collector.model import NO_REJECTION, Records, Rejection, Span
from collector.observability.metrics import RECEIVER, CollectorMetrics
from collector.otlp import (
    TooDeep,
    count_data_points,
    count_json_spans,
    count_spans,
    decode_json_spans,
    decode_log_records,
    decode_spans,
    parse_json_traces,
    shallow_json_values,
    without_conflicting_duplicates,
)
from collector.pipeline import Backpressure, Intake, InvalidData, Reservation, TooManyRequests

T = TypeVar("T")

# Worker threads for decoding and transforming. Python runs one of them at a time (the GIL), so more
# would not go faster; two keep one hostile request from holding up every other client.
WORKERS = 2


# Decoded spans, what was rejected, and how many values nested too deep were cut.
Decoded = tuple[list[Span], Rejection, int]


def _decode_json_spans(document: dict[str, Any]) -> Decoded:
    """``decode_json_spans``; a document with values nested deeper than it reads is read again with them cut."""
    try:
        return (*decode_json_spans(document), 0)
    except TooDeep:
        cut = shallow_json_values(document)
        return (*decode_json_spans(document), cut)


class _PreparedSpans(NamedTuple):
    records: Records
    stats: TransformStats
    rejection: Rejection  # everything the client is told was not stored
    invalid: int  # of which spans decode rejected
    conflicting: int  # of which span ids repeated with other content
    cut: int  # values nested too deep, cut


class TooManySpans(Exception):
    """A request with more spans than ``max_spans_per_request``: 413 / RESOURCE_EXHAUSTED, not retried."""

    reason = "too_many_spans"


class Ingest:
    """Decoding and transforming run on a small pool of worker threads, never on the event loop: a request
    that costs seconds of CPU delays only itself, while the loop keeps answering other clients and the
    health checks. Each worker has its own ``Transform`` (the redactor counts what it does)."""

    def __init__(
        self,
        pipeline: Intake,
        transform: Callable[[], Transform],
        metrics: CollectorMetrics,
        *,
        max_concurrent_requests: int,
        max_spans_per_request: int,
        workers: int = WORKERS,
    ) -> None:
        self._pipeline = pipeline
        self._new_transform = transform
        self._metrics = metrics
        self._max_in_progress = max_concurrent_requests
        self._max_spans = max_spans_per_request
        self._in_progress = 0  # touched only on the event loop
        self._workers = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ingest")
        self._local = threading.local()

    name = "ingest"

    async def start(self) -> None:
        """The worker threads start with the first request."""

    async def stop(self, deadline: Deadline) -> None:
        self._workers.shutdown(wait=False, cancel_futures=True)

    async def offload(self, work: Callable[..., T], *args: Any) -> T:
        """Run CPU-heavy ``work`` (decompress, parse, decode, transform) on a worker thread."""
        return await asyncio.get_running_loop().run_in_executor(self._workers, work, *args)

    def _transform(self) -> Transform:
        """This worker thread's ``Transform``."""
        transform = getattr(self._local, "transform", None)
        if transform is None:
            transform = self._local.transform = self._new_transform()
        return transform

    async def traces(self, request: ExportTraceServiceRequest, transport: str) -> Rejection:
        """Store the request's valid spans; returns what was rejected. Raises ``Backpressure`` when
        nothing was stored and the client should retry the whole request.

        The queue's room is reserved before decoding: under overload a refusal costs a count, not a decode.
        """
        return await self._spans(count_spans(request), lambda: (*decode_spans(request), 0), transport)

    async def json_traces(self, document: dict[str, Any], transport: str) -> Rejection:
        """``traces`` for an OTLP/JSON document, decoded without a protobuf message. Raises
        ``PayloadError`` when the document is not an OTLP trace request."""
        return await self._spans(count_json_spans(document), lambda: _decode_json_spans(document), transport)

    async def _spans(self, count: int, decode: Callable[[], Decoded], transport: str) -> Rejection:
        refused = self._metrics.refused_spans
        if count > self._max_spans:
            refused.labels(RECEIVER, transport, TooManySpans.reason).inc(count)
            raise TooManySpans(
                f"{count} spans in one request, more than the {self._max_spans} this collector takes at once; "
                "send smaller batches (the SDK's max_export_batch_size)"
            )
        try:
            reservation = self._pipeline.reserve(count)
        except Backpressure as refusal:
            refused.labels(RECEIVER, transport, refusal.reason).inc(count)
            raise
        try:
            prepared = await self.offload(self._prepare_spans, decode)
            rejection = prepared.rejection
            self.count_cut_values(prepared.cut)
            if prepared.invalid:
                refused.labels(RECEIVER, transport, "invalid_span").inc(prepared.invalid)
            if prepared.conflicting:
                refused.labels(RECEIVER, transport, "duplicate_span_id").inc(prepared.conflicting)
            records = prepared.records
            if not records.spans:
                return rejection
            self._count_transform(prepared.stats)
            await self._store(records, refused, transport, len(records.spans), reservation)
        finally:
            reservation.release()
        self._metrics.accepted_spans.labels(RECEIVER, transport).inc(len(records.spans))
        self._count_evaluations(records)
        return rejection

    def _prepare_spans(self, decode: Callable[[], Decoded]) -> _PreparedSpans:
        """On a worker thread: decode, set aside repeated span ids with other content, transform."""
        spans, rejection, cut = decode()
        spans, conflicting = without_conflicting_duplicates(spans)
        invalid = rejection.count
        if conflicting:
            reason = f"{conflicting} span ids repeated in the request with other content (the first copy is kept)"
            rejection = Rejection(invalid + conflicting, rejection.first_reason or reason)
        if not spans:
            return _PreparedSpans(Records(), TransformStats(), rejection, invalid, conflicting, cut)
        records, stats = self._transform().spans(spans)
        records = self._pipeline.prepare(records)
        records.summarize()  # what the writer's process reads of the spans once they are stored
        return _PreparedSpans(records, stats, rejection, invalid, conflicting, cut)

    async def logs(self, request: ExportLogsServiceRequest, transport: str) -> Rejection:
        """Store GenAI events (and other records when ``logs.keep_other``); count and drop the rest."""
        rejection, records, stats = await self.offload(self._prepare_logs, request)
        if rejection.count:
            self._metrics.refused_log_records.labels(RECEIVER, transport, "invalid_record").inc(rejection.count)
        self._count_transform(stats)
        if stats.dropped_log_records:
            self._metrics.dropped_items.labels(RECEIVER, transport, "logs").inc(stats.dropped_log_records)
        if records.count:
            await self._store(records, self._metrics.refused_log_records, transport, len(records.events))
            self._metrics.accepted_log_records.labels(RECEIVER, transport).inc(len(records.events))
            self._count_evaluations(records)
        return rejection

    def _prepare_logs(self, request: ExportLogsServiceRequest) -> tuple[Rejection, Records, TransformStats]:
        events, rejection = decode_log_records(request)
        records, stats = self._transform().log_events(events)
        return rejection, records, stats

    async def metrics(self, request: ExportMetricsServiceRequest, transport: str) -> Rejection:
        """Metric data points are counted and not stored: this collector stores traces."""
        self._metrics.dropped_items.labels(RECEIVER, transport, "metrics").inc(count_data_points(request))
        return NO_REJECTION

    def door(self, transport: str) -> None:
        """Refuse a request before its body is read while the queue is full or the collector is stopping
        (counted by request: its spans are not known yet). It takes no place among the requests in
        progress: a client that uploads slowly must not hold one while others wait."""
        try:
            self._pipeline.check_room()
        except Backpressure as refusal:
            self._metrics.refused_requests.labels(RECEIVER, transport, refusal.reason).inc()
            raise

    @contextlib.contextmanager
    def admitted(self, transport: str) -> Iterator[None]:
        """Hold a place among the requests in progress, or raise ``Backpressure`` before the request is
        parsed (too many in progress, queue full, stopping): under overload a refusal then costs little
        and work never piles up in front of the workers. Such refusals are counted by request, since
        their spans are not known yet. HTTP takes the place once the body is read (gRPC reads the whole
        message before calling us), so slow uploads never hold places."""
        try:
            if self._in_progress >= self._max_in_progress:
                raise TooManyRequests(
                    f"{self._in_progress} requests in progress, the most this collector takes at once; retry later"
                )
            self._pipeline.check_room()
        except Backpressure as refusal:
            self._metrics.refused_requests.labels(RECEIVER, transport, refusal.reason).inc()
            raise
        self._in_progress += 1
        try:
            yield
        finally:
            self._in_progress -= 1

    def count_cut_values(self, cut: int) -> None:
        """Attribute values cut because they were nested deeper than the parser goes."""
        if cut:
            self._metrics.truncated_nested_values.inc(cut)

    def bad_request(self, transport: str, reason: str) -> None:
        self._metrics.bad_requests.labels(RECEIVER, transport, reason).inc()

    async def _store(
        self, records: Records, refused: Any, transport: str, count: int, reservation: Reservation | None = None
    ) -> None:
        try:
            await self._pipeline.submit(records, reservation)
        except (Backpressure, InvalidData) as refusal:
            refused.labels(RECEIVER, transport, refusal.reason).inc(count)
            raise

    def _count_transform(self, stats: TransformStats) -> None:
        metrics = self._metrics
        for rule, count in stats.redactions.items():
            metrics.redactions.labels(rule).inc(count)
        if stats.truncated_values:
            metrics.truncated_values.inc(stats.truncated_values)
        if stats.dropped_attributes:
            metrics.dropped_attributes.inc(stats.dropped_attributes)
        if stats.dropped_events:
            metrics.dropped_events.inc(stats.dropped_events)
        for model, count in stats.unpriced_models.items():
            metrics.unpriced_spans.labels(metrics.unpriced_model(model)).inc(count)
        for field_name, count in stats.out_of_range.items():
            metrics.out_of_range_values.labels(field_name).inc(count)

    def _count_evaluations(self, records: Records) -> None:
        for evaluation in records.evaluations:
            self._metrics.evaluations.labels(evaluation.source).inc()


class Signal(NamedTuple):
    """One OTLP signal as both transports serve it."""

    name: str
    grpc_service: str
    request_type: type[Message]
    response_type: type[Message]
    rejected_field: str
    handle: Callable[[Ingest, Any, str], Awaitable[Rejection]]
    # OTLP/JSON read straight from the document (``parse_json_document``) rather than through a message
    parse_json_document: Callable[[bytes], Any] | None = None
    handle_json_document: Callable[[Ingest, Any, str], Awaitable[Rejection]] | None = None

    def answer(self, rejection: Rejection) -> Message:
        """The Export response: empty on full success, ``partial_success`` when something was rejected."""
        response = self.response_type()
        if rejection.count:
            partial = response.partial_success  # type: ignore[attr-defined]
            setattr(partial, self.rejected_field, rejection.count)
            partial.error_message = rejection.message
        return response


SIGNALS = (
    Signal(
        "traces",
        "opentelemetry.proto.collector.trace.v1.TraceService",
        ExportTraceServiceRequest,
        ExportTraceServiceResponse,
        "rejected_spans",
        Ingest.traces,
        parse_json_traces,
        Ingest.json_traces,
    ),
    Signal(
        "logs",
        "opentelemetry.proto.collector.logs.v1.LogsService",
        ExportLogsServiceRequest,
        ExportLogsServiceResponse,
        "rejected_log_records",
        Ingest.logs,
    ),
    Signal(
        "metrics",
        "opentelemetry.proto.collector.metrics.v1.MetricsService",
        ExportMetricsServiceRequest,
        ExportMetricsServiceResponse,
        "rejected_data_points",
        Ingest.metrics,
    ),
)
