"""The Jaeger-compatible read API Grafana's Jaeger data source calls: the legacy ``/api`` and ``api_v3``.

The conversions (stored span -> Jaeger span, stored spans -> OTLP JSON) are pure functions; the handlers
parse Jaeger's parameters (microseconds, Go durations, a JSON map of tags) and ask the ``TraceReader``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from collector.query.params import BadRequest, InvalidParameter, parse_go_duration, parse_time
from collector.query.responses import JSONAnswer
from collector.storage.read import SpanSearch, StoredSpan, TraceReader

DEFAULT_SERVICE = "genai-collector"  # Grafana's health check wants at least one service
DEFAULT_LOOKBACK_NS = 2 * 86_400 * 1_000_000_000
DEFAULT_LIMIT = 100
MAX_LIMIT = 1_500
_MS = 1_000_000
_US = 1_000

SPAN_KINDS = {"unspecified": 0, "internal": 1, "server": 2, "client": 3, "producer": 4, "consumer": 5}
STATUS_CODES = {"unset": 0, "ok": 1, "error": 2}


# --- legacy Jaeger JSON (internal/uimodel) ---------------------------------------------------------


_TAG_TYPES = {bool: "bool", int: "int64", float: "float64", str: "string"}
_encode = json.JSONEncoder(ensure_ascii=False).encode  # built once: json.dumps with options builds one per call


def jaeger_tag(key: str, value: Any) -> dict[str, Any]:
    """A typed Jaeger tag; a list or map (stored attributes are parsed JSON) becomes its JSON text."""
    kind = _TAG_TYPES.get(type(value))
    if kind is None:
        return {"key": key, "type": "string", "value": _encode(value)}
    return {"key": key, "type": kind, "value": value}


def _tags(attributes: dict[str, Any]) -> list[dict[str, Any]]:
    return [jaeger_tag(key, value) for key, value in attributes.items()]


def _span_tags(span: StoredSpan) -> list[dict[str, Any]]:
    tags = _tags(span["attributes"])
    if span["kind"] not in ("unspecified", "internal"):
        tags.append(jaeger_tag("span.kind", span["kind"]))
    if span["status_code"] != "unset":
        tags.append(jaeger_tag("otel.status_code", span["status_code"].upper()))
    if span["status_message"]:
        tags.append(jaeger_tag("otel.status_description", span["status_message"]))
    if span["status_code"] == "error":
        tags.append(jaeger_tag("error", True))
    resource = span["resource"]
    if resource["scope_name"]:
        tags.append(jaeger_tag("otel.scope.name", resource["scope_name"]))
    if resource["scope_version"]:
        tags.append(jaeger_tag("otel.scope.version", resource["scope_version"]))
    return tags


def jaeger_trace(trace_id: str, spans: Sequence[StoredSpan]) -> dict[str, Any]:
    """One trace in Jaeger's UI model; a process per distinct (service, resource attributes)."""
    processes: dict[str, dict[str, Any]] = {}
    process_ids: dict[tuple[str, str], str] = {}
    encoded: dict[int, str] = {}  # the spans of one resource share its attributes: encode them once
    converted = []
    for span in spans:
        service = span["service_name"] or "unknown_service"
        attributes = span["resource"]["attributes"]
        identity = id(attributes)
        if identity not in encoded:
            encoded[identity] = json.dumps(attributes, sort_keys=True)
        process_key = (service, encoded[identity])
        process_id = process_ids.get(process_key)
        if process_id is None:
            process_id = process_ids[process_key] = f"p{len(process_ids) + 1}"
            processes[process_id] = {
                "serviceName": service,
                "tags": _tags({k: v for k, v in attributes.items() if k != "service.name"}),
            }
        references = []
        if span["parent_span_id"]:
            references.append({"refType": "CHILD_OF", "traceID": trace_id, "spanID": span["parent_span_id"]})
        references.extend(
            {"refType": "FOLLOWS_FROM", "traceID": link.get("trace_id", ""), "spanID": link.get("span_id", "")}
            for link in span["links"]
        )
        converted.append(
            {
                "traceID": trace_id,
                "spanID": span["span_id"],
                "operationName": span["name"],
                "references": references,
                "startTime": span["start_time_unix_nano"] // _US,
                "duration": (span["end_time_unix_nano"] - span["start_time_unix_nano"]) // _US,
                "tags": _span_tags(span),
                "logs": [
                    {
                        "timestamp": int(event.get("time_unix_nano") or 0) // _US,
                        "fields": [jaeger_tag("event", event.get("name") or ""), *_tags(event.get("attributes") or {})],
                    }
                    for event in span["events"]
                ],
                "processID": process_id,
                "warnings": None,
                "flags": span["flags"] & 0xFF,
            }
        )
    return {"traceID": trace_id, "spans": converted, "processes": processes, "warnings": None}


def jaeger_answer(data: Any, status: int = 200, errors: list[dict[str, Any]] | None = None) -> JSONResponse:
    total = len(data) if isinstance(data, list) else 0
    return JSONAnswer({"data": data, "total": total, "limit": 0, "offset": 0, "errors": errors}, status_code=status)


def jaeger_error(status: int, message: str) -> JSONResponse:
    return JSONResponse(
        {"data": None, "total": 0, "limit": 0, "offset": 0, "errors": [{"code": status, "msg": message}]},
        status_code=status,
    )


# --- OTLP JSON (api_v3) ----------------------------------------------------------------------------


def otlp_value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, list):
        return {"arrayValue": {"values": [otlp_value(item) for item in value]}}
    if isinstance(value, dict):
        return {"kvlistValue": {"values": otlp_attributes(value)}}
    return {"stringValue": json.dumps(value)}


def otlp_attributes(attributes: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"key": key, "value": otlp_value(value)} for key, value in attributes.items()]


def _otlp_span(span: StoredSpan) -> dict[str, Any]:
    converted: dict[str, Any] = {
        "traceId": span["trace_id"],
        "spanId": span["span_id"],
        "name": span["name"],
        "kind": SPAN_KINDS.get(span["kind"], 0),
        "startTimeUnixNano": str(span["start_time_unix_nano"]),
        "endTimeUnixNano": str(span["end_time_unix_nano"]),
        "attributes": otlp_attributes(span["attributes"]),
        "events": [
            {
                "timeUnixNano": str(event.get("time_unix_nano") or 0),
                "name": event.get("name") or "",
                "attributes": otlp_attributes(event.get("attributes") or {}),
            }
            for event in span["events"]
        ],
        "links": [
            {
                "traceId": link.get("trace_id", ""),
                "spanId": link.get("span_id", ""),
                "attributes": otlp_attributes(link.get("attributes") or {}),
            }
            for link in span["links"]
        ],
        "status": {"code": STATUS_CODES.get(span["status_code"], 0), "message": span["status_message"] or ""},
        "flags": span["flags"],
    }
    if span["parent_span_id"]:
        converted["parentSpanId"] = span["parent_span_id"]
    if span["trace_state"]:
        converted["traceState"] = span["trace_state"]
    for field in ("dropped_attributes_count", "dropped_events_count", "dropped_links_count"):
        if span[field]:
            converted[_camel(field)] = span[field]
    return converted


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def otlp_resource_spans(spans: Iterable[StoredSpan]) -> list[dict[str, Any]]:
    """Spans grouped as OTLP JSON ``resourceSpans``: by resource, then by instrumentation scope."""
    resources: dict[str, dict[tuple[str | None, str | None], list[dict[str, Any]]]] = {}
    resource_attributes: dict[str, dict[str, Any]] = {}
    for span in spans:
        resource = span["resource"]
        key = json.dumps(resource["attributes"], sort_keys=True)
        resource_attributes[key] = resource["attributes"]
        scopes = resources.setdefault(key, {})
        scopes.setdefault((resource["scope_name"], resource["scope_version"]), []).append(_otlp_span(span))
    return [
        {
            "resource": {"attributes": otlp_attributes(resource_attributes[key])},
            "scopeSpans": [
                {"scope": {"name": name or "", "version": version or ""}, "spans": converted}
                for (name, version), converted in scopes.items()
            ],
        }
        for key, scopes in resources.items()
    ]


def v3_error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"httpCode": status, "message": message}}, status_code=status)


# --- parameters ------------------------------------------------------------------------------------


def search_tags(tags: str | None, pairs: Sequence[str]) -> dict[str, str]:
    """Jaeger's ``tags`` JSON map and repeated ``tag=key:value``, merged."""
    found: dict[str, str] = {}
    if tags:
        try:
            parsed = json.loads(tags)
        except ValueError:
            raise BadRequest(f"tags is not a JSON map: {tags!r}") from None
        if not isinstance(parsed, dict):
            raise BadRequest('tags must be a JSON map such as {"error":"true"}')
        found.update({str(key): str(value) for key, value in parsed.items()})
    for pair in pairs:
        key, separator, value = pair.partition(":")
        if not separator or not key:
            raise BadRequest(f"tag {pair!r} is not key:value")
        found[key] = value
    return found


def span_search(
    *,
    service: str | None,
    operation: str | None,
    tags: dict[str, str],
    start_ns: int,
    end_ns: int,
    min_duration_ns: int | None,
    max_duration_ns: int | None,
    limit: int,
) -> SpanSearch:
    """Jaeger's criteria as a span search: ``error`` and ``span.kind`` are columns, other tags attributes."""
    error: bool | None = None
    kind: str | None = None
    attributes: list[tuple[str, Any]] = []
    for key, value in tags.items():
        if key == "error":
            error = value.lower() == "true"
        elif key == "span.kind":
            kind = value.lower()
        elif key in ("otel.status_code",):
            error = value.upper() == "ERROR"
        else:
            attributes.append((key, _tag_value(value)))
    if start_ns >= end_ns:
        raise BadRequest("start must be before end")
    return SpanSearch(
        start_ns=start_ns,
        end_ns=end_ns,
        service=service or None,
        operation=operation or None,
        kind=kind,
        error=error,
        attributes=tuple(attributes),
        min_duration_ns=min_duration_ns,
        max_duration_ns=max_duration_ns,
        limit=limit,
    )


def _tag_value(text: str) -> Any:
    """Tags come as text; an attribute stored as a number or boolean matches its text form."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, bool | int | float) else text


def _duration(value: str | None, name: str) -> int | None:
    if not value:
        return None
    try:
        return parse_go_duration(value)
    except InvalidParameter as error:
        raise BadRequest(f"{name}: {error}") from None


def _int(value: str | None, name: str) -> int | None:
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise BadRequest(f"{name} must be an integer, got {value!r}") from None


def _limit(value: str | None, name: str) -> int:
    limit = _int(value, name)
    if limit is None or limit <= 0:
        return DEFAULT_LIMIT
    return min(limit, MAX_LIMIT)


def _first(request: Request, *names: str) -> str | None:
    for name in names:
        value = request.query_params.get(name)
        if value is not None:
            return value
    return None


def router() -> APIRouter:
    api = APIRouter(tags=["jaeger"])

    def reader(request: Request) -> TraceReader:
        return request.app.state.reader  # type: ignore[no-any-return]

    async def traces_by_id(request: Request, trace_ids: Sequence[str]) -> list[tuple[str, list[StoredSpan]]]:
        spans = await reader(request).trace_spans(trace_ids)
        return [(trace_id, spans[trace_id]) for trace_id in trace_ids if spans.get(trace_id)]

    @api.get("/api/services")
    async def services(request: Request) -> JSONResponse:
        return jaeger_answer(await reader(request).services() or [DEFAULT_SERVICE])

    @api.get("/api/services/{service}/operations")
    async def service_operations(request: Request, service: str) -> JSONResponse:
        operations = await reader(request).operations(service)
        return jaeger_answer(sorted({name for name, _ in operations}))

    @api.get("/api/operations")
    async def operations(request: Request) -> JSONResponse:
        service = request.query_params.get("service")
        if not service:
            return jaeger_error(400, "service is required")
        found = await reader(request).operations(service, request.query_params.get("spanKind") or None)
        return jaeger_answer([{"name": name, "spanKind": kind} for name, kind in found])

    @api.get("/api/traces")
    async def search(request: Request) -> JSONResponse:
        params = request.query_params
        try:
            end_us = _int(params.get("end"), "end")
            start_us = _int(params.get("start"), "start")
            end_ns = end_us * _US if end_us is not None else time.time_ns()
            if start_us is not None:
                start_ns = start_us * _US
            else:
                lookback = params.get("lookback")
                span = _duration(lookback, "lookback") if lookback and lookback != "custom" else None
                start_ns = end_ns - (span or DEFAULT_LOOKBACK_NS)
            criteria = span_search(
                service=params.get("service"),
                operation=params.get("operation"),
                tags=search_tags(params.get("tags"), params.getlist("tag")),
                start_ns=start_ns,
                end_ns=end_ns,
                min_duration_ns=_duration(params.get("minDuration"), "minDuration"),
                max_duration_ns=_duration(params.get("maxDuration"), "maxDuration"),
                limit=_limit(params.get("limit"), "limit"),
            )
        except BadRequest as error:
            return jaeger_error(400, str(error))
        found = await traces_by_id(request, await reader(request).search_traces(criteria))
        return jaeger_answer([jaeger_trace(trace_id, spans) for trace_id, spans in found])

    @api.get("/api/traces/{trace_id}")
    async def trace(request: Request, trace_id: str) -> JSONResponse:
        normalized = _normalize_trace_id(trace_id)
        if normalized is None:
            return jaeger_error(400, "trace id must be up to 32 hex digits")
        found = await traces_by_id(request, [normalized])
        if not found:
            return jaeger_error(404, "trace not found")
        return jaeger_answer([jaeger_trace(normalized, found[0][1])])

    @api.get("/api/dependencies")
    async def dependencies(request: Request) -> JSONResponse:
        try:
            end_ms = _int(request.query_params.get("endTs"), "endTs")
            lookback_ms = _int(request.query_params.get("lookback"), "lookback")
        except BadRequest as error:
            return jaeger_error(400, str(error))
        end_ns = end_ms * _MS if end_ms is not None else time.time_ns()
        start_ns = end_ns - (lookback_ms * _MS if lookback_ms is not None else 86_400 * 1_000 * _MS)
        edges = await reader(request).dependencies(start_ns, end_ns)
        return jaeger_answer([{"parent": parent, "child": child, "callCount": count} for parent, child, count in edges])

    # -- api_v3 --

    @api.get("/api/v3/services")
    async def v3_services(request: Request) -> JSONResponse:
        return JSONResponse({"services": await reader(request).services()})

    @api.get("/api/v3/operations")
    async def v3_operations(request: Request) -> JSONResponse:
        service = request.query_params.get("service")
        if not service:
            return v3_error(400, "service is required")
        kind = _first(request, "span_kind", "spanKind") or None
        found = await reader(request).operations(service, kind)
        return JSONResponse({"operations": [{"name": name, "spanKind": kind} for name, kind in found]})

    @api.get("/api/v3/traces/{trace_id}")
    async def v3_trace(request: Request, trace_id: str) -> JSONResponse:
        normalized = _normalize_trace_id(trace_id)
        if normalized is None:
            return v3_error(400, "trace id must be up to 32 hex digits")
        found = await traces_by_id(request, [normalized])
        if not found:
            return v3_error(404, "trace not found")
        return JSONAnswer({"result": {"resourceSpans": otlp_resource_spans(found[0][1])}})

    @api.get("/api/v3/traces")
    async def v3_search(request: Request) -> JSONResponse:
        try:
            start = _first(request, "query.start_time_min", "query.startTimeMin")
            end = _first(request, "query.start_time_max", "query.startTimeMax")
            end_ns = parse_time(end) if end else time.time_ns()
            start_ns = parse_time(start) if start else end_ns - DEFAULT_LOOKBACK_NS
            tags = {
                name.removeprefix("query.attributes[").removesuffix("]"): value
                for name, value in request.query_params.items()
                if name.startswith("query.attributes[")
            }
            criteria = span_search(
                service=_first(request, "query.service_name", "query.serviceName"),
                operation=_first(request, "query.operation_name", "query.operationName"),
                tags=tags,
                start_ns=start_ns,
                end_ns=end_ns,
                min_duration_ns=_duration(_first(request, "query.duration_min", "query.durationMin"), "duration_min"),
                max_duration_ns=_duration(_first(request, "query.duration_max", "query.durationMax"), "duration_max"),
                limit=_limit(_first(request, "query.search_depth", "query.searchDepth"), "search_depth"),
            )
        except (BadRequest, InvalidParameter) as error:
            return v3_error(400, str(error))
        found = await traces_by_id(request, await reader(request).search_traces(criteria))
        if not found:
            return v3_error(404, "No traces found")
        return JSONAnswer(
            {"result": {"resourceSpans": otlp_resource_spans(span for _, spans in found for span in spans)}}
        )

    return api


def _normalize_trace_id(trace_id: str) -> str | None:
    """Lowercase, left-padded to 32 hex digits (Jaeger accepts the short forms of 64-bit ids)."""
    text = trace_id.strip().lower()
    if not text or len(text) > 32 or any(char not in "0123456789abcdef" for char in text):
        return None
    return text.rjust(32, "0")
