"""Batches of GenAI records for the PostgreSQL tests, and the rows both engines should hold for them.

The traces mix what the rollups and settling have to get right: nested model-call spans of one call (an
instrumentation library's around the client SDK's), two spans with one response id, errors, tools, several
services and resources, time to first chunk, events from logs, evaluations by span and by response id.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterable
from typing import Any

from collector.config import Settings
from collector.genai.transform import Transform
from collector.model import EvaluationRecord, LogEvent, Records
from collector.otlp.protobuf import decode_spans
from tests.helpers import trace_request

SERVICES = ("support-agent", "research-agent", "checkout-bot")
MODELS = ("gpt-4o-mini", "gpt-4o", "claude-3-5-sonnet-20241022")


def _hex(rng: random.Random, size: int) -> bytes:
    return rng.getrandbits(size * 8).to_bytes(size, "big")


def _llm(rng: random.Random, model: str, *, usage: bool = True, response_id: str | None = None) -> dict[str, Any]:
    attributes: dict[str, Any] = {"gen_ai.operation.name": "chat", "gen_ai.request.model": model}
    if usage:
        attributes["gen_ai.usage.input_tokens"] = rng.randint(10, 3000)
        attributes["gen_ai.usage.output_tokens"] = rng.randint(1, 600)
    if response_id:
        attributes["gen_ai.response.id"] = response_id
    if rng.random() < 0.3:
        attributes["ai.response.msToFirstChunk"] = round(rng.uniform(100, 900), 1)
    return attributes


def agent_trace(rng: random.Random, base_ns: int) -> tuple[bytes, str, list[dict[str, Any]]]:
    """One trace's spans (as ``trace_request`` takes them), root first."""
    trace_id = _hex(rng, 16)
    root, plan = _hex(rng, 8), _hex(rng, 8)
    start = base_ns + rng.randrange(10**9)
    spans: list[dict[str, Any]] = [
        {
            "span_id": root,
            "name": f"invoke_agent {rng.choice(('triage', 'planner'))}",
            "start": start,
            "end": start + 9_000_000_000,
            "attributes": {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": rng.choice(("a", "b"))},
        },
        {"span_id": plan, "parent": root, "name": "plan", "start": start + 1, "end": start + 8_000_000_000},
    ]
    clock = start + 10
    for _ in range(rng.randint(1, 4)):
        model = rng.choice(MODELS)
        outer = _hex(rng, 8)
        kind = rng.random()
        spans.append(
            {
                "span_id": outer,
                "parent": plan,
                "name": f"chat {model}",
                "start": clock,
                "end": clock + 5_000,
                "error": rng.random() < 0.1,
                "attributes": _llm(rng, model, usage=kind < 0.7),
            }
        )
        if kind < 0.4:  # the client SDK's span of the same call, inside the library's
            spans.append(
                {
                    "span_id": _hex(rng, 8),
                    "parent": outer,
                    "name": "chat",
                    "start": clock + 1,
                    "end": clock + 4_000,
                    "attributes": _llm(rng, model),
                }
            )
        elif kind < 0.55:  # a sibling with the same response id (OpenLLMetry beside the SDK)
            response_id = f"resp-{rng.getrandbits(40):010x}"
            spans[-1]["attributes"]["gen_ai.response.id"] = response_id
            spans.append(
                {
                    "span_id": _hex(rng, 8),
                    "parent": plan,
                    "name": "openai.chat",
                    "start": clock + 2,
                    "end": clock + 4_500,
                    "attributes": _llm(rng, model, response_id=response_id),
                }
            )
        if rng.random() < 0.5:
            spans.append(
                {
                    "span_id": _hex(rng, 8),
                    "parent": plan,
                    "name": "execute_tool search",
                    "start": clock + 6_000,
                    "end": clock + 7_000,
                    "error": rng.random() < 0.2,
                    "attributes": {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "search"},
                }
            )
        clock += 10_000
    if rng.random() < 0.3:
        spans[-1]["attributes"] = {
            **spans[-1].get("attributes", {}),
            "evaluations.0.evaluation.name": "relevance",
            "evaluations.0.evaluation.score": round(rng.random(), 3),
        }
    return trace_id, rng.choice(SERVICES), spans


def batches(seed: int, *, traces: int, base_ns: int, split: bool = True) -> list[list[Records]]:
    """Batches of requests holding ``traces`` agent traces; with ``split`` a trace's spans are spread over
    requests in different batches, in shuffled order (children before their parents, roots late)."""
    rng = random.Random(seed)
    transform = Transform(Settings())
    requests: list[Records] = []
    for _ in range(traces):
        trace_id, service, spans = agent_trace(rng, base_ns)
        parts = [spans]
        if split and len(spans) > 2:
            rng.shuffle(spans)
            cut = rng.randint(1, len(spans) - 1)
            parts = [spans[:cut], spans[cut:]]
        for part in parts:
            decoded, _ = decode_spans(trace_request(trace_id, part, service=service))
            records, _ = transform.spans(decoded)
            requests.append(records)
        requests.append(Records(events=[_event(rng, trace_id.hex(), service)]))
        if rng.random() < 0.3:
            requests.append(Records(evaluations=[_evaluation(rng, trace_id.hex())]))
    rng.shuffle(requests)
    return [requests[index : index + 7] for index in range(0, len(requests), 7)]


def _event(rng: random.Random, trace_id: str, service: str) -> LogEvent:
    return LogEvent(
        trace_id=trace_id,
        span_id=None,
        time_unix_nano=rng.randrange(10**18),
        observed_time_unix_nano=None,
        name="gen_ai.user.message",
        source="log",
        severity_number=9,
        severity_text="INFO",
        body={"content": f"hello {rng.random()}"},
        attributes={"gen_ai.system": "openai"},
        service_name=service,
        scope_name="tests",
        resource_attributes={"service.name": service},
    )


def _evaluation(rng: random.Random, trace_id: str) -> EvaluationRecord:
    return EvaluationRecord(
        trace_id=trace_id,
        span_id=None,
        response_id=None,
        name="faithfulness",
        score=round(rng.random(), 3),
        label=None,
        explanation="checked",
        source="log",
        time_unix_nano=rng.randrange(10**18),
        resource_attributes={"service.name": "evaluator"},
        scope_name="judge",
    )


# What each table must hold alike on both engines: their own clocks (receipt times) and ids aside.
COMPARED = {
    "spans_with_resource": (
        (
            "trace_id, span_id, parent_span_id, trace_state, flags, name, kind, start_time_unix_nano,"
            " end_time_unix_nano, duration_ns, status_code, status_message, service_name, attributes, events, links,"
            " dropped_attributes_count,"
            " dropped_events_count, dropped_links_count, category, provider, request_model, response_model, operation,"
            " input_tokens, output_tokens, total_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens,"
            " finish_reasons, response_id, ttft_ms, conversation_id, user_id, agent_name, tool_name, cost_usd,"
            " duplicate_of, resource_attributes, scope_name, scope_version"
        ),
        "trace_id, span_id",
    ),
    "traces": (
        (
            "trace_id, service_name, root_span_name, has_root, start_time_unix_nano, end_time_unix_nano, duration_ns,"
            " span_count, error_count, llm_calls, input_tokens, output_tokens, total_tokens, cache_read_tokens,"
            " cache_write_tokens, reasoning_tokens, cost_usd, models, agents, settled_at_unix_nano IS NULL"
        ),
        "trace_id",
    ),
    "metric_snapshots": (
        "trace_id, service_name, metric, value, threshold, breached, rule, computed_at",
        "trace_id, metric",
    ),
    "events_with_resource": (
        (
            "trace_id, span_id, time_unix_nano, observed_time_unix_nano, name, source, severity_number, severity_text,"
            " body, attributes, service_name, dedup_key, resource_attributes, scope_name"
        ),
        "dedup_key",
    ),
    "evaluations": (
        (
            "trace_id, span_id, response_id, name, score, label, explanation, source, time_unix_nano, dedup_key,"
            " (SELECT hash FROM resources WHERE resources.id = evaluations.resource_id)"
        ),
        "dedup_key",
    ),
    "resources": ("hash, resource_attributes, scope_name, scope_version", "hash"),
}
JSON_COLUMNS = {"attributes", "events", "links", "resource_attributes", "body", "models", "agents"}


def normalized(columns: str, rows: Iterable[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Rows as comparable values: JSON text parsed (SQLite gives text, psycopg parsed jsonb), bytes as bytes,
    booleans as 0/1, floats to 12 significant digits (sums added in another order)."""
    names = [name.strip() for name in columns.split(",")]
    out = []
    for row in rows:
        values = []
        for name, value in zip(names, row, strict=True):
            if name in JSON_COLUMNS and isinstance(value, str):
                value = json.loads(value)
            elif isinstance(value, bool):
                value = int(value)
            elif isinstance(value, memoryview):
                value = bytes(value)
            elif isinstance(value, float) and value != 0 and math.isfinite(value):
                value = float(f"{value:.12g}")
            values.append(value)
        out.append(tuple(values))
    return out
