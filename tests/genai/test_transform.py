"""The per-record steps between decode and the queue: normalize, price, redact, limit."""

from __future__ import annotations

from typing import Any

import pytest

from collector.config import Settings
from collector.genai.transform import Transform
from collector.model import LogEvent, Span
from collector.otlp import decode_spans
from tests.helpers import otlp_request


def one_span(attributes: dict[str, Any], events: list[dict[str, Any]] | None = None) -> Span:
    spans, _ = decode_spans(otlp_request(1, attributes=attributes))
    return spans[0]._replace(events=events or [])


def transform(**settings: Any) -> Transform:
    return Transform(Settings.model_validate(settings))


def test_llm_span_is_normalized_priced_and_redacted() -> None:
    span = one_span(
        {
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o-2024-08-06",
            "gen_ai.usage.input_tokens": 10_000,
            "gen_ai.usage.cache_read.input_tokens": 8_000,
            "gen_ai.usage.output_tokens": 500,
            "gen_ai.input.messages": '[{"role":"user","parts":[{"type":"text","content":"I am bob@corp.example"}]}]',
        }
    )
    records, stats = transform().spans([span])
    stored = records.spans[0]
    assert stored.genai.category == "llm" and stored.genai.provider == "openai"
    # gpt-4o: 2,000 uncached at $2.50, 8,000 cached at $1.25, 500 output at $10 per million.
    assert stored.cost_usd == pytest.approx((2_000 * 2.5 + 8_000 * 1.25 + 500 * 10.0) / 1e6)
    assert "bob@corp.example" not in stored.attributes["gen_ai.input.messages"]
    assert "[REDACTED:email]" in stored.attributes["gen_ai.input.messages"]
    assert stats.redactions == {"email": 1}


def test_client_cost_is_kept_and_unknown_models_get_no_cost() -> None:
    sent_cost = one_span({"gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 5, "llm.cost.total": 0.42})
    unknown = one_span({"gen_ai.request.model": "house-model-7", "gen_ai.usage.input_tokens": 5})
    no_tokens = one_span({"gen_ai.request.model": "house-model-7"})
    records, stats = transform().spans([sent_cost, unknown, no_tokens])
    assert [span.cost_usd for span in records.spans] == [0.42, None, None]
    assert stats.unpriced_models == {"house-model-7": 1}


def test_redaction_runs_before_truncation_so_no_half_address_survives() -> None:
    prompt = "x" * 90 + " reach me at carol.smith@example.org please"
    records, stats = transform(limits={"max_attribute_length": 100}).spans([one_span({"gen_ai.prompt": prompt})])
    stored = records.spans[0].attributes["gen_ai.prompt"]
    assert "carol" not in stored and "example.org" not in stored
    assert stored.endswith("chars]") and "…[truncated " in stored
    assert stats.truncated_values == 1


def test_attribute_and_event_limits_are_counted_on_the_span() -> None:
    events = [{"name": f"e{index}", "time_unix_nano": index, "attributes": {}} for index in range(5)]
    span = one_span({f"k{index}": index for index in range(10)}, events=events)
    records, stats = transform(limits={"max_attributes": 4, "max_events": 2}).spans([span])
    stored = records.spans[0]
    assert list(stored.attributes) == ["k0", "k1", "k2", "k3"]
    assert stored.dropped_attributes_count == 6 and stats.dropped_attributes == 6
    assert [event["name"] for event in stored.events] == ["e0", "e1"]
    assert stored.dropped_events_count == 3 and stats.dropped_events == 3


def test_resource_attributes_obey_the_limits_once_per_request_and_stay_shared() -> None:
    resource = {"service.name": "svc", "host.name": "h" * 500, **{f"r{index}": index for index in range(10)}}
    spans, _ = decode_spans(otlp_request(3))
    spans = [span._replace(resource_attributes=resource) for span in spans]
    records, stats = transform(limits={"max_attributes": 4, "max_attribute_length": 100}).spans(spans)
    limited = records.spans[0].resource_attributes
    assert list(limited) == ["service.name", "host.name", "r0", "r1"]
    assert limited["host.name"].startswith("h" * 100 + "…[truncated 400 chars]")
    assert all(span.resource_attributes is limited for span in records.spans)  # the writer stores it once
    assert stats.dropped_attributes == 8 and stats.truncated_values == 1  # counted once, not per span


def test_evaluations_come_from_span_events_and_openinference_attributes() -> None:
    events = [
        {
            "name": "gen_ai.evaluation.result",
            "time_unix_nano": 7,
            "attributes": {"gen_ai.evaluation.name": "faithfulness", "gen_ai.evaluation.score.value": 0.8},
        }
    ]
    span = one_span(
        {"evaluations.0.evaluation.name": "relevance", "evaluations.0.evaluation.score": 0.4}, events=events
    )
    records, _ = transform().spans([span])
    found = {(evaluation.name, evaluation.score, evaluation.source) for evaluation in records.evaluations}
    assert found == {("faithfulness", 0.8, "span_event"), ("relevance", 0.4, "span_attribute")}
    assert all(evaluation.trace_id == span.trace_id for evaluation in records.evaluations)
    assert all(  # stored with the resource of the span they came from
        (evaluation.resource_attributes, evaluation.scope_name) == (span.resource_attributes, span.scope_name)
        for evaluation in records.evaluations
    )


def log_event(name: str | None, body: Any) -> LogEvent:
    return LogEvent(None, None, 1, None, name, "log", None, None, body, {}, "svc", None, {})


def test_log_records_other_than_genai_events_are_dropped_unless_kept() -> None:
    events = [log_event("gen_ai.choice", "call +1 415 555 0132"), log_event("app.audit", "login ok")]
    records, stats = transform().log_events(events)
    assert [event.name for event in records.events] == ["gen_ai.choice"]
    assert records.events[0].body == "call [REDACTED:phone]"
    assert stats.dropped_log_records == 1
    kept, _ = transform(logs={"keep_other": True}).log_events(events)
    assert [event.name for event in kept.events] == ["gen_ai.choice", "app.audit"]


def test_capture_content_off_drops_prompts_but_keeps_metadata() -> None:
    span = one_span(
        {"gen_ai.prompt.0.content": "secret plan", "gen_ai.prompt.0.role": "user", "gen_ai.system": "openai"}
    )
    records, stats = transform(redaction={"capture_content": False}).spans([span])
    assert records.spans[0].attributes == {"gen_ai.prompt.0.role": "user", "gen_ai.system": "openai"}
    assert stats.redactions == {"content_dropped": 1}


def test_token_counts_out_of_range_stay_in_the_attributes_only() -> None:
    span = one_span(
        {
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.input_tokens": 2**62,
            "gen_ai.usage.output_tokens": 10**12,  # the largest kept
            "llm.cost.total": 1e300,
        }
    )
    records, stats = transform().spans([span])
    stored = records.spans[0]
    assert stored.genai.input_tokens is None and stored.genai.output_tokens == 10**12
    assert stored.genai.total_tokens is None  # input + output is out of range too
    assert stored.genai.client_cost_usd is None
    assert stored.cost_usd == pytest.approx(10**12 * 10.0 / 1e6)  # priced from the counts that are kept
    assert stored.attributes["gen_ai.usage.input_tokens"] == 2**62
    assert stats.out_of_range == {"input_tokens": 1, "total_tokens": 1, "client_cost_usd": 1}


def test_canonical_text_columns_obey_the_attribute_length_limit() -> None:
    span = one_span({"gen_ai.request.model": "m" * 500, "gen_ai.agent.name": "a" * 80})
    long_service = span._replace(service_name="s" * 300)
    records, stats = transform(limits={"max_attribute_length": 100}).spans([long_service])
    stored = records.spans[0]
    for value in (stored.genai.request_model, stored.service_name, stored.attributes["gen_ai.request.model"]):
        assert value[:101] == value[0] * 100 + "…" and value.endswith("chars]")
    assert stored.genai.agent_name == "a" * 80
    assert stats.truncated_values == 3


def test_evaluations_survive_content_capture_off_and_are_redacted() -> None:
    events = [
        {
            "name": "gen_ai.evaluation.result",
            "time_unix_nano": 7,
            "attributes": {
                "gen_ai.evaluation.name": "faithfulness",
                "gen_ai.evaluation.score.value": 0.8,
                "gen_ai.evaluation.explanation": "answer cites jane@example.com",
            },
        }
    ]
    records, _ = transform(redaction={"capture_content": False}).spans([one_span({}, events=events)])
    (evaluation,) = records.evaluations
    assert (evaluation.name, evaluation.score) == ("faithfulness", 0.8)
    assert evaluation.explanation == "answer cites [REDACTED:email]"
    assert records.spans[0].events[0]["attributes"] == {}


def test_every_stored_string_of_a_span_is_redacted() -> None:
    resource = {"service.name": "bot", "owner.email": "ops@example.com"}
    span = one_span({"user.email": "jane@example.com", "gen_ai.request.model": "gpt-4o-2024-08-06"})._replace(
        name="notify bob@example.org",
        status_message="failed for 10.1.2.3",
        resource_attributes=resource,
        events=[{"name": "exception", "time_unix_nano": 1, "attributes": {"exception.message": "SSN 078-05-1120"}}],
        links=[{"trace_id": "ab" * 16, "span_id": "cd" * 8, "attributes": {"why": "call 415-555-0132"}}],
    )
    records, stats = transform().spans([span, span._replace(span_id="ef" * 8)])
    stored = records.spans[0]
    assert stored.name == "notify [REDACTED:email]"
    assert stored.status_message == "failed for [REDACTED:ipv4]"
    assert stored.attributes == {"user.email": "[REDACTED:email]", "gen_ai.request.model": "gpt-4o-2024-08-06"}
    assert stored.genai.request_model == "gpt-4o-2024-08-06"
    assert stored.resource_attributes == {"service.name": "bot", "owner.email": "[REDACTED:email]"}
    assert records.spans[1].resource_attributes is stored.resource_attributes  # one resource, redacted once
    assert stored.events[0]["attributes"] == {"exception.message": "SSN [REDACTED:ssn]"}
    assert stored.links[0]["attributes"] == {"why": "call [REDACTED:phone]"}
    assert stats.redactions == {"email": 5, "ipv4": 2, "ssn": 2, "phone": 2}  # the resource counts once


def test_kept_log_records_are_redacted_everywhere() -> None:
    event = log_event("app.audit", "login by jane@example.com")._replace(
        attributes={"client.address": "2001:db8:85a3::8a2e:370:7334"}, resource_attributes={"host.ip": "10.0.0.7"}
    )
    records, _ = transform(logs={"keep_other": True}).log_events([event])
    (stored,) = records.events
    assert stored.body == "login by [REDACTED:email]"
    assert stored.attributes == {"client.address": "[REDACTED:ipv6]"}
    assert stored.resource_attributes == {"host.ip": "[REDACTED:ipv4]"}
