"""Prometheus metrics derived from what the collector stores: GenAI spans, evaluations, settled traces, snapshots.

The ``gen_ai_client_*`` histograms are the OpenTelemetry GenAI client metrics (REFERENCE.md section 2) in
Prometheus spelling: dots become underscores and seconds get their unit suffix; ``{token}`` is not a unit
Prometheus knows, so the token histogram has none. Each histogram observation carries the exemplar
``{trace_id="<hex>"}`` (shown in the OpenMetrics exposition only) to jump from a bucket to a trace.

Cardinality (REFERENCE.md section 3): a small default label set, extra labels only from
``metrics.dimensions``, and every label value a client chooses passes a ``BoundedLabel``. The span labels
are bounded once per label name for all span metrics, so a model folded into ``_other`` is folded in every
one of them and the metrics still join; those folds are counted as
``genai_collector_label_overflow_total{metric="gen_ai_client",label=...}``.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Container, Sequence
from operator import attrgetter
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.samples import Exemplar

from collector.config import MetricsSettings
from collector.model import CALL_CATEGORIES, EvaluationRecord, SpanSummary
from collector.observability.metrics import BoundedLabel, GenAIInstruments

# Spans normalize placed in one of these categories are GenAI operations; "other" (a session id alone,
# an operation name it does not know) is not observed, which also keeps gen_ai_operation_name small.
OPERATION_CATEGORIES = frozenset({"llm", "embedding", "tool", "agent", "retrieval", "workflow"})

# error.type is set only when the operation failed; Prometheus reads an empty label value as no label.
NO_ERROR = ""
OTHER_ERROR = "_OTHER"

# The overflow counter's `metric` for the labels every span metric shares.
SPAN_METRICS = "gen_ai_client"
CLIENT_LABELS = ("gen_ai_provider_name", "gen_ai_request_model", "gen_ai_operation_name")

# metrics.dimensions: each option's label name, and where a span's summary keeps its value.
DIMENSIONS: dict[str, tuple[str, Callable[[SpanSummary], str | None]]] = {
    "service": ("service_name", attrgetter("service_name")),
    "agent": ("gen_ai_agent_name", attrgetter("agent_name")),
    "tool": ("gen_ai_tool_name", attrgetter("tool_name")),
    "category": ("gen_ai_category", attrgetter("category")),
}

LabelValues = tuple[str, ...]


class Children(dict[LabelValues, Any]):
    """One metric's children by label values, so that the hot path skips ``labels()`` (a third of its time).

    The label values are bounded, so is this map: it holds the series the registry holds anyway.
    """

    def __init__(self, metric: Counter | Histogram) -> None:
        super().__init__()
        self._metric = metric

    def __missing__(self, values: LabelValues) -> Any:
        child = self[values] = self._metric.labels(*values)
        return child


# One batch's observations of one histogram child: (value, trace id of the span) in the order observed.
Observations = list[tuple[float, str]]


def observe_batch(child: Any, observations: Observations) -> None:
    """What ``child.observe(value, {"trace_id": trace_id})`` does for each observation, with one lock per bucket
    touched instead of two per value: each value counted in the first bucket whose bound it does not exceed,
    the values added to the sum, and each bucket's exemplar the last value that fell into it. It reads the
    histogram child's buckets and bounds (prometheus_client's ``Histogram`` internals, held to ``observe`` by
    tests/observability/test_genai_metrics.py)."""
    bounds = child._upper_bounds
    counts = [0] * len(bounds)
    last: dict[int, tuple[float, str]] = {}
    total = 0.0
    for value, trace_id in observations:
        total += value
        index = bisect_left(bounds, value)
        if index < len(bounds) and value <= bounds[index]:  # a NaN falls into no bucket, as with observe
            counts[index] += 1
            last[index] = (value, trace_id)
    child._sum.inc(total)
    buckets = child._buckets
    for index, count in enumerate(counts):
        if count:
            buckets[index].inc(count)
    now = time.time()
    for index, (value, trace_id) in last.items():
        buckets[index].set_exemplar(Exemplar({"trace_id": trace_id}, value, now))


def _add(histograms: dict[Any, Observations], child: Any, value: float, trace_id: str) -> None:
    found = histograms.get(child)
    if found is None:
        histograms[child] = [(value, trace_id)]
    else:
        found.append((value, trace_id))


class GenAIMetrics:
    """The GenAI metrics on an injected registry; ``overflow`` is ``CollectorMetrics.label_overflow``."""

    def __init__(self, registry: CollectorRegistry, settings: MetricsSettings, overflow: Counter) -> None:
        cap = settings.max_label_values

        def bounded(metric: str, label: str) -> BoundedLabel:
            return BoundedLabel(metric, label, cap, overflow)

        self._provider = bounded(SPAN_METRICS, "gen_ai_provider_name")
        self._model = bounded(SPAN_METRICS, "gen_ai_request_model")
        self._operation = bounded(SPAN_METRICS, "gen_ai_operation_name")
        self._error_type = bounded(SPAN_METRICS, "error_type")
        self._service = bounded(SPAN_METRICS, "service_name")
        # In the allowlist's order, each at most once, whatever order the settings list them in.
        chosen = [name for name in DIMENSIONS if name in settings.dimensions]
        self._dimensions: tuple[tuple[Callable[[SpanSummary], str | None], BoundedLabel], ...] = tuple(
            (DIMENSIONS[name][1], self._service if name == "service" else bounded(SPAN_METRICS, DIMENSIONS[name][0]))
            for name in chosen
        )
        dimension_labels = [DIMENSIONS[name][0] for name in chosen]
        client_labels = [*CLIENT_LABELS, *dimension_labels]

        instruments = GenAIInstruments(registry, client_labels)
        self.token_usage = instruments.token_usage
        self.operation_duration = instruments.operation_duration
        self.time_to_first_chunk = instruments.time_to_first_chunk
        self.cost = instruments.cost
        self.trace_duration = instruments.trace_duration
        self.snapshots = instruments.snapshots
        self.breaches = instruments.breaches
        self.evaluation_score = instruments.evaluation_score
        self._trace_service = bounded("trace_duration_seconds", "service_name")
        self._snapshot_metric = bounded("snapshots", "metric")
        self._rule = bounded("breaches", "rule")
        self._evaluation_name = bounded("evaluation_score", "gen_ai_evaluation_name")

        self._durations = Children(self.operation_duration)
        self._ttfts = Children(self.time_to_first_chunk)
        self._tokens = Children(self.token_usage)
        self._costs = Children(self.cost)

    def observe_spans(
        self, spans: Sequence[SpanSummary], repeated_calls: Container[tuple[str, str]] = frozenset()
    ) -> None:
        """Observe the GenAI operations of a committed batch (its spans' summaries); other spans cost one check
        each.

        ``repeated_calls`` holds the (trace id, span id) of spans whose model call another span
        counts (``collector.genai.calls``): they are not observed, so that a call is counted once.
        The batch's values are gathered by series and each series is updated once (``observe_batch``).
        """
        histograms: dict[Any, Observations] = {}
        costs: dict[Any, float] = {}
        for span in spans:
            if span.category not in OPERATION_CATEGORIES:
                continue
            trace_id = span.trace_id
            if repeated_calls and (trace_id, span.span_id) in repeated_calls:
                continue
            provider = self._provider(span.provider)
            model = self._model(span.response_model or span.request_model)
            labels: LabelValues = (provider, model, self._operation(span.operation))
            if self._dimensions:
                labels += tuple(bounded(value(span)) for value, bounded in self._dimensions)

            seconds = (span.end_time_unix_nano - span.start_time_unix_nano) / 1e9
            if seconds >= 0:
                _add(histograms, self._durations[(*labels, self._error_label(span))], seconds, trace_id)
            if span.ttft_ms is not None:
                _add(histograms, self._ttfts[labels], span.ttft_ms / 1000, trace_id)

            # Only model calls: agent and workflow spans may repeat their children's totals.
            if span.category not in CALL_CATEGORIES:
                continue
            if span.input_tokens is not None:
                _add(histograms, self._tokens[(*labels, "input")], span.input_tokens, trace_id)
            if span.output_tokens is not None:
                _add(histograms, self._tokens[(*labels, "output")], span.output_tokens, trace_id)
            if span.cost_usd is not None:
                child = self._costs[(self._service(span.service_name), provider, model)]
                costs[child] = costs.get(child, 0.0) + span.cost_usd
        for child, observations in histograms.items():
            observe_batch(child, observations)
        for child, cost in costs.items():
            child.inc(cost)

    def _error_label(self, span: SpanSummary) -> str:
        if span.status_code != "error":
            return NO_ERROR
        return self._error_type(span.error_type or OTHER_ERROR)

    def observe_evaluations(self, evaluations: Sequence[EvaluationRecord]) -> None:
        for evaluation in evaluations:
            if evaluation.score is None:
                continue
            exemplar = {"trace_id": evaluation.trace_id} if evaluation.trace_id else None
            self.evaluation_score.labels(self._evaluation_name(evaluation.name)).observe(evaluation.score, exemplar)

    def observe_trace(self, service: str | None, duration_seconds: float, trace_id: str) -> None:
        """A trace settled: its root service (None when unknown) and its duration."""
        self.trace_duration.labels(self._trace_service(service)).observe(duration_seconds, {"trace_id": trace_id})

    def observe_snapshot(self, metric: str, rule: str | None, breached_now: bool) -> None:
        """A snapshot was written; ``breached_now`` only when its rule went from met to breached."""
        metric = self._snapshot_metric(metric)
        self.snapshots.labels(metric).inc()
        if breached_now:
            self.breaches.labels(self._rule(rule), metric).inc()
