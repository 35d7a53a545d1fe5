"""Response models of the REST API: the OpenAPI document is generated from these (docs/query-api.md)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class ErrorBody(BaseModel):
    code: str
    message: str
    details: list[dict[str, Any]] | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


class BreachRef(BaseModel):
    metric: str
    rule: str | None
    value: float | None
    threshold: float | None


class TraceSummary(BaseModel):
    trace_id: str
    root_span_name: str | None
    service_name: str | None
    start_time_unix_nano: int
    end_time_unix_nano: int
    duration_ms: float
    span_count: int
    error_count: int
    llm_calls: int
    input_tokens: int
    output_tokens: int
    total_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    cost_usd: float | None
    models: list[str]
    agents: list[str]
    has_root: bool
    settled: bool
    breaches: list[BreachRef]


class TracePage(BaseModel):
    data: list[TraceSummary]
    next_cursor: str | None


class SkeletonSpan(BaseModel):
    span_id: str
    parent_span_id: str | None
    depth: int
    orphan: bool
    child_count: int
    name: str
    kind: str
    status_code: str
    status_message: str | None
    service_name: str | None
    start_time_unix_nano: int
    end_time_unix_nano: int
    duration_ms: float
    category: str | None
    operation: str | None
    provider: str | None
    model: str | None
    input_tokens: int | None
    output_tokens: int | None
    total_tokens: int | None
    cache_read_tokens: int | None
    reasoning_tokens: int | None
    cost_usd: float | None
    ttft_ms: float | None
    agent_name: str | None
    tool_name: str | None
    duplicate_of: str | None


class TraceSkeleton(BaseModel):
    trace: TraceSummary
    spans: list[SkeletonSpan]
    total_spans: int
    truncated: bool
    next_cursor: str | None


class Resource(BaseModel):
    attributes: dict[str, Any]
    scope_name: str | None
    scope_version: str | None


class GenAIEvent(BaseModel):
    name: str | None
    time_unix_nano: int
    source: str
    body: Any
    attributes: dict[str, Any]
    severity_text: str | None


class SpanEvaluation(BaseModel):
    name: str
    score: float | None
    label: str | None
    explanation: str | None
    source: str
    time_unix_nano: int


class SpanDetail(BaseModel):
    trace_id: str
    span_id: str
    parent_span_id: str | None
    trace_state: str | None
    flags: int
    name: str
    kind: str
    status_code: str
    status_message: str | None
    service_name: str | None
    start_time_unix_nano: int
    end_time_unix_nano: int
    duration_ms: float
    attributes: dict[str, Any]
    events: list[dict[str, Any]]
    links: list[dict[str, Any]]
    dropped_attributes_count: int
    dropped_events_count: int
    dropped_links_count: int
    resource: Resource
    genai: dict[str, Any]
    genai_events: list[GenAIEvent]
    evaluations: list[SpanEvaluation]


class LatencyPoint(BaseModel):
    time_unix_nano: int
    count: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None


class LatencySeries(BaseModel):
    group: str | None
    points: list[LatencyPoint]


class LatencyStats(BaseModel):
    of: str
    group_by: str
    bucket_seconds: float
    series: list[LatencySeries]


class CostFigures(BaseModel):
    cost_usd: float | None
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    reasoning_tokens: int
    total_tokens: int
    llm_requests: int
    cost_per_1k_llm_requests_usd: float | None
    unpriced_calls: int


class CostPoint(CostFigures):
    time_unix_nano: int


class CostSeries(BaseModel):
    group: str | None
    totals: CostFigures
    points: list[CostPoint]


class CostStats(BaseModel):
    group_by: str
    bucket_seconds: float
    totals: CostFigures
    series: list[CostSeries]


class EvaluationPoint(BaseModel):
    time_unix_nano: int
    count: int
    mean: float | None
    p50: float | None
    share_below: float | None


class EvaluationSeries(BaseModel):
    name: str
    threshold: float | None
    points: list[EvaluationPoint]


class EvaluationStats(BaseModel):
    bucket_seconds: float
    series: list[EvaluationSeries]


class Breach(BaseModel):
    id: int
    trace_id: str
    service_name: str | None
    root_span_name: str | None
    metric: str
    value: float | None
    threshold: float | None
    breached: bool
    rule: str | None
    computed_at_unix_nano: int


class BreachPage(BaseModel):
    data: list[Breach]
    next_cursor: str | None


class Evaluation(BaseModel):
    id: int
    trace_id: str | None
    span_id: str | None
    response_id: str | None
    name: str
    score: float | None
    label: str | None
    explanation: str | None
    source: str
    time_unix_nano: int


class EvaluationPage(BaseModel):
    data: list[Evaluation]
    next_cursor: str | None


class Service(BaseModel):
    name: str


class ServiceList(BaseModel):
    data: list[Service]


class Model(BaseModel):
    name: str
    provider: str | None
    calls: int


class ModelList(BaseModel):
    data: list[Model]


class Threshold(BaseModel):
    metric: str
    above: float | None
    below: float | None
    service: str | None
    model: str | None
    agent: str | None
    rule: str


class ThresholdList(BaseModel):
    data: list[Threshold]
