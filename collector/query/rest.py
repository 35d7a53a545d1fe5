"""REST ``/api/v1``: traces, one trace's skeleton, span detail, stats, breaches, evaluations, services, models.

Handlers validate their parameters, ask the ``TraceReader`` and shape the answer; no SQL here.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BeforeValidator, Field

from collector.config import EVAL_PREFIX, SnapshotRule
from collector.query import models
from collector.query.params import (
    NS_PER_SECOND,
    BadRequest,
    auto_bucket,
    decode_cursor,
    encode_cursor,
    parse_attribute,
    parse_go_duration,
    parse_time,
)
from collector.query.responses import JSONAnswer
from collector.storage.read import (
    COST_FIELDS,
    BreachQuery,
    CostGroup,
    EvaluationQuery,
    LatencyGroup,
    LatencyOf,
    Page,
    StatsRange,
    TraceQuery,
    TraceReader,
)

HOUR_NS = 3_600 * NS_PER_SECOND
DAY_NS = 24 * HOUR_NS
MAX_SPAN_FILTER_RANGE_NS = 7 * DAY_NS
MAX_STATS_RANGE_NS = 31 * DAY_NS
MAX_SKELETON_PAGE = 20_000

TimeParam = Annotated[int, BeforeValidator(parse_time), Field(description="RFC 3339 or unix nanoseconds")]
Bucket = Annotated[
    int, BeforeValidator(lambda value: parse_go_duration(str(value))), Field(description="a duration: 10s, 1m, 1h, 1d")
]
HexTraceId = Annotated[str, Field(pattern=r"^[0-9a-fA-F]{32}$")]
HexSpanId = Annotated[str, Field(pattern=r"^[0-9a-fA-F]{16}$")]


def _attribute_pairs(values: list[str]) -> list[tuple[str, Any]]:
    return [parse_attribute(value) for value in values]


async def reader(request: Request) -> TraceReader:
    """Async so that FastAPI calls it on the event loop: a plain ``def`` dependency runs on a worker thread, a
    hop there and back per request that, under load, waits for the interpreter twice."""
    return request.app.state.reader  # type: ignore[no-any-return]


Reader = Annotated[TraceReader, Depends(reader)]


def _now_ns() -> int:
    return time.time_ns()


def _range(start: int | None, end: int | None, default_span_ns: int | None) -> tuple[int | None, int | None]:
    if start is None and default_span_ns is not None:
        end = end if end is not None else _now_ns()
        start = end - default_span_ns
    if start is not None and end is not None and start >= end:
        raise BadRequest("start must be before end")
    return start, end


def _stats_range(start: int | None, end: int | None, bucket: int | None, default_span_ns: int) -> tuple[int, int, int]:
    end = end if end is not None else _now_ns()
    start = start if start is not None else end - default_span_ns
    if start >= end:
        raise BadRequest("start must be before end")
    if end - start > MAX_STATS_RANGE_NS:
        raise BadRequest("the time range is longer than 31 days; narrow it", "query_too_broad")
    return start, end, auto_bucket(start, end, bucket)


def _answer(content: Mapping[str, Any]) -> JSONResponse:
    """The reader's typed records are already in the response model's shape: serialize them once, without
    validating them again (the models document the answer in OpenAPI and are checked by the tests)."""
    return JSONAnswer(content)


def _page_answer(kind: str, page: Page) -> JSONResponse:
    """A page of a keyset-paginated list, and the cursor (of its ``kind``) to the next one while more follow."""
    return _answer({"data": page["data"], "next_cursor": encode_cursor(kind, page["after"]) if page["after"] else None})


def evaluation_thresholds(rules: tuple[SnapshotRule, ...]) -> dict[str, float]:
    """The ``below`` of each ``eval:<name>`` rule: the unscoped rule's, else the first one's."""
    thresholds: dict[str, float] = {}
    for rule in sorted(rules, key=lambda rule: bool(rule.scope)):
        if rule.metric.startswith(EVAL_PREFIX) and rule.below is not None:
            thresholds.setdefault(rule.metric.removeprefix(EVAL_PREFIX), rule.below)
    return thresholds


def _cost_figures(points: list[dict[str, Any]]) -> dict[str, Any]:
    costs = [point["cost_usd"] for point in points if point["cost_usd"] is not None]
    figures: dict[str, Any] = {key: sum(point[key] for point in points) for key in COST_FIELDS if key != "cost_usd"}
    figures["cost_usd"] = sum(costs) if costs else None
    return _with_cost_per_1k(figures)


def _with_cost_per_1k(figures: dict[str, Any]) -> dict[str, Any]:
    requests, cost = figures["llm_requests"], figures["cost_usd"]
    figures["cost_per_1k_llm_requests_usd"] = 1000 * cost / requests if requests and cost is not None else None
    return figures


def router(snapshot_rules: tuple[SnapshotRule, ...]) -> APIRouter:
    api = APIRouter(prefix="/api/v1", tags=["v1"])
    thresholds = evaluation_thresholds(snapshot_rules)

    @api.get("/traces", response_model=models.TracePage, summary="Trace summaries, filtered and sorted")
    async def list_traces(
        reader: Reader,
        start: TimeParam | None = None,
        end: TimeParam | None = None,
        service: str | None = None,
        root_name: str | None = None,
        status: Literal["error", "ok"] | None = None,
        model: str | None = None,
        provider: str | None = None,
        agent: str | None = None,
        min_duration_ms: Annotated[float | None, Query(ge=0)] = None,
        max_duration_ms: Annotated[float | None, Query(ge=0)] = None,
        min_cost_usd: Annotated[float | None, Query(ge=0)] = None,
        max_cost_usd: Annotated[float | None, Query(ge=0)] = None,
        breached: Annotated[str | None, Query(description="true, false, or a metric name")] = None,
        evaluation: str | None = None,
        evaluation_below: float | None = None,
        conversation_id: str | None = None,
        user_id: str | None = None,
        attr: Annotated[list[str] | None, Query(description="key:value, repeatable")] = None,
        sort: Literal["start_time", "duration", "cost"] = "start_time",
        order: Literal["desc", "asc"] = "desc",
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        cursor: str | None = None,
    ) -> JSONResponse:
        start, end = _range(start, end, None)
        kind = f"traces:{sort}:{order}"
        query = TraceQuery(
            start_ns=start,
            end_ns=end,
            service=service,
            root_name=root_name,
            status=status,
            model=model,
            provider=provider,
            agent=agent,
            min_duration_ns=None if min_duration_ms is None else int(min_duration_ms * 1e6),
            max_duration_ns=None if max_duration_ms is None else int(max_duration_ms * 1e6),
            min_cost_usd=min_cost_usd,
            max_cost_usd=max_cost_usd,
            breached=None if breached is None else breached != "false",
            breached_metric=None if breached in (None, "true", "false") else breached,
            evaluation=evaluation,
            evaluation_below=evaluation_below,
            conversation_id=conversation_id,
            user_id=user_id,
            attributes=tuple(_attribute_pairs(attr or [])),
            sort=sort,
            order=order,
            limit=limit,
            after=decode_cursor(kind, cursor) if cursor else None,
        )
        if query.reads_spans or sort != "start_time":
            what = "filters on span contents" if query.reads_spans else f"sort={sort}"
            if start is None:
                raise BadRequest(f"{what} need start (a time range of at most 7 days)", "query_too_broad")
            if (end or _now_ns()) - start > MAX_SPAN_FILTER_RANGE_NS:
                raise BadRequest(f"{what} need a time range of at most 7 days", "query_too_broad")
        return _page_answer(kind, await reader.traces(query))

    @api.get("/traces/{trace_id}", response_model=models.TraceSkeleton, summary="A trace's spans, depth first")
    async def trace_skeleton(
        reader: Reader,
        trace_id: HexTraceId,
        limit: Annotated[int, Query(ge=1, le=MAX_SKELETON_PAGE)] = 10_000,
        cursor: str | None = None,
    ) -> JSONResponse:
        offset = 0
        if cursor:
            _, offset = decode_cursor(f"skeleton:{trace_id.lower()}", cursor)
            if not isinstance(offset, int) or offset < 0:
                raise BadRequest("cursor is not one this API gave")
        found = await reader.trace_skeleton(trace_id.lower(), offset, limit)
        if found is None:
            raise HTTPException(404, f"trace {trace_id} not found")
        more = offset + limit < found["total_spans"]
        return _answer(
            {
                "trace": found["trace"],
                "spans": orjson.Fragment(found["spans_json"]),
                "total_spans": found["total_spans"],
                "truncated": more,
                "next_cursor": encode_cursor(f"skeleton:{trace_id.lower()}", (None, offset + limit)) if more else None,
            }
        )

    @api.get("/traces/{trace_id}/spans/{span_id}", response_model=models.SpanDetail, summary="One span in full")
    async def span_detail(reader: Reader, trace_id: HexTraceId, span_id: HexSpanId) -> JSONResponse:
        span = await reader.span_detail(trace_id.lower(), span_id.lower())
        if span is None:
            raise HTTPException(404, f"span {span_id} of trace {trace_id} not found")
        return _answer(span)

    @api.get("/stats/latency", response_model=models.LatencyStats, summary="p50/p95/p99 of durations over time")
    async def latency(
        reader: Reader,
        start: TimeParam | None = None,
        end: TimeParam | None = None,
        bucket: Bucket | None = None,
        of: LatencyOf = "trace",
        group_by: LatencyGroup = "none",
        service: str | None = None,
        model: str | None = None,
    ) -> JSONResponse:
        if of == "trace" and group_by == "operation":
            raise BadRequest("group_by=operation needs of=span, llm or ttft (a trace has no operation)")
        start_ns, end_ns, bucket_ns = _stats_range(start, end, bucket, HOUR_NS)
        series = await reader.latency(
            StatsRange(start_ns, end_ns, bucket_ns, service=service, model=model), of, group_by
        )
        bucket_seconds = bucket_ns / NS_PER_SECOND
        return _answer({"of": of, "group_by": group_by, "bucket_seconds": bucket_seconds, "series": series})

    @api.get("/stats/cost", response_model=models.CostStats, summary="Cost and tokens over time")
    async def cost(
        reader: Reader,
        start: TimeParam | None = None,
        end: TimeParam | None = None,
        bucket: Bucket | None = None,
        group_by: CostGroup = "none",
        service: str | None = None,
        model: str | None = None,
        provider: str | None = None,
    ) -> JSONResponse:
        start_ns, end_ns, bucket_ns = _stats_range(start, end, bucket, DAY_NS)
        series = await reader.cost(
            StatsRange(start_ns, end_ns, bucket_ns, service=service, model=model, provider=provider), group_by
        )
        for entry in series:
            for point in entry["points"]:
                _with_cost_per_1k(point)
            entry["totals"] = _cost_figures(entry["points"])
        return _answer(
            {
                "group_by": group_by,
                "bucket_seconds": bucket_ns / NS_PER_SECOND,
                "totals": _cost_figures([point for entry in series for point in entry["points"]]),
                "series": series,
            }
        )

    @api.get("/stats/evaluations", response_model=models.EvaluationStats, summary="Evaluation scores over time")
    async def evaluation_stats(
        reader: Reader,
        start: TimeParam | None = None,
        end: TimeParam | None = None,
        bucket: Bucket | None = None,
        name: str | None = None,
        threshold: float | None = None,
    ) -> JSONResponse:
        start_ns, end_ns, bucket_ns = _stats_range(start, end, bucket, DAY_NS)
        chosen = dict(thresholds)
        if threshold is not None:
            if name is None:
                raise BadRequest("threshold needs name (the evaluation it applies to)")
            chosen[name] = threshold
        series = await reader.evaluation_stats(StatsRange(start_ns, end_ns, bucket_ns, name=name, thresholds=chosen))
        return _answer({"bucket_seconds": bucket_ns / NS_PER_SECOND, "series": series})

    @api.get("/breaches", response_model=models.BreachPage, summary="The metric_snapshots feed")
    async def breaches(
        reader: Reader,
        start: TimeParam | None = None,
        end: TimeParam | None = None,
        metric: str | None = None,
        rule: str | None = None,
        service: str | None = None,
        trace_id: HexTraceId | None = None,
        breached: bool = True,
        order: Literal["desc", "asc"] = "desc",
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        cursor: str | None = None,
    ) -> JSONResponse:
        start, end = _range(start, end, None)
        kind = f"breaches:{order}"
        query = BreachQuery(
            start_ns=start,
            end_ns=end,
            metric=metric,
            rule=rule,
            service=service,
            trace_id=trace_id.lower() if trace_id else None,
            breached=breached,
            order=order,
            limit=limit,
            after=decode_cursor(kind, cursor) if cursor else None,
        )
        return _page_answer(kind, await reader.breaches(query))

    @api.get("/evaluations", response_model=models.EvaluationPage, summary="Evaluation results, newest first")
    async def evaluations(
        reader: Reader,
        start: TimeParam | None = None,
        end: TimeParam | None = None,
        name: str | None = None,
        trace_id: HexTraceId | None = None,
        span_id: HexSpanId | None = None,
        below: float | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        cursor: str | None = None,
    ) -> JSONResponse:
        start, end = _range(start, end, None)
        query = EvaluationQuery(
            start_ns=start,
            end_ns=end,
            name=name,
            trace_id=trace_id.lower() if trace_id else None,
            span_id=span_id.lower() if span_id else None,
            below=below,
            limit=limit,
            after=decode_cursor("evaluations", cursor) if cursor else None,
        )
        return _page_answer("evaluations", await reader.evaluations(query))

    @api.get("/config/thresholds", response_model=models.ThresholdList, summary="The configured snapshot rules")
    async def config_thresholds() -> JSONResponse:
        return _answer(
            {
                "data": [
                    {
                        **rule.model_dump(include={"metric", "above", "below", "service", "model", "agent"}),
                        "rule": rule.describe(),
                    }
                    for rule in snapshot_rules
                ]
            }
        )

    @api.get("/services", response_model=models.ServiceList, summary="Every service with stored spans")
    async def services(reader: Reader) -> JSONResponse:
        return _answer({"data": [{"name": name} for name in await reader.services()]})

    @api.get("/models", response_model=models.ModelList, summary="Models of LLM and embedding calls")
    async def list_models(reader: Reader, start: TimeParam | None = None, end: TimeParam | None = None) -> JSONResponse:
        start, end = _range(start, end, 7 * DAY_NS)
        assert start is not None
        return _answer({"data": await reader.models(start, end if end is not None else _now_ns())})

    return api
