"""The records that flow from decode to storage."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from operator import attrgetter
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


class SpanSummary(NamedTuple):
    """What the writer's process reads of a span besides its encoded row: its key (which spans a commit stored
    for the first time), and the values the GenAI metrics and the live cost feed count once it is stored. Flat
    scalars, cheap to pickle: an ingest worker hands the main process these and the rows (``Records``), not
    the spans with their attributes and events. Built by ``summarize``."""

    trace_id: str
    span_id: str
    start_time_unix_nano: int
    end_time_unix_nano: int
    status_code: str
    error_type: str | None  # the ``error.type`` attribute of a failed span, when it is a non-empty string
    service_name: str | None
    category: str | None  # None: not normalized (no ``GenAI``)
    provider: str | None
    request_model: str | None
    response_model: str | None
    operation: str | None
    agent_name: str | None
    tool_name: str | None
    response_id: str | None
    input_tokens: int | None
    output_tokens: int | None
    ttft_ms: float | None
    cost_usd: float | None


_SUMMARY_SPAN_FIELDS = ("trace_id", "span_id", "start_time_unix_nano", "end_time_unix_nano", "status_code")
_SUMMARY_GENAI_FIELDS = SpanSummary._fields[SpanSummary._fields.index("category") : -1]
_summary_span_values = attrgetter(*_SUMMARY_SPAN_FIELDS)
_summary_genai_values = attrgetter(*_SUMMARY_GENAI_FIELDS)
_NO_GENAI_SUMMARY = (None,) * len(_SUMMARY_GENAI_FIELDS)
_new_summary = tuple.__new__


def summarize(spans: Sequence[Span]) -> list[SpanSummary]:
    """The spans' summaries, in order; pure (an ingest thread or worker process builds them)."""
    summaries = []
    for span in spans:
        error_type = None
        if span.status_code == "error":
            value = span.attributes.get("error.type")
            error_type = value if isinstance(value, str) and value else None
        genai = span.genai
        summaries.append(
            _new_summary(
                SpanSummary,
                (
                    *_summary_span_values(span),
                    error_type,
                    span.service_name,
                    *(_NO_GENAI_SUMMARY if genai is None else _summary_genai_values(genai)),
                    span.cost_usd,
                ),
            )
        )
    return summaries


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
    """What one request asks to store; ``count`` is what it takes of the queue's capacity.

    The writer needs a span's row (``prepared``, or the span to encode it from) and its summary (``summaries``).
    Records handed from an ingest worker to the main process carry no ``spans`` when the engine encoded their
    rows ahead (``without_spans``): the rows and summaries are all the writer's process reads of them.
    """

    spans: list[Span] = field(default_factory=list)
    events: list[LogEvent] = field(default_factory=list)
    evaluations: list[EvaluationRecord] = field(default_factory=list)
    # The spans as the storage engine writes them, encoded ahead on the thread (or process) that decoded them
    # (``SpanStore.prepare``); None until then, and for engines that encode at write time.
    prepared: object | None = None
    # ``summarize(spans)``, built once by ``summarize``: on an ingest thread, or by the writer if nobody did.
    summaries: list[SpanSummary] | None = None

    @property
    def span_count(self) -> int:
        return len(self.spans) if self.summaries is None else len(self.summaries)

    @property
    def count(self) -> int:
        return self.span_count + len(self.events) + len(self.evaluations)

    def summarize(self) -> list[SpanSummary]:
        """The spans' summaries, built on the first call."""
        if self.summaries is None:
            self.summaries = summarize(self.spans)
        return self.summaries

    def without_spans(self) -> Records:
        """What the writer's process needs of these records once their rows are encoded (``prepared``): the
        same records without the spans (their rows and summaries stand for them); as they are otherwise."""
        if self.prepared is None or not self.spans:
            return self
        return Records(
            events=self.events, evaluations=self.evaluations, prepared=self.prepared, summaries=self.summarize()
        )
