"""Settling: what a quiet trace measured, judged against the rules, through any store's ``Maintenance``; and
the settling job, which counts the settled traces and hands them to what observes them (the GenAI metrics,
``observe_settled``, and the live feed).

The store reads the traces due and writes the snapshots; the figures and the snapshots are worked out
here, by pure functions (``trace_figures``, ``snapshots.evaluate``), the same whatever the engine.

Where the store reads ahead (``Maintenance.settle_reader``: SQLite), a round is two of the writer's calls with a
batch between them: reading and judging the traces due, then writing the snapshots of those that got no span
meanwhile (``SettleJob``), so that neither step holds the batches up for as long as the whole round did
(docs/performance.md). Otherwise (PostgreSQL) a round is one call, the store's own transaction.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import NamedTuple

from collector.config import EVAL_PREFIX, SnapshotSettings
from collector.maintenance.snapshots import Snapshot, TraceFigures, evaluate, evaluation_names
from collector.observability.genai_metrics import GenAIMetrics
from collector.observability.metrics import CollectorMetrics
from collector.storage.store import (
    Judge,
    Maintenance,
    SettledTrace,
    SettlePlan,
    SettleWindow,
    UnsettledTrace,
)

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
    window, judge, figures = _judging(settings, limit, now_ns)
    return _with_figures(store.settle(window, judge), figures)


def _judging(
    settings: SnapshotSettings, limit: int, now_ns: int | None = None
) -> tuple[SettleWindow, Judge, dict[str, TraceFigures]]:
    """A round's window, and the judge of its traces that keeps each one's figures in the dict returned."""
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

    return window, judge, figures


def _with_figures(settled: Sequence[SettledTrace], figures: dict[str, TraceFigures]) -> list[Settled]:
    return [Settled(figures[done.trace.trace_id], done.snapshots, done.newly_breached) for done in settled]


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
        self._reader = writer.settle_reader()
        self._planned: tuple[SettlePlan, dict[str, TraceFigures]] | None = None  # read, to apply next call

    @property
    def interval(self) -> float:
        return self._settings.interval

    def run(self) -> bool:
        """Settle up to ``SETTLE_CHUNK`` traces; True when more are due, so that settling keeps up with any
        ingest rate. Where the store reads ahead (``settle_reader``) a round is two calls, so that a batch commits
        between the two: the first reads and judges the traces due, the second writes what was read."""
        if self._reader is None:
            return self._settle_whole()
        planned, self._planned = self._planned, None
        if planned is None:
            window, judge, figures = _judging(self._settings, SETTLE_CHUNK)
            plan = self._reader.read(window, judge)
            if plan is not None:
                self._planned = (plan, figures)
                return True  # applied after the next batch
            settled_now: list[Settled] = []
        else:
            plan, figures = planned
            settled_now = _with_figures(self._writer.apply_settled(plan), figures)
            _observed(self._metrics, self._on_settled, settled_now)
        self._metrics.oldest_unsettled_at = self._writer.oldest_unsettled()
        return planned is not None and planned[0].count == SETTLE_CHUNK

    def _settle_whole(self) -> bool:
        settled_now = settle(self._writer, self._settings, limit=SETTLE_CHUNK)
        _observed(self._metrics, self._on_settled, settled_now)
        self._metrics.oldest_unsettled_at = self._writer.oldest_unsettled()
        return len(settled_now) == SETTLE_CHUNK


def _observed(metrics: CollectorMetrics, on_settled: Callable[[list[Settled]], None], settled: list[Settled]) -> None:
    if settled:
        metrics.settled_traces.inc(len(settled))
        on_settled(settled)


def observe_settled(genai_metrics: GenAIMetrics, settled: Sequence[Settled]) -> None:
    """The GenAI metrics of settled traces: each trace's duration, each snapshot, each new breach."""
    for each in settled:
        figures = each.figures
        genai_metrics.observe_trace(figures.service_name, figures.duration_seconds, figures.trace_id)
        for snapshot in each.snapshots:
            genai_metrics.observe_snapshot(snapshot.metric, snapshot.rule, breached_now=snapshot in each.newly_breached)
