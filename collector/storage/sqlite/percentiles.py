"""The percentiles of ``/api/v1/stats/latency``, read from the latency histograms (``sqlite/latency.py``).

A query's range is cut into whole hours, read from the hour histograms when its bucket is a whole number of
hours; whole minutes, from the minute histograms when it is a whole number of minutes; and the rest (the
partial minutes at its ends, or all of it for a bucket of seconds) from the spans or traces, binned the same
way. The spans a writer has stored and not yet added to the histograms (at most about a second of them,
``latency.Pending``) are binned from their rows and added to the histograms' bins, in the same read transaction.
The bins of each (bucket, group) are merged and the nearest rank read off them.

Merging is Python's work (a day by model is some 50,000 bins), on the collector's one interpreter: a bucket
read whole from histograms is kept with the stamp of the rows it came from (their number and newest change),
so that a dashboard asking for the last day every 30 seconds merges again only what changed since: the
newest hour, or an hour that a late span, a settling trace or retention touched. A bucket with pending spans is
never kept.
"""

from __future__ import annotations

import threading
from typing import Any, NamedTuple

import apsw
import orjson

from collector.storage import latency_bins
from collector.storage.read import LatencyGroup, LatencyOf, LatencyPoint, LatencySeries, StatsRange
from collector.storage.sql import span_groups
from collector.storage.sqlite import latency
from collector.storage.sqlite.dialect import SQLITE

SPAN_GROUPS = span_groups(SQLITE)
_HISTOGRAM_GROUPS = {
    "none": "NULL",
    "service": "s.service_name",
    "model": "s.model",
    "operation": "s.operation",
    "agent": "s.agent_name",
}


class Piece(NamedTuple):
    """A part of a query's range, read from the histograms of ``resolution_ns`` or, when None, from the rows."""

    resolution_ns: int | None
    start_ns: int
    end_ns: int


def pieces(start_ns: int, end_ns: int, bucket_ns: int) -> list[Piece]:
    """The range cut into what histograms answer and what the stored rows must (a bucket of whole minutes
    starts on a minute, so that no histogram straddles two buckets)."""

    def cut(start: int, end: int, resolutions: tuple[int, ...]) -> list[Piece]:
        for index, resolution in enumerate(resolutions):
            first, last = -(-start // resolution) * resolution, end // resolution * resolution
            if bucket_ns % resolution == 0 and first < last:
                finer = resolutions[index + 1 :]
                return [*cut(start, first, finer), Piece(resolution, first, last), *cut(last, end, finer)]
        return [Piece(None, start, end)] if start < end else []

    return cut(start_ns, end_ns, tuple(sorted(latency.RESOLUTIONS_NS, reverse=True)))


def histogram_sql(of: LatencyOf, group_by: LatencyGroup, stats: StatsRange) -> str:
    """(bucket, group, bins as JSON) of the histograms of one resolution in [:from_ns, :to_ns)."""
    where = ["s.of = :of"]
    if stats.service is not None:
        where.append("s.service_name = :service")
    if of != "trace":
        if stats.model is not None:
            where.append("s.model = :model")
    elif group_by == "model":  # by each model of the traces (that have the model asked for)
        where += ["s.model IS NOT NULL", "s.agent_name IS NULL"]
        where.append("s.with_model IS NULL" if stats.model is None else "s.with_model = :model")
    else:  # a NULL model (agent) in a trace series holds every trace, whatever its models (agents)
        where += ["s.with_model IS NULL", "s.agent_name IS NOT NULL" if group_by == "agent" else "s.agent_name IS NULL"]
        where.append("s.model IS NULL" if stats.model is None else "s.model = :model")
    return f"""SELECT h.start_unix_nano / :bucket_ns * :bucket_ns, {_HISTOGRAM_GROUPS[group_by]}, json(h.bins)
FROM latency_histograms h JOIN latency_series s ON s.id = h.series_id
WHERE h.resolution_s = :resolution_s AND h.start_unix_nano >= :from_ns AND h.start_unix_nano < :to_ns
  AND {" AND ".join(where)}"""


def rows_sql(of: LatencyOf, group_by: LatencyGroup, stats: StatsRange, *, pending: bool = False) -> str:
    """(bucket, group, bin as text, count) of the stored spans or traces in [:from_ns, :to_ns), binned as the
    histograms (whose JSON keys are the bins' text); ``pending``: of the spans not in the histograms yet
    (``latency.Pending``)."""
    if of == "trace":
        value, condition = latency.TRACE_MEASURE
        groups = {"none": "NULL", "service": "t.service_name", "model": "g.value", "agent": "g.value"}
        joins = f", json_each(t.{group_by}s) g" if group_by in ("model", "agent") else ""
        where = [condition.format(r="t")]
        if stats.service is not None:
            where.append("t.service_name = :service")
        if stats.model is not None:
            where.append("EXISTS (SELECT 1 FROM json_each(t.models) WHERE value = :model)")
        alias, table, group = "t", f"traces t{joins}", groups[group_by]
    else:
        value, condition = latency.SPAN_MEASURES[of]
        where = [condition.format(r="s")]
        if stats.service is not None:
            where.append("s.service_name = :service")
        if stats.model is not None:
            where.append("coalesce(s.response_model, s.request_model) = :model")
        alias, table, group = "s", latency.PENDING_SPANS if pending else "spans s", SPAN_GROUPS[group_by]
    time = f"{alias}.start_time_unix_nano"
    binned = latency_bins.bin_sql(value.format(r=alias))
    return f"""SELECT {time} / :bucket_ns * :bucket_ns, {group}, CAST({binned} AS TEXT), count(*)
FROM {table}
WHERE {time} >= :from_ns AND {time} < :to_ns AND {" AND ".join(where)} GROUP BY 1, 2, 3"""


# The stamp of each bucket's histogram rows (of every series): a change to any of them makes a new one, since
# every change sets ``changed`` to a tick larger than any before, and a row removed lowers the count.
_STAMPS = """SELECT start_unix_nano / :bucket_ns * :bucket_ns, count(*), max(changed) FROM latency_histograms
WHERE resolution_s = :resolution_s AND start_unix_nano >= :from_ns AND start_unix_nano < :to_ns GROUP BY 1"""

Point = LatencyPoint
Stamp = tuple[int, int] | None


class BucketCache:
    """What was read from histograms, by query and part of a bucket, with the stamp of the rows it came from:
    the points of a bucket read whole, the merged bins by group of a part (the other part of that bucket comes
    from elsewhere). Shared by the reader's threads; what it holds is never changed; bounded (emptied when full:
    the next queries fill it again)."""

    def __init__(self, limit: int = 20_000) -> None:
        self._limit = limit
        self._entries: dict[tuple[Any, ...], tuple[Stamp, dict[Any, Any]]] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: tuple[Any, ...], stamp: Stamp) -> dict[Any, Any] | None:
        found = self._entries.get(key)
        return found[1] if found is not None and found[0] == stamp else None

    def put(self, key: tuple[Any, ...], stamp: Stamp, kept: dict[Any, Any]) -> None:
        with self._lock:
            if len(self._entries) >= self._limit:
                self._entries.clear()
            self._entries[key] = (stamp, kept)


Bins = dict[tuple[int, Any], dict[str, int]]  # (bucket, group) -> bin (as its JSON text) -> count


def _read(connection: apsw.Connection, sql: str, params: dict[str, Any], bins: Bins) -> None:
    """Add the histograms ``sql`` finds (their bins keep their JSON text keys: converting 50,000 of them would
    cost more than the merge)."""
    for bucket, group, document in connection.execute(sql, params):
        merged = bins.get((bucket, group))
        if merged is None:
            bins[bucket, group] = orjson.loads(document)
            continue
        for key, count in orjson.loads(document).items():
            merged[key] = merged.get(key, 0) + count


def _add(bins: Bins, bucket: int, group: Any, counts: dict[str, int]) -> None:
    """Add bins that are kept (and so never changed)."""
    merged = bins.get((bucket, group))
    if merged is None:
        bins[bucket, group] = dict(counts)
        return
    for key, count in counts.items():
        merged[key] = merged.get(key, 0) + count


def _buckets(piece: Piece, bucket_ns: int) -> list[tuple[int, int, bool]]:
    """(start, end, whole) of each bucket a piece touches: whole when the bucket is all inside it."""
    parts = []
    start = piece.start_ns
    while start < piece.end_ns:
        end = min((start // bucket_ns + 1) * bucket_ns, piece.end_ns)
        parts.append((start, end, start % bucket_ns == 0 and end - start == bucket_ns))
        start = end
    return parts


def _read_kept(
    connection: apsw.Connection,
    sql: str,
    params: dict[str, Any],
    kept_as: tuple[Any, ...],
    piece: Piece,
    cache: BucketCache,
    pending: set[int],
    bins: Bins,
    points: dict[int, dict[Any, Point]],
    to_keep: dict[tuple[Any, ...], Stamp],
) -> None:
    """``_read`` of a piece, a bucket taken from ``cache`` while its histogram rows are unchanged and none of its
    spans are ``pending``: the points of a bucket read whole (into ``points``; those read now go in ``to_keep``),
    the merged bins of a part of a bucket (the other part comes from another piece)."""
    bucket_ns = params["bucket_ns"]
    stamps = {bucket: (rows, changed) for bucket, rows, changed in connection.execute(_STAMPS, params)}
    reads: list[tuple[int, int]] = []  # whole buckets to read, as ranges
    for start, end, whole in _buckets(piece, bucket_ns):
        bucket = start // bucket_ns * bucket_ns
        key = (*kept_as, piece.resolution_ns, start, end)
        keep = bucket not in pending
        kept = cache.get(key, stamps.get(bucket)) if keep else None
        if whole and kept is not None:
            points[bucket] = kept
        elif whole:
            if keep:
                to_keep[key] = stamps.get(bucket)
            if reads and reads[-1][1] == start:
                reads[-1] = (reads[-1][0], end)
            else:
                reads.append((start, end))
        else:
            if kept is None:
                part: Bins = {}
                _read(connection, sql, {**params, "from_ns": start, "to_ns": end}, part)
                kept = {group: counts for (_, group), counts in part.items()}
                if keep:
                    cache.put(key, stamps.get(bucket), kept)
            for group, counts in kept.items():
                _add(bins, bucket, group, counts)
    for start, end in reads:
        _read(connection, sql, {**params, "from_ns": start, "to_ns": end}, bins)


def read_latency(
    connection: apsw.Connection,
    stats: StatsRange,
    of: LatencyOf,
    group_by: LatencyGroup,
    cache: BucketCache | None = None,
) -> list[LatencySeries]:
    """p50/p95/p99 and count per (bucket, group), series by group (NULL first) and points by time."""
    bucket_ns = stats.bucket_ns
    params: dict[str, Any] = {"of": of, "service": stats.service, "model": stats.model, "bucket_ns": bucket_ns}
    query = (of, group_by, stats.service, stats.model, bucket_ns)
    bins: Bins = {}
    points: dict[int, dict[Any, Point]] = {}  # bucket -> group -> point
    whole_to_keep: dict[tuple[Any, ...], Stamp] = {}  # buckets read whole from histograms now
    for piece in pieces(stats.start_ns, stats.end_ns, bucket_ns):
        params.update(from_ns=piece.start_ns, to_ns=piece.end_ns)
        if piece.resolution_ns is None:
            for bucket, group, key, count in connection.execute(rows_sql(of, group_by, stats), params):
                merged = bins.setdefault((bucket, group), {})
                merged[key] = merged.get(key, 0) + count
            continue
        params["resolution_s"] = piece.resolution_ns // 10**9
        sql = histogram_sql(of, group_by, stats)
        pending: Bins = {}  # of the spans a writer has counted and not yet added to the histograms
        if of != "trace":
            for bucket, group, key, count in connection.execute(rows_sql(of, group_by, stats, pending=True), params):
                pending.setdefault((bucket, group), {})[key] = count
        if cache is None:
            _read(connection, sql, params, bins)
        else:
            in_pending = {bucket for bucket, _ in pending}
            _read_kept(connection, sql, params, query, piece, cache, in_pending, bins, points, whole_to_keep)
        for (bucket, group), counts in pending.items():
            _add(bins, bucket, group, counts)
    points.update(latency_bins.latency_points(bins))
    for key, stamp in whole_to_keep.items():
        assert cache is not None
        cache.put(key, stamp, points.get(key[-2], {}))
    return latency_bins.latency_series(points)
