"""Flushing what the store keeps in memory across transactions: with SQLite, the latency histograms' counts of
the spans written since the last flush (``storage.sqlite.latency.Pending``), added to the histograms once a
second between batches instead of by every batch."""

from __future__ import annotations

from collector.storage.store import Maintenance

FLUSH_INTERVAL = 1.0  # seconds


class FlushJob:
    name = "flush"
    interval = FLUSH_INTERVAL

    def __init__(self, store: Maintenance) -> None:
        self._store = store

    def run(self) -> bool:
        self._store.flush()
        return False
