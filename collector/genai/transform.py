"""The per-record steps between decode and the queue: redact, normalize, price, then apply the limits.

Redaction comes first, over every string that will be stored (names, status messages, attributes of
spans, events, links and resources, log bodies), so that the canonical columns and evaluations read
from the attributes hold no PII either; the allow-listed keys normalization needs (models, token
counts, ids) are never scanned. It runs before truncation so that a cut can never leave half an
e-mail address behind the detectors. A resource shared by many records is redacted once per call.
What happened is returned as ``TransformStats`` for the caller to count; nothing here does I/O.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

from collector.config import LogsSettings, Settings
from collector.genai.normalize import (
    GENAI_EVENT_NAMES,
    GENAI_TEXT_FIELDS,
    NOT_GENAI,
    Evaluation,
    GenAI,
    evaluation_from_event,
    evaluations_from_attributes,
    normalize,
    out_of_range,
)
from collector.genai.pricing import PriceTable, cost_usd
from collector.genai.redact import DROP, Redactor
from collector.model import CALL_CATEGORIES, Attributes, EvaluationRecord, LogEvent, Records, Span

EVALUATION_EVENT = "gen_ai.evaluation.result"
TRUNCATION_MARKER = "…[truncated {} chars]"


_new_span = tuple.__new__
# ``Transform.spans`` unpacks a span and builds the new one positionally, in this order.
_SPAN_FIELDS = (
    "trace_id",
    "span_id",
    "parent_span_id",
    "trace_state",
    "flags",
    "name",
    "kind",
    "start_time_unix_nano",
    "end_time_unix_nano",
    "status_code",
    "status_message",
    "service_name",
    "scope_name",
    "scope_version",
    "resource_attributes",
    "attributes",
    "events",
    "links",
    "dropped_attributes_count",
    "dropped_events_count",
    "dropped_links_count",
    "genai",
    "cost_usd",
)
if Span._fields != _SPAN_FIELDS:
    raise RuntimeError(f"Span's fields are no longer {_SPAN_FIELDS}: see Transform.spans")

# id of a resource's attributes -> (those attributes, kept alive so the id stays theirs; redacted; service name)
_Resources = dict[int, tuple[Attributes, Attributes, str | None]]


# The canonical fields that hold text (the others are counts, amounts and the finish reasons' tuple): the only
# ones a cut can apply to.
_genai_texts = attrgetter(*GENAI_TEXT_FIELDS)


def _same(new: list[Any], old: list[Any]) -> bool:
    return all(a is b for a, b in zip(new, old, strict=True))


def _has_longer(values: Iterable[Any], longest: int) -> bool:
    """Whether a string among ``values`` is longer than ``longest`` (a loop: ``any`` over a generator costs
    twice as much, and this runs for every span and its canonical fields)."""
    for value in values:  # noqa: SIM110 (the loop is the point: see the docstring)
        if isinstance(value, str) and len(value) > longest:
            return True
    return False


@dataclass
class TransformStats:
    redactions: dict[str, int] = field(default_factory=dict)
    truncated_values: int = 0
    dropped_attributes: int = 0
    dropped_events: int = 0
    unpriced_models: Counter[str] = field(default_factory=Counter)
    dropped_log_records: int = 0
    out_of_range: Counter[str] = field(default_factory=Counter)  # canonical fields left empty, by field


# A record's resource as the writer stores it: attributes, scope name, scope version.
Resource = tuple[Attributes, str | None, str | None]


class Transform:
    def __init__(self, settings: Settings, prices: PriceTable | None = None) -> None:
        self._redactor = Redactor(settings.redaction)
        self._prices = prices or PriceTable.load(settings.pricing)
        # Read for every span and event: plain ints (a settings model's attribute read costs several dict lookups).
        self._longest = settings.limits.max_attribute_length
        self._max_attributes = settings.limits.max_attributes
        self._max_events = settings.limits.max_events
        self._logs: LogsSettings = settings.logs

    def spans(self, spans: list[Span]) -> tuple[Records, TransformStats]:
        records = Records()
        stats = TransformStats()
        resources: _Resources = {}
        limited_resources: dict[int, Attributes] = {}
        redactor = self._redactor
        redacting = not redactor.unchanged
        text = redactor.text
        longest = self._longest
        stored = records.spans
        for span in spans:
            # Every field read once, as locals (a field read by name costs a descriptor call); every string that
            # will be stored redacted (the same objects when nothing changed); the span rebuilt once, at the end.
            (
                trace_id,
                span_id,
                parent_span_id,
                trace_state,
                flags,
                name,
                kind,
                start_time_unix_nano,
                end_time_unix_nano,
                status_code,
                status_message,
                service_name,
                scope_name,
                scope_version,
                resource_attributes,
                original_attributes,
                original_events,
                links,
                dropped_attributes_count,
                dropped_events_count,
                dropped_links_count,
                _,
                _,
            ) = span
            attributes, events = original_attributes, original_events
            if redacting:
                resource_attributes, service_name = self._resource(resource_attributes, service_name, resources)
                attributes = redactor.attributes(attributes)
                name, status_message, scope_name = text(name), text(status_message), text(scope_name)
                if events:
                    events = self._redact_events(events)
                if links:
                    links = self._redact_links(links)
            resource_attributes = self._limit_resource(resource_attributes, limited_resources, stats)
            genai, rejected_fields = out_of_range(normalize(attributes, name, start_time_unix_nano, events))
            if rejected_fields:
                stats.out_of_range.update(rejected_fields)
            if genai is not NOT_GENAI:
                genai = self._bounded_columns(genai, stats)
            cost = genai.client_cost_usd
            if cost is None and genai.category in CALL_CATEGORIES:
                cost = self._price(genai, stats)
            resource = (resource_attributes, scope_name, scope_version)
            for evaluation in evaluations_from_attributes(original_attributes):
                records.evaluations.append(
                    self._evaluation_record(
                        evaluation, trace_id, span_id, "span_attribute", end_time_unix_nano, resource
                    )
                )
            attributes, dropped_attributes = self._limit(attributes, stats)
            if events:
                events, dropped_events = self._span_events(span, events, resource, records, stats)
                dropped_events_count += dropped_events
            if len(name) > longest:
                name = self._truncate(name, stats)
            if service_name is not None and len(service_name) > longest:
                service_name = self._truncate(service_name, stats)
            if status_message is not None and len(status_message) > longest:
                status_message = self._truncate(status_message, stats)
            stored.append(
                _new_span(
                    Span,
                    (
                        trace_id,
                        span_id,
                        parent_span_id,
                        trace_state,
                        flags,
                        name,
                        kind,
                        start_time_unix_nano,
                        end_time_unix_nano,
                        status_code,
                        status_message,
                        service_name,
                        scope_name,
                        scope_version,
                        resource_attributes,
                        attributes,
                        events,
                        links,
                        dropped_attributes_count + dropped_attributes,
                        dropped_events_count,
                        dropped_links_count,
                        genai,
                        cost,
                    ),
                )
            )
        stats.redactions = self._redactor.take_counts()
        return records, stats

    def log_events(self, events: list[LogEvent]) -> tuple[Records, TransformStats]:
        """GenAI events (and, when configured, other log records), redacted; evaluations split out."""
        records = Records()
        stats = TransformStats()
        resources: _Resources = {}
        limited_resources: dict[int, Attributes] = {}
        redactor = self._redactor
        for event in events:
            is_genai = event.name in GENAI_EVENT_NAMES
            if not is_genai and not self._logs.keep_other:
                stats.dropped_log_records += 1
                continue
            resource_attributes, service_name = self._resource(event.resource_attributes, event.service_name, resources)
            resource_attributes = self._limit_resource(resource_attributes, limited_resources, stats)
            scope_name = redactor.text(event.scope_name)
            if event.name == EVALUATION_EVENT:
                evaluation = evaluation_from_event(event.attributes)
                if evaluation is not None:
                    records.evaluations.append(
                        self._evaluation_record(
                            evaluation,
                            event.trace_id,
                            event.span_id,
                            "log",
                            event.time_unix_nano,
                            (resource_attributes, scope_name, None),
                        )
                    )
            attributes, _ = self._limit(redactor.attributes(event.attributes, all_content=is_genai), stats)
            body = event.body
            if body is not None:
                body = redactor.value(body) if is_genai else redactor.other(body)
                body = None if body is DROP else self._truncate(body, stats) if is_genai else body
            records.events.append(
                event._replace(
                    name=redactor.text(event.name),
                    body=body,
                    attributes=attributes,
                    resource_attributes=resource_attributes,
                    service_name=service_name,
                    scope_name=scope_name,
                )
            )
        stats.redactions = self._redactor.take_counts()
        return records, stats

    def _redact_events(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """A span's events redacted (the same list when nothing changed); those past ``max_events``, which
        ``_span_events`` drops, are not looked at."""
        kept = events[: self._max_events]
        redacted = [self._redact_event(event) for event in kept]
        return events if _same(redacted, kept) else redacted + events[len(kept) :]

    def _redact_links(self, links: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """A span's links with their attributes redacted (the same list when nothing changed)."""
        attributes = self._redactor.attributes
        redacted = [
            link
            if (redacted_attributes := attributes(link["attributes"])) is link["attributes"]
            else {**link, "attributes": redacted_attributes}
            for link in links
        ]
        return links if _same(redacted, links) else redacted

    def _redact_event(self, event: dict[str, Any]) -> dict[str, Any]:
        name = event["name"]
        attributes = self._redactor.attributes(event["attributes"], all_content=name in GENAI_EVENT_NAMES)
        redacted_name = self._redactor.text(name)
        if attributes is event["attributes"] and redacted_name is name:
            return event
        return {**event, "name": redacted_name, "attributes": attributes}

    def _resource(
        self, attributes: Attributes, service_name: str | None, resources: _Resources
    ) -> tuple[Attributes, str | None]:
        """A resource's attributes and service name redacted once per call, however many records share it."""
        known = resources.get(id(attributes))
        if known is None or known[0] is not attributes:
            known = (attributes, self._redactor.attributes(attributes), self._redactor.text(service_name))
            resources[id(attributes)] = known
        return known[1], known[2]

    def _limit_resource(
        self, attributes: Attributes, limited: dict[int, Attributes], stats: TransformStats
    ) -> Attributes:
        """A resource's attributes within the limits, cut once per request: its records keep sharing one
        dict, which the writer stores once."""
        found = limited.get(id(attributes))
        if found is None:
            found = limited[id(attributes)] = self._limit(attributes, stats)[0]
        return found

    def _evaluation_record(
        self,
        evaluation: Evaluation,
        trace_id: str | None,
        span_id: str | None,
        source: str,
        time_unix_nano: int,
        resource: Resource,
    ) -> EvaluationRecord:
        """Read from the attributes as they came (content capture off must not lose scores), stored redacted."""
        text = self._redactor.text
        return EvaluationRecord(
            trace_id=trace_id,
            span_id=span_id,
            response_id=evaluation.response_id,
            name=text(evaluation.name) or evaluation.name,
            score=evaluation.score,
            label=text(evaluation.label),
            explanation=text(evaluation.explanation),
            source=source,
            time_unix_nano=time_unix_nano,
            resource_attributes=resource[0],
            scope_name=resource[1],
            scope_version=resource[2],
        )

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
        self,
        span: Span,
        events: list[dict[str, Any]],
        resource: Resource,
        records: Records,
        stats: TransformStats,
    ) -> tuple[list[dict[str, Any]], int]:
        """The span's (redacted) ``events`` within the limits, and how many were dropped; evaluation events
        are read from the span's events as they came and set aside in ``records``."""
        kept = events[: self._max_events]
        limited = []
        for event, original in zip(kept, span.events, strict=False):
            if original["name"] == EVALUATION_EVENT:
                evaluation = evaluation_from_event(original["attributes"])
                if evaluation is not None:
                    records.evaluations.append(
                        self._evaluation_record(
                            evaluation, span.trace_id, span.span_id, "span_event", event["time_unix_nano"], resource
                        )
                    )
            attributes, _ = self._limit(event["attributes"], stats)
            limited.append(event if attributes is event["attributes"] else {**event, "attributes": attributes})
        dropped = len(events) - len(kept)
        stats.dropped_events += dropped
        return limited, dropped

    def _limit(self, attributes: Attributes, stats: TransformStats) -> tuple[Attributes, int]:
        """Cap the number of attributes and the length of string values; returns how many were dropped."""
        most = self._max_attributes
        dropped = 0
        if len(attributes) > most:
            dropped = len(attributes) - most
            attributes = dict(list(attributes.items())[:most])
            stats.dropped_attributes += dropped
        if _has_longer(attributes.values(), self._longest):
            attributes = {key: self._truncate(value, stats) for key, value in attributes.items()}
        return attributes, dropped

    def _bounded_columns(self, genai: GenAI, stats: TransformStats) -> GenAI:
        """The canonical text columns (models, ids, names) cut to ``max_attribute_length`` like attributes."""
        if _has_longer(_genai_texts(genai), self._longest):
            return GenAI._make(self._truncate(value, stats) for value in genai)
        return genai

    def _truncate(self, value: Any, stats: TransformStats) -> Any:
        longest = self._longest
        if isinstance(value, str) and len(value) > longest:
            stats.truncated_values += 1
            return value[:longest] + TRUNCATION_MARKER.format(len(value) - longest)
        return value
