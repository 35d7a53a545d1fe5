"""Running the demo: the simulated agents' traces emitted through the OpenTelemetry SDK.

Every span carries its simulated start and end time explicitly, so nothing sleeps through a model's latency
unless asked to: paced, the demo ends each span when the wall clock reaches its end time (a live demo);
unpaced, it emits the traces of ``duration`` seconds at once, timestamped over the ``duration`` seconds
before now. Traces arrive at random (a Poisson process of ``rate`` per second), from the run's seed.
Each agent is a service of its own (its own resource), exporting to every exporter pair it is given.
"""

from __future__ import annotations

import argparse
import heapq
import random
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from opentelemetry import trace
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from collector import __version__
from collector.demo.scenario import AGENTS, NS, SpanPlan, TracePlan, plan_trace

SCOPE = "genai-collector.demo"
EVALUATION_EVENT = "gen_ai.evaluation.result"
_KINDS = {"internal": SpanKind.INTERNAL, "client": SpanKind.CLIENT}
_FLUSH_EVERY = 200  # traces, when unpaced: keeps the SDK's queues from overflowing on a long backfill
_QUEUE_SIZE = 1 << 15
_EXPORT_DELAY_MS = 500  # spans reach the collector within half a second: the live views stay live

Exporters = tuple[SpanExporter, LogRecordExporter]


def otlp_http_exporters(endpoint: str) -> Exporters:
    """OTLP/HTTP exporters for a base URL, as in OTEL_EXPORTER_OTLP_ENDPOINT (``/v1/traces`` is appended)."""
    base = endpoint.rstrip("/")
    return OTLPSpanExporter(endpoint=f"{base}/v1/traces"), OTLPLogExporter(endpoint=f"{base}/v1/logs")


def sqlite_exporters(db: Path, config: Path | None = None) -> Exporters:
    """The in-process exporters, writing the database file directly."""
    from collector.exporter import SQLiteLogRecordExporter, SQLiteSpanExporter

    return SQLiteSpanExporter(db, config=config), SQLiteLogRecordExporter(db, config=config)


class _Service:
    """One agent's service: its resource, providers, tracer and logger."""

    def __init__(self, name: str, exporters: Sequence[Exporters]) -> None:
        resource = Resource.create(
            {"service.name": name, "service.version": __version__, "deployment.environment.name": "demo"}
        )
        self.tracer_provider = TracerProvider(resource=resource, shutdown_on_exit=False)
        self.logger_provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
        for span_exporter, log_exporter in exporters:
            self.tracer_provider.add_span_processor(
                BatchSpanProcessor(span_exporter, max_queue_size=_QUEUE_SIZE, schedule_delay_millis=_EXPORT_DELAY_MS)
            )
            self.logger_provider.add_log_record_processor(
                BatchLogRecordProcessor(
                    log_exporter, max_queue_size=_QUEUE_SIZE, schedule_delay_millis=_EXPORT_DELAY_MS
                )
            )
        self.tracer = self.tracer_provider.get_tracer(SCOPE, __version__)
        self.logger = self.logger_provider.get_logger(SCOPE, __version__)

    def flush(self) -> None:
        self.tracer_provider.force_flush()
        self.logger_provider.force_flush()

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.logger_provider.shutdown()


@dataclass
class Counts:
    traces: int = 0
    spans: int = 0
    evaluations: int = 0


class Demo:
    """The simulated agents, sending to every pair of exporters ``exporters`` makes (called once per service)."""

    def __init__(
        self,
        exporters: Sequence[Callable[[], Exporters]],
        *,
        rate: float = 1.0,
        seed: int = 0,
        pace: bool = True,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be a positive number of traces per second")
        self._services = {agent.service: _Service(agent.service, [make() for make in exporters]) for agent in AGENTS}
        self._rate = rate
        self._seed = seed
        self._pace = pace
        self._clock = clock
        self._arrivals = random.Random(f"{seed}:arrivals")
        self._timeline: list[tuple[int, int, Callable[[], None]]] = []
        self._sequence = 0
        self.counts = Counts()

    def run(self, duration: float | None = None, stop: threading.Event | None = None) -> Counts:
        """Emit the traces that start within ``duration`` seconds (forever when None, paced only), then
        flush and shut the SDK down, also when interrupted (KeyboardInterrupt propagates after the flush)."""
        if duration is None and not self._pace:
            raise ValueError("an unpaced demo needs a duration")
        stop = stop or threading.Event()
        now = self._clock()
        start = now if self._pace else now - round((duration or 0) * NS)
        until = None if duration is None else start + round(duration * NS)
        self._at(start, partial(self._start_trace, 0, start, until))
        try:
            while self._timeline and not stop.is_set():
                when, _, action = heapq.heappop(self._timeline)
                if self._pace and stop.wait(max(0.0, (when - self._clock()) / NS)):
                    break
                action()
        finally:
            for service in self._services.values():
                service.flush()
                service.shutdown()
        return self.counts

    def _at(self, when: int, action: Callable[[], None]) -> None:
        self._sequence += 1
        heapq.heappush(self._timeline, (when, self._sequence, action))

    def _start_trace(self, index: int, when: int, until: int | None) -> None:
        plan = plan_trace(self._seed, index)
        self._emit(plan, when)
        self.counts.traces += 1
        if not self._pace and self.counts.traces % _FLUSH_EVERY == 0:
            for service in self._services.values():
                service.flush()
        following = when + round(self._arrivals.expovariate(self._rate) * NS)
        if until is None or following < until:
            self._at(following, partial(self._start_trace, index + 1, following, until))

    def _emit(self, plan: TracePlan, t0: int) -> None:
        """Start every span of the trace now, with its simulated start time; end each at its end time."""
        service = self._services[plan.service]
        started: dict[int, trace.Span] = {}

        def start(span_plan: SpanPlan, parent: Context) -> None:
            span = service.tracer.start_span(
                span_plan.name,
                context=parent,
                kind=_KINDS[span_plan.kind],
                attributes=span_plan.attributes,
                start_time=t0 + span_plan.start,
            )
            for name, at, attributes in span_plan.events:
                span.add_event(name, attributes, timestamp=t0 + at)
            if span_plan.error is not None:
                span.set_status(Status(StatusCode.ERROR, span_plan.error))
            started[id(span_plan)] = span
            self._at(t0 + span_plan.end, partial(self._end, span, t0 + span_plan.end))
            context = trace.set_span_in_context(span)
            for child in span_plan.children:
                start(child, context)

        start(plan.root, Context())
        for evaluation in plan.evaluations:
            record = LogRecord(
                timestamp=t0 + evaluation.time,
                context=trace.set_span_in_context(started[id(evaluation.span)]),
                severity_number=SeverityNumber.INFO,
                event_name=EVALUATION_EVENT,
                attributes=evaluation.attributes,
            )
            self._at(t0 + evaluation.time, partial(self._evaluate, service, record))

    def _end(self, span: trace.Span, end_time: int) -> None:
        span.end(end_time=end_time)
        self.counts.spans += 1

    def _evaluate(self, service: _Service, record: LogRecord) -> None:
        service.logger.emit(record)
        self.counts.evaluations += 1


def main(args: argparse.Namespace) -> int:
    """``genai-collector demo``: the parsed flags in, an exit code out."""
    if args.db is not None:
        exporters = partial(sqlite_exporters, args.db, args.config)
        target = f"the database {args.db}"
    else:
        exporters = partial(otlp_http_exporters, args.endpoint)
        target = f"{args.endpoint} (OTLP/HTTP)"
    demo = Demo([exporters], rate=args.rate, seed=args.seed, pace=not args.fast)
    how_long = "until interrupted (Ctrl-C)" if args.duration is None else f"for {args.duration:g}s"
    print(f"genai-collector demo: about {args.rate:g} agent traces a second to {target}, {how_long}", file=sys.stderr)
    try:
        counts = demo.run(args.duration)
    except KeyboardInterrupt:
        counts = demo.counts
    print(
        f"genai-collector demo: {counts.traces} traces, {counts.spans} spans, {counts.evaluations} evaluations emitted",
        file=sys.stderr,
    )
    return 0
