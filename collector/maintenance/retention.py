"""The retention job: traces past ``retention.max_age`` or beyond ``retention.max_size`` deleted, whole
(``Maintenance.retain``), and the deletions counted."""

from __future__ import annotations

from collector.config import RetentionSettings
from collector.observability.metrics import CollectorMetrics
from collector.storage.store import Maintenance


class RetentionJob:
    name = "retention"

    def __init__(self, writer: Maintenance, settings: RetentionSettings, metrics: CollectorMetrics) -> None:
        self._writer = writer
        self._settings = settings
        self._metrics = metrics

    @property
    def interval(self) -> float:
        return self._settings.interval

    def run(self) -> bool:
        """One round of each bound; True when one of them has more to delete than a round does."""
        metrics = self._metrics
        more = False
        for deleted in self._writer.retain():
            more = more or deleted.more
            if deleted.traces or deleted.spans:
                metrics.retention_deleted_traces.labels(deleted.reason).inc(deleted.traces)
                metrics.retention_deleted_spans.labels(deleted.reason).inc(deleted.spans)
            if deleted.snapshots:
                metrics.retention_deleted_snapshots.inc(deleted.snapshots)
            if deleted.reclaimed_bytes > 0:
                metrics.retention_reclaimed_bytes.inc(deleted.reclaimed_bytes)
        return more
