"""Per-trace rollups and settling, through the store's protocols: the rollup is the sum of its spans whatever
the order, split or repetition of their delivery; a model call described by two spans counts once; settling
writes each trace's snapshots, each breach found new once."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from collector.config import SnapshotSettings
from collector.maintenance.settle import settle
from collector.storage.read import BreachQuery
from tests.helpers import trace_request
from tests.storage.contract.conftest import Backend, run, skeleton

TRACE = os.urandom(16)
ROOT, PLAN, LLM_1, LLM_2, TOOL = (os.urandom(8) for _ in range(5))


def llm(span_id: bytes, input_tokens: int, output_tokens: int, model: str = "gpt-4o-mini") -> dict[str, Any]:
    return {
        "span_id": span_id,
        "parent": PLAN,
        "name": f"chat {model}",
        "start": 2_000_000_000,
        "end": 3_000_000_000,
        "attributes": {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": model,
            "gen_ai.usage.input_tokens": input_tokens,
            "gen_ai.usage.output_tokens": output_tokens,
        },
    }


AGENT_TRACE = [
    {
        "span_id": ROOT,
        "name": "invoke_agent support",
        "start": 1_000_000_000,
        "end": 9_000_000_000,
        "attributes": {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "support"},
    },
    {"span_id": PLAN, "parent": ROOT, "name": "plan", "start": 1_500_000_000, "end": 8_000_000_000},
    llm(LLM_1, 1_000, 100),
    llm(LLM_2, 2_000, 300, model="claude-3-5-sonnet-20241022"),
    {
        "span_id": TOOL,
        "parent": PLAN,
        "name": "execute_tool search",
        "start": 4_000_000_000,
        "end": 9_500_000_000,
        "error": True,
        "attributes": {"gen_ai.operation.name": "execute_tool"},
    },
]

ROLLUP_COLUMNS = (
    "service_name, root_span_name, has_root, start_time_unix_nano, end_time_unix_nano, duration_ns, span_count,"
    " error_count, llm_calls, input_tokens, output_tokens, total_tokens, round(cost_usd, 9), models, agents"
)
EXPECTED = (
    "agent-service",
    "invoke_agent support",
    1,
    1_000_000_000,
    9_500_000_000,
    8_500_000_000,
    5,
    1,
    2,
    3_000,
    400,
    3_400,
    # gpt-4o-mini: 1,000 x $0.15 + 100 x $0.60; claude-3-5-sonnet: 2,000 x $3 + 300 x $15 (per million).
    round((1_000 * 0.15 + 100 * 0.60 + 2_000 * 3.0 + 300 * 15.0) / 1e6, 9),
    '["claude-3-5-sonnet-20241022","gpt-4o-mini"]',
    '["support"]',
)


def rollup(backend: Backend, trace_id: bytes = TRACE) -> list[tuple[Any, ...]]:
    """The trace's rollup as the reader gives it, in the order of ``ROLLUP_COLUMNS``."""
    return [
        (
            t["service_name"],
            t["root_span_name"],
            int(t["has_root"]),
            t["start_time_unix_nano"],
            t["end_time_unix_nano"],
            round(t["duration_ms"] * 1e6),
            t["span_count"],
            t["error_count"],
            t["llm_calls"],
            t["input_tokens"],
            t["output_tokens"],
            t["total_tokens"],
            None if t["cost_usd"] is None else round(t["cost_usd"], 9),
            json.dumps(t["models"], separators=(",", ":")),
            json.dumps(t["agents"], separators=(",", ":")),
        )
        for t in run(backend.reader().trace_summaries([trace_id.hex()]))
    ]


@pytest.fixture
def write(store: Backend) -> Any:
    """Each argument one request (a group of spans of ``TRACE``), all of them one batch."""

    def write(*span_groups: list[dict[str, Any]]) -> None:
        store.store.write([store.records(trace_request(TRACE, group)) for group in span_groups])

    write.backend = store  # type: ignore[attr-defined]
    write.store = store.store  # type: ignore[attr-defined]
    write.rollup = lambda: rollup(store)  # type: ignore[attr-defined]
    return write


def test_one_request_gives_the_whole_rollup(write: Any) -> None:
    write(AGENT_TRACE)
    assert write.rollup() == [EXPECTED]


@pytest.mark.parametrize(
    "deliveries",
    [
        [AGENT_TRACE[::-1]],  # out of order in one request
        [[span] for span in AGENT_TRACE],  # one span per request
        [AGENT_TRACE[1:], AGENT_TRACE[:1]],  # the root arrives last
        [AGENT_TRACE[:3], AGENT_TRACE, AGENT_TRACE[2:]],  # split and duplicated
    ],
    ids=["reversed", "one-by-one", "root-last", "split-and-duplicated"],
)
def test_delivery_order_split_and_duplicates_do_not_change_the_rollup(
    write: Any, deliveries: list[list[dict[str, Any]]]
) -> None:
    for delivery in deliveries:
        write(delivery)
    assert write.rollup() == [EXPECTED]


def test_same_batch_many_requests(write: Any) -> None:
    write(*[[span] for span in AGENT_TRACE])
    assert write.rollup() == [EXPECTED]


def test_without_root_the_trace_is_not_marked_rooted(write: Any) -> None:
    write(AGENT_TRACE[1:])
    (row,) = write.rollup()
    assert row[2] == 0 and row[1] is None and row[6] == 4


RULES = SnapshotSettings.model_validate(
    {"settle_after": "0s", "max_wait": "1h", "rules": [{"metric": "latency_ms", "above": 5000}]}
)


def snapshots(backend: Backend) -> list[tuple[Any, ...]]:
    """Every snapshot of ``TRACE``, breached or not: (metric, value, threshold, breached)."""
    reader = backend.reader()
    found = [
        (row["metric"], row["value"], row["threshold"], int(row["breached"]))
        for breached in (True, False)
        for row in run(reader.breaches(BreachQuery(trace_id=TRACE.hex(), breached=breached)))["data"]
    ]
    return sorted(found, key=lambda row: row[0])


def test_a_quiet_rooted_trace_settles_and_a_late_span_recomputes_in_place(write: Any) -> None:
    writer = write.store
    write(AGENT_TRACE[:4])
    (settled,) = settle(writer, RULES)
    assert [s.metric for s in settled.newly_breached] == ["latency_ms"]
    assert snapshots(write.backend) == [
        ("cost_usd", pytest.approx(EXPECTED[12]), None, 0),
        ("latency_ms", 8000.0, 5000.0, 1),
    ]
    assert settle(writer, RULES) == []  # nothing left to settle

    write(AGENT_TRACE[4:])  # the tool span comes late and makes the trace longer
    assert [t["settled"] for t in run(write.backend.reader().trace_summaries([TRACE.hex()]))] == [False]
    (again,) = settle(writer, RULES)
    assert again.newly_breached == []  # still breached: not a new breach
    assert snapshots(write.backend) == [
        ("cost_usd", pytest.approx(EXPECTED[12]), None, 0),
        ("latency_ms", 8500.0, 5000.0, 1),
    ]
    assert len(snapshots(write.backend)) == 2


def test_settling_returns_the_figures_of_each_trace(write: Any) -> None:
    write(AGENT_TRACE)
    (settled,) = settle(write.store, RULES)
    figures = settled.figures
    assert (figures.trace_id, figures.service_name, figures.models, figures.agents) == (
        TRACE.hex(),
        "agent-service",
        ("claude-3-5-sonnet-20241022", "gpt-4o-mini"),
        ("support",),
    )
    assert figures.duration_seconds == 8.5
    assert figures.values == {
        "latency_ms": 8500.0,
        "cost_usd": pytest.approx(EXPECTED[12]),
        "total_tokens": 3_400,
        "error_count": 1,
        "llm_calls": 2,
        "ttft_ms": None,
    }
    assert [s.metric for s in settled.snapshots] == ["latency_ms", "cost_usd"]


def test_a_trace_without_root_waits_for_max_wait(write: Any) -> None:
    writer = write.store
    write(AGENT_TRACE[1:])
    assert settle(writer, RULES) == []
    assert writer.oldest_unsettled() is not None
    impatient = RULES.model_copy(update={"max_wait": 0.0})
    assert [settled.figures.trace_id for settled in settle(writer, impatient)] == [TRACE.hex()]
    assert writer.oldest_unsettled() is None


def test_evaluation_scores_breach_below_their_threshold(write: Any) -> None:
    writer = write.store
    evaluation_span = {
        "span_id": os.urandom(8),
        "parent": PLAN,
        "name": "judge",
        "attributes": {
            "evaluations.0.evaluation.name": "faithfulness",
            "evaluations.0.evaluation.score": 0.62,
            "evaluations.1.evaluation.name": "faithfulness",
            "evaluations.1.evaluation.score": 0.97,
        },
    }
    write([*AGENT_TRACE, evaluation_span])
    rules = SnapshotSettings.model_validate(
        {"settle_after": "0s", "rules": [{"metric": "eval:faithfulness", "below": 0.85}]}
    )
    (settled,) = settle(writer, rules)
    (faithfulness,) = [s for s in settled.snapshots if s.metric == "eval:faithfulness"]
    assert faithfulness.value == 0.62 and faithfulness.breached  # the lowest score of that name


# --- one model call described by two nested spans is counted once ----------------------------------

WRAPPER, SDK_SPAN, HTTP = (os.urandom(8) for _ in range(3))


def wrapped_call() -> list[dict[str, Any]]:
    """AGENT_TRACE with its first call described twice: an instrumentation library's span (OpenInference
    keys) around the client SDK's own (OTel keys), with a plain HTTP span between them."""
    wrapper = {
        "span_id": WRAPPER,
        "parent": PLAN,
        "name": "ChatCompletion",
        "start": 1_900_000_000,
        "end": 3_100_000_000,
        "attributes": {
            "openinference.span.kind": "LLM",
            "llm.model_name": "gpt-4o-mini",
            "llm.token_count.prompt": 1_000,
            "llm.token_count.completion": 100,
        },
    }
    http = {"span_id": HTTP, "parent": WRAPPER, "name": "POST", "start": 1_950_000_000, "end": 3_050_000_000}
    sdk = {**llm(SDK_SPAN, 1_000, 100), "parent": HTTP}
    return [AGENT_TRACE[0], AGENT_TRACE[1], wrapper, http, sdk, *AGENT_TRACE[3:]]


WRAPPED = wrapped_call()
EXPECTED_WRAPPED = (*EXPECTED[:6], 7, *EXPECTED[7:])  # two more spans, the same calls, tokens and cost


@pytest.mark.parametrize(
    "deliveries",
    [
        [WRAPPED],
        [WRAPPED[::-1]],
        [[span] for span in WRAPPED],
        [[span] for span in WRAPPED[::-1]],
        [WRAPPED[:3], WRAPPED[4:], WRAPPED[3:4]],  # the span linking the two arrives last
        [WRAPPED[4:5], WRAPPED, WRAPPED[2:3]],  # split and duplicated
    ],
    ids=["one-request", "reversed", "parent-first", "child-first", "link-last", "split-and-duplicated"],
)
def test_a_call_described_by_nested_spans_counts_once_whatever_the_order(
    write: Any, deliveries: list[list[dict[str, Any]]]
) -> None:
    for delivery in deliveries:
        write(delivery)
    assert write.rollup() == [EXPECTED_WRAPPED]
    found = skeleton(write.backend.reader(), TRACE.hex())
    assert found is not None
    marks = {span["span_id"]: span["duplicate_of"] for span in found[1] if span["category"] == "llm"}
    # The SDK's span is the innermost with usage: it counts, the wrapper names it.
    assert marks == {WRAPPER.hex(): SDK_SPAN.hex(), SDK_SPAN.hex(): None, LLM_2.hex(): None}


def test_the_writer_reports_the_new_spans_of_a_call_already_counted(store: Backend) -> None:
    """What the GenAI metrics leave out: a call is observed with the first of its spans to be stored."""

    def spans(group: list[dict[str, Any]]) -> Any:
        return store.records(trace_request(TRACE, group))

    wrapper, sdk = WRAPPED[2], WRAPPED[4]
    child_first = store.open("child-first")
    assert child_first.write([spans([sdk])]).repeated_calls == frozenset()
    assert child_first.write([spans([WRAPPED[3]])]).repeated_calls == frozenset()
    assert child_first.write([spans([wrapper])]).repeated_calls == {(TRACE.hex(), WRAPPER.hex())}

    parent_first = store.open("parent-first")
    assert parent_first.write([spans([wrapper, WRAPPED[3]])]).repeated_calls == frozenset()
    assert parent_first.write([spans([sdk])]).repeated_calls == {(TRACE.hex(), SDK_SPAN.hex())}

    together = store.open("together")
    assert together.write([spans(WRAPPED)]).repeated_calls == {(TRACE.hex(), WRAPPER.hex())}
