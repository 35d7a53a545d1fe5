"""The records that flow from decode to storage."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from collector.genai.normalize import GenAI

Attributes = dict[str, Any]

# The GenAI categories of a model call: priced, summed into the token and cost rollups, counted by the GenAI
# metrics and the live feed. A tuple, so that SQL built from it (``storage.sqlite.conditions.MODEL_CALL``) reads
# the same in every process: the partial index ``spans_genai_calls`` serves only a condition written as it is.
CALL_CATEGORIES: tuple[str, ...] = ("llm", "embedding")


class Span(NamedTuple):
    """One decoded span; ids are lowercase hex, times unix nanoseconds, kind and status lower-case names."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    trace_state: str | None
    flags: int
    name: str
    kind: str
    start_time_unix_nano: int
    end_time_unix_nano: int
    status_code: str
    status_message: str | None
    service_name: str | None
    scope_name: str | None
    scope_version: str | None
    resource_attributes: Attributes
    attributes: Attributes
    events: list[dict[str, Any]]
    links: list[dict[str, Any]]
    dropped_attributes_count: int
    dropped_events_count: int
    dropped_links_count: int
    genai: GenAI | None = None  # canonical GenAI columns, set by the transform step
    cost_usd: float | None = None  # the client's cost, else priced from the token counts; None when unknown


@dataclass(frozen=True, slots=True)
class Rejection:
    """Spans of one request that cannot be stored, and why (the first reason, for the client's message)."""

    count: int
    first_reason: str | None

    @property
    def message(self) -> str:
        if not self.count:
            return ""
        noun = "span" if self.count == 1 else "spans"
        return f"{self.count} {noun} rejected; first: {self.first_reason}"


NO_REJECTION = Rejection(0, None)


class LogEvent(NamedTuple):
    """A GenAI event (from an OTLP log record or a span event), or a kept log record.

    ``source`` is ``log`` or ``span``; ids are hex or None when the record carries none.
    """

    trace_id: str | None
    span_id: str | None
    time_unix_nano: int
    observed_time_unix_nano: int | None
    name: str | None
    source: str
    severity_number: int | None
    severity_text: str | None
    body: Any
    attributes: Attributes
    service_name: str | None
    scope_name: str | None
    resource_attributes: Attributes


class EvaluationRecord(NamedTuple):
    """A quality score of a response (``gen_ai.evaluation.result`` or OpenInference ``evaluations.N``)."""

    trace_id: str | None
    span_id: str | None
    response_id: str | None
    name: str
    score: float | None
    label: str | None
    explanation: str | None
    source: str  # log, span_event or span_attribute
    time_unix_nano: int
    # The resource and scope of the span or log record it came from (stored once, in ``resources``).
    resource_attributes: Attributes | None = None
    scope_name: str | None = None
    scope_version: str | None = None


@dataclass(slots=True)
class Records:
    """What one request asks to store; ``count`` is what it takes of the queue's capacity."""

    spans: list[Span] = field(default_factory=list)
    events: list[LogEvent] = field(default_factory=list)
    evaluations: list[EvaluationRecord] = field(default_factory=list)
    # The spans as the storage engine writes them, encoded ahead on the thread (or process) that decoded them
    # (``SpanStore.prepare``); None until then, and for engines that encode at write time.
    prepared: object | None = None

    @property
    def count(self) -> int:
        return len(self.spans) + len(self.events) + len(self.evaluations)
