"""The per-record steps between decode and the queue: normalize, price, redact, then apply the limits.

Normalization reads the attributes as they came (token counts and models are not content); redaction
runs before truncation so that a cut can never leave half an e-mail address behind the detectors.
What happened is returned as ``TransformStats`` for the caller to count; nothing here does I/O.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from collector.config import LimitsSettings, LogsSettings, Settings
from collector.model import Attributes, EvaluationRecord, LogEvent, Records, Span
from collector.normalize import (
    GENAI_EVENT_NAMES,
    Evaluation,
    GenAI,
    evaluation_from_event,
    evaluations_from_attributes,
    normalize,
    out_of_range,
)
from collector.pricing import PriceTable, cost_usd
from collector.redact import DROP, Redactor

EVALUATION_EVENT = "gen_ai.evaluation.result"
TRUNCATION_MARKER = "…[truncated {} chars]"
PRICED_CATEGORIES = frozenset({"llm", "embedding"})


@dataclass
class TransformStats:
    redactions: dict[str, int] = field(default_factory=dict)
    truncated_values: int = 0
    dropped_attributes: int = 0
    dropped_events: int = 0
    unpriced_models: Counter[str] = field(default_factory=Counter)
    dropped_log_records: int = 0
    out_of_range: Counter[str] = field(default_factory=Counter)  # canonical fields left empty, by field


def _evaluation_record(
    evaluation: Evaluation, trace_id: str | None, span_id: str | None, source: str, time_unix_nano: int
) -> EvaluationRecord:
    return EvaluationRecord(
        trace_id=trace_id,
        span_id=span_id,
        response_id=evaluation.response_id,
        name=evaluation.name,
        score=evaluation.score,
        label=evaluation.label,
        explanation=evaluation.explanation,
        source=source,
        time_unix_nano=time_unix_nano,
    )


class Transform:
    def __init__(self, settings: Settings, prices: PriceTable | None = None) -> None:
        self._redactor = Redactor(settings.redaction)
        self._prices = prices or PriceTable.load(settings.pricing)
        self._limits: LimitsSettings = settings.limits
        self._logs: LogsSettings = settings.logs

    def spans(self, spans: list[Span]) -> tuple[Records, TransformStats]:
        records = Records()
        stats = TransformStats()
        for span in spans:
            genai, rejected_fields = out_of_range(
                normalize(span.attributes, span.name, span.start_time_unix_nano, span.events)
            )
            if rejected_fields:
                stats.out_of_range.update(rejected_fields)
            genai = self._bounded_columns(genai, stats)
            cost = genai.client_cost_usd
            if cost is None and genai.category in PRICED_CATEGORIES:
                cost = self._price(genai, stats)
            for evaluation in evaluations_from_attributes(span.attributes):
                records.evaluations.append(
                    _evaluation_record(evaluation, span.trace_id, span.span_id, "span_attribute", span.end_time_unix_nano)
                )
            attributes, dropped_attributes = self._limit(self._redactor.attributes(span.attributes), stats)
            events = span.events
            dropped_events = 0
            if events:
                events, dropped_events = self._span_events(span, records, stats)
            records.spans.append(
                span._replace(
                    attributes=attributes,
                    events=events,
                    dropped_attributes_count=span.dropped_attributes_count + dropped_attributes,
                    dropped_events_count=span.dropped_events_count + dropped_events,
                    genai=genai,
                    cost_usd=cost,
                    name=self._truncate(span.name, stats),
                    service_name=self._truncate(span.service_name, stats),
                    status_message=self._truncate(span.status_message, stats),
                )
            )
        stats.redactions = self._redactor.take_counts()
        return records, stats

    def log_events(self, events: list[LogEvent]) -> tuple[Records, TransformStats]:
        """GenAI events (and, when configured, other log records), redacted; evaluations split out."""
        records = Records()
        stats = TransformStats()
        for event in events:
            is_genai = event.name in GENAI_EVENT_NAMES
            if not is_genai and not self._logs.keep_other:
                stats.dropped_log_records += 1
                continue
            if event.name == EVALUATION_EVENT:
                evaluation = evaluation_from_event(event.attributes)
                if evaluation is not None:
                    records.evaluations.append(
                        _evaluation_record(evaluation, event.trace_id, event.span_id, "log", event.time_unix_nano)
                    )
            body = event.body
            if body is not None and is_genai:
                body = self._redactor.value(body)
                body = None if body is DROP else self._truncate(body, stats)
            attributes, _ = self._limit(self._redactor.attributes(event.attributes, all_content=is_genai), stats)
            records.events.append(event._replace(body=body, attributes=attributes))
        stats.redactions = self._redactor.take_counts()
        return records, stats

    def _price(self, genai: Any, stats: TransformStats) -> float | None:
        model = genai.response_model or genai.request_model
        if model is None or (genai.input_tokens is None and genai.output_tokens is None):
            return None
        match = self._prices.lookup(model, genai.provider)
        if match is None:
            stats.unpriced_models[model] += 1
            return None
        return cost_usd(
            match[1],
            input_tokens=genai.input_tokens,
            output_tokens=genai.output_tokens,
            cache_read_tokens=genai.cache_read_tokens,
            cache_write_tokens=genai.cache_write_tokens,
        )

    def _span_events(
        self, span: Span, records: Records, stats: TransformStats
    ) -> tuple[list[dict[str, Any]], int]:
        kept = span.events[: self._limits.max_events]
        events = []
        for event in kept:
            name = event["name"]
            if name == EVALUATION_EVENT:
                evaluation = evaluation_from_event(event["attributes"])
                if evaluation is not None:
                    records.evaluations.append(
                        _evaluation_record(
                            evaluation, span.trace_id, span.span_id, "span_event", event["time_unix_nano"]
                        )
                    )
            redacted = self._redactor.attributes(event["attributes"], all_content=name in GENAI_EVENT_NAMES)
            attributes, _ = self._limit(redacted, stats)
            events.append(event if attributes is event["attributes"] else {**event, "attributes": attributes})
        dropped = len(span.events) - len(kept)
        stats.dropped_events += dropped
        return events, dropped

    def _limit(self, attributes: Attributes, stats: TransformStats) -> tuple[Attributes, int]:
        """Cap the number of attributes and the length of string values; returns how many were dropped."""
        limits = self._limits
        dropped = 0
        if len(attributes) > limits.max_attributes:
            dropped = len(attributes) - limits.max_attributes
            attributes = dict(list(attributes.items())[: limits.max_attributes])
            stats.dropped_attributes += dropped
        longest = limits.max_attribute_length
        if any(isinstance(value, str) and len(value) > longest for value in attributes.values()):
            attributes = {key: self._truncate(value, stats) for key, value in attributes.items()}
        return attributes, dropped

    def _bounded_columns(self, genai: GenAI, stats: TransformStats) -> GenAI:
        """The canonical text columns (models, ids, names) cut to ``max_attribute_length`` like attributes."""
        longest = self._limits.max_attribute_length
        if any(type(value) is str and len(value) > longest for value in genai):
            return GenAI._make(self._truncate(value, stats) for value in genai)
        return genai

    def _truncate(self, value: Any, stats: TransformStats) -> Any:
        longest = self._limits.max_attribute_length
        if isinstance(value, str) and len(value) > longest:
            stats.truncated_values += 1
            return value[:longest] + TRUNCATION_MARKER.format(len(value) - longest)
        return value
