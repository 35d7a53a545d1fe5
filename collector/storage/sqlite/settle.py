"""Settling traces on SQLite: read the quiet ones, write the ``metric_snapshots`` rows they were judged to get.

A trace is settled once its root span has arrived and no span came for ``settle_after``, or once
``max_wait`` has passed since its first span without a root. Snapshots are upserted per
(trace, metric), so a trace that settles again after a late span is recomputed in place. What the
snapshots say is decided outside storage (``collector.maintenance.settle``); the statements and the judging
are both engines' (``storage/sql.py``).
"""

from __future__ import annotations

import apsw

from collector.storage.sql import Settling, unsettled, unsettled_params
from collector.storage.sqlite import latency
from collector.storage.sqlite.connection import write_transaction
from collector.storage.sqlite.dialect import SQLITE
from collector.storage.store import Judge, SettledTrace, SettleWindow

UNSETTLED = unsettled(SQLITE)
SETTLING = Settling(SQLITE, positional="?")


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
