"""``genai-collector demo``: the simulated agents' traces landing in a real collector, as the dashboard needs them."""

from __future__ import annotations

import json
import re
import signal
import subprocess
from pathlib import Path
from typing import Any

import yaml

from collector.cli import main
from collector.demo.runner import Counts, Demo, otlp_http_exporters
from collector.demo.scenario import plan_trace
from tests.helpers import REPO, collector_command, collector_environment, query_db, wait_until

DEMO_CONFIG = REPO / "examples" / "demo.yaml"
SUMMARY = re.compile(r"(?P<traces>\d+) traces, (?P<spans>\d+) spans, (?P<evaluations>\d+) evaluations emitted")


def demo_snapshots(**overrides: str) -> dict[str, Any]:
    """The demo config's rules (the README tells users to start the collector with it), settling sooner."""
    return {**yaml.safe_load(DEMO_CONFIG.read_text())["snapshots"], **overrides}


def run_into(collector: Any, duration: float = 40) -> Counts:
    demo = Demo([lambda: otlp_http_exporters(collector.http_url)], rate=1.0, seed=0, pace=False)
    counts = demo.run(duration=duration)
    wait_until(
        lambda: collector.query("SELECT count(*), count(settled_at_unix_nano) FROM traces") == [(counts.traces,) * 2],
        30,
        "every demo trace to settle",
    )
    return counts


def test_demo_traces_land_with_canonical_columns_costs_redaction_evaluations_and_breaches(start_collector: Any) -> None:
    collector = start_collector(snapshots=demo_snapshots(settle_after="1s", interval="100ms"))
    counts = run_into(collector)
    assert counts.traces >= 30
    assert collector.query("SELECT count(*) FROM spans") == [(counts.spans,)]

    services = collector.query("SELECT DISTINCT service_name FROM spans ORDER BY 1")
    assert services == [("support-desk",), ("travel-assistant",)]
    operations = {row[0]: row[1] for row in collector.query("SELECT operation, category FROM spans GROUP BY 1")}
    assert operations == {
        "invoke_agent": "agent",
        "chat": "llm",
        "execute_tool": "tool",
        "embeddings": "embedding",
        None: "other",  # the plan step, HTTP and database calls
    }
    # Every answered LLM call is priced from its tokens, cached input included; providers and models as sent.
    unpriced = collector.query(
        "SELECT count(*) FROM spans WHERE category IN ('llm', 'embedding') AND input_tokens IS NOT NULL"
        " AND cost_usd IS NULL"
    )
    assert unpriced == [(0,)]
    models = collector.query(
        "SELECT DISTINCT provider, request_model, response_model FROM spans WHERE category = 'llm'"
    )
    assert ("anthropic", "claude-sonnet-4-5", "claude-sonnet-4-5-20250929") in models
    assert ("openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18") in models
    (cached, ttft, finished, agents, tools) = collector.query(
        "SELECT sum(cache_read_tokens > 0), count(ttft_ms), count(finish_reasons),"
        " count(DISTINCT agent_name), count(DISTINCT tool_name) FROM spans"
    )[0]
    assert cached > 0 and ttft > 0 and finished == ttft and agents == 2 and tools == 6
    # The waterfall: agent -> plan -> tool -> its HTTP, database or embedding call.
    depth = collector.query(
        "WITH RECURSIVE tree(trace_id, span_id, depth) AS ("
        " SELECT trace_id, span_id, 0 FROM spans WHERE parent_span_id IS NULL UNION ALL"
        " SELECT s.trace_id, s.span_id, depth + 1 FROM spans s JOIN tree t"
        " ON s.trace_id = t.trace_id AND s.parent_span_id = t.span_id) SELECT max(depth) FROM tree"
    )
    assert depth == [(3,)]
    errors = dict(
        collector.query("SELECT json_extract(attributes, '$.\"error.type\"'), count(*) FROM spans GROUP BY 1")
    )
    assert {"RateLimitError", "TimeoutError", "InternalServerError"} <= set(errors)
    # Latency percentiles need spread: the slowest answers take several times the median.
    durations = [row[0] for row in collector.query("SELECT duration_ns FROM traces ORDER BY duration_ns")]
    assert durations[int(len(durations) * 0.95)] > 2 * durations[len(durations) // 2]

    # The users' e-mail addresses never reach the database.
    assert collector.query("SELECT count(*) FROM spans WHERE attributes LIKE '%@example.%'") == [(0,)]
    redacted = collector.query("SELECT count(*) FROM spans WHERE attributes LIKE '%[REDACTED:email]%'")[0][0]
    assert redacted > 0

    # One relevance score per answer, linked to the answering span by its ids and response id.
    evaluations = collector.query(
        "SELECT e.name, e.score, s.category, e.response_id = s.response_id FROM evaluations e"
        " JOIN spans s USING (trace_id, span_id)"
    )
    assert len(evaluations) == counts.evaluations > 0
    assert {(name, category, linked) for name, _, category, linked in evaluations} == {("relevance", "llm", 1)}

    breached = dict(collector.query("SELECT metric, count(*) FROM metric_snapshots WHERE breached GROUP BY 1"))
    assert set(breached) == {"latency_ms", "cost_usd", "ttft_ms", "eval:relevance"}
    assert sum(breached.values()) < counts.traces  # breaches stand out: most traces are within budget


def test_same_seed_same_traces() -> None:
    def shape(seed: int, index: int) -> list[Any]:
        plan = plan_trace(seed, index)
        return [(span.name, span.start, span.end, json.dumps(span.attributes)) for span in plan.root.walk()]

    assert [shape(3, index) for index in range(5)] == [shape(3, index) for index in range(5)]
    assert [shape(3, index) for index in range(5)] != [shape(4, index) for index in range(5)]


def test_demo_command_runs_until_interrupted_then_flushes(start_collector: Any) -> None:
    collector = start_collector()
    process = subprocess.Popen(
        collector_command("demo", "--endpoint", collector.http_url, "--rate", "5"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=collector_environment(),
    )
    try:
        wait_until(lambda: collector.query("SELECT count(*) FROM spans")[0][0] > 0, 30, "the first demo spans")
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr
    summary = SUMMARY.search(stderr)
    assert summary, stderr
    # Every span that ended before Ctrl-C was flushed to the collector before the command exited.
    assert collector.query("SELECT count(*) FROM spans") == [(int(summary["spans"]),)]


def test_demo_command_writes_a_database_in_process(tmp_path: Path, capsys: Any) -> None:
    db = tmp_path / "demo.db"
    arguments = ["demo", "--db", str(db), "--config", str(DEMO_CONFIG), "--fast", "--duration", "20s", "--rate", "2"]
    assert main(arguments) == 0
    summary = SUMMARY.search(capsys.readouterr().err)
    assert summary
    assert query_db(db, "SELECT count(*) FROM spans") == [(int(summary["spans"]),)]
    assert query_db(db, "SELECT count(*) FROM evaluations") == [(int(summary["evaluations"]),)]
