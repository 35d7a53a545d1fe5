"""The ingest workers' counters in the main process's ``/metrics``.

Each worker counts into a registry of its own (the same ``CollectorMetrics`` as a single process) and ships
what its counters and histograms gained since its last shipment: once a second, and when the main process
asks just before it answers a scrape, so that a scrape sees every request answered before it. The main
process adds the shipments into running totals and merges them into its own families at scrape time.

Why deltas rather than prometheus_client's multiprocess mode: that mode swaps the value class of every
metric of the process for mmap files in a directory shared by all processes, chosen once at import time by
an environment variable; the main process's gauges computed at scrape time (queue size, database size)
would need a multiprocess mode each, the in-process collector the tests start would need the directory too,
and the files of a dead worker must be merged and cleaned by hand. Deltas keep one registry per process as
today, and a worker that dies or is restarted loses at most the last second of its counts, never the totals
(they live in the main process). Gauges stay the main process's own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.samples import Sample

from collector.observability.metrics import BoundedLabel

_SHIPPED_TYPES = ("counter", "histogram")

Labels = tuple[tuple[str, str], ...]
SampleKey = tuple[str, str, Labels]  # family name, sample name, labels
# What a shipment carries: the families it touches (type, help, unit), and each sample's gain.
Shipment = tuple[dict[str, tuple[str, str, str]], list[tuple[SampleKey, float]]]


def _series(key: SampleKey) -> tuple[str, Labels]:
    """The series a sample belongs to: a histogram's buckets, count and sum go together."""
    family, _, labels = key
    return family, tuple(label for label in labels if label[0] != "le")


class CounterShipper:
    """In a worker: what its counters and histograms gained since the last shipment."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry
        self._shipped: dict[SampleKey, float] = {}

    def shipment(self) -> Shipment:
        families: dict[str, tuple[str, str, str]] = {}
        current: dict[SampleKey, float] = {}
        for family in self._registry.collect():
            if family.type not in _SHIPPED_TYPES:
                continue
            families[family.name] = (family.type, family.documentation, family.unit)
            for sample in family.samples:
                current[(family.name, sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        shipped = self._shipped
        changed = {_series(key) for key, value in current.items() if value != shipped.get(key, 0.0)}
        # Every sample of a changed series, zeros too: a histogram's buckets must all be there.
        gains = [(key, value - shipped.get(key, 0.0)) for key, value in current.items() if _series(key) in changed]
        self._shipped = current
        touched = {family for family, _ in changed}
        return {name: meta for name, meta in families.items() if name in touched}, gains


class WorkerCounters:
    """In the main process: the running totals of every worker's shipments (a restarted worker adds to them).

    ``bounded``: labels whose values come from clients, by family, with the main process's ``BoundedLabel``:
    each worker caps them, and the cap must hold for the workers together too (a value the main process
    folds into ``_other`` counts once in ``label_overflow``, however often it is shipped)."""

    def __init__(self, bounded: Mapping[str, tuple[str, BoundedLabel]] | None = None) -> None:
        self._bounded = dict(bounded or {})
        self._folded: dict[tuple[str, str], str] = {}
        self._families: dict[str, tuple[str, str, str]] = {}
        self._totals: dict[str, dict[tuple[str, Labels], float]] = {}

    def add(self, shipment: Shipment) -> None:
        families, gains = shipment
        self._families.update(families)
        for (family, sample, labels), gain in gains:
            if family in self._bounded:
                labels = self._fold(family, labels)
            series = self._totals.setdefault(family, {})
            series[(sample, labels)] = series.get((sample, labels), 0.0) + gain

    def _fold(self, family: str, labels: Labels) -> Labels:
        name, bounded = self._bounded[family]
        folded = []
        for label, value in labels:
            if label == name:
                key = (family, value)
                if key not in self._folded:
                    self._folded[key] = bounded(value)
                value = self._folded[key]
            folded.append((label, value))
        return tuple(folded)

    def merged(self, families: Iterable[Metric]) -> Iterable[Metric]:
        """``families`` (the main process's) with the workers' totals added; families only workers have last."""
        seen = set()
        for family in families:
            totals = self._totals.get(family.name)
            if totals:
                seen.add(family.name)
                family.samples = _merge(family.samples, totals)
            yield family
        for name, totals in self._totals.items():
            if name in seen or name not in self._families:
                continue
            kind, documentation, unit = self._families[name]
            family = Metric(name, documentation, kind, unit)
            family.samples = _merge([], totals)
            yield family


def _merge(samples: list[Sample], totals: dict[tuple[str, Labels], float]) -> list[Sample]:
    left = dict(totals)
    merged = []
    for sample in samples:
        gain = left.pop((sample.name, tuple(sorted(sample.labels.items()))), 0.0)
        merged.append(sample._replace(value=sample.value + gain) if gain else sample)
    merged.extend(Sample(name, dict(labels), value) for (name, labels), value in left.items())
    return merged


class MergedRegistry(CollectorRegistry):
    """What ``/metrics`` renders when ingest workers run: the main registry with the workers' totals in it."""

    def __init__(self, registry: CollectorRegistry, counters: WorkerCounters) -> None:
        super().__init__(auto_describe=False)
        self._inner = registry
        self._counters = counters

    def collect(self) -> Iterable[Metric]:
        return self._counters.merged(self._inner.collect())

    def get_sample_value(self, name: str, labels: Any = None) -> float | None:
        labels = labels or {}
        for family in self.collect():
            for sample in family.samples:
                if sample.name == name and sample.labels == labels:
                    value: float = sample.value
                    return value
        return None
