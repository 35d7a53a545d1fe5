"""The bins of latency percentiles, for both engines: how a value in milliseconds maps to its bin (in SQL), what
a bin reports, and the nearest rank of counted bins.

The bins are DDSketch's logarithmic mapping (Masson, Rim and Lee, VLDB 2019): bin ``i`` holds the values in
``(gamma^(i-1), gamma^i]`` milliseconds with ``gamma = (1 + alpha) / (1 - alpha)`` and reports
``2 gamma^i / (gamma + 1)``, within ``alpha = 1%`` of every value it holds. A percentile is the nearest rank
(rank ``ceil(p × n)``) of the counted bins: the bin is the one the exact nearest-rank value is in, so the answer
is within 1% of that value (``storage.read.PERCENTILE_ERROR``).

SQLite stores counts of these bins (``sqlite/latency.py``); PostgreSQL counts the bins of a range's values when
it is read (``postgres/read.py``). Both compute a bin with the same SQL functions over the same doubles, so both
engines answer the same value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from collector.storage.read import LatencyPoint, LatencySeries

PERCENTILES = (50, 95, 99)  # what a point of ``/api/v1/stats/latency`` reports

# The mapping is stored by SQLite: changing any of these needs a migration that rebuilds ``latency_histograms``.
RELATIVE_ERROR = 0.01
GAMMA = (1 + RELATIVE_ERROR) / (1 - RELATIVE_ERROR)
_BINS_PER_E = 1 / math.log(GAMMA)
MIN_BIN = -1000  # values of at most GAMMA^-1000 ms (2.4e-9 ms) share the lowest bin
ZERO_BIN = -2000
NEGATIVE_BIN = -5000  # a negative value v is in bin NEGATIVE_BIN - bin(-v): below zero, and lower for larger |v|


def bin_sql(value: str, greatest: str = "max") -> str:
    """The SQL expression of the bin of ``value`` (milliseconds, a double); NULL for NULL. ``greatest`` is the
    engine's function of the larger of two values: SQLite's ``max``, PostgreSQL's ``greatest``."""

    def positive(v: str) -> str:
        return f"{greatest}({MIN_BIN}, CAST(ceil(ln({v}) * {_BINS_PER_E!r}) AS INTEGER))"

    return (
        f"CASE WHEN {value} > 0 THEN {positive(value)} WHEN {value} = 0 THEN {ZERO_BIN} "
        f"WHEN {value} < 0 THEN {NEGATIVE_BIN} - {positive(f'-({value})')} END"
    )


def bin_of(value: float) -> int:
    """The bin of ``value`` (milliseconds, finite) as ``bin_sql`` computes it in SQLite: the same double
    arithmetic over libm's ``log``, which SQLite's ``ln`` calls too, so the same bin for every double
    (``tests/storage/test_latency_bins.py`` holds the two equal). For the SQLite writer's latency counts,
    computed where a request's rows are encoded instead of read back from the stored rows."""
    if value > 0:
        return max(MIN_BIN, math.ceil(math.log(value) * _BINS_PER_E))
    if value == 0:
        return ZERO_BIN
    return NEGATIVE_BIN - max(MIN_BIN, math.ceil(math.log(-value) * _BINS_PER_E))


def bin_value(index: int) -> float:
    """What a bin reports: within ``RELATIVE_ERROR`` of every value it holds."""
    if index == ZERO_BIN:
        return 0.0
    if index < ZERO_BIN:
        return -bin_value(NEGATIVE_BIN - index)
    return 2 * GAMMA**index / (GAMMA + 1)


def nearest_rank(bins: Mapping[Any, int], percentiles: Sequence[int]) -> tuple[int, list[float]]:
    """The count of the values in ``bins`` (bin, as a number or its text, to count), and for each percentile
    (ascending) the value of rank ``ceil(p × count / 100)``, as its bin reports it."""
    count = sum(bins.values())
    ranks = [max(1, (p * count + 99) // 100) for p in percentiles]
    values: list[float] = []
    seen = 0
    for index, key in sorted((int(key), key) for key in bins):
        seen += bins[key]
        while seen >= ranks[len(values)]:
            values.append(bin_value(index))
            if len(values) == len(ranks):
                return count, values
    return count, values


def latency_points(bins: Mapping[tuple[int, Any], Mapping[Any, int]]) -> dict[int, dict[Any, LatencyPoint]]:
    """The point of each (bucket, group) of ``bins`` (there: bin to count) that counts anything, by bucket and
    group."""
    points: dict[int, dict[Any, LatencyPoint]] = {}
    for (bucket, group), counted in bins.items():
        count, values = nearest_rank(counted, PERCENTILES)
        if count:
            p50, p95, p99 = values
            point = LatencyPoint(time_unix_nano=bucket, count=count, p50_ms=p50, p95_ms=p95, p99_ms=p99)
            points.setdefault(bucket, {})[group] = point
    return points


def latency_series(points: Mapping[int, Mapping[Any, LatencyPoint]]) -> list[LatencySeries]:
    """The points (by bucket and group) as series by group: the NULL group first, then names in code point order
    (UTF-8's byte order, as PostgreSQL's ``COLLATE "C"``), each series' points by time."""
    series: dict[Any, list[LatencyPoint]] = {}
    ordered = sorted(
        ((group, bucket, point) for bucket, by_group in points.items() for group, point in by_group.items()),
        key=lambda item: (item[0] is not None, item[0], item[1]),
    )
    for group, _, point in ordered:
        series.setdefault(group, []).append(point)
    return [LatencySeries(group=group, points=found) for group, found in series.items()]
