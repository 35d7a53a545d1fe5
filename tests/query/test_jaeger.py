"""The Jaeger-compatible API, validated against the shapes Grafana's Jaeger data source reads (QUERY.md §1):
a trace across two services, with events and an error."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.conftest import RunningCollector
from tests.query.conftest import MS, Dataset

Seeded = tuple[RunningCollector, Dataset]
TAG_TYPES = {"string": str, "bool": bool, "int64": int, "float64": float}


def get(collector: RunningCollector, path: str, status: int = 200, **params: Any) -> Any:
    response = httpx.get(collector.query_url + path, params=params, timeout=10)
    assert response.status_code == status, response.text
    return response.json()


def assert_grafana_trace(trace: dict[str, Any]) -> None:
    """What Grafana's Jaeger data source reads of a trace, field by field."""
    assert set(trace) >= {"traceID", "spans", "processes", "warnings"}
    assert trace["spans"], "never a trace with zero spans"
    span_ids = {span["spanID"] for span in trace["spans"]}
    for span in trace["spans"]:
        assert span["traceID"] == trace["traceID"]
        assert isinstance(span["operationName"], str)
        assert isinstance(span["startTime"], int) and isinstance(span["duration"], int)
        assert 1_500_000_000_000_000 < span["startTime"] < 3_000_000_000_000_000  # microseconds
        assert span["processID"] in trace["processes"]
        for reference in span["references"]:
            assert reference["refType"] in ("CHILD_OF", "FOLLOWS_FROM")
            assert set(reference) == {"refType", "traceID", "spanID"}
        parents = [ref for ref in span["references"] if ref["refType"] == "CHILD_OF"]
        assert all(parent["spanID"] in span_ids for parent in parents)
        for tag in span["tags"]:
            assert isinstance(tag["value"], TAG_TYPES[tag["type"]]), tag
        for log in span["logs"]:
            assert isinstance(log["timestamp"], int)
            for field in log["fields"]:
                assert isinstance(field["value"], TAG_TYPES[field["type"]]), field
    for process in trace["processes"].values():
        assert isinstance(process["serviceName"], str) and isinstance(process["tags"], list)


def tags_of(span: dict[str, Any]) -> dict[str, Any]:
    return {tag["key"]: tag["value"] for tag in span["tags"]}


def test_services_and_operations(seeded: Seeded) -> None:
    collector, _ = seeded
    services = get(collector, "/api/services")
    assert services["data"] == ["batch-svc", "checkout-bot", "inventory-svc", "search-svc"]
    assert services["errors"] is None and services["total"] == 4
    operations = get(collector, "/api/services/checkout-bot/operations")["data"]
    assert operations == ["chat gpt-4o", "invoke_agent checkout"]
    with_kind = get(collector, "/api/operations", service="checkout-bot", spanKind="client")["data"]
    assert with_kind == [{"name": "chat gpt-4o", "spanKind": "client"}]


def test_trace_by_id_has_jaegers_shape(seeded: Seeded) -> None:
    collector, data = seeded
    answer = get(collector, f"/api/traces/{data.agent}")
    assert answer["errors"] is None
    (trace,) = answer["data"]
    assert trace["traceID"] == data.agent
    assert_grafana_trace(trace)
    by_name = {span["operationName"]: span for span in trace["spans"]}
    services = {name: trace["processes"][span["processID"]]["serviceName"] for name, span in by_name.items()}
    assert services == {
        "invoke_agent checkout": "checkout-bot",
        "chat gpt-4o": "checkout-bot",
        "execute_tool lookup": "inventory-svc",
    }
    root, llm, tool = by_name["invoke_agent checkout"], by_name["chat gpt-4o"], by_name["execute_tool lookup"]
    assert root["references"] == [] and root["startTime"] == data.base_ns // 1000 and root["duration"] == 120_000
    assert llm["references"] == [{"refType": "CHILD_OF", "traceID": data.agent, "spanID": data.agent_spans["root"]}]
    llm_tags = tags_of(llm)
    assert llm_tags["gen_ai.request.model"] == "gpt-4o" and llm_tags["gen_ai.usage.input_tokens"] == 1200
    assert llm_tags["gen_ai.input.messages"].startswith("[") and llm_tags["span.kind"] == "client"
    assert {"key": "gen_ai.usage.input_tokens", "type": "int64", "value": 1200} in llm["tags"]
    tool_tags = tags_of(tool)
    assert tool_tags["error"] is True and tool_tags["otel.status_code"] == "ERROR"
    assert tool_tags["otel.status_description"] == "inventory timed out"
    (log,) = tool["logs"]
    assert log["timestamp"] == (data.base_ns + 100 * MS) // 1000
    assert {"key": "event", "type": "string", "value": "exception"} in log["fields"]
    process = trace["processes"][tool["processID"]]
    assert {"key": "service.version", "type": "string", "value": "2.0"} in process["tags"]


def test_unknown_trace_is_404(seeded: Seeded) -> None:
    collector, _ = seeded
    answer = get(collector, f"/api/traces/{'0' * 31}1", status=404)
    assert answer["data"] is None and answer["errors"][0]["code"] == 404
    assert get(collector, "/api/traces/not-a-trace-id", status=400)["errors"][0]["code"] == 400


def test_search(seeded: Seeded) -> None:
    collector, data = seeded
    window = {"start": (data.base_ns - 60_000 * MS) // 1000, "end": (data.base_ns + 3_600_000 * MS) // 1000}

    def search(**params: Any) -> list[str]:
        answer = get(collector, "/api/traces", **window, **params)
        for trace in answer["data"]:
            assert_grafana_trace(trace)
        return [trace["traceID"] for trace in answer["data"]]

    assert search(service="checkout-bot") == [data.agent]
    assert search(service="inventory-svc") == [data.agent]  # a trace matches by any of its spans
    assert search(service="search-svc", operation="chat claude-3-5-haiku") == [data.search]
    assert search(tags=json.dumps({"error": "true"})) == [data.agent]
    assert search(tags=json.dumps({"gen_ai.request.model": "gpt-4o"})) == [data.agent]
    assert search(tag=["gen_ai.provider.name:anthropic"]) == [data.search]
    assert search(tags=json.dumps({"retry": "3"})) == [data.agent]
    assert search(service="batch-svc", operation="batch job", minDuration="190ms") == data.batch[-3:][::-1]
    assert search(service="batch-svc", operation="batch job", maxDuration="0.01s") == data.batch[1::-1]
    assert len(search(service="batch-svc", limit=5)) == 5
    assert search(service="batch-svc", limit=1) == [data.batch[-1]]  # newest first
    assert search(service="nobody") == []
    assert get(collector, "/api/traces", service="checkout-bot", lookback="1m")["data"] == []
    assert len(get(collector, "/api/traces", service="checkout-bot")["data"]) == 1  # default lookback: 2 days
    assert [t["traceID"] for t in get(collector, "/api/traces", service="checkout-bot", lookback="2h")["data"]] == [
        data.agent
    ]


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"minDuration": "fast"}, "duration"),
        ({"tags": "not json"}, "JSON"),
        ({"start": "yesterday"}, "integer"),
        ({"tag": "no-colon"}, "key:value"),
    ],
)
def test_search_errors_in_jaegers_shape(seeded: Seeded, params: dict[str, Any], words: str) -> None:
    collector, _ = seeded
    answer = get(collector, "/api/traces", status=400, **params)
    assert answer["data"] is None and answer["errors"][0]["code"] == 400 and words in answer["errors"][0]["msg"]


def test_dependencies(seeded: Seeded) -> None:
    collector, data = seeded
    end_ms = data.base_ns // 1_000_000 + 3_600_000
    answer = get(collector, "/api/dependencies", endTs=end_ms, lookback=7_200_000)
    assert answer["data"] == [{"parent": "checkout-bot", "child": "inventory-svc", "callCount": 1}]


def test_v3_services_operations_and_trace(seeded: Seeded) -> None:
    collector, data = seeded
    assert get(collector, "/api/v3/services")["services"] == [
        "batch-svc",
        "checkout-bot",
        "inventory-svc",
        "search-svc",
    ]
    operations = get(collector, "/api/v3/operations", service="checkout-bot")["operations"]
    assert operations == [
        {"name": "chat gpt-4o", "spanKind": "client"},
        {"name": "invoke_agent checkout", "spanKind": "server"},
    ]
    result = get(collector, f"/api/v3/traces/{data.agent}")["result"]
    services = {}
    spans = {}
    for resource_spans in result["resourceSpans"]:
        attributes = {kv["key"]: kv["value"] for kv in resource_spans["resource"]["attributes"]}
        for scope_spans in resource_spans["scopeSpans"]:
            assert scope_spans["scope"]["name"] == "tests.query"
            for span in scope_spans["spans"]:
                services[span["name"]] = attributes["service.name"]["stringValue"]
                spans[span["name"]] = span
    assert services == {
        "invoke_agent checkout": "checkout-bot",
        "chat gpt-4o": "checkout-bot",
        "execute_tool lookup": "inventory-svc",
    }
    tool = spans["execute_tool lookup"]
    assert tool["traceId"] == data.agent and tool["parentSpanId"] == data.agent_spans["root"]
    assert tool["startTimeUnixNano"] == str(data.base_ns + 70 * MS) and tool["kind"] == 2
    assert tool["status"] == {"code": 2, "message": "inventory timed out"}
    assert tool["events"][0]["name"] == "exception"
    assert {"key": "retry", "value": {"intValue": "3"}} in tool["attributes"]
    assert "parentSpanId" not in spans["invoke_agent checkout"]
    missing = get(collector, f"/api/v3/traces/{'0' * 31}1", status=404)
    assert missing == {"error": {"httpCode": 404, "message": "trace not found"}}


def test_v3_search(seeded: Seeded) -> None:
    collector, data = seeded

    def rfc3339(ns: int) -> str:
        return datetime.fromtimestamp(ns / 1e9, tz=UTC).isoformat().replace("+00:00", "Z")

    params = {
        "query.service_name": "search-svc",
        "query.start_time_min": rfc3339(data.base_ns - 60_000 * MS),
        "query.start_time_max": rfc3339(data.base_ns + 3_600_000 * MS),
    }
    result = get(collector, "/api/v3/traces", **params)["result"]
    trace_ids = {span["traceId"] for rs in result["resourceSpans"] for ss in rs["scopeSpans"] for span in ss["spans"]}
    assert trace_ids == {data.search}
    camel = {
        "query.serviceName": "checkout-bot",
        "query.startTimeMin": params["query.start_time_min"],
        "query.durationMin": "100ms",
    }
    result = get(collector, "/api/v3/traces", **camel)["result"]
    assert {span["name"] for rs in result["resourceSpans"] for ss in rs["scopeSpans"] for span in ss["spans"]} == {
        "invoke_agent checkout",
        "chat gpt-4o",
        "execute_tool lookup",
    }
    missing = get(collector, "/api/v3/traces", status=404, **{**params, "query.service_name": "nobody"})
    assert missing == {"error": {"httpCode": 404, "message": "No traces found"}}


def test_services_is_never_empty(start_collector: Any) -> None:
    collector = start_collector()
    assert get(collector, "/api/services")["data"] == ["genai-collector"]
