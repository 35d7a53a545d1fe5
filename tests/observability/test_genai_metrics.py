"""GenAI metrics from stored spans, evaluations, traces and snapshots, read back from a fresh registry."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families

from collector.config import MetricsSettings, Settings, SnapshotRule
from collector.genai.normalize import NOT_GENAI
from collector.genai.transform import Transform
from collector.model import EvaluationRecord, Span, summarize
from collector.observability.genai_metrics import GenAIMetrics
from collector.observability.metrics import OPERATION_BUCKETS, OTHER, SCORE_BUCKETS, TOKEN_BUCKETS, CollectorMetrics
from collector.otlp import decode_spans
from tests.helpers import otlp_request, require_tool

START = 1_700_000_000_000_000_000


class Fixture:
    def __init__(self, **settings: Any) -> None:
        self.registry = CollectorRegistry()
        self.collector_metrics = CollectorMetrics(self.registry)
        self.metrics = GenAIMetrics(self.registry, MetricsSettings(**settings), self.collector_metrics.label_overflow)

    def value(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0

    def overflow(self, metric: str, label: str) -> float:
        return self.value("genai_collector_label_overflow_total", metric=metric, label=label)

    def label_sets(self, family_name: str) -> set[frozenset[tuple[str, str]]]:
        """Distinct series of one family (a histogram's without its le; a counter's name without _total)."""
        for family in text_string_to_metric_families(generate_latest(self.registry).decode()):
            if family.name == family_name:
                return {
                    frozenset((key, value) for key, value in sample.labels.items() if key != "le")
                    for sample in family.samples
                }
        return set()

    def label_values(self, family_name: str, label: str) -> set[str]:
        return {dict(labels)[label] for labels in self.label_sets(family_name)}

    def label_names(self, family_name: str) -> list[str]:
        collected = {family.name: family for family in self.registry.collect()}
        sample = collected[family_name].samples[0]
        return [name for name in sample.labels if name != "le"]


@pytest.fixture
def fixture() -> Fixture:
    return Fixture()


def trace_id(index: int = 1) -> str:
    return f"{index:032x}"


def llm_span(
    *,
    index: int = 1,
    seconds: float = 1.5,
    status: str = "unset",
    attributes: dict[str, Any] | None = None,
    service: str | None = "checkout",
    cost: float | None = None,
    **genai: Any,
) -> Span:
    fields: dict[str, Any] = {
        "category": "llm",
        "provider": "openai",
        "request_model": "gpt-4o",
        "operation": "chat",
        "input_tokens": 100,
        "output_tokens": 5_000,
    }
    fields.update(genai)
    return Span(
        trace_id=trace_id(index),
        span_id=f"{index:016x}",
        parent_span_id=None,
        trace_state=None,
        flags=0,
        name="chat gpt-4o",
        kind="client",
        start_time_unix_nano=START,
        end_time_unix_nano=START + int(seconds * 1e9),
        status_code=status,
        status_message=None,
        service_name=service,
        scope_name=None,
        scope_version=None,
        resource_attributes={},
        attributes=attributes or {},
        events=[],
        links=[],
        dropped_attributes_count=0,
        dropped_events_count=0,
        dropped_links_count=0,
        genai=NOT_GENAI._replace(**fields),
        cost_usd=cost,
    )


def plain_span(index: int = 2) -> Span:
    return llm_span(index=index)._replace(genai=NOT_GENAI)


CHAT = {"gen_ai_provider_name": "openai", "gen_ai_request_model": "gpt-4o", "gen_ai_operation_name": "chat"}


def bucket_bounds(registry: CollectorRegistry, family_name: str) -> list[float]:
    family = next(family for family in registry.collect() if family.name == family_name)
    bounds = {float(s.labels["le"]) for s in family.samples if s.name.endswith("_bucket")}
    return sorted(bounds)


def test_token_usage_by_type_in_semconv_buckets(fixture: Fixture) -> None:
    fixture.metrics.observe_spans(summarize([llm_span(input_tokens=100, output_tokens=5_000)]))
    usage = "gen_ai_client_token_usage"
    assert bucket_bounds(fixture.registry, usage) == [*map(float, TOKEN_BUCKETS), float("inf")]
    input_labels = {**CHAT, "gen_ai_token_type": "input"}
    output_labels = {**CHAT, "gen_ai_token_type": "output"}
    assert fixture.value(usage + "_bucket", **input_labels, le="64.0") == 0
    assert fixture.value(usage + "_bucket", **input_labels, le="256.0") == 1
    assert fixture.value(usage + "_bucket", **output_labels, le="4096.0") == 0
    assert fixture.value(usage + "_bucket", **output_labels, le="16384.0") == 1
    assert fixture.value(usage + "_sum", **input_labels) == 100
    assert fixture.value(usage + "_sum", **output_labels) == 5_000


def test_token_usage_prefers_the_response_model_and_counts_model_calls_only(fixture: Fixture) -> None:
    fixture.metrics.observe_spans(
        summarize(
            [
                llm_span(request_model="gpt-4o", response_model="gpt-4o-2024-08-06"),
                llm_span(
                    category="embedding",
                    operation="embeddings",
                    request_model="text-embedding-3-small",
                    input_tokens=8,
                    output_tokens=None,
                ),
                # An agent span repeating its children's totals must not count them twice.
                llm_span(category="agent", operation="invoke_agent", input_tokens=100, output_tokens=5_000),
            ]
        )
    )
    usage = "gen_ai_client_token_usage_count"
    assert fixture.value(usage, **{**CHAT, "gen_ai_request_model": "gpt-4o-2024-08-06"}, gen_ai_token_type="input") == 1
    embedding = {**CHAT, "gen_ai_request_model": "text-embedding-3-small", "gen_ai_operation_name": "embeddings"}
    assert fixture.value(usage, **embedding, gen_ai_token_type="input") == 1
    # No empty output series for the embedding, no series at all for the agent.
    assert {
        (dict(labels)["gen_ai_operation_name"], dict(labels)["gen_ai_token_type"])
        for labels in fixture.label_sets("gen_ai_client_token_usage")
    } == {("chat", "input"), ("chat", "output"), ("embeddings", "input")}
    # The agent operation still has a duration.
    assert (
        fixture.value(
            "gen_ai_client_operation_duration_seconds_count",
            **{**CHAT, "gen_ai_operation_name": "invoke_agent"},
            error_type="",
        )
        == 1
    )


def test_operation_duration_and_time_to_first_chunk(fixture: Fixture) -> None:
    fixture.metrics.observe_spans(
        summarize(
            [
                llm_span(index=1, seconds=1.5, ttft_ms=300.0),
                llm_span(index=2, seconds=0.015),  # not streamed: no time to first chunk
                plain_span(index=3),
            ]
        )
    )
    duration = "gen_ai_client_operation_duration_seconds"
    assert bucket_bounds(fixture.registry, duration) == [*OPERATION_BUCKETS, float("inf")]
    labels = {**CHAT, "error_type": ""}
    assert fixture.value(duration + "_count", **labels) == 2
    assert fixture.value(duration + "_sum", **labels) == pytest.approx(1.515)
    assert fixture.value(duration + "_bucket", **labels, le="0.01") == 0
    assert fixture.value(duration + "_bucket", **labels, le="0.02") == 1
    assert fixture.value(duration + "_bucket", **labels, le="1.28") == 1
    assert fixture.value(duration + "_bucket", **labels, le="2.56") == 2

    ttft = "gen_ai_client_operation_time_to_first_chunk_seconds"
    assert bucket_bounds(fixture.registry, ttft) == [*OPERATION_BUCKETS, float("inf")]
    assert fixture.value(ttft + "_count", **CHAT) == 1
    assert fixture.value(ttft + "_sum", **CHAT) == pytest.approx(0.3)
    assert fixture.value(ttft + "_bucket", **CHAT, le="0.16") == 0
    assert fixture.value(ttft + "_bucket", **CHAT, le="0.32") == 1


def test_non_genai_spans_and_negative_durations_are_not_observed(fixture: Fixture) -> None:
    unnormalized = plain_span(index=4)._replace(genai=None)
    session_only = plain_span(index=5)._replace(genai=NOT_GENAI._replace(conversation_id="c-1"))
    backwards = llm_span(index=6, seconds=-1.0, input_tokens=None, output_tokens=None)
    fixture.metrics.observe_spans(summarize([plain_span(), unnormalized, session_only, backwards]))
    assert fixture.label_sets("gen_ai_client_operation_duration_seconds") == set()
    assert fixture.label_sets("gen_ai_client_token_usage") == set()


def test_cost_counter_by_service_provider_and_model(fixture: Fixture) -> None:
    fixture.metrics.observe_spans(
        summarize(
            [
                llm_span(index=1, cost=0.25),
                llm_span(index=2, cost=0.5),
                llm_span(index=3, cost=None),
                llm_span(index=4, cost=1.0, service="search", provider="anthropic", request_model="claude-3-haiku"),
                llm_span(index=5, cost=9.0, category="agent", operation="invoke_agent"),  # a roll-up, not a call
            ]
        )
    )
    cost = "genai_collector_cost_usd_total"
    checkout = {"service_name": "checkout", "gen_ai_provider_name": "openai", "gen_ai_request_model": "gpt-4o"}
    assert fixture.value(cost, **checkout) == pytest.approx(0.75)
    search = {"service_name": "search", "gen_ai_provider_name": "anthropic", "gen_ai_request_model": "claude-3-haiku"}
    assert fixture.value(cost, **search) == pytest.approx(1.0)
    assert len(fixture.label_sets("genai_collector_cost_usd")) == 2


def test_error_type_is_the_span_error_type_else_other_and_empty_on_success(fixture: Fixture) -> None:
    fixture.metrics.observe_spans(
        summarize(
            [
                llm_span(index=1, status="error", attributes={"error.type": "RateLimitError"}),
                llm_span(index=2, status="error"),
                llm_span(index=3, status="error", attributes={"error.type": 429}),  # not a string: unusable
                llm_span(index=4, status="ok", attributes={"error.type": "ignored"}),
                llm_span(index=5, status="unset"),
            ]
        )
    )
    duration = "gen_ai_client_operation_duration_seconds_count"
    assert fixture.value(duration, **CHAT, error_type="RateLimitError") == 1
    assert fixture.value(duration, **CHAT, error_type="_OTHER") == 2
    assert fixture.value(duration, **CHAT, error_type="") == 2
    error_types = fixture.label_values("gen_ai_client_operation_duration_seconds", "error_type")
    assert error_types == {"RateLimitError", "_OTHER", ""}


def test_error_types_are_bounded() -> None:
    fixture = Fixture(max_label_values=3)
    fixture.metrics.observe_spans(
        summarize([llm_span(index=i, status="error", attributes={"error.type": f"E{i}"}) for i in range(10)])
    )
    error_types = fixture.label_values("gen_ai_client_operation_duration_seconds", "error_type")
    assert error_types == {"E0", "E1", "E2", OTHER}
    assert fixture.overflow("gen_ai_client", "error_type") == 7


def test_evaluation_scores_by_name(fixture: Fixture) -> None:
    def evaluation(name: str, score: float | None, trace: str | None) -> EvaluationRecord:
        return EvaluationRecord(trace, None, None, name, score, None, "because", "log", START)

    fixture.metrics.observe_evaluations(
        [
            evaluation("relevance", 0.85, trace_id(1)),
            evaluation("relevance", 0.05, None),
            evaluation("toxicity", None, None),  # a label without a score: nothing to observe
        ]
    )
    score = "genai_collector_evaluation_score"
    assert bucket_bounds(fixture.registry, score) == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, float("inf")]
    assert list(SCORE_BUCKETS) == pytest.approx([0.1 * step for step in range(1, 11)])
    assert fixture.value(score + "_count", gen_ai_evaluation_name="relevance") == 2
    assert fixture.value(score + "_bucket", gen_ai_evaluation_name="relevance", le="0.1") == 1
    assert fixture.value(score + "_bucket", gen_ai_evaluation_name="relevance", le="0.8") == 1
    assert fixture.value(score + "_bucket", gen_ai_evaluation_name="relevance", le="0.9") == 2
    assert fixture.label_sets(score) == {frozenset({("gen_ai_evaluation_name", "relevance")})}


def test_trace_duration_snapshots_and_breaches(fixture: Fixture) -> None:
    fixture.metrics.observe_trace("checkout", 95.0, trace_id(7))
    fixture.metrics.observe_trace(None, 0.2, trace_id(8))
    trace = "genai_collector_trace_duration_seconds"
    assert fixture.value(trace + "_bucket", service_name="checkout", le="60.0") == 0
    assert fixture.value(trace + "_bucket", service_name="checkout", le="120.0") == 1
    assert fixture.value(trace + "_count", service_name="unknown") == 1
    assert bucket_bounds(fixture.registry, trace)[-2] >= 300  # agent traces run for minutes

    rule = SnapshotRule(metric="latency_ms", above=30_000, service="checkout").describe()
    fixture.metrics.observe_snapshot("latency_ms", rule, breached_now=True)
    fixture.metrics.observe_snapshot("latency_ms", rule, breached_now=False)  # still breached: counted once
    fixture.metrics.observe_snapshot("cost_usd", None, breached_now=False)
    assert fixture.value("genai_collector_snapshots_total", metric="latency_ms") == 2
    assert fixture.value("genai_collector_snapshots_total", metric="cost_usd") == 1
    assert fixture.value("genai_collector_breaches_total", rule=rule, metric="latency_ms") == 1
    assert len(fixture.label_sets("genai_collector_breaches")) == 1


def test_rules_pass_a_bounded_label() -> None:
    fixture = Fixture(max_label_values=2)
    for threshold in range(5):
        rule = SnapshotRule(metric="cost_usd", above=threshold).describe()
        fixture.metrics.observe_snapshot("cost_usd", rule, breached_now=True)
    rules = fixture.label_values("genai_collector_breaches", "rule")
    assert rules == {"cost_usd > 0", "cost_usd > 1", OTHER}
    assert fixture.value("genai_collector_breaches_total", rule=OTHER, metric="cost_usd") == 3
    assert fixture.overflow("breaches", "rule") == 3


def exemplars(exposition: str) -> dict[str, set[str]]:
    """The trace ids of every exemplar in an OpenMetrics exposition, by family."""
    found: dict[str, set[str]] = {}
    for family in parse_openmetrics(exposition):
        for sample in family.samples:
            if sample.exemplar is not None:
                found.setdefault(family.name, set()).add(sample.exemplar.labels["trace_id"])
    return found


def test_histogram_observations_carry_the_trace_id_as_exemplar(fixture: Fixture) -> None:
    fixture.metrics.observe_spans(
        summarize(
            [llm_span(index=1, ttft_ms=250.0, cost=0.1), llm_span(index=2, seconds=30, input_tokens=3, output_tokens=2)]
        )
    )
    fixture.metrics.observe_evaluations(
        [EvaluationRecord(trace_id(3), None, None, "relevance", 0.7, None, None, "log", START)]
    )
    fixture.metrics.observe_trace("checkout", 12.0, trace_id(4))

    assert exemplars(generate_openmetrics(fixture.registry).decode()) == {
        "gen_ai_client_token_usage": {trace_id(1), trace_id(2)},
        "gen_ai_client_operation_duration_seconds": {trace_id(1), trace_id(2)},
        "gen_ai_client_operation_time_to_first_chunk_seconds": {trace_id(1)},
        "genai_collector_evaluation_score": {trace_id(3)},
        "genai_collector_trace_duration_seconds": {trace_id(4)},
    }
    # The Prometheus text format has no exemplars.
    assert trace_id(1) not in generate_latest(fixture.registry).decode()


def busy_registry() -> Fixture:
    """Every metric with samples, dimensions on, an error, a fold into _other and a None."""
    fixture = Fixture(dimensions=("service", "agent", "tool", "category"), max_label_values=2)
    fixture.metrics.observe_spans(
        summarize(
            [
                llm_span(index=1, ttft_ms=120.0, cost=0.01, agent_name="planner"),
                llm_span(index=2, status="error", attributes={"error.type": "timeout"}, request_model="o3"),
                llm_span(index=3, request_model="o4-mini", provider=None, cost=0.02),
                llm_span(index=4, category="tool", operation="execute_tool", tool_name="search", request_model=None),
                plain_span(index=5),
            ]
        )
    )
    fixture.metrics.observe_evaluations(
        [EvaluationRecord(trace_id(1), None, None, "relevance", 0.9, None, None, "log", START)]
    )
    fixture.metrics.observe_trace("checkout", 42.0, trace_id(1))
    fixture.metrics.observe_snapshot("latency_ms", "latency_ms > 1000", breached_now=True)
    return fixture


def test_text_exposition_passes_promtool() -> None:
    exposition = generate_latest(busy_registry().registry)
    result = subprocess.run(
        [require_tool("promtool"), "check", "metrics"], input=exposition, capture_output=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    assert result.stdout == b"" and result.stderr == b""


def test_openmetrics_exposition_parses_strictly() -> None:
    """promtool 2.42 reads only the Prometheus text format (exemplars are a parse error there), so the
    OpenMetrics exposition is checked by prometheus_client's OpenMetrics parser, which rejects what the
    format forbids (missing ``# EOF``, counters without ``_total``, bad exemplars...)."""
    exposition = generate_openmetrics(busy_registry().registry).decode()
    assert exposition.endswith("# EOF\n")
    families = {family.name: family for family in parse_openmetrics(exposition)}
    assert families["gen_ai_client_operation_duration_seconds"].unit == "seconds"
    assert families["gen_ai_client_token_usage"].unit == ""
    assert families["genai_collector_cost_usd"].type == "counter"
    assert {sample.name for sample in families["genai_collector_cost_usd"].samples} == {
        "genai_collector_cost_usd_total"
    }
    assert families["genai_collector_breaches"].type == "counter"


def test_ten_thousand_models_keep_the_series_bounded(fixture: Fixture) -> None:
    spans = [llm_span(index=i, request_model=f"model-{i}", cost=0.001, ttft_ms=100.0) for i in range(10_000)]
    fixture.metrics.observe_spans(summarize(spans))
    cap = MetricsSettings().max_label_values
    for family in (
        "gen_ai_client_operation_duration_seconds",
        "gen_ai_client_operation_time_to_first_chunk_seconds",
        "genai_collector_cost_usd",
    ):
        series = fixture.label_sets(family)
        assert len(series) == cap + 1, family  # the first `cap` models and _other
    assert len(fixture.label_sets("gen_ai_client_token_usage")) == 2 * (cap + 1)
    folded = 10_000 - cap
    assert fixture.overflow("gen_ai_client", "gen_ai_request_model") == folded
    assert (
        fixture.value(
            "gen_ai_client_operation_duration_seconds_count", **{**CHAT, "gen_ai_request_model": OTHER}, error_type=""
        )
        == folded
    )
    # Every observation is still counted, folded or not.
    assert fixture.value(
        "genai_collector_cost_usd_total",
        service_name="checkout",
        gen_ai_provider_name="openai",
        gen_ai_request_model=OTHER,
    ) == pytest.approx(folded * 0.001)


def test_dimensions_allowlist_adds_labels_to_the_gen_ai_client_histograms_only() -> None:
    default = Fixture()
    default.metrics.observe_spans(summarize([llm_span(ttft_ms=100.0, cost=0.1)]))
    assert default.label_names("gen_ai_client_operation_duration_seconds") == [*CHAT, "error_type"]
    assert default.label_names("gen_ai_client_token_usage") == [*CHAT, "gen_ai_token_type"]

    # Listed in any order, once or twice: the labels come in the allowlist's order.
    fixture = Fixture(dimensions=("category", "agent", "service", "category"))
    fixture.metrics.observe_spans(summarize([llm_span(ttft_ms=100.0, cost=0.1, agent_name="planner")]))
    added = ["service_name", "gen_ai_agent_name", "gen_ai_category"]
    assert fixture.label_names("gen_ai_client_operation_duration_seconds") == [*CHAT, *added, "error_type"]
    assert fixture.label_names("gen_ai_client_operation_time_to_first_chunk_seconds") == [*CHAT, *added]
    assert fixture.label_names("gen_ai_client_token_usage") == [*CHAT, *added, "gen_ai_token_type"]
    assert fixture.label_names("genai_collector_cost_usd") == [
        "service_name",
        "gen_ai_provider_name",
        "gen_ai_request_model",
    ]
    dimensions = {"service_name": "checkout", "gen_ai_agent_name": "planner", "gen_ai_category": "llm"}
    assert fixture.value("gen_ai_client_token_usage_sum", **CHAT, **dimensions, gen_ai_token_type="input") == 100


def test_tool_dimension_labels_tool_spans() -> None:
    fixture = Fixture(dimensions=("tool",))
    fixture.metrics.observe_spans(
        summarize(
            [
                llm_span(
                    category="tool",
                    operation="execute_tool",
                    tool_name="web_search",
                    provider=None,
                    request_model=None,
                    input_tokens=None,
                    output_tokens=None,
                )
            ]
        )
    )
    assert (
        fixture.value(
            "gen_ai_client_operation_duration_seconds_count",
            gen_ai_provider_name="unknown",
            gen_ai_request_model="unknown",
            gen_ai_operation_name="execute_tool",
            gen_ai_tool_name="web_search",
            error_type="",
        )
        == 1
    )


def test_none_values_become_a_fixed_placeholder() -> None:
    fixture = Fixture(dimensions=("service", "agent"))
    fixture.metrics.observe_spans(
        summarize(
            [llm_span(provider=None, request_model=None, response_model=None, operation=None, service=None, cost=0.3)]
        )
    )
    unknown = {
        "gen_ai_provider_name": "unknown",
        "gen_ai_request_model": "unknown",
        "gen_ai_operation_name": "unknown",
        "service_name": "unknown",
        "gen_ai_agent_name": "unknown",
    }
    assert fixture.value("gen_ai_client_operation_duration_seconds_count", **unknown, error_type="") == 1
    assert fixture.value("gen_ai_client_token_usage_count", **unknown, gen_ai_token_type="output") == 1
    assert fixture.value(
        "genai_collector_cost_usd_total",
        service_name="unknown",
        gen_ai_provider_name="unknown",
        gen_ai_request_model="unknown",
    ) == pytest.approx(0.3)


def test_no_ids_or_content_become_labels(fixture: Fixture) -> None:
    """Spans as a client sends them, through decode and transform: ids and prompts stay out of /metrics."""
    attributes = {
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-2024-08-06",
        "gen_ai.operation.name": "chat",
        "gen_ai.usage.input_tokens": 1_000,
        "gen_ai.usage.output_tokens": 200,
        "gen_ai.response.id": "chatcmpl-secret-response-id",
        "gen_ai.conversation.id": "conversation-4711",
        "user.id": "user-0815",
        "gen_ai.input.messages": '[{"role":"user","parts":[{"type":"text","content":"plan my trip"}]}]',
    }
    decoded, _ = decode_spans(otlp_request(3, attributes=attributes))
    records, _ = Transform(Settings()).spans(decoded)
    fixture.metrics.observe_spans(summarize(records.spans))

    labels = {**CHAT, "gen_ai_request_model": "gpt-4o-2024-08-06", "gen_ai_token_type": "input"}
    assert fixture.value("gen_ai_client_token_usage_count", **labels) == 3
    assert (
        fixture.value(
            "genai_collector_cost_usd_total",
            service_name="test-service",
            gen_ai_provider_name="openai",
            gen_ai_request_model="gpt-4o-2024-08-06",
        )
        > 0
    )
    text = generate_latest(fixture.registry).decode()
    for private in (
        "chatcmpl",
        "conversation-4711",
        "user-0815",
        "plan my trip",
        decoded[0].trace_id,
        decoded[0].span_id,
    ):
        assert private not in text


def test_a_span_repeating_a_call_already_counted_is_not_observed(fixture: Fixture) -> None:
    """The writer names the spans whose model call another span counts (collector/genai/calls.py)."""
    counted, repeated = llm_span(index=1, cost=0.5), llm_span(index=2, cost=0.5)
    fixture.metrics.observe_spans(summarize([counted, repeated]), {(repeated.trace_id, repeated.span_id)})
    assert fixture.value("gen_ai_client_token_usage_count", **CHAT, gen_ai_token_type="input") == 1
    assert fixture.value("gen_ai_client_operation_duration_seconds_count", **CHAT, error_type="") == 1
    assert (
        fixture.value(
            "genai_collector_cost_usd_total",
            service_name="checkout",
            gen_ai_provider_name="openai",
            gen_ai_request_model="gpt-4o",
        )
        == 0.5
    )


@pytest.mark.parametrize("odd", [1e12, float("nan")], ids=["huge", "nan"])
def test_observe_batch_is_observe_of_each_value(odd: float) -> None:
    """The batch update reaches the state ``Histogram.observe`` reaches value by value: the bucket counts, the
    sum, and each bucket's exemplar the last value that fell into it (only the exemplars' timestamps differ)."""
    from prometheus_client import Histogram

    from collector.observability.genai_metrics import observe_batch

    values = [0.5, 0.5, 3.0, 1e9, odd, 0.0, -1.0, 2.5, 7.0, 2.5, 250.0, 0.01]
    observations = [(value, f"{index:032x}") for index, value in enumerate(values)]
    one_by_one, batched = CollectorRegistry(), CollectorRegistry()
    for registry in (one_by_one, batched):
        Histogram("h", "help", ["model"], buckets=OPERATION_BUCKETS, registry=registry)
    one_by_one_child = one_by_one._names_to_collectors["h"].labels("m")  # type: ignore[attr-defined]
    for value, trace_id in observations:
        one_by_one_child.observe(value, {"trace_id": trace_id})
    observe_batch(batched._names_to_collectors["h"].labels("m"), observations[:5])  # type: ignore[attr-defined]
    observe_batch(batched._names_to_collectors["h"].labels("m"), observations[5:])  # type: ignore[attr-defined]

    def state(registry: CollectorRegistry) -> list[tuple[str, dict[str, str], float, Any]]:
        return [
            (
                sample.name,
                sample.labels,
                sample.value,
                sample.exemplar and (sample.exemplar.labels, sample.exemplar.value),
            )
            for family in registry.collect()
            for sample in family.samples
            if not sample.name.endswith("_created")
        ]

    expected = state(one_by_one)
    assert [sample for sample in expected if sample[0] == "h_sum"] != []
    # with a NaN observed the sum is NaN on both sides: compared as text
    assert repr(state(batched)) == repr(expected)
