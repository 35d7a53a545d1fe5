"""Settling in two steps (``storage.sqlite.settle``): the traces due read and judged, then the plan applied after
another batch. A trace that got a span, or was deleted, between the two is not settled; what is applied is what
settling in one transaction writes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from collector.config import RetentionSettings, Settings, SnapshotSettings
from collector.genai.transform import Transform
from collector.maintenance.settle import _judging, settle
from collector.otlp import decode_spans
from collector.storage.sqlite.settle import Plan
from collector.storage.sqlite.writer import SpanWriter
from tests.helpers import trace_request
from tests.storage.contract.test_rollups import AGENT_TRACE, WRAPPED
from tests.storage.sqlite.test_latency import assert_kept_as_rebuilt, counts_by_measure

QUIET = SnapshotSettings(settle_after=0, max_wait=0)


def write(writer: SpanWriter, trace_id: bytes, spans: list[dict[str, Any]]) -> None:
    writer.write([Transform(Settings()).spans(decode_spans(trace_request(trace_id, spans))[0])[0]])


def read_plan(writer: SpanWriter, now_ns: int | None = None) -> Plan:
    window, judge, _ = _judging(QUIET, 100, now_ns)
    plan = writer.settle_reader().read(window, judge)
    assert plan is not None
    return plan


def snapshots(writer: SpanWriter) -> list[tuple[Any, ...]]:
    return writer.connection.execute(
        "SELECT trace_id, metric, value, threshold, breached, rule, computed_at FROM metric_snapshots "
        "ORDER BY trace_id, metric"
    ).fetchall()


def settled_ids(writer: SpanWriter) -> set[str]:
    rows = writer.connection.execute("SELECT trace_id FROM traces WHERE settled_at_unix_nano IS NOT NULL")
    return {trace_id for (trace_id,) in rows}


def test_a_trace_that_gets_a_span_while_its_settling_is_in_flight_is_left_unsettled(tmp_path: Path) -> None:
    writer = SpanWriter(tmp_path / "settle.db")
    busy, quiet = os.urandom(16), os.urandom(16)
    write(writer, busy, AGENT_TRACE)
    write(writer, quiet, WRAPPED)
    plan = read_plan(writer)
    assert plan.count == 2
    late = {"span_id": os.urandom(8), "parent": AGENT_TRACE[0]["span_id"], "start": 1, "end": 90_000_000_000}
    write(writer, busy, [late])  # after the read, before the writer applies it

    assert [done.trace.trace_id for done in writer.apply_settled(plan)] == [quiet.hex()]
    assert settled_ids(writer) == {quiet.hex()}
    assert {row[0] for row in snapshots(writer)} == {quiet.hex()}  # none written from the busy trace's old figures
    assert counts_by_measure(assert_kept_as_rebuilt(writer))["trace"] == 1

    again = read_plan(writer)  # quiet again: read with the late span, and settled
    assert [done.trace.trace_id for done in writer.apply_settled(again)] == [busy.hex()]
    latency_ms = {(trace_id, metric): value for trace_id, metric, value, *_ in snapshots(writer)}
    assert latency_ms[busy.hex(), "latency_ms"] > 80_000  # the late span counts
    assert counts_by_measure(assert_kept_as_rebuilt(writer))["trace"] == 2
    writer.close()


def test_a_trace_deleted_while_its_settling_is_in_flight_gets_no_snapshot(tmp_path: Path) -> None:
    writer = SpanWriter(tmp_path / "settle.db", retention=RetentionSettings(max_age="1h"))
    write(writer, os.urandom(16), AGENT_TRACE)
    plan = read_plan(writer)
    while any(deleted.more for deleted in writer.retention.step(2**62)):
        pass
    assert writer.apply_settled(plan) == []
    assert snapshots(writer) == []
    assert counts_by_measure(assert_kept_as_rebuilt(writer)) == {}
    writer.close()


def test_the_plan_applied_writes_what_settling_in_one_transaction_writes(tmp_path: Path) -> None:
    traces = [(os.urandom(16), AGENT_TRACE), (os.urandom(16), WRAPPED), (os.urandom(16), AGENT_TRACE[:2])]
    whole, halves = SpanWriter(tmp_path / "whole.db"), SpanWriter(tmp_path / "halves.db")
    for writer in (whole, halves):
        for trace_id, spans in traces:
            write(writer, trace_id, spans)
    now_ns = 2**62
    assert len(settle(whole, QUIET, now_ns=now_ns)) == 3
    assert len(halves.apply_settled(read_plan(halves, now_ns))) == 3
    assert snapshots(halves) == snapshots(whole) != []
    assert settled_ids(halves) == settled_ids(whole)
    assert assert_kept_as_rebuilt(halves) == assert_kept_as_rebuilt(whole)
    whole.close()
    halves.close()
