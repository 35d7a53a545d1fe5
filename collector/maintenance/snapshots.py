"""Threshold evaluation: a settled trace's figures against the configured rules. Pure, no I/O.

``latency_ms`` and ``cost_usd`` are recorded for every settled trace (threshold NULL and not
breached where no rule applies); other metrics where a rule names them. For each metric the most
specific applicable rule wins: the one with the most scope keys (service, model, agent) that all
match the trace; among equals, the first in the file.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from collector.config import EVAL_PREFIX, SnapshotRule

ALWAYS_RECORDED = ("latency_ms", "cost_usd")


class TraceFigures(NamedTuple):
    """What a settled trace measured, and what rules may be scoped by."""

    trace_id: str
    service_name: str | None
    models: tuple[str, ...]
    agents: tuple[str, ...]
    duration_seconds: float
    values: dict[str, float | None]  # by metric name, including eval:<name>


class Snapshot(NamedTuple):
    trace_id: str
    service_name: str | None
    metric: str
    value: float | None
    threshold: float | None
    breached: bool
    rule: str | None


def recorded_metrics(rules: Sequence[SnapshotRule]) -> tuple[str, ...]:
    named = [rule.metric for rule in rules if rule.metric not in ALWAYS_RECORDED]
    return ALWAYS_RECORDED + tuple(dict.fromkeys(named))


def evaluation_names(rules: Sequence[SnapshotRule]) -> tuple[str, ...]:
    return tuple(
        dict.fromkeys(rule.metric.removeprefix(EVAL_PREFIX) for rule in rules if rule.metric.startswith(EVAL_PREFIX))
    )


def _applies(rule: SnapshotRule, figures: TraceFigures) -> bool:
    return (
        (rule.service is None or rule.service == figures.service_name)
        and (rule.model is None or rule.model in figures.models)
        and (rule.agent is None or rule.agent in figures.agents)
    )


def select_rule(rules: Sequence[SnapshotRule], metric: str, figures: TraceFigures) -> SnapshotRule | None:
    best: SnapshotRule | None = None
    for rule in rules:
        if rule.metric == metric and _applies(rule, figures) and (best is None or len(rule.scope) > len(best.scope)):
            best = rule
    return best


def _breached(rule: SnapshotRule, value: float | None) -> bool:
    if value is None:
        return False
    if rule.above is not None:
        return value > rule.above
    return rule.below is not None and value < rule.below


def evaluate(figures: TraceFigures, rules: Sequence[SnapshotRule]) -> list[Snapshot]:
    snapshots = []
    for metric in recorded_metrics(rules):
        value = figures.values.get(metric)
        rule = select_rule(rules, metric, figures)
        snapshots.append(
            Snapshot(
                trace_id=figures.trace_id,
                service_name=figures.service_name,
                metric=metric,
                value=value,
                threshold=None if rule is None else (rule.above if rule.above is not None else rule.below),
                breached=rule is not None and _breached(rule, value),
                rule=None if rule is None else rule.describe(),
            )
        )
    return snapshots
