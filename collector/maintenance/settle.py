"""The settling job: quiet traces get their snapshots (``SpanWriter.settle``), are counted, and feed the
GenAI metrics and the live feed."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from collector.config import SnapshotSettings
from collector.observability.genai_metrics import GenAIMetrics
from collector.observability.metrics import CollectorMetrics
from collector.storage.sqlite.writer import SpanWriter

SETTLE_CHUNK = 500  # traces settled per transaction; more rounds follow at once while traces are due


class SettleJob:
    name = "settle"

    def __init__(
        self,
        writer: SpanWriter,
        settings: SnapshotSettings,
        metrics: CollectorMetrics,
        genai_metrics: GenAIMetrics,
        on_settled: Callable[[Sequence[str]], None],
    ) -> None:
        """``on_settled`` hears the ids of the traces each round settled (the live feed)."""
        self._writer = writer
        self._settings = settings
        self._metrics = metrics
        self._genai_metrics = genai_metrics
        self._on_settled = on_settled

    @property
    def interval(self) -> float:
        return self._settings.interval

    def run(self) -> bool:
        """Settle up to ``SETTLE_CHUNK`` traces; True when more are due, so that settling keeps up with any
        ingest rate."""
        settled_now = self._writer.settle(self._settings, limit=SETTLE_CHUNK)
        self._on_settled([settled.figures.trace_id for settled in settled_now])
        for settled in settled_now:
            figures = settled.figures
            self._metrics.settled_traces.inc()
            self._genai_metrics.observe_trace(figures.service_name, figures.duration_seconds, figures.trace_id)
            for snapshot in settled.snapshots:
                self._genai_metrics.observe_snapshot(
                    snapshot.metric, snapshot.rule, breached_now=snapshot in settled.newly_breached
                )
        self._metrics.oldest_unsettled_at = self._writer.oldest_unsettled()
        return len(settled_now) == SETTLE_CHUNK
