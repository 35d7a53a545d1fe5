"""Settling: what a quiet trace measured, judged against the rules, through any store's ``Maintenance``; and
the settling job, which counts the settled traces and hands them to what observes them (the GenAI metrics,
``observe_settled``, and the live feed).

The store reads the traces due and writes the snapshots; the figures and the snapshots are worked out
here, by pure functions (``trace_figures``, ``snapshots.evaluate``), the same whatever the engine.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import NamedTuple

from collector.config import EVAL_PREFIX, SnapshotSettings
from collector.maintenance.snapshots import Snapshot, TraceFigures, evaluate, evaluation_names
from collector.observability.genai_metrics import GenAIMetrics
from collector.observability.metrics import CollectorMetrics
from collector.storage.store import Maintenance, SettleWindow, UnsettledTrace

SETTLE_CHUNK = 2000  # traces settled per transaction; more rounds follow at once while traces are due


class Settled(NamedTuple):
    figures: TraceFigures
    snapshots: list[Snapshot]
    newly_breached: list[Snapshot]  # breached now, and not already breached before this settling


def trace_figures(trace: UnsettledTrace) -> TraceFigures:
    """What a settled trace measured, by metric name (``eval:<name>`` for its lowest score of each name)."""
    return TraceFigures(
        trace_id=trace.trace_id,
        service_name=trace.service_name,
        models=trace.models,
        agents=trace.agents,
        duration_seconds=trace.duration_ns / 1e9,
        values={
            "latency_ms": trace.duration_ns / 1e6,
            "cost_usd": trace.cost_usd,
            "total_tokens": trace.total_tokens,
            "error_count": trace.error_count,
            "llm_calls": trace.llm_calls,
            "ttft_ms": trace.worst_ttft_ms,
            **{EVAL_PREFIX + name: score for name, score in trace.lowest_scores.items()},
        },
    )


def settle(
    store: Maintenance, settings: SnapshotSettings, *, limit: int = SETTLE_CHUNK, now_ns: int | None = None
) -> list[Settled]:
    """Settle up to ``limit`` quiet traces and write their snapshots, in one transaction of ``store``."""
    rules = settings.rules
    window = SettleWindow(
        now_ns=time.time_ns() if now_ns is None else now_ns,
        settle_after_ns=int(settings.settle_after * 1e9),
        max_wait_ns=int(settings.max_wait * 1e9),
        limit=limit,
        evaluation_names=evaluation_names(rules),
        ttft=any(rule.metric == "ttft_ms" for rule in rules),
    )
    figures: dict[str, TraceFigures] = {}

    def judge(trace: UnsettledTrace) -> list[Snapshot]:
        measured = figures[trace.trace_id] = trace_figures(trace)
        return evaluate(measured, rules)

    return [
        Settled(figures[done.trace.trace_id], done.snapshots, done.newly_breached)
        for done in store.settle(window, judge)
    ]


class SettleJob:
    name = "settle"

    def __init__(
        self,
        writer: Maintenance,
        settings: SnapshotSettings,
        metrics: CollectorMetrics,
        on_settled: Callable[[list[Settled]], None],
    ) -> None:
        """``on_settled`` hears what each round settled (``observe_settled`` for the GenAI metrics, the live feed);
        it runs on the writer thread, so it should hand the work over (``pipeline.Observers``)."""
        self._writer = writer
        self._settings = settings
        self._metrics = metrics
        self._on_settled = on_settled

    @property
    def interval(self) -> float:
        return self._settings.interval

    def run(self) -> bool:
        """Settle up to ``SETTLE_CHUNK`` traces; True when more are due, so that settling keeps up with any
        ingest rate."""
        settled_now = settle(self._writer, self._settings, limit=SETTLE_CHUNK)
        if settled_now:
            self._metrics.settled_traces.inc(len(settled_now))
            self._on_settled(settled_now)
        self._metrics.oldest_unsettled_at = self._writer.oldest_unsettled()
        return len(settled_now) == SETTLE_CHUNK


def observe_settled(genai_metrics: GenAIMetrics, settled: Sequence[Settled]) -> None:
    """The GenAI metrics of settled traces: each trace's duration, each snapshot, each new breach."""
    for each in settled:
        figures = each.figures
        genai_metrics.observe_trace(figures.service_name, figures.duration_seconds, figures.trace_id)
        for snapshot in each.snapshots:
            genai_metrics.observe_snapshot(snapshot.metric, snapshot.rule, breached_now=snapshot in each.newly_breached)
