"""Response models of the REST API: the OpenAPI document is generated from these (docs/query-api.md).

The records inside the answers (a trace summary, a span, a breach...) are the reader's own shapes, defined once in
``storage.read``; here are the envelopes around them (pages, stats) and what only the API answers with.
"""

from __future__ import annotations

from typing import Any, get_type_hints

from pydantic import BaseModel, create_model

from collector.storage import read
from collector.storage.read import (
    Breach,
    Evaluation,
    EvaluationSeries,
    LatencySeries,
    Model,
    SkeletonSpan,
    TraceSummary,
)


def _model_of(shape: type[Any]) -> type[BaseModel]:
    """A response model with exactly the fields of a reader's record (a ``TypedDict``): for an answer that is
    one record, which FastAPI documents and the tests validate as a model."""
    fields: dict[str, Any] = {name: (annotation, ...) for name, annotation in get_type_hints(shape).items()}
    return create_model(shape.__name__, __module__=__name__, **fields)


SpanDetail = _model_of(read.SpanDetail)


class ErrorBody(BaseModel):
    code: str
    message: str
    details: list[dict[str, Any]] | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


class TracePage(BaseModel):
    data: list[TraceSummary]
    next_cursor: str | None


class TraceSkeleton(BaseModel):
    trace: TraceSummary
    spans: list[SkeletonSpan]
    total_spans: int
    truncated: bool
    next_cursor: str | None


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


class EvaluationStats(BaseModel):
    bucket_seconds: float
    series: list[EvaluationSeries]


class BreachPage(BaseModel):
    data: list[Breach]
    next_cursor: str | None


class EvaluationPage(BaseModel):
    data: list[Evaluation]
    next_cursor: str | None


class Service(BaseModel):
    name: str


class ServiceList(BaseModel):
    data: list[Service]


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
