"""REST /api/v1 against a collector fed by the OpenTelemetry SDK: every endpoint and filter, errors."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.conftest import RunningCollector
from tests.query.conftest import MS, Dataset

Seeded = tuple[RunningCollector, Dataset]


def get(collector: RunningCollector, path: str, **params: Any) -> Any:
    response = httpx.get(collector.query_url + path, params=params, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def trace_ids(collector: RunningCollector, **params: Any) -> set[str]:
    return {item["trace_id"] for item in get(collector, "/api/v1/traces", limit=500, **params)["data"]}


def range_params(data: Dataset) -> dict[str, Any]:
    return {"start": data.base_ns - 60_000 * MS, "end": data.base_ns + 3_600_000 * MS}


def test_trace_summary_has_every_figure(seeded: Seeded) -> None:
    collector, data = seeded
    (summary,) = [s for s in get(collector, "/api/v1/traces", limit=500)["data"] if s["trace_id"] == data.agent]
    assert summary["root_span_name"] == "invoke_agent checkout"
    assert summary["service_name"] == "checkout-bot"
    assert summary["start_time_unix_nano"] == data.base_ns
    assert summary["duration_ms"] == pytest.approx(120.0)
    assert (summary["span_count"], summary["error_count"], summary["llm_calls"]) == (3, 1, 1)
    assert (summary["input_tokens"], summary["output_tokens"], summary["total_tokens"]) == (1200, 300, 1500)
    assert summary["cost_usd"] == pytest.approx((1200 * 2.5 + 300 * 10) / 1e6)
    assert summary["models"] == ["gpt-4o"] and summary["agents"] == ["checkout"]
    assert summary["has_root"] and summary["settled"]
    assert {breach["metric"] for breach in summary["breaches"]} == {"latency_ms", "eval:faithfulness"}
    assert "attributes" not in summary  # no content in lists


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"service": "checkout-bot"}, {"agent"}),
        ({"service": "search-svc"}, {"search"}),
        ({"root_name": "GET /search"}, {"search"}),
        ({"status": "error"}, {"agent"}),
        ({"model": "gpt-4o"}, {"agent"}),
        ({"model": "claude-3-5-haiku-20241022"}, {"search"}),
        ({"provider": "anthropic"}, {"search"}),
        ({"agent": "checkout"}, {"agent"}),
        ({"min_duration_ms": 115, "max_duration_ms": 125}, {"agent", "batch:22", "batch:23", "batch:24"}),
        ({"min_cost_usd": 0.005}, {"agent"}),
        ({"breached": "true"}, {"agent"}),
        ({"breached": "latency_ms"}, {"agent"}),
        ({"breached": "eval:faithfulness"}, {"agent"}),
        ({"breached": "cost_usd"}, set()),
        ({"evaluation": "faithfulness", "evaluation_below": 0.85}, {"agent"}),
        ({"evaluation_below": 0.5}, set()),
        ({"conversation_id": "conv-1"}, {"agent"}),
        ({"user_id": "user-1"}, {"agent"}),
        ({"attr": "retry:3"}, {"agent"}),
        ({"attr": ["retry:3", "gen_ai.tool.name:lookup"]}, {"agent"}),
        ({"attr": "gen_ai.request.model:gpt-4o-mini"}, {f"batch:{index}" for index in range(40)}),
        ({"attr": "retry:4"}, set()),
    ],
)
def test_trace_filters(seeded: Seeded, params: dict[str, Any], expected: set[str]) -> None:
    collector, data = seeded
    names = {data.agent: "agent", data.search: "search", **{trace: f"batch:{i}" for i, trace in enumerate(data.batch)}}
    found = trace_ids(collector, **range_params(data), **params)
    assert {names[trace_id] for trace_id in found} == expected


def test_status_ok_and_breached_false_are_the_complements(seeded: Seeded) -> None:
    collector, data = seeded
    everything = trace_ids(collector)
    assert trace_ids(collector, status="ok") == everything - {data.agent}
    assert trace_ids(collector, breached="false") == everything - {data.agent}


def test_time_range_accepts_rfc3339_and_nanoseconds(seeded: Seeded) -> None:
    collector, data = seeded
    start = datetime.fromtimestamp(data.base_ns / 1e9 + 1.5, tz=UTC).isoformat().replace("+00:00", "Z")
    by_text = trace_ids(collector, start=start, end=data.base_ns + 2_500 * MS)
    assert by_text == {data.batch[0]}
    assert trace_ids(collector, start=data.base_ns + 1_500 * MS, end=data.base_ns + 2_500 * MS) == by_text


@pytest.mark.parametrize(
    ("sort", "key"), [("start_time", "start_time_unix_nano"), ("duration", "duration_ms"), ("cost", "cost_usd")]
)
@pytest.mark.parametrize("order", ["desc", "asc"])
def test_sorted_pages_cover_every_trace_once(seeded: Seeded, sort: str, key: str, order: str) -> None:
    collector, data = seeded
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = {**range_params(data), "sort": sort, "order": order, "limit": 7}
        if cursor:
            params["cursor"] = cursor
        page = get(collector, "/api/v1/traces", **params)
        seen.extend(page["data"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 42 and len({item["trace_id"] for item in seen}) == 42
    keys = [(item[key] if item[key] is not None else -1.0, item["trace_id"]) for item in seen]
    assert keys == sorted(keys, reverse=order == "desc")


def test_skeleton_is_depth_first_with_genai_figures(seeded: Seeded) -> None:
    collector, data = seeded
    skeleton = get(collector, f"/api/v1/traces/{data.agent}")
    assert skeleton["trace"]["trace_id"] == data.agent
    assert (skeleton["total_spans"], skeleton["truncated"], skeleton["next_cursor"]) == (3, False, None)
    rows = [(span["name"], span["depth"], span["service_name"]) for span in skeleton["spans"]]
    assert rows == [
        ("invoke_agent checkout", 0, "checkout-bot"),
        ("chat gpt-4o", 1, "checkout-bot"),
        ("execute_tool lookup", 1, "inventory-svc"),
    ]
    root, llm, tool = skeleton["spans"]
    assert root["parent_span_id"] is None and root["child_count"] == 2 and not root["orphan"]
    assert llm["parent_span_id"] == data.agent_spans["root"]
    assert (llm["model"], llm["input_tokens"], llm["output_tokens"], llm["ttft_ms"]) == ("gpt-4o", 1200, 300, 40.0)
    assert llm["cost_usd"] == pytest.approx(0.006) and llm["kind"] == "client"
    assert tool["status_code"] == "error" and tool["status_message"] == "inventory timed out"
    assert "attributes" not in llm


def test_a_big_trace_is_paged_in_depth_first_order(seeded: Seeded) -> None:
    collector, data = seeded
    first = get(collector, f"/api/v1/traces/{data.agent}", limit=2)
    assert first["truncated"] and first["total_spans"] == 3 and len(first["spans"]) == 2
    rest = get(collector, f"/api/v1/traces/{data.agent}", limit=2, cursor=first["next_cursor"])
    assert [span["name"] for span in rest["spans"]] == ["execute_tool lookup"] and rest["next_cursor"] is None


def test_span_detail_has_content_events_resource_and_evaluations(seeded: Seeded) -> None:
    collector, data = seeded
    span = get(collector, f"/api/v1/traces/{data.agent}/spans/{data.agent_spans['llm']}")
    assert span["attributes"]["gen_ai.input.messages"].startswith('[{"role":"user"')
    assert span["genai"]["request_model"] == "gpt-4o" and span["genai"]["provider"] == "openai"
    assert span["genai"]["conversation_id"] == "conv-1" and span["genai"]["user_id"] == "user-1"
    assert span["resource"]["attributes"]["service.name"] == "checkout-bot"
    assert span["resource"]["scope_name"] == "tests.query"
    assert [event["name"] for event in span["events"]] == ["gen_ai.evaluation.result"]
    assert [(e["name"], e["score"], e["source"]) for e in span["evaluations"]] == [("faithfulness", 0.6, "span_event")]
    tool = get(collector, f"/api/v1/traces/{data.agent}/spans/{data.agent_spans['tool']}")
    assert tool["resource"]["attributes"]["service.version"] == "2.0"
    assert tool["events"][0]["attributes"]["exception.type"] == "TimeoutError"


def test_unknown_trace_and_span_are_404(seeded: Seeded) -> None:
    collector, data = seeded
    for path in (f"/api/v1/traces/{'ab' * 16}", f"/api/v1/traces/{data.agent}/spans/{'cd' * 8}"):
        response = httpx.get(collector.query_url + path)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found" and "not found" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("path", "params", "status", "words"),
    [
        ("/api/v1/traces", {"limit": 0}, 422, "limit"),
        ("/api/v1/traces", {"limit": 501}, 422, "limit"),
        ("/api/v1/traces", {"start": "yesterday"}, 422, "RFC 3339"),
        ("/api/v1/traces", {"status": "maybe"}, 422, "status"),
        ("/api/v1/traces", {"sort": "name"}, 422, "sort"),
        ("/api/v1/traces", {"min_duration_ms": -1}, 422, "min_duration_ms"),
        ("/api/v1/traces", {"attr": "no-colon"}, 422, "key:value"),
        ("/api/v1/traces", {"cursor": "garbage!"}, 400, "cursor"),
        ("/api/v1/traces", {"start": 2_000, "end": 1_000}, 400, "before end"),
        ("/api/v1/traces", {"sort": "duration"}, 400, "7 days"),
        ("/api/v1/traces", {"attr": "a:b"}, 400, "7 days"),
        ("/api/v1/traces", {"provider": "openai", "start": 0}, 400, "7 days"),
        ("/api/v1/traces/not-hex", {}, 422, "trace_id"),
        ("/api/v1/stats/latency", {"of": "trace", "group_by": "operation"}, 400, "operation"),
        ("/api/v1/stats/latency", {"bucket": "1s", "start": 0}, 400, "31 days"),
        ("/api/v1/stats/latency", {"bucket": "1s", "start": 1, "end": 86_400 * 10**9}, 400, "buckets"),
        ("/api/v1/stats/latency", {"bucket": "10 parsecs"}, 422, "duration"),
        ("/api/v1/stats/cost", {"group_by": "colour"}, 422, "group_by"),
        ("/api/v1/stats/evaluations", {"threshold": 0.5}, 400, "name"),
        ("/api/v1/breaches", {"limit": 1001}, 422, "limit"),
        ("/api/v1/evaluations", {"below": "low"}, 422, "below"),
    ],
)
def test_bad_parameters_get_a_message(
    seeded: Seeded, path: str, params: dict[str, Any], status: int, words: str
) -> None:
    collector, _ = seeded
    response = httpx.get(collector.query_url + path, params=params)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert words in error["message"], error
    assert error["code"] in ("invalid_parameter", "bad_request", "query_too_broad")


def test_a_cursor_of_another_sort_is_refused(seeded: Seeded) -> None:
    collector, _ = seeded
    page = get(collector, "/api/v1/traces", limit=1)
    response = httpx.get(
        collector.query_url + "/api/v1/traces", params={"limit": 1, "order": "asc", "cursor": page["next_cursor"]}
    )
    assert response.status_code == 400 and "another list" in response.json()["error"]["message"]


def test_breaches_feed_and_filters(seeded: Seeded) -> None:
    collector, data = seeded
    breaches = get(collector, "/api/v1/breaches")["data"]
    assert {(b["trace_id"], b["metric"]) for b in breaches} == {
        (data.agent, "latency_ms"),
        (data.agent, "eval:faithfulness"),
    }
    latency = get(collector, "/api/v1/breaches", metric="latency_ms")["data"]
    assert len(latency) == 1 and latency[0]["rule"] == "latency_ms > 50 [service=checkout-bot]"
    assert latency[0]["value"] == pytest.approx(120.0) and latency[0]["threshold"] == 50.0
    assert latency[0]["root_span_name"] == "invoke_agent checkout" and latency[0]["breached"] is True
    assert get(collector, "/api/v1/breaches", service="search-svc")["data"] == []
    assert get(collector, "/api/v1/breaches", rule="cost_usd > 0.05")["data"] == []
    assert len(get(collector, "/api/v1/breaches", trace_id=data.agent)["data"]) == 2
    not_breached = get(collector, "/api/v1/breaches", breached="false", limit=1000)["data"]
    assert len(not_breached) == 42 * 3 - 2  # latency_ms, cost_usd and eval:faithfulness of every trace
    first = get(collector, "/api/v1/breaches", limit=1, order="asc")
    second = get(collector, "/api/v1/breaches", limit=1, order="asc", cursor=first["next_cursor"])
    assert {first["data"][0]["id"], second["data"][0]["id"]} == {b["id"] for b in breaches}
    assert second["next_cursor"] is None


def test_evaluations_list(seeded: Seeded) -> None:
    collector, data = seeded
    (evaluation,) = get(collector, "/api/v1/evaluations")["data"]
    assert (evaluation["name"], evaluation["score"], evaluation["trace_id"], evaluation["span_id"]) == (
        "faithfulness",
        0.6,
        data.agent,
        data.agent_spans["llm"],
    )
    assert get(collector, "/api/v1/evaluations", below=0.5)["data"] == []
    assert len(get(collector, "/api/v1/evaluations", name="faithfulness", trace_id=data.agent)["data"]) == 1


def test_services_and_models(seeded: Seeded) -> None:
    collector, _ = seeded
    assert get(collector, "/api/v1/services")["data"] == [
        {"name": name} for name in ("batch-svc", "checkout-bot", "inventory-svc", "search-svc")
    ]
    models = get(collector, "/api/v1/models")["data"]
    assert models == [
        {"name": "gpt-4o-mini", "provider": "openai", "calls": 40},
        {"name": "claude-3-5-haiku-20241022", "provider": "anthropic", "calls": 1},
        {"name": "gpt-4o", "provider": "openai", "calls": 1},
    ]


def test_openapi_document_and_docs(seeded: Seeded) -> None:
    collector, _ = seeded
    document = get(collector, "/api/v1/openapi.json")
    for path in (
        "/api/v1/traces",
        "/api/v1/traces/{trace_id}",
        "/api/v1/traces/{trace_id}/spans/{span_id}",
        "/api/v1/stats/latency",
        "/api/v1/stats/cost",
        "/api/v1/stats/evaluations",
        "/api/v1/breaches",
        "/api/v1/evaluations",
        "/api/v1/services",
        "/api/v1/models",
    ):
        assert path in document["paths"], path
    assert "TraceSummary" in document["components"]["schemas"]
    assert httpx.get(collector.query_url + "/api/v1/docs").status_code == 200


def test_answers_match_the_documented_models(seeded: Seeded) -> None:
    """Handlers serialize the reader's records without validating them again: check them against the models."""
    from collector.query import models

    collector, data = seeded
    window = range_params(data)
    checks = [
        (models.TracePage, "/api/v1/traces", {}),
        (models.TraceSkeleton, f"/api/v1/traces/{data.agent}", {}),
        (models.SpanDetail, f"/api/v1/traces/{data.agent}/spans/{data.agent_spans['llm']}", {}),
        (models.LatencyStats, "/api/v1/stats/latency", {"of": "llm", "group_by": "model", **window}),
        (models.CostStats, "/api/v1/stats/cost", {"group_by": "model", **window}),
        (models.EvaluationStats, "/api/v1/stats/evaluations", window),
        (models.BreachPage, "/api/v1/breaches", {}),
        (models.EvaluationPage, "/api/v1/evaluations", {}),
        (models.ServiceList, "/api/v1/services", {}),
        (models.ModelList, "/api/v1/models", {}),
    ]
    for model, path, params in checks:
        answer = get(collector, path, **params)
        assert model.model_validate(answer).model_dump(mode="json") == answer, path


def test_config_thresholds_lists_the_configured_rules(seeded: Seeded) -> None:
    collector, _ = seeded
    assert get(collector, "/api/v1/config/thresholds")["data"] == [
        {
            "metric": "latency_ms",
            "above": 50.0,
            "below": None,
            "service": "checkout-bot",
            "model": None,
            "agent": None,
            "rule": "latency_ms > 50 [service=checkout-bot]",
        },
        {
            "metric": "cost_usd",
            "above": 0.05,
            "below": None,
            "service": None,
            "model": None,
            "agent": None,
            "rule": "cost_usd > 0.05",
        },
        {
            "metric": "eval:faithfulness",
            "above": None,
            "below": 0.85,
            "service": None,
            "model": None,
            "agent": None,
            "rule": "eval:faithfulness < 0.85",
        },
    ]
