"""Every Prometheus metric of the daemon is declared here, on an injected registry: its own (``CollectorMetrics``),
the GenAI metrics (``GenAIInstruments``, observed by ``observability.genai_metrics``), authentication's and the
live feed's. Components get the class of theirs and never declare a metric themselves.

Names mirror the reference collector's (``receiver_accepted_spans`` ...) with the prefix ``genai_collector_``.
Labels are fixed, small sets: never ids or payload text.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

# The reference collector exposes no `_created` series; neither do we (they double the series count).
disable_created_metrics()

PREFIX = "genai_collector_"
RECEIVER = "otlp"

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH_BUCKETS = (1, 10, 50, 100, 250, 500, 1000, 2000, 5000, 10000)
TOKEN_BUCKETS = (
    1,
    4,
    16,
    64,
    256,
    1024,
    4096,
    16384,
    65536,
    262144,
    1048576,
    4194304,
    16777216,
    67108864,
)
OPERATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
TRACE_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
SCORE_BUCKETS = tuple(step / 10 for step in range(1, 11))


class Declare:
    """Declares metrics on one registry, each named ``prefix`` + its name; with no labels unless given."""

    def __init__(self, registry: CollectorRegistry, prefix: str = PREFIX) -> None:
        self.registry, self.prefix = registry, prefix

    def counter(self, name: str, documentation: str, labels: Sequence[str] = ()) -> Counter:
        return Counter(self.prefix + name, documentation, labels, registry=self.registry)

    def gauge(self, name: str, documentation: str, labels: Sequence[str] = ()) -> Gauge:
        return Gauge(self.prefix + name, documentation, labels, registry=self.registry)

    def histogram(
        self, name: str, documentation: str, labels: Sequence[str] = (), *, buckets: Sequence[float], unit: str = ""
    ) -> Histogram:
        return Histogram(self.prefix + name, documentation, labels, unit=unit, buckets=buckets, registry=self.registry)


class DatabaseSize(Collector):
    """Bytes on disk of the database, by file, as the store reports them at scrape time."""

    def __init__(self, disk_usage: Callable[[], dict[str, int]]) -> None:
        self._disk_usage = disk_usage

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            PREFIX + "database_size_bytes", "Size of the database files on disk.", labels=["file"]
        )
        for label, size in self._disk_usage().items():
            family.add_metric([label], size)
        yield family


DEFAULT_LABEL_CAP = 200
OTHER = "_other"
MAX_LABEL_LENGTH = 128  # characters of a label value from client data; longer ones are cut and marked
LABEL_CUT_MARKER = "…"


def short_label(value: str) -> str:
    """``value`` cut to ``MAX_LABEL_LENGTH`` characters (the last one the marker) if it is longer."""
    if len(value) <= MAX_LABEL_LENGTH:
        return value
    return value[: MAX_LABEL_LENGTH - len(LABEL_CUT_MARKER)] + LABEL_CUT_MARKER


class BoundedLabel:
    """The values one label may take: the first ``cap`` distinct ones, then ``_other`` (each fold counted).

    Label values that come from clients (model names, services) must never grow the series count without
    bound, nor the size of a series: each value is cut to ``MAX_LABEL_LENGTH`` characters.
    """

    def __init__(self, metric: str, label: str, cap: int, overflow: Counter) -> None:
        self._metric, self._label, self._cap, self._overflow = metric, label, cap, overflow
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, value: str | None) -> str:
        value = short_label(value) if value else "unknown"
        if value in self._seen:
            return value
        with self._lock:
            if len(self._seen) < self._cap:
                self._seen.add(value)
                return value
        self._overflow.labels(self._metric, self._label).inc()
        return OTHER


class CollectorMetrics:
    """Every self-metric of the daemon, registered on one registry."""

    def __init__(self, registry: CollectorRegistry, *, label_cap: int = DEFAULT_LABEL_CAP) -> None:
        self.registry = registry
        self.label_cap = label_cap
        declare = Declare(registry)
        self.label_overflow = declare.counter(
            "label_overflow",
            "Label values folded into _other because the label reached its cap of distinct values.",
            ["metric", "label"],
        )
        self.accepted_spans = declare.counter(
            "receiver_accepted_spans",
            "Spans committed to storage and acknowledged to the client.",
            ["receiver", "transport"],
        )
        self.refused_spans = declare.counter(
            "receiver_refused_spans",
            "Spans not stored, by reason (invalid_span, queue_full, shutting_down, write_failed).",
            ["receiver", "transport", "reason"],
        )
        self.refused_requests = declare.counter(
            "receiver_refused_requests",
            "Requests refused before they were read because the queue was full or closing (spans not yet known).",
            ["receiver", "transport", "reason"],
        )
        self.dropped_items = declare.counter(
            "receiver_dropped_items",
            "Log records and metric data points received and deliberately not stored.",
            ["receiver", "transport", "signal"],
        )
        self.bad_requests = declare.counter(
            "receiver_bad_requests",
            "Requests refused before their spans could be read, by reason.",
            ["receiver", "transport", "reason"],
        )
        self.requests = declare.counter(
            "requests",
            "Export requests answered, by transport, signal and status (HTTP code or gRPC code name).",
            ["transport", "signal", "status"],
        )
        self.request_duration = declare.histogram(
            "request_duration_seconds",
            "Time from a request's arrival to its answer (including the commit it waits for).",
            ["transport", "signal"],
            buckets=_LATENCY_BUCKETS,
        )
        self.queue_size = declare.gauge("queue_size", "Spans accepted into the queue and not yet committed.")
        self.queue_capacity = declare.gauge("queue_capacity", "Spans the queue holds at most.")
        self.batch_send_size = declare.histogram(
            "batch_send_size", "Spans per committed transaction.", buckets=_BATCH_BUCKETS
        )
        self.commit_duration = declare.histogram(
            "commit_duration_seconds", "Time to write and commit one batch.", buckets=_LATENCY_BUCKETS
        )
        self.duplicate_spans = declare.counter(
            "duplicate_spans", "Spans received again (a client retry) and not stored twice."
        )
        self.dropped_observations = declare.counter(
            "dropped_observations",
            "Committed spans, evaluations and settled traces left out of the GenAI metrics and the live feed because "
            "their observer thread fell more than queue_capacity of them behind (the data is stored).",
        )
        self.write_failures = declare.counter(
            "write_failures",
            "Batches whose transaction failed (disk full, I/O error...); their requests got a retryable error.",
            ["error"],
        )

        self.accepted_log_records = declare.counter(
            "receiver_accepted_log_records",
            "Log records (GenAI events) committed and acknowledged.",
            ["receiver", "transport"],
        )
        self.refused_log_records = declare.counter(
            "receiver_refused_log_records",
            "Log records not stored, by reason (invalid_record, queue_full, write_failed, shutting_down).",
            ["receiver", "transport", "reason"],
        )
        self.evaluations = declare.counter(
            "evaluations",
            "Evaluation results stored, by where they came from (log, span_event, span_attribute).",
            ["source"],
        )
        self.redactions = declare.counter(
            "redactions",
            "Content values redacted, by rule (email, phone, card, ipv4, secret, or a configured rule).",
            ["rule"],
        )
        self.truncated_values = declare.counter(
            "truncated_values", "Attribute values cut to limits.max_attribute_length."
        )
        self.dropped_attributes = declare.counter(
            "dropped_attributes", "Attributes dropped past limits.max_attributes."
        )
        self.dropped_events = declare.counter("dropped_events", "Span events dropped past limits.max_events.")
        self.unpriced_spans = declare.counter(
            "unpriced_spans",
            "LLM spans with token counts whose model has no price (their cost_usd is NULL), by model.",
            ["model"],
        )
        self.unpriced_model = self.bounded_label("unpriced_spans", "model")
        # Labels whose values come from clients, by family: what the ingest workers' counters are folded by.
        self.bounded_labels = {PREFIX + "unpriced_spans": ("model", self.unpriced_model)}
        self.out_of_range_values = declare.counter(
            "out_of_range_values",
            "Canonical GenAI values out of range (a token count above 10^12, a cost above $1M), by field: "
            "kept in the span's attributes, left out of the column and the metrics.",
            ["field"],
        )
        self.truncated_nested_values = declare.counter(
            "truncated_nested_values",
            "Attribute values nested deeper than a request can be parsed with, cut to a marker at 20 levels.",
        )
        self.settled_traces = declare.counter("settled_traces", "Traces settled and written to metric_snapshots.")
        self.oldest_unsettled_at: int | None = None  # unix ns, set by the writer thread after each settling
        self.oldest_unsettled_age = declare.gauge(
            "oldest_unsettled_trace_age_seconds",
            "Seconds since the last span of the longest-quiet trace not yet settled (0 when none); "
            "above max_wait plus a few intervals, settling is falling behind.",
        )
        self.oldest_unsettled_age.set_function(self._oldest_unsettled_age)
        # The label is job_name, not job: Prometheus keeps `job` for the scrape target's job and would
        # rename ours to exported_job on scrape.
        self.maintenance_last_run = declare.gauge(
            "maintenance_last_run_timestamp_seconds",
            "Unix time at which a maintenance job (settle, retention, ...) last finished a round, failed or not.",
            ["job_name"],
        )
        self.maintenance_duration = declare.histogram(
            "maintenance_duration_seconds",
            "Time one round of a maintenance job took (on the writer thread, between batches; checkpoint on its own).",
            ["job_name"],
            buckets=_LATENCY_BUCKETS,
        )
        self.maintenance_errors = declare.counter(
            "maintenance_errors",
            "Rounds of a maintenance job that failed; the job runs again after its interval.",
            ["job_name"],
        )

    def _oldest_unsettled_age(self) -> float:
        oldest = self.oldest_unsettled_at
        return 0.0 if oldest is None else max(0.0, (time.time_ns() - oldest) / 1e9)

    def watch_retention(self, max_size: int | None, oldest_trace_ns: Callable[[], int | None]) -> None:
        """The retention gauges: the age of the oldest stored trace, and the size bound when there is one
        (absent otherwise, so that an alert comparing the database size with it never fires)."""
        declare = Declare(self.registry)
        self.retention_deleted_traces = declare.counter(
            "retention_deleted_traces", "Traces deleted by retention, by reason (age, size, disk_full).", ["reason"]
        )
        self.retention_deleted_spans = declare.counter(
            "retention_deleted_spans",
            "Spans deleted by retention with their traces, by reason (age, size, disk_full).",
            ["reason"],
        )
        self.retention_deleted_snapshots = declare.counter(
            "retention_deleted_snapshots", "metric_snapshots rows deleted past retention.snapshots_max_age."
        )
        self.retention_reclaimed_bytes = declare.counter(
            "retention_reclaimed_bytes", "Bytes of database file handed back to the file system after deletions."
        )
        oldest_age = declare.gauge(
            "retention_oldest_trace_age_seconds",
            "Time since the oldest stored trace got its last span (0 when no trace is stored).",
        )

        def age() -> float:
            oldest = oldest_trace_ns()
            return 0.0 if oldest is None else max(0.0, time.time() - oldest / 1e9)

        oldest_age.set_function(age)
        if max_size is not None:
            declare.gauge(
                "retention_max_size_bytes",
                "retention.max_size: the bound on genai_collector_database_size_bytes (main + wal).",
            ).set(max_size)

    def bounded_label(self, metric: str, label: str) -> BoundedLabel:
        return BoundedLabel(metric, label, self.label_cap, self.label_overflow)

    def watch_ingest_workers(self, serving: Callable[[], int]) -> None:
        """``genai_collector_ingest_workers``: the ingest worker processes serving, as ``serving`` counts them."""
        Declare(self.registry).gauge(
            "ingest_workers",
            "Ingest worker processes serving (ingest.workers; 0: the main process receives OTLP itself); "
            "below the configured count while a worker restarts.",
        ).set_function(serving)

    def watch_database(self, disk_usage: Callable[[], dict[str, int]]) -> None:
        """``genai_collector_database_size_bytes``: ``disk_usage`` gives the bytes by file (the store's)."""
        self.registry.register(DatabaseSize(disk_usage))


class GenAIInstruments:
    """The GenAI metrics (``observability.genai_metrics`` observes them): the OpenTelemetry GenAI client
    histograms, named as the semantic conventions say (no prefix), with ``client_labels`` (the default labels and
    the configured ``metrics.dimensions``), and the collector's figures of cost, settled traces and evaluations."""

    def __init__(self, registry: CollectorRegistry, client_labels: Sequence[str]) -> None:
        declare, semconv = Declare(registry), Declare(registry, prefix="")
        self.token_usage = semconv.histogram(
            "gen_ai_client_token_usage",
            "Number of input and output tokens used per model call ({token}).",
            [*client_labels, "gen_ai_token_type"],
            buckets=TOKEN_BUCKETS,
        )
        self.operation_duration = semconv.histogram(
            "gen_ai_client_operation_duration",
            "GenAI operation duration (span end minus start); error_type is empty unless the span failed.",
            [*client_labels, "error_type"],
            unit="seconds",
            buckets=OPERATION_BUCKETS,
        )
        self.time_to_first_chunk = semconv.histogram(
            "gen_ai_client_operation_time_to_first_chunk",
            "Time from the request to the first chunk of a streamed response.",
            client_labels,
            unit="seconds",
            buckets=OPERATION_BUCKETS,
        )
        self.cost = declare.counter(
            "cost_usd",
            "Cost of model calls in US dollars, as reported by the client or priced from the token counts.",
            ["service_name", "gen_ai_provider_name", "gen_ai_request_model"],
        )
        self.trace_duration = declare.histogram(
            "trace_duration",
            "Duration of settled traces, first span start to last span end.",
            ["service_name"],
            unit="seconds",
            buckets=TRACE_BUCKETS,
        )
        self.snapshots = declare.counter("snapshots", "Trace snapshots written, by snapshot metric.", ["metric"])
        self.breaches = declare.counter(
            "breaches",
            "Threshold rules that went from met to breached, by rule and snapshot metric.",
            ["rule", "metric"],
        )
        self.evaluation_score = declare.histogram(
            "evaluation_score",
            "Evaluation scores (gen_ai.evaluation.score.value), by evaluation name.",
            ["gen_ai_evaluation_name"],
            buckets=SCORE_BUCKETS,
        )


class AuthMetrics:
    """API-key authentication on every listener (``collector.auth``)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        declare = Declare(registry)
        self.failures = declare.counter(
            "auth_failures",
            "Requests refused by authentication, by listener and reason "
            "(missing_key, malformed, unknown_key, expired_session, missing_scope, rate_limited).",
            ["listener", "reason"],
        )
        self.authenticated = declare.counter(
            "auth_requests",
            "Requests let through with an API key (or a dashboard session), by listener and key name.",
            ["listener", "key"],
        )


class LiveMetrics:
    """The WebSocket live feed (``collector.query.live``)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        declare = Declare(registry)
        self.clients = declare.gauge("live_clients", "WebSocket live-feed clients connected.")
        self.dropped = declare.counter(
            "live_dropped_messages", "Live-feed messages dropped because a client read too slowly."
        )
        self.dropped_traces = declare.counter(
            "live_dropped_traces", "Trace summaries in the live-feed messages dropped because a client read too slowly."
        )
        self.disconnected = declare.counter(
            "live_disconnected_clients",
            "Live-feed clients disconnected for falling too far behind or a send timing out.",
        )
