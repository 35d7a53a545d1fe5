"""Latency histograms: the bins' error, the nearest rank of merged bins, how a query's range is cut, and the
histograms the writer keeps against those rebuilt from what is stored, through every change a database sees:
repeated calls marked across batches, settling, a late span unsettling its trace, and retention."""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import apsw
import pytest

from collector.config import RetentionSettings, Settings, SnapshotSettings
from collector.genai.transform import Transform
from collector.maintenance.settle import settle
from collector.model import Records
from collector.otlp import decode_spans
from collector.storage.latency_bins import GAMMA, RELATIVE_ERROR, bin_of, bin_sql, bin_value, nearest_rank
from collector.storage.read import StatsRange
from collector.storage.sqlite import latency
from collector.storage.sqlite.percentiles import BucketCache, Piece, pieces, read_latency, rows_sql
from collector.storage.sqlite.retention import convert_to_incremental
from collector.storage.sqlite.rows import SpanRows
from collector.storage.sqlite.schema import migrate
from collector.storage.sqlite.writer import SpanWriter
from tests.helpers import trace_request
from tests.storage.contract.test_rollups import AGENT_TRACE, WRAPPED

MINUTE_NS, HOUR_NS = 60 * 10**9, 3600 * 10**9


@pytest.fixture(scope="module")
def sqlite() -> apsw.Connection:
    return apsw.Connection(":memory:")


def bins_of(connection: apsw.Connection, values: list[float]) -> list[int]:
    sql = f"SELECT {bin_sql('value')} FROM json_each(?) ORDER BY key"
    return [row[0] for row in connection.execute(sql, (json.dumps(values),))]


def test_a_bin_reports_within_the_relative_error_of_every_value_in_it(sqlite: apsw.Connection) -> None:
    rng = random.Random(7)
    values = [0.0, 1e-6, 0.001, 1.0, 100.0, 9.2e12, *(10 ** rng.uniform(-6, 12) for _ in range(5_000))]
    values += [-value for value in values[1:50]]  # a span that ends before it starts
    for value, index in zip(values, bins_of(sqlite, values), strict=True):
        assert bin_value(index) == pytest.approx(value, rel=RELATIVE_ERROR, abs=0), (value, index)
    ordered = sorted(values)
    assert bins_of(sqlite, ordered) == sorted(bins_of(sqlite, ordered))  # bins keep the values' order


def test_the_nearest_rank_of_merged_bins_is_within_the_error_of_the_exact_one(sqlite: apsw.Connection) -> None:
    rng = random.Random(11)
    for size in (1, 2, 3, 10, 99, 100, 101, 1_000, 5_000):
        values = [rng.lognormvariate(5, 2) for _ in range(size)]
        counted: dict[int, int] = {}
        for index in bins_of(sqlite, values):
            counted[index] = counted.get(index, 0) + 1
        ordered = sorted(values)
        exact = [ordered[max(1, math.ceil(p * size / 100)) - 1] for p in (50, 95, 99)]
        count, values = nearest_rank(counted, (50, 95, 99))
        assert count == size and values == pytest.approx(exact, rel=RELATIVE_ERROR)
        assert nearest_rank({str(key): n for key, n in counted.items()}, (50, 95, 99)) == (count, values)
    assert nearest_rank({}, (50, 95, 99)) == (0, [])


def test_a_range_is_read_from_whole_hours_whole_minutes_and_the_rows_at_its_ends() -> None:
    day = 20_000 * 24 * HOUR_NS
    start, end = day - 30 * MINUTE_NS - 5 * 10**9, day + 3 * HOUR_NS + 2 * MINUTE_NS + 7
    assert pieces(start, end, HOUR_NS) == [
        Piece(None, start, day - 30 * MINUTE_NS),
        Piece(MINUTE_NS, day - 30 * MINUTE_NS, day),
        Piece(HOUR_NS, day, day + 3 * HOUR_NS),
        Piece(MINUTE_NS, day + 3 * HOUR_NS, day + 3 * HOUR_NS + 2 * MINUTE_NS),
        Piece(None, day + 3 * HOUR_NS + 2 * MINUTE_NS, end),
    ]
    # buckets of whole minutes read no hour; a bucket of seconds reads the rows; so does a range inside a minute
    assert [piece.resolution_ns for piece in pieces(start, end, 2 * MINUTE_NS)] == [None, MINUTE_NS, None]
    assert pieces(start, end, 90 * 10**9) == [Piece(None, start, end)]
    assert pieces(day + 1, day + 59 * 10**9, MINUTE_NS) == [Piece(None, day + 1, day + 59 * 10**9)]
    assert pieces(day, day + HOUR_NS, HOUR_NS) == [Piece(HOUR_NS, day, day + HOUR_NS)]


def histograms(connection: apsw.Connection) -> dict[tuple[Any, ...], tuple[int, dict[str, int]]]:
    rows = connection.execute(
        "SELECT h.resolution_s, h.start_unix_nano, s.key, h.count, json(h.bins) "
        "FROM latency_histograms h JOIN latency_series s ON s.id = h.series_id"
    )
    return {(resolution, start, key): (count, json.loads(bins)) for resolution, start, key, count, bins in rows}


def assert_as_rebuilt(connection: apsw.Connection) -> dict[tuple[Any, ...], tuple[int, dict[str, int]]]:
    """The histograms equal those rebuilt from the stored rows (but the pending spans), no empty row left over."""
    kept = histograms(connection)
    connection.execute("SAVEPOINT rebuild")
    latency.rebuild(connection)
    rebuilt = histograms(connection)
    connection.execute("ROLLBACK TO rebuild; RELEASE rebuild")
    assert kept == rebuilt
    assert all(count > 0 and sum(bins.values()) == count for count, bins in kept.values())
    return kept


def pending_ranges(connection: apsw.Connection) -> list[tuple[int, int, int]]:
    return connection.execute("SELECT first_rowid, last_rowid, writer FROM latency_pending").fetchall()


def assert_kept_as_rebuilt(writer: SpanWriter) -> dict[tuple[Any, ...], tuple[int, dict[str, int]]]:
    """The histograms the writer kept equal those rebuilt from the stored rows, before it flushes the spans it
    counted in memory (the histograms hold all but those) and after (all of them)."""
    assert_as_rebuilt(writer.connection)
    writer.flush()
    assert writer.pending.writer not in [writer for _, _, writer in pending_ranges(writer.connection)]
    return assert_as_rebuilt(writer.connection)


def counts_by_measure(kept: dict[tuple[Any, ...], tuple[int, dict[str, int]]]) -> dict[str, int]:
    """Per measure, the values counted in the minute histograms (trace series of any model and agent only)."""
    counts: dict[str, int] = {}
    for (resolution, _, key), (count, _) in kept.items():
        of, _, model, _, agent, with_model = json.loads(key)
        if resolution == 60 and (of != "trace" or model is agent is with_model is None):
            counts[of] = counts.get(of, 0) + count
    return counts


def test_the_kept_histograms_equal_those_rebuilt_through_every_change(tmp_path: Path) -> None:
    writer = SpanWriter(tmp_path / "latency.db", retention=RetentionSettings(max_age="1h"))
    transform = Transform(Settings())
    trace, other = os.urandom(16), os.urandom(16)

    def write(trace_id: bytes, spans: list[dict[str, Any]]) -> None:
        writer.write([transform.spans(decode_spans(trace_request(trace_id, spans))[0])[0]])

    # the wrapper first: counted, until the SDK's span of the same call arrives and is counted instead
    for delivery in ([WRAPPED[2]], WRAPPED[:2], WRAPPED[3:], WRAPPED):
        write(trace, delivery)
        assert_kept_as_rebuilt(writer)
    write(other, AGENT_TRACE)
    assert counts_by_measure(assert_kept_as_rebuilt(writer)) == {"span": 7 + 5, "llm": 2 + 2}

    quiet = SnapshotSettings(settle_after=0, max_wait=0)
    assert len(settle(writer, quiet)) == 2
    assert counts_by_measure(assert_kept_as_rebuilt(writer))["trace"] == 2

    late = {"span_id": os.urandom(8), "parent": WRAPPED[0]["span_id"], "start": 9_000_000_000, "end": 12_000_000_000}
    write(trace, [late])  # unsettles its trace: its duration is out until it settles again, with the late span
    assert counts_by_measure(assert_kept_as_rebuilt(writer))["trace"] == 1
    settle(writer, quiet)
    assert counts_by_measure(assert_kept_as_rebuilt(writer))["trace"] == 2

    ((last,),) = writer.connection.execute(
        "SELECT last_span_at_unix_nano FROM traces WHERE trace_id = ?", (other.hex(),)
    )
    assert [d.traces for d in writer.retention.step(last + HOUR_NS + 1) if d.traces] == [1]
    assert counts_by_measure(assert_kept_as_rebuilt(writer)) == {"span": 8, "llm": 2, "trace": 1}
    writer.retention.step(2**62)
    assert histograms(writer.connection) == {}
    writer.close()


def test_the_migration_builds_the_histograms_of_what_is_stored(tmp_path: Path) -> None:
    """A database of schema 6 with spans and settled traces gets, at migration 7, the histograms the writer keeps."""
    from collector.storage.sqlite.schema import MIGRATIONS

    path = tmp_path / "upgrade.db"
    writer = SpanWriter(path)
    transform = Transform(Settings())
    writer.write([transform.spans(decode_spans(trace_request(os.urandom(16), WRAPPED))[0])[0]])
    settle(writer, SnapshotSettings(settle_after=0, max_wait=0))
    kept = assert_kept_as_rebuilt(writer)
    writer.close()

    connection = apsw.Connection(str(path))
    connection.execute(
        "DROP TABLE latency_histograms; DROP TABLE latency_series; DROP TABLE latency_clock; "
        "DROP TABLE latency_pending; PRAGMA user_version = 6"
    )
    assert migrate(connection) == 6 and connection.pragma("user_version") == len(MIGRATIONS)
    assert histograms(connection) == kept


def test_kept_buckets_are_served_only_while_their_histograms_are_unchanged(tmp_path: Path) -> None:
    """The reader keeps the points of buckets read whole from histograms; every change to them (a span arriving
    late in an old hour, a trace settling or unsettling, retention) gives the answer computed afresh."""
    writer = SpanWriter(tmp_path / "kept.db", retention=RetentionSettings(max_age="1h"))
    transform = Transform(Settings())
    now = time.time_ns() // HOUR_NS * HOUR_NS
    day = StatsRange(now - 24 * HOUR_NS - 17 * MINUTE_NS - 3 * 10**9, now + 7 * 10**9, HOUR_NS)
    cache = BucketCache()

    def write(trace_id: bytes, hours_ago: float, spans: list[dict[str, Any]], flush: bool = True) -> None:
        shift = now - int(hours_ago * HOUR_NS)
        moved = [{**span, "start": span["start"] + shift, "end": span["end"] + shift} for span in spans]
        writer.write([transform.spans(decode_spans(trace_request(trace_id, moved))[0])[0]])
        if flush:
            writer.flush()

    def assert_fresh() -> list[Any]:
        with writer.connection:
            for of, group_by in (("span", "none"), ("llm", "model"), ("trace", "service")):
                kept = read_latency(writer.connection, day, of, group_by, cache)
                assert kept == read_latency(writer.connection, day, of, group_by), (of, group_by)
            return read_latency(writer.connection, day, "span", "none", cache)

    traces = [os.urandom(16) for _ in range(5)]
    write(traces[4], 24.2, AGENT_TRACE)  # in the partial bucket at the start of the range
    write(traces[0], 5.5, AGENT_TRACE)
    write(traces[1], 2.5, WRAPPED)
    first = assert_fresh()
    # for each of the three queries: every whole hour of the day, and the 17 minutes before it (the rest of that
    # hour's bucket is read from the spans)
    assert len(cache) == 3 * 25
    assert assert_fresh() == first  # the same, now from what was kept
    write(traces[2], 5.2, AGENT_TRACE[:2], flush=False)  # late, in an hour already kept, not yet flushed
    late = assert_fresh()
    assert late != first
    writer.flush()  # the same spans, now from the histograms
    assert assert_fresh() == late
    settle(writer, SnapshotSettings(settle_after=0, max_wait=0))
    assert_fresh()
    write(traces[1], 2.5, [{"span_id": os.urandom(8), "start": 10**9, "end": 20 * 10**9}])  # unsettles
    assert_fresh()
    ((last,),) = writer.connection.execute("SELECT max(last_span_at_unix_nano) FROM traces")
    write(traces[4], 24.25, AGENT_TRACE[2:3])  # late, in the kept part of the first bucket
    assert_fresh()
    writer.retention.step(last + 2 * HOUR_NS)
    assert assert_fresh() == []
    writer.close()


def write_spans(writer: SpanWriter, trace_id: bytes, spans: list[dict[str, Any]]) -> None:
    writer.write([Transform(Settings()).spans(decode_spans(trace_request(trace_id, spans))[0])[0]])


@pytest.mark.parametrize("opened_by", ["writer", "vacuum"])
def test_the_spans_of_a_writer_killed_before_it_flushed_are_added_by_the_next(tmp_path: Path, opened_by: str) -> None:
    """What a writer counted in memory dies with it; its pending ranges were committed with the spans, and the next
    writer to open the file bins those spans from the rows (so does ``genai-collector vacuum``, before ``VACUUM``
    may renumber the rowids the ranges name)."""
    path = tmp_path / "killed.db"
    killed = SpanWriter(path)
    write_spans(killed, os.urandom(16), AGENT_TRACE)
    write_spans(killed, os.urandom(16), WRAPPED)
    assert pending_ranges(killed.connection) != [] and histograms(killed.connection) == {}
    killed.connection.close()  # no flush: as after kill -9
    if opened_by == "vacuum":
        convert_to_incremental(path)
    connection = SpanWriter(path).connection if opened_by == "writer" else apsw.Connection(str(path))
    assert pending_ranges(connection) == []
    assert counts_by_measure(assert_as_rebuilt(connection)) == {"span": 7 + 5, "llm": 2 + 2}
    connection.close()


def test_two_writers_of_one_file_keep_the_histograms_whichever_has_the_spans_pending(tmp_path: Path) -> None:
    """A writer opening the file takes over another's pending ranges; one writer's repeated call marks, and its
    retention deletes, spans the other has pending: each time the other, when it flushes, finds its ranges gone
    and bins what it still has from the rows instead of adding counts that would count a span twice."""
    path = tmp_path / "shared.db"
    daemon = SpanWriter(path, retention=RetentionSettings(max_age="1h"))
    trace, other = os.urandom(16), os.urandom(16)
    write_spans(daemon, other, AGENT_TRACE)
    exporter = SpanWriter(path)  # takes over the daemon's range
    write_spans(daemon, trace, [WRAPPED[2]])  # the wrapper: pending in the daemon
    write_spans(daemon, trace, WRAPPED[:2])
    write_spans(exporter, trace, WRAPPED[3:])  # the SDK's span of the same call: the wrapper is a repeat now
    assert [writer for _, _, writer in pending_ranges(daemon.connection)] == [exporter.pending.writer]
    write_spans(daemon, trace, WRAPPED)  # sent again: nothing new
    assert_kept_as_rebuilt(daemon)
    assert counts_by_measure(assert_kept_as_rebuilt(exporter)) == {"span": 7 + 5, "llm": 2 + 2}
    assert pending_ranges(daemon.connection) == []

    write_spans(exporter, other, AGENT_TRACE[:1])  # a retried span: nothing new
    late = {"span_id": os.urandom(8), "parent": AGENT_TRACE[0]["span_id"], "start": 10**9, "end": 2 * 10**9}
    write_spans(exporter, other, [late])  # pending in the exporter, deleted by the daemon's retention
    ((last,),) = daemon.connection.execute("SELECT max(last_span_at_unix_nano) FROM traces")
    daemon.retention.step(last + 2 * HOUR_NS)
    assert pending_ranges(daemon.connection) == []
    assert histograms(daemon.connection) == {}
    exporter.flush()
    assert histograms(daemon.connection) == {}

    # everything deleted while the exporter had spans pending: its next spans take their rowids again, and its next
    # range the first rowid of the range it lost
    write_spans(exporter, os.urandom(16), AGENT_TRACE)
    (lost,) = pending_ranges(daemon.connection)
    ((last,),) = daemon.connection.execute("SELECT max(last_span_at_unix_nano) FROM traces")
    daemon.retention.step(last + 2 * HOUR_NS)
    write_spans(exporter, os.urandom(16), AGENT_TRACE)
    assert [first for first, _, _ in pending_ranges(daemon.connection)] == [lost[0]]
    assert counts_by_measure(assert_kept_as_rebuilt(exporter)) == {"span": 5, "llm": 2}
    daemon.close()
    exporter.close()


def test_the_percentiles_count_the_pending_spans(tmp_path: Path) -> None:
    """Read before the writer flushes, the percentiles of whole minutes and hours are those of every stored span."""
    writer = SpanWriter(tmp_path / "read.db")
    now = time.time_ns() // HOUR_NS * HOUR_NS
    hours = StatsRange(now - 3 * HOUR_NS, now, HOUR_NS)
    minutes = StatsRange(now - 3 * HOUR_NS, now, MINUTE_NS)

    def shifted(hours_ago: float, spans: list[dict[str, Any]]) -> list[dict[str, Any]]:
        shift = now - int(hours_ago * HOUR_NS)
        return [{**span, "start": span["start"] + shift, "end": span["end"] + shift} for span in spans]

    write_spans(writer, os.urandom(16), shifted(2.5, AGENT_TRACE))
    write_spans(writer, os.urandom(16), shifted(1.5, WRAPPED))
    answers = []
    for flushed in (False, True):
        if flushed:
            writer.flush()
        with writer.connection:
            answers.append(
                [
                    read_latency(writer.connection, stats, of, "model")
                    for stats in (hours, minutes)
                    for of in ("span", "llm")
                ]
            )
    assert answers[0] == answers[1]
    assert sum(point["count"] for series in answers[0][0] for point in series["points"]) == 7 + 5
    writer.close()


@pytest.mark.parametrize("of", ["span", "llm", "ttft"])
@pytest.mark.parametrize("filters", [{}, {"service": "svc", "model": "m"}])
def test_the_pending_spans_are_read_by_their_rowid_ranges_whatever_the_filters(
    tmp_path: Path, of: str, filters: dict[str, str]
) -> None:
    """On a big database the planner preferred an automatic index on the spans' category, built from every row for
    every read (seconds at a million spans): the pending spans must be found by their rowids alone."""
    writer = SpanWriter(tmp_path / "plan.db")
    stats = StatsRange(0, HOUR_NS, HOUR_NS, **filters)
    sql = rows_sql(of, "model", stats, pending=True)  # type: ignore[arg-type]
    params = {"bucket_ns": HOUR_NS, "from_ns": 0, "to_ns": HOUR_NS, **filters}
    plan = [row[3] for row in writer.connection.execute(f"EXPLAIN QUERY PLAN {sql}", params)]
    assert plan[:2] == ["SCAN p", "SEARCH s USING INTEGER PRIMARY KEY (rowid>? AND rowid<?)"], plan
    writer.close()


def test_the_bins_computed_in_python_are_sqlites_for_every_double(sqlite: apsw.Connection) -> None:
    """``bin_of`` (the writer's latency counts, computed where the rows are encoded) is ``bin_sql`` in SQLite,
    value for value: on every bin's edges (gamma to an integer power and the doubles either side), zero, negative
    values, the extremes, whole numbers of milliseconds and random values across 18 decades. The values are bound
    as doubles, not parsed from text, so SQLite computes on the very double Python does."""
    rng = random.Random(3)
    values = [0.0, -0.0, 5e-324, 1e-300, 1.7976931348623157e308, 9.2e12, 1.0, 2.0, 1e6, *map(float, range(1, 3000))]
    for power in range(-1100, 1600):
        edge = GAMMA**power
        values += [edge, math.nextafter(edge, 0), math.nextafter(edge, math.inf)]
    values += [10 ** rng.uniform(-9, 12) for _ in range(20_000)]
    values += [-value for value in values[::7]]
    sqlite.execute("CREATE TEMP TABLE bin_values (value REAL)")
    try:
        sqlite.executemany("INSERT INTO bin_values VALUES (?)", [(value,) for value in values])
        sql = f"SELECT {bin_sql('value')} FROM bin_values ORDER BY rowid"
        assert [row[0] for row in sqlite.execute(sql)] == [bin_of(value) for value in values]
        assert sqlite.execute(f"SELECT {math.log(GAMMA) ** -1!r} = ?", (1 / math.log(GAMMA),)).fetchall() == [(1,)]
    finally:
        sqlite.execute("DROP TABLE bin_values")


def genai_edge_spans() -> list[Any]:
    """Spans whose observations are easy to get wrong: zero and negative durations, a start in the last nanosecond
    of a minute, a time to first chunk of 0, of an embedding and of a span that is no model call, a response model
    beside the request's, no model, an empty service name."""
    transform = Transform(Settings())
    trace = os.urandom(16)
    llm = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o", "gen_ai.agent.name": "triage"}
    described = [
        {"span_id": os.urandom(8), "start": 5 * MINUTE_NS, "end": 5 * MINUTE_NS, "attributes": llm},
        {"span_id": os.urandom(8), "start": 7 * MINUTE_NS, "end": 6 * MINUTE_NS, "attributes": llm},
        {"span_id": os.urandom(8), "start": 8 * MINUTE_NS - 1, "end": 9 * MINUTE_NS, "attributes": {}},
        {
            "span_id": os.urandom(8),
            "attributes": {**llm, "gen_ai.response.model": "gpt-4o-2024-08-06", "ai.response.msToFirstChunk": 0},
        },
        {
            "span_id": os.urandom(8),
            "attributes": {
                "gen_ai.operation.name": "embeddings",
                "gen_ai.request.model": "m",
                "ai.stream.msToFirstChunk": 2.5,
            },
        },
        {
            "span_id": os.urandom(8),
            "attributes": {"gen_ai.operation.name": "execute_tool", "ai.response.msToFirstChunk": 7},
        },
        {"span_id": os.urandom(8), "attributes": {"gen_ai.operation.name": "chat", "ai.response.msToFirstChunk": 1e-9}},
    ]
    spans = transform.spans(decode_spans(trace_request(trace, described, service=""))[0])[0].spans
    assert [span.genai.category if span.genai else None for span in spans][3:] == ["llm", "embedding", "tool", "llm"]
    return spans


def test_what_a_span_observes_is_counted_where_its_rows_are_encoded(tmp_path: Path) -> None:
    """What ``rows.span_rows`` counts of each span (``latency.span_observed``) is what the writer would read back
    from the row it stores (``_OBSERVED``), for the bench corpus (four conventions, several services, models and
    agents per batch) and the edge cases above."""
    from bench.writer import prepared_batches

    requests = [records for batch in prepared_batches(3, 2, 100, 5) for records in batch]
    requests.append(SpanWriter.prepare(Records(spans=genai_edge_spans())))
    counted: Counter[latency.Observed] = Counter()
    for records in requests:
        assert isinstance(records.prepared, SpanRows) and records.prepared.observed is not None
        counted.update(records.prepared.observed)
    writer = SpanWriter(tmp_path / "observed.db")
    writer.write(requests)
    stored = Counter(writer.connection.execute(latency._OBSERVED.format(where="true")))
    assert stored == counted and sum(counted.values()) == 607
    assert {observed[7] for observed in counted} > {None}  # times to first chunk among them
    writer.close()


def test_the_histograms_counted_ahead_equal_those_rebuilt_with_and_without_duplicates(tmp_path: Path) -> None:
    """Batches of new spans are counted from what their requests counted when they were encoded; a batch holding
    a span stored before, or one span twice, from its stored rows. Either way the histograms equal those rebuilt
    from the stored rows, before and after every flush."""
    from bench.writer import prepared_batches

    batches = prepared_batches(4, 2, 100, 9)
    writer = SpanWriter(tmp_path / "counted.db")
    for batch in batches[:2]:
        writer.write(batch)
        assert_kept_as_rebuilt(writer)
    writer.write([*batches[2], batches[0][1]])  # a request sent again beside new ones
    writer.write([batches[3][0], batches[3][0], batches[3][1]])  # a request twice in one batch
    writer.write([Records(spans=genai_edge_spans())])
    kept = assert_kept_as_rebuilt(writer)
    assert counts_by_measure(kept)["span"] == 800 + 7
    writer.close()


def test_added_minutes_are_merged_into_the_stored_histograms_bin_by_bin(tmp_path: Path) -> None:
    """``add_minutes`` (a flush, a settling) adds to a stored row's bins those it brings, in place, appends the new
    ones after them and removes a bin that falls to 0, in the minute and in its hour, beside rows of series new and
    known; the rows it changes get the clock's next tick, those it does not keep theirs."""
    connection = SpanWriter(tmp_path / "merge.db").connection
    hour = 7 * HOUR_NS
    minute = hour + 5 * MINUTE_NS
    span, llm, ttft = (
        ("span", "svc", None, None, None, None),
        ("llm", "svc", "m", "chat", None, None),
        ("ttft", "svc", "m", "chat", None, None),
    )
    span_key, llm_key, ttft_key = (json.dumps(list(series), separators=(",", ":")) for series in (span, llm, ttft))
    latency.add_minutes(connection, {(*span, minute): {3: 2, 7: 1}, (*llm, minute + MINUTE_NS): {-4: 1}})
    ((first,),) = connection.execute("SELECT tick FROM latency_clock")
    again = {(*span, minute): {7: 2, 11: 1, 3: -2}, (*span, minute + MINUTE_NS): {5: 1}, (*ttft, minute): {2: 1}}
    latency.add_minutes(connection, again)
    ((second,),) = connection.execute("SELECT tick FROM latency_clock")
    kept = histograms(connection)
    assert {key: (count, list(bins.items())) for key, (count, bins) in kept.items()} == {
        (60, minute, span_key): (4, [("7", 3), ("11", 1)]),
        (60, minute + MINUTE_NS, span_key): (1, [("5", 1)]),
        (60, minute + MINUTE_NS, llm_key): (1, [("-4", 1)]),
        (60, minute, ttft_key): (1, [("2", 1)]),
        (3600, hour, span_key): (5, [("7", 3), ("11", 1), ("5", 1)]),
        (3600, hour, llm_key): (1, [("-4", 1)]),
        (3600, hour, ttft_key): (1, [("2", 1)]),
    }
    changed = connection.execute(
        "SELECT s.key, h.resolution_s, h.changed FROM latency_histograms h JOIN latency_series s ON s.id = h.series_id"
    ).fetchall()
    assert second == first + 1
    assert sorted(changed) == sorted(
        [(key, 60, second) for key in (span_key, span_key, ttft_key)]
        + [(key, 3600, second) for key in (span_key, ttft_key)]
        + [(llm_key, resolution, first) for resolution in (60, 3600)]
    )
