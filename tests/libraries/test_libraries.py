"""The real instrumentation libraries, driving the real OpenAI and Anthropic clients against a fake LLM server.

Each library runs in its own environment (``environments.py``): a driver script makes a chat call, a
streamed chat call and a tool call (a tool call answered, then the answer: two model calls) per API,
each under its own root span, and exports the spans over OTLP to a real collector started on port 0.
The assertions read the collector's database: every canonical column of every model-call span (the
library's and, where it nests one, the client SDK's), its cost to 1e-9 from the shipped price table,
and the trace rollup and GenAI metrics, where each call counts once.

``MATRIX`` says which canonical columns each instrumentation fills; it is the matrix in
docs/genai-conventions.md, and this test is what keeps it true.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from collector.genai.pricing import PriceTable
from tests.conftest import RunningCollector, collector_settings
from tests.helpers import metric_value, scrape
from tests.libraries import environments
from tests.libraries.fake_llm import (
    ANTHROPIC_REQUEST_MODEL,
    ANTHROPIC_RESPONSE_MODEL,
    ANTHROPIC_STOP,
    FIRST_CHUNK_DELAY,
    OPENAI_FINISH,
    OPENAI_REQUEST_MODEL,
    OPENAI_RESPONSE_MODEL,
    REPLIES,
    TOOL_NAME,
    fake_llm_server,
    response_id,
)

DRIVER_TIMEOUT = 180  # seconds

COLUMNS = (
    "category",
    "provider",
    "request_model",
    "response_model",
    "operation",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "finish_reasons",
    "response_id",
    "ttft_ms",
    "conversation_id",
    "user_id",
    "agent_name",
    "tool_name",
    "cost_usd",
)
ALWAYS = frozenset({"category", "operation", "input_tokens", "output_tokens", "total_tokens", "cost_usd"})

# Scenario -> the reply kinds of its model calls, in order.
SCENARIOS = {"chat": ("chat",), "stream": ("stream",), "tool": ("tool_call", "tool_answer")}


@dataclass(frozen=True)
class Instrumentation:
    """What one instrumentation's model-call spans carry, as verified here; columns absent are NULL."""

    columns: frozenset[str]
    # (reply kind, column, value): what it reports instead of the fake server's answer (its own reading);
    # token counts here are used for the total and the cost too
    quirks: tuple[tuple[str, str, Any], ...] = ()
    request_model_is_response_model: bool = False
    finish_reasons: dict[str, str] | None = None  # reply kind -> reason, where not the provider's own
    zero_is_absent: frozenset[str] = frozenset()  # columns it leaves out when the count is 0


def columns(*names: str) -> frozenset[str]:
    return ALWAYS | frozenset(names)


# By instrumentation scope name: the matrix of docs/genai-conventions.md.
MATRIX: dict[str, Instrumentation] = {
    # opentelemetry-instrumentation-openai-v2 2.3b0: no cache tokens, no time to first chunk.
    "opentelemetry.instrumentation.openai_v2": Instrumentation(
        columns("provider", "request_model", "response_model", "finish_reasons", "response_id"),
        quirks=(("stream", "finish_reasons", None),),
    ),
    "openinference.instrumentation.openai": Instrumentation(
        columns(
            "provider",
            "request_model",
            "response_model",
            "cache_read_tokens",
            "reasoning_tokens",
            "finish_reasons",
            "ttft_ms:stream",
        ),
    ),
    "openinference.instrumentation.anthropic": Instrumentation(
        columns(
            "provider", "request_model", "response_model", "cache_read_tokens", "cache_write_tokens", "finish_reasons"
        ),
        zero_is_absent=frozenset({"cache_read_tokens", "cache_write_tokens"}),
    ),
    "opentelemetry.instrumentation.openai.v1": Instrumentation(
        columns(
            "provider",
            "request_model",
            "response_model",
            "cache_read_tokens",
            "reasoning_tokens",
            "finish_reasons",
            "response_id",
            "ttft_ms:stream",
        ),
        quirks=(("stream", "reasoning_tokens", None),),
        finish_reasons={"chat": "stop", "stream": "stop", "tool_call": "tool_call", "tool_answer": "stop"},
    ),
    "opentelemetry.instrumentation.anthropic": Instrumentation(
        columns(
            "provider",
            "request_model",
            "response_model",
            "cache_read_tokens",
            "cache_write_tokens",
            "finish_reasons",
            "response_id",
        ),
        # It adds message_start's placeholder output count (1) to message_delta's total; the Anthropic SDK's
        # span beside it has the right count, and is the one counted.
        quirks=(("stream", "output_tokens", REPLIES["anthropic", "stream"].usage.output + 1),),
        finish_reasons={"chat": "stop", "stream": "stop", "tool_call": "tool_call", "tool_answer": "stop"},
    ),
    "com.anthropic.sdk.python": Instrumentation(
        columns(
            "provider",
            "request_model",
            "response_model",
            "cache_read_tokens",
            "cache_write_tokens",
            "finish_reasons",
            "response_id",
            "ttft_ms:stream",
        ),
    ),
    "langfuse-sdk": Instrumentation(
        columns(
            "request_model",
            "cache_read_tokens",
            "cache_write_tokens",
            "reasoning_tokens",
            "finish_reasons",
            "ttft_ms:stream",
            "conversation_id",
            "user_id",
        ),
    ),
    "ai": Instrumentation(
        columns(
            "provider",
            "request_model",
            "response_model",
            "cache_read_tokens",
            "cache_write_tokens",
            "reasoning_tokens",
            "finish_reasons",
            "response_id",
            "ttft_ms:stream",
        ),
        finish_reasons={"chat": "stop", "stream": "stop", "tool_call": "tool-calls", "tool_answer": "stop"},
    ),
}


@dataclass(frozen=True)
class Library:
    name: str
    environment: str | None  # requirements/<name>.txt; None for the Node driver
    driver: str
    apis: tuple[str, ...]
    scopes: tuple[str, ...]  # the instrumentations whose spans it produces (the library's, a client SDK's)


LIBRARIES = (
    Library("openai-v2", "openai-v2", "drive_openai_v2.py", ("openai",), ("opentelemetry.instrumentation.openai_v2",)),
    Library(
        "openinference",
        "openinference",
        "drive_openinference.py",
        ("openai", "anthropic"),
        ("openinference.instrumentation.openai", "openinference.instrumentation.anthropic", "com.anthropic.sdk.python"),
    ),
    Library(
        "openllmetry",
        "openllmetry",
        "drive_openllmetry.py",
        ("openai", "anthropic"),
        (
            "opentelemetry.instrumentation.openai.v1",
            "opentelemetry.instrumentation.anthropic",
            "com.anthropic.sdk.python",
        ),
    ),
    Library("anthropic-sdk", "anthropic-sdk", "drive_anthropic_sdk.py", ("anthropic",), ("com.anthropic.sdk.python",)),
    Library(
        "langfuse-v3",
        "langfuse-v3",
        "drive_langfuse_sdk.py",
        ("openai", "anthropic"),
        ("langfuse-sdk", "com.anthropic.sdk.python"),
    ),
    Library(
        "langfuse-v5",
        "langfuse-v5",
        "drive_langfuse_sdk.py",
        ("openai", "anthropic"),
        ("langfuse-sdk", "com.anthropic.sdk.python"),
    ),
    Library("vercel-ai", None, "driver.mjs", ("openai", "anthropic"), ("ai",)),
)

# Langfuse's OpenAI integration names the model that answered, and only that one, and records a finish
# reason for streamed answers only.
LANGFUSE_OPENAI = Instrumentation(
    MATRIX["langfuse-sdk"].columns - {"finish_reasons"} | {"finish_reasons:stream"},
    request_model_is_response_model=True,
)


@dataclass
class Run:
    """A library's driver, run once against its own collector."""

    library: Library
    collector: RunningCollector
    metrics: str

    def query(self, sql: str, *bindings: Any) -> list[tuple[Any, ...]]:
        return self.collector.query(sql, *bindings)


@pytest.fixture(scope="module")
def fake_llm() -> Iterator[str]:
    with fake_llm_server() as (url, _):
        yield url


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, fake_llm: str) -> Iterator[dict[str, Run]]:
    """Each library's run, on first use; the collectors stop at the end of the module."""
    done: dict[str, Run] = {}

    class Runs(dict[str, Run]):
        def __missing__(self, name: str) -> Run:
            library = next(library for library in LIBRARIES if library.name == name)
            done[name] = self[name] = run_driver(library, tmp_path_factory.mktemp(name), fake_llm)
            return self[name]

    yield Runs()
    for run in done.values():
        run.collector.stop()


def run_driver(library: Library, tmp: Path, fake_llm: str) -> Run:
    try:
        if library.environment is None:
            command = ["node", str(environments.node_project() / library.driver)]
        else:
            python = environments.python_environment(library.environment)
            command = [str(python), str(environments.DRIVERS / library.driver)]
    except environments.BuildError as error:
        if os.environ.get("CI"):
            pytest.fail(f"the {library.name} environment could not be built: {error}")
        pytest.skip(f"the {library.name} environment could not be built here: {error}")
    collector = RunningCollector(collector_settings(tmp)).start()
    environment = {
        **os.environ,
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": collector.http_url + "/v1/traces",
        "OTEL_TRACES_EXPORTER": "otlp",
        "FAKE_LLM_URL": fake_llm,
        "PYTHONWARNINGS": "ignore::DeprecationWarning",
    }
    environment.pop("VIRTUAL_ENV", None)
    driven = subprocess.run(
        command,
        env=environment,
        cwd=command[1].rpartition("/")[0],
        capture_output=True,
        text=True,
        timeout=DRIVER_TIMEOUT,
    )
    assert driven.returncode == 0, f"{library.name} driver failed:\n{driven.stdout}\n{driven.stderr}"
    expected_roots = len(library.apis) * len(SCENARIOS)
    deadline = time.monotonic() + 10
    while len(collector.query("SELECT trace_id FROM traces WHERE has_root")) < expected_roots:
        assert time.monotonic() < deadline, f"{library.name}: not every scenario's trace arrived"
        time.sleep(0.05)
    metrics = scrape(collector)
    return Run(library, collector, metrics)


# --- what each span should say --------------------------------------------------------------------

PRICES = PriceTable.load()


def shipped_cost(model: str, *, uncached: int, cache_read: int, cache_write: int, output: int) -> float:
    """USD at the shipped table's prices, restated here: each kind of token at its own rate."""
    match = PRICES.lookup(model)
    assert match is not None, f"{model} is not in the shipped price table"
    price = match[1]
    return (
        uncached * price.input + cache_read * price.cache_read + cache_write * price.cache_write + output * price.output
    ) / 1e6


def expected_columns(library: Library, scope: str, api: str, kind: str, trace_duration_ms: float) -> dict[str, Any]:
    """The canonical columns one instrumentation's span of one reply should have (ttft_ms: a range)."""
    instrumentation = MATRIX[scope]
    if scope == "langfuse-sdk" and api == "openai":
        instrumentation = LANGFUSE_OPENAI
    usage = REPLIES[api, kind].usage
    request_model, response_model = (
        (OPENAI_REQUEST_MODEL, OPENAI_RESPONSE_MODEL)
        if api == "openai"
        else (ANTHROPIC_REQUEST_MODEL, ANTHROPIC_RESPONSE_MODEL)
    )
    if instrumentation.request_model_is_response_model:
        request_model = response_model
    reasons = instrumentation.finish_reasons or (OPENAI_FINISH if api == "openai" else ANTHROPIC_STOP)
    has = instrumentation.columns
    quirks = {name: value for quirk_kind, name, value in instrumentation.quirks if quirk_kind == kind}
    output = quirks.get("output_tokens", usage.output)
    cache_read = usage.cache_read if "cache_read_tokens" in has else None
    cache_write = usage.cache_write if "cache_write_tokens" in has and api == "anthropic" else None
    every = {
        "category": "llm",
        "provider": api,
        "request_model": request_model,
        "response_model": response_model,
        "operation": "chat",
        "input_tokens": usage.input,
        "output_tokens": output,
        "total_tokens": usage.input + output,
        "cache_read_tokens": cache_read,
        "cache_write_tokens": cache_write,
        "reasoning_tokens": usage.reasoning if api == "openai" else None,
        "finish_reasons": [reasons[kind]],
        "response_id": response_id(api, kind),
        "ttft_ms": (FIRST_CHUNK_DELAY * 1000, trace_duration_ms) if kind == "stream" else None,
        "conversation_id": "session-langfuse-1",
        "user_id": "user-langfuse-1",
        "agent_name": None,
        "tool_name": None,
        "cost_usd": shipped_cost(
            response_model,
            uncached=usage.input - (cache_read or 0) - (cache_write or 0),
            cache_read=cache_read or 0,
            cache_write=cache_write or 0,
            output=output,
        ),
    }
    filled = {name.partition(":")[0] for name in has if name.partition(":")[2] in ("", kind)}
    if library.name.startswith("langfuse"):  # trace-level ids, propagated to every span of the trace
        filled |= {"conversation_id", "user_id"}
    expected = {name: (value if name in filled else None) for name, value in every.items()}
    expected.update(quirks)
    for name in instrumentation.zero_is_absent:
        if expected[name] == 0:
            expected[name] = None
    return expected


def stored_columns(row: dict[str, Any]) -> dict[str, Any]:
    stored = {name: row[name] for name in COLUMNS}
    if stored["finish_reasons"] is not None:
        stored["finish_reasons"] = json.loads(stored["finish_reasons"])
    return stored


def matches(stored: dict[str, Any], expected: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """The columns that differ, as (stored, expected); costs to 1e-9, a time to first chunk within its range."""
    wrong = {}
    for name, want in expected.items():
        got = stored[name]
        if name == "ttft_ms" and want is not None:
            ok = got is not None and want[0] <= got <= want[1]
        elif name == "cost_usd" and want is not None:
            ok = got is not None and abs(got - want) <= 1e-9
        else:
            ok = got == want
        if not ok:
            wrong[name] = (got, want)
    return wrong


# --- the tests -------------------------------------------------------------------------------------

CASES = [
    pytest.param(library.name, api, scenario, id=f"{library.name}-{api}-{scenario}")
    for library in LIBRARIES
    for api in library.apis
    for scenario in SCENARIOS
]

SPAN_COLUMNS = ", ".join(("span_id", "parent_span_id", "scope_name", "name", "duration_ns", "duplicate_of", *COLUMNS))


@pytest.mark.parametrize(("library", "api", "scenario"), CASES)
def test_every_canonical_column_and_one_count_per_call(
    runs: dict[str, Run], library: str, api: str, scenario: str
) -> None:
    run = runs[library]
    ((trace_id, trace_duration_ns),) = run.query(
        "SELECT trace_id, duration_ns FROM traces WHERE root_span_name = ?", f"scenario {api}.{scenario}"
    )
    names = SPAN_COLUMNS.split(", ")
    spans = [
        dict(zip(names, row, strict=True))
        for row in run.query(
            f"SELECT {SPAN_COLUMNS} FROM spans_with_resource"
            " WHERE trace_id = ? AND category = 'llm' ORDER BY start_time_unix_nano",
            trace_id,
        )
    ]
    kinds = SCENARIOS[scenario]

    # Every model-call span, of the library and of a client SDK under it, says what the server answered.
    by_scope: dict[str, list[dict[str, Any]]] = {}
    for span in spans:
        by_scope.setdefault(span["scope_name"], []).append(span)
    assert set(by_scope) <= set(run.library.scopes), f"unexpected instrumentations: {set(by_scope)}"
    assert by_scope, "no model-call span stored"
    for scope, scope_spans in by_scope.items():
        assert len(scope_spans) == len(kinds), f"{scope}: {len(scope_spans)} spans for {len(kinds)} calls"
        for span, kind in zip(scope_spans, kinds, strict=True):
            expected = expected_columns(run.library, scope, api, kind, trace_duration_ns / 1e6)
            wrong = matches(stored_columns(span), expected)
            assert not wrong, f"{scope} span of the {kind} reply: (stored, expected) {wrong}"

    # Each call counts once: one span per call is counted, every other names a counted span of the trace.
    counted = [span for span in spans if span["duplicate_of"] is None]
    assert len(counted) == len(kinds), [(s["scope_name"], s["duplicate_of"]) for s in spans]
    counted_ids = {span["span_id"] for span in counted}
    assert all(span["duplicate_of"] in counted_ids for span in spans if span["duplicate_of"] is not None)

    # The rollup: the calls, their tokens and their cost, each once.
    usages = [REPLIES[api, kind].usage for kind in kinds]
    ((llm_calls, input_tokens, output_tokens, cache_read, cache_write, cost),) = run.query(
        "SELECT llm_calls, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cost_usd FROM traces"
        " WHERE trace_id = ?",
        trace_id,
    )
    assert (llm_calls, input_tokens, output_tokens) == (
        len(kinds),
        sum(usage.input for usage in usages),
        sum(usage.output for usage in usages),
    )
    assert cache_read == sum(span["cache_read_tokens"] or 0 for span in counted)
    assert cache_write == sum(span["cache_write_tokens"] or 0 for span in counted)
    assert cost == pytest.approx(sum(span["cost_usd"] for span in counted), abs=1e-9)


@pytest.mark.parametrize("library", [library.name for library in LIBRARIES])
def test_the_genai_metrics_count_each_call_once(runs: dict[str, Run], library: str) -> None:
    run = runs[library]
    calls = len(run.library.apis) * sum(len(kinds) for kinds in SCENARIOS.values())
    durations = sum(
        metric_value(run.metrics, "gen_ai_client_operation_duration_seconds_count", **labels)
        for labels in operation_labels(run)
    )
    assert durations == calls
    input_observations = sum(
        metric_value(run.metrics, "gen_ai_client_token_usage_count", **labels, gen_ai_token_type="input")
        for labels in operation_labels(run)
    )
    assert input_observations == calls


def operation_labels(run: Run) -> list[dict[str, str]]:
    """The label sets of the chat-operation series of the token usage histogram."""
    from prometheus_client.parser import text_string_to_metric_families

    found = []
    for family in text_string_to_metric_families(run.metrics):
        if family.name != "gen_ai_client_token_usage":
            continue
        for sample in family.samples:
            if sample.name.endswith("_count") and sample.labels.get("gen_ai_operation_name") == "chat":
                labels = {k: v for k, v in sample.labels.items() if k != "gen_ai_token_type"}
                if labels not in found:
                    found.append(labels)
    return found


def test_vercel_ai_sdk_tool_spans(runs: dict[str, Run]) -> None:
    run = runs["vercel-ai"]
    for api in ("openai", "anthropic"):
        rows = run.query(
            "SELECT s.category, s.operation, s.tool_name FROM spans s JOIN traces t USING (trace_id)"
            " WHERE t.root_span_name = ? AND s.name = 'ai.toolCall'",
            f"scenario {api}.tool",
        )
        assert rows == [("tool", "execute_tool", TOOL_NAME)]
