"""The read side through ``TraceReader``: every filter of the trace list and its keyset cursor, one trace's
spans, span detail, the stats, breaches, evaluations and what the filters can offer (see ``dataset``)."""

from __future__ import annotations

import os
from typing import Any

import pytest

from collector.storage.read import (
    PERCENTILE_ERROR,
    BreachQuery,
    EvaluationQuery,
    SpanSearch,
    StatsRange,
    TraceQuery,
    TraceReader,
)
from tests.helpers import trace_request
from tests.storage.contract.conftest import Backend, run, skeleton
from tests.storage.contract.dataset import AGENT_COST, BASE, BATCH_COSTS, HOUR, MS, SEARCH_COST, Dataset, write_dataset

BATCH = {f"batch{i}" for i in range(5)}
EVERY = {"agent", "search", *BATCH}
DAY = StatsRange(BASE, BASE + HOUR, HOUR)


@pytest.fixture
def data(store: Backend) -> Dataset:
    return write_dataset(store)


@pytest.fixture
def reader(store: Backend, data: Dataset) -> TraceReader:
    return store.reader()


def names(data: Dataset, page: Any) -> list[str]:
    return [data.name(trace["trace_id"]) for trace in page["data"]]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({}, EVERY),
        ({"start_ns": BASE + 2_000 * MS, "end_ns": BASE + 3_000 * MS}, BATCH),
        ({"service": "checkout-bot"}, {"agent"}),
        ({"root_name": "search"}, {"search"}),
        ({"status": "error"}, {"agent"}),
        ({"status": "ok"}, {"search", *BATCH}),
        ({"model": "gpt-4o-mini"}, {"agent", *BATCH}),
        ({"provider": "anthropic"}, {"search"}),
        ({"agent": "support"}, {"agent"}),
        ({"min_duration_ns": 100 * MS}, {"agent"}),
        ({"max_duration_ns": 20 * MS}, {"batch0", "batch1"}),
        ({"min_cost_usd": 0.001}, {"search"}),
        ({"max_cost_usd": 0.00005}, {"batch0", "batch1"}),
        ({"breached": True}, {"agent"}),
        ({"breached": False}, {"search", *BATCH}),
        ({"breached_metric": "eval:faithfulness"}, {"agent"}),
        ({"breached_metric": "cost_usd"}, set()),
        ({"evaluation": "faithfulness", "evaluation_below": 0.85}, {"agent"}),
        ({"evaluation_below": 0.99}, {"agent", "search"}),
        ({"conversation_id": "conv-1"}, {"agent"}),
        ({"user_id": "user-1"}, {"agent"}),
        ({"attributes": (("tenant", "acme"),)}, {"agent"}),
        ({"attributes": (("tenant", "other"),)}, set()),
    ],
)
def test_trace_list_filters(reader: TraceReader, data: Dataset, filters: dict[str, Any], expected: set[str]) -> None:
    page = run(reader.traces(TraceQuery(**filters)))
    assert set(names(data, page)) == expected
    assert page["after"] is None


def test_trace_summaries_carry_the_rollup_and_the_breaches(reader: TraceReader, data: Dataset) -> None:
    (agent,) = run(reader.trace_summaries([data.agent]))
    assert (agent["service_name"], agent["root_span_name"], agent["span_count"], agent["error_count"]) == (
        "checkout-bot",
        "invoke_agent support",
        4,
        1,
    )
    assert (agent["llm_calls"], agent["input_tokens"], agent["output_tokens"], agent["total_tokens"]) == (
        1,
        1_000,
        100,
        1_100,
    )
    assert agent["cost_usd"] == pytest.approx(AGENT_COST)
    assert agent["duration_ms"] == 120.0 and agent["has_root"] and agent["settled"]
    assert (agent["models"], agent["agents"]) == (["gpt-4o-mini"], ["support"])
    assert sorted((b["metric"], b["value"], b["threshold"]) for b in agent["breaches"]) == [
        ("eval:faithfulness", 0.6, 0.85),
        ("latency_ms", 120.0, 50.0),
    ]
    assert run(reader.trace_summaries(["0" * 32])) == []


@pytest.mark.parametrize("sort", ["start_time", "duration", "cost"])
@pytest.mark.parametrize("order", ["desc", "asc"])
def test_the_keyset_cursor_pages_through_every_trace_once_in_order(
    reader: TraceReader, data: Dataset, sort: str, order: str
) -> None:
    whole = run(reader.traces(TraceQuery(sort=sort, order=order, limit=100)))  # type: ignore[arg-type]
    paged: list[str] = []
    after = None
    while True:
        page = run(reader.traces(TraceQuery(sort=sort, order=order, limit=2, after=after)))  # type: ignore[arg-type]
        paged += names(data, page)
        after = page["after"]
        if after is None:
            break
        assert len(page["data"]) == 2
    assert paged == names(data, whole)
    assert sorted(paged) == sorted(EVERY)
    keys = {
        "start_time": lambda t: t["start_time_unix_nano"],
        "duration": lambda t: t["duration_ms"],
        "cost": lambda t: t["cost_usd"],
    }[sort]
    values = [keys(trace) for trace in whole["data"]]
    assert values == sorted(values, reverse=order == "desc")


def test_the_skeleton_is_depth_first_with_depths_and_child_counts(reader: TraceReader, data: Dataset) -> None:
    found = skeleton(reader, data.agent)
    assert found is not None
    summary, spans = found
    assert summary["trace_id"] == data.agent
    assert [(s["name"], s["depth"], s["child_count"], s["orphan"]) for s in spans] == [
        ("invoke_agent support", 0, 2, False),
        ("chat gpt-4o-mini", 1, 0, False),
        ("execute_tool lookup", 1, 1, False),
        ("GET /stock", 2, 0, False),
    ]
    llm = spans[1]
    assert (llm["model"], llm["provider"], llm["input_tokens"], llm["output_tokens"]) == (
        "gpt-4o-mini",
        "openai",
        1_000,
        100,
    )
    assert llm["duration_ms"] == 50.0 and llm["ttft_ms"] == pytest.approx(20.0)
    assert llm["cost_usd"] == pytest.approx(AGENT_COST) and llm["duplicate_of"] is None
    assert (spans[2]["status_code"], spans[2]["tool_name"], spans[3]["service_name"]) == (
        "error",
        "lookup",
        "inventory-svc",
    )
    assert skeleton(reader, "0" * 32) is None


def test_the_skeleton_comes_in_pages(reader: TraceReader, data: Dataset) -> None:
    whole = skeleton(reader, data.agent)
    assert whole is not None
    pages = [skeleton(reader, data.agent, offset, 3) for offset in (0, 3)]
    assert [span["span_id"] for page in pages if page for span in page[1]] == [span["span_id"] for span in whole[1]]
    assert skeleton(reader, data.agent, 10, 3) == (whole[0], [])


def test_the_skeleton_of_a_trace_missing_a_parent_shows_an_orphan(
    store: Backend, reader: TraceReader, data: Dataset
) -> None:
    trace_id = os.urandom(16)
    spans = [{"span_id": b"\1" * 8, "start": 1}, {"span_id": b"\2" * 8, "parent": b"\x09" * 8, "start": 2}]
    store.store.write([store.records(trace_request(trace_id, spans))])
    found = skeleton(reader, trace_id.hex())
    assert found is not None
    assert [(s["span_id"], s["depth"], s["orphan"]) for s in found[1]] == [("01" * 8, 0, False), ("02" * 8, 0, True)]


def test_span_detail_has_everything_stored_about_the_span(reader: TraceReader, data: Dataset) -> None:
    span = run(reader.span_detail(data.agent, data.spans["llm"]))
    assert span is not None
    assert (span["trace_id"], span["span_id"], span["parent_span_id"]) == (
        data.agent,
        data.spans["llm"],
        data.spans["root"],
    )
    assert span["attributes"]["tenant"] == "acme"
    assert span["resource"]["attributes"] == {"service.name": "checkout-bot"}
    assert span["duration_ms"] == 50.0
    assert span["genai"]["conversation_id"] == "conv-1" and span["genai"]["user_id"] == "user-1"
    assert [(e["name"], e["score"], e["label"]) for e in span["evaluations"]] == [("faithfulness", 0.6, "unfaithful")]
    assert span["genai_events"] == []
    assert run(reader.span_detail(data.agent, "0" * 16)) is None


def test_trace_spans_reads_whole_traces(reader: TraceReader, data: Dataset) -> None:
    found = run(reader.trace_spans([data.agent, data.search, "0" * 32]))
    assert sorted(found) == sorted([data.agent, data.search])
    assert [span["name"] for span in found[data.search]] == ["search", "chat claude"]  # by start time
    assert len(found[data.agent]) == 4


def test_search_finds_traces_by_their_spans_newest_first(reader: TraceReader, data: Dataset) -> None:
    def search(**criteria: Any) -> list[str]:
        return [data.name(t) for t in run(reader.search_traces(SpanSearch(BASE, BASE + HOUR, **criteria)))]

    assert search(service="checkout-bot", operation="execute_tool lookup") == ["agent"]
    assert search(error=True) == ["agent"]
    assert search(attributes=(("tenant", "acme"),)) == ["agent"]
    assert search(service="batch-svc", limit=2) == ["batch4", "batch3"]
    assert search(min_duration_ns=110 * MS) == ["agent"]
    assert search(service="search-svc", max_duration_ns=25 * MS) == ["search"]


def within(expected: Any) -> Any:
    """Percentiles as the protocol promises them: within ``PERCENTILE_ERROR`` of the exact nearest rank."""
    return pytest.approx(expected, rel=PERCENTILE_ERROR)


def test_latency_percentiles(reader: TraceReader, data: Dataset) -> None:
    (traces,) = run(reader.latency(DAY, "trace", "none"))
    (point,) = traces["points"]
    # trace durations: 10, 20, 30, 30, 40, 50, 120 ms; nearest rank
    assert (point["time_unix_nano"], point["count"]) == (BASE, 7)
    assert (point["p50_ms"], point["p95_ms"], point["p99_ms"]) == within((30.0, 120.0, 120.0))
    by_model = {series["group"]: series["points"] for series in run(reader.latency(DAY, "llm", "model"))}
    assert by_model.keys() == {"gpt-4o-mini", "claude-3-5-sonnet-20241022"}
    (mini,) = by_model["gpt-4o-mini"]  # 5, 10, 15, 20, 25, 50 ms
    assert (mini["count"], mini["p50_ms"], mini["p95_ms"]) == (6, within(15.0), within(50.0))
    (ttft,) = run(reader.latency(DAY, "ttft", "service"))
    assert ttft["group"] == "checkout-bot" and ttft["points"][0]["p50_ms"] == within(20.0)
    only = StatsRange(BASE, BASE + HOUR, HOUR, service="search-svc")
    assert [p["count"] for s in run(reader.latency(only, "trace", "none")) for p in s["points"]] == [1]


def test_trace_percentiles_count_settled_traces(store: Backend, reader: TraceReader, data: Dataset) -> None:
    """A trace's duration counts once it settles (it is final then); its spans count as they are stored."""
    spans = [{"span_id": b"\1" * 8, "start": BASE + 10 * MS, "end": BASE + 70 * MS}]
    store.store.write([store.records(trace_request(os.urandom(16), spans, service="late-svc"))])
    only = StatsRange(BASE, BASE + HOUR, HOUR, service="late-svc")
    assert run(reader.latency(only, "trace", "none")) == []
    ((span,),) = [series["points"] for series in run(reader.latency(only, "span", "none"))]
    assert (span["count"], span["p50_ms"]) == (1, within(60.0))


def test_cost_over_time_buckets(reader: TraceReader, data: Dataset) -> None:
    by_model = {series["group"]: series["points"] for series in run(reader.cost(DAY, "model"))}
    (mini,) = by_model["gpt-4o-mini"]
    assert mini["cost_usd"] == pytest.approx(AGENT_COST + sum(BATCH_COSTS))
    assert (mini["input_tokens"], mini["output_tokens"], mini["llm_requests"], mini["unpriced_calls"]) == (
        2_500,
        150,
        6,
        0,
    )
    (claude,) = by_model["claude-3-5-sonnet-20241022"]
    assert claude["cost_usd"] == pytest.approx(SEARCH_COST) and claude["total_tokens"] == 2_300
    (total,) = run(reader.cost(DAY, "none"))
    assert total["points"][0]["cost_usd"] == pytest.approx(AGENT_COST + SEARCH_COST + sum(BATCH_COSTS))
    by_provider = {
        s["group"] for s in run(reader.cost(StatsRange(BASE, BASE + HOUR, HOUR, provider="anthropic"), "provider"))
    }
    assert by_provider == {"anthropic"}


def test_evaluation_stats(reader: TraceReader, data: Dataset) -> None:
    stats = StatsRange(BASE, BASE + HOUR, HOUR, thresholds={"faithfulness": 0.85})
    (series,) = run(reader.evaluation_stats(stats))
    assert (series["name"], series["threshold"]) == ("faithfulness", 0.85)
    (point,) = series["points"]
    assert (point["count"], point["mean"], point["p50"], point["share_below"]) == (2, pytest.approx(0.775), 0.6, 0.5)


def test_breaches_newest_first_with_a_cursor(reader: TraceReader, data: Dataset) -> None:
    page = run(reader.breaches(BreachQuery()))
    assert sorted((b["metric"], b["trace_id"], b["service_name"], b["root_span_name"]) for b in page["data"]) == [
        ("eval:faithfulness", data.agent, "checkout-bot", "invoke_agent support"),
        ("latency_ms", data.agent, "checkout-bot", "invoke_agent support"),
    ]
    assert all(b["breached"] for b in page["data"]) and page["after"] is None
    first = run(reader.breaches(BreachQuery(limit=1)))
    second = run(reader.breaches(BreachQuery(limit=1, after=first["after"])))
    assert first["after"] is not None and second["after"] is None
    assert [b["id"] for b in first["data"] + second["data"]] == [b["id"] for b in page["data"]]
    assert [b["metric"] for b in run(reader.breaches(BreachQuery(metric="latency_ms")))["data"]] == ["latency_ms"]
    assert run(reader.breaches(BreachQuery(services=("search-svc",))))["data"] == []
    assert len(run(reader.breaches(BreachQuery(breached=False, limit=100)))["data"]) == 7 * 3 - 2


def test_evaluations_newest_first_with_a_cursor(reader: TraceReader, data: Dataset) -> None:
    page = run(reader.evaluations(EvaluationQuery()))
    assert [(e["trace_id"], e["score"]) for e in page["data"]] == [(data.search, 0.95), (data.agent, 0.6)]
    first = run(reader.evaluations(EvaluationQuery(limit=1)))
    second = run(reader.evaluations(EvaluationQuery(limit=1, after=first["after"])))
    assert [e["score"] for e in first["data"] + second["data"]] == [0.95, 0.6] and second["after"] is None
    assert [e["score"] for e in run(reader.evaluations(EvaluationQuery(below=0.85)))["data"]] == [0.6]
    assert [e["span_id"] for e in run(reader.evaluations(EvaluationQuery(trace_id=data.agent)))["data"]] == [
        data.spans["llm"]
    ]
    assert run(reader.evaluations(EvaluationQuery(name="relevance")))["data"] == []


def test_what_the_filters_can_offer(reader: TraceReader, data: Dataset) -> None:
    assert run(reader.services()) == ["batch-svc", "checkout-bot", "inventory-svc", "search-svc"]
    operations = run(reader.operations("checkout-bot"))
    assert sorted(name for name, _ in operations) == ["chat gpt-4o-mini", "execute_tool lookup", "invoke_agent support"]
    assert run(reader.models(BASE, BASE + HOUR)) == [
        {"name": "gpt-4o-mini", "provider": "openai", "calls": 6},
        {"name": "claude-3-5-sonnet-20241022", "provider": "anthropic", "calls": 1},
    ]
    assert run(reader.dependencies(BASE, BASE + HOUR)) == [("checkout-bot", "inventory-svc", 1)]
    spend = sorted(run(reader.spend_by_model(BASE)), key=lambda row: row["model"])
    assert [(row["model"], row["input_tokens"], row["output_tokens"], row["llm_requests"]) for row in spend] == [
        ("claude-3-5-sonnet-20241022", 2_000, 300, 1),
        ("gpt-4o-mini", 2_500, 150, 6),
    ]
    assert spend[1]["cost_usd"] == pytest.approx(AGENT_COST + sum(BATCH_COSTS))
