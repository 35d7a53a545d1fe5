"""Settling traces on SQLite: read the quiet ones, write the ``metric_snapshots`` rows they were judged to get.

A trace is settled once its root span has arrived and no span came for ``settle_after``, or once
``max_wait`` has passed since its first span without a root. Snapshots are upserted per
(trace, metric), so a trace that settles again after a late span is recomputed in place. What the
snapshots say is decided outside storage (``collector.maintenance.settle``); the statements and the judging
are both engines' (``storage/sql.py``).

The daemon settles a round in two steps, each between two batches of the writer thread, so that neither holds the
batches up as long as the whole round did: ``SettleReader.read`` reads the traces due, judges them and counts their
latency bins, in a read transaction; ``apply_settled``, after the next batch, marks settled only the traces whose
version (span count, last span's receipt) is still the one read, and writes their snapshots and bins: a trace that
got a span in between is left unsettled, to be read again once quiet. ``settle_traces`` does both in one transaction
(the in-process exporter, the benchmarks).

The reading stays on the writer's thread on purpose: on a thread of its own its Python (the judging) held the
interpreter while the writer waited for it between two statements, and the batches took two to three times as long
while it ran (docs/performance.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import apsw
import orjson

from collector.storage.sql import Settling, SnapshotRow, unsettled, unsettled_params
from collector.storage.sqlite import latency
from collector.storage.sqlite.connection import write_transaction
from collector.storage.sqlite.dialect import SQLITE
from collector.storage.sqlite.errors import translated
from collector.storage.store import Judge, SettledTrace, SettleWindow

UNSETTLED = unsettled(SQLITE)
SETTLING = Settling(SQLITE, positional="?")

# The traces of ``:versions`` ([[trace id, span count, last span's receipt], ...]) still unsettled at that version,
# marked settled: those that got a span since (a new span always adds to the count), or that retention deleted, are
# left out. Returns the traces marked.
MARK_UNCHANGED = """
UPDATE traces SET settled_at_unix_nano = :now_ns
FROM (SELECT value ->> 0 AS trace_id, value ->> 1 AS span_count, value ->> 2 AS last_span_at
      FROM json_each(:versions)) v
WHERE traces.trace_id = v.trace_id AND traces.settled_at_unix_nano IS NULL
  AND traces.span_count = v.span_count AND traces.last_span_at_unix_nano = v.last_span_at
RETURNING traces.trace_id
"""


def settle_traces(connection: apsw.Connection, window: SettleWindow, judge: Judge) -> list[SettledTrace]:
    """Settle up to ``window.limit`` quiet traces in one transaction.

    It holds the write lock from its start, so that another writer of the file (an in-process exporter
    beside the daemon) makes it wait rather than fail; a trace it settles is marked settled in the same
    transaction, so no writer settles it again.
    """
    now_ns = window.now_ns
    with write_transaction(connection):
        candidates = list(connection.execute(UNSETTLED, unsettled_params(window)))
        if not candidates:
            return []
        ids = SQLITE.list_value(row[0] for row in candidates)
        settled, rows = SETTLING.judge(connection.execute, window, judge, candidates, ids)
        connection.executemany(SETTLING.upsert_snapshot, [(*row, now_ns) for row in rows])
        connection.execute(SETTLING.mark_settled, {"now_ns": now_ns, "ids": ids})
        latency.add_traces(connection, latency.traces_by_id(ids))  # their durations are final
    return settled


@dataclass(frozen=True, slots=True)
class Plan:
    """The traces due as a ``SettleReader`` read them, judged: what ``apply_settled`` writes (``store.SettlePlan``)."""

    now_ns: int
    settled: list[SettledTrace]
    rows: list[SnapshotRow]  # the snapshots of all of them, without their stamp
    versions: str  # JSON [[trace id, span count, last span's receipt], ...]: MARK_UNCHANGED's
    observed: dict[str, latency.TraceObserved]  # by trace id, those the latency histograms count
    minutes: latency.Minutes  # what all of them add to the histograms

    @property
    def count(self) -> int:
        return len(self.settled)


class SettleReader:
    """The reading half of settling (``store.SettleReader``), on the writer's connection between two batches: its
    read transaction sees every commit and needs no write lock."""

    def __init__(self, connection: apsw.Connection) -> None:
        self._connection = connection

    def read(self, window: SettleWindow, judge: Judge) -> Plan | None:
        """The traces due, judged and binned, as of one snapshot of the file; None when none is due."""
        connection = self._connection
        with translated():
            connection.execute("BEGIN")  # one snapshot for every read below
            try:
                candidates = list(connection.execute(UNSETTLED, unsettled_params(window)))
                if not candidates:
                    return None
                ids = SQLITE.list_value(row[0] for row in candidates)
                settled, rows = SETTLING.judge(connection.execute, window, judge, candidates, ids)
                observed = latency.observe_traces(connection, latency.traces_by_id(ids), due=True)
            finally:
                connection.execute("COMMIT")
        versions = orjson.dumps([(row[0], row[-2], row[-1]) for row in candidates]).decode()
        return Plan(window.now_ns, settled, rows, versions, observed, latency.trace_minutes(observed.values()))


def apply_settled(connection: apsw.Connection, plan: Plan) -> list[SettledTrace]:
    """In one transaction of the writer's: mark settled the traces of ``plan`` unchanged since it was read, and
    write their snapshots and latency bins (the reads and the judging are done: ``SettleReader``)."""
    with write_transaction(connection):
        marking = connection.execute(MARK_UNCHANGED, {"now_ns": plan.now_ns, "versions": plan.versions})
        marked: set[Any] = {trace_id for (trace_id,) in marking}
        if not marked:
            return []
        if len(marked) == plan.count:
            settled, rows, minutes = plan.settled, plan.rows, plan.minutes
        else:  # some got a span since the plan was read, or were deleted
            settled = [done for done in plan.settled if done.trace.trace_id in marked]
            rows = [row for row in plan.rows if row[0] in marked]
            observed = (each for trace_id, each in plan.observed.items() if trace_id in marked)
            minutes = latency.trace_minutes(observed)
        connection.executemany(SETTLING.upsert_snapshot, [(*row, plan.now_ns) for row in rows])
        latency.add_minutes(connection, minutes)
    return settled
