"""Rule selection and breach evaluation for a settled trace (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from collector.config import SnapshotRule
from collector.maintenance.snapshots import TraceFigures, evaluate, select_rule


def rule(**fields: Any) -> SnapshotRule:
    return SnapshotRule.model_validate(fields)


def figures(**values: float | None) -> TraceFigures:
    return TraceFigures("t1", "checkout-bot", ("gpt-4o",), ("planner",), 1.0, values)


RULES = [
    rule(metric="latency_ms", above=30_000),
    rule(metric="latency_ms", above=8_000, service="checkout-bot"),
    rule(metric="latency_ms", above=5_000, service="checkout-bot", agent="planner"),
    rule(metric="latency_ms", above=1, service="other-service"),
    rule(metric="cost_usd", above=0.05),
    rule(metric="cost_usd", above=0.01, model="gpt-4o"),
    rule(metric="eval:faithfulness", below=0.85),
]


@pytest.mark.parametrize(
    "metric, trace, expected",
    [
        ("latency_ms", figures(), "latency_ms > 5000 [service=checkout-bot,agent=planner]"),
        ("cost_usd", figures(), "cost_usd > 0.01 [model=gpt-4o]"),
        ("eval:faithfulness", figures(), "eval:faithfulness < 0.85"),
        ("ttft_ms", figures(), None),
    ],
)
def test_most_specific_applicable_rule_wins(metric: str, trace: TraceFigures, expected: str | None) -> None:
    chosen = select_rule(RULES, metric, trace)
    assert (chosen.describe() if chosen else None) == expected


def test_a_rule_scoped_to_another_service_never_applies() -> None:
    other = TraceFigures("t2", "search-bot", (), (), 1.0, {})
    assert select_rule(RULES, "latency_ms", other).describe() == "latency_ms > 30000"


def test_equal_specificity_takes_the_first_rule_in_the_file() -> None:
    rules = [rule(metric="cost_usd", above=1, service="checkout-bot"), rule(metric="cost_usd", above=2, model="gpt-4o")]
    assert select_rule(rules, "cost_usd", figures()).above == 1


def test_above_and_below_comparisons_and_always_recorded_metrics() -> None:
    snapshots = {
        s.metric: s for s in evaluate(figures(latency_ms=6_000, cost_usd=0.002, **{"eval:faithfulness": 0.62}), RULES)
    }
    assert set(snapshots) == {"latency_ms", "cost_usd", "eval:faithfulness"}
    assert snapshots["latency_ms"].breached and snapshots["latency_ms"].threshold == 5_000
    assert not snapshots["cost_usd"].breached and snapshots["cost_usd"].threshold == 0.01
    assert snapshots["eval:faithfulness"].breached and snapshots["eval:faithfulness"].value == 0.62


def test_without_rules_latency_and_cost_are_recorded_unbreached_with_null_threshold() -> None:
    snapshots = evaluate(figures(latency_ms=99_999, cost_usd=3.0), [])
    assert [(s.metric, s.threshold, s.breached, s.rule) for s in snapshots] == [
        ("latency_ms", None, False, None),
        ("cost_usd", None, False, None),
    ]


def test_a_missing_value_never_breaches() -> None:
    snapshots = {s.metric: s for s in evaluate(figures(latency_ms=1.0), RULES)}
    assert snapshots["eval:faithfulness"].value is None and not snapshots["eval:faithfulness"].breached


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"metric": "latency_ms"}, "exactly one of above or below"),
        ({"metric": "latency_ms", "above": 1, "below": 2}, "exactly one of above or below"),
        ({"metric": "p99", "above": 1}, "unknown metric"),
        ({"metric": "eval:", "below": 1}, "unknown metric"),
    ],
)
def test_bad_rules_are_refused(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        rule(**fields)
