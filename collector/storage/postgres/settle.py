"""Settling traces on PostgreSQL: as SQLite's ``storage.sqlite.settle``, with replicas claiming different traces.

The quiet traces are claimed with ``FOR UPDATE SKIP LOCKED``: a trace another replica is settling, or a writer
is adding spans to, is left for later, so each trace is settled by one replica at a time and each breach is
found new (``SettledTrace.newly_breached``) once across all of them. The claim, the snapshots and the mark are
one transaction. What the snapshots say is decided outside storage (``collector.maintenance.settle``); the
statements and the judging are both engines' (``storage/sql.py``).

A settling's snapshots are stamped (``computed_at``) after every snapshot committed before: the transaction
takes ``SNAPSHOTS_LOCK`` (held to its commit) once it has judged its traces, then stamps its rows with its clock
or one past the newest stamp stored, whichever is later. So snapshots commit in the order of their stamps
across replicas whatever their clocks, and a reader that has seen the breaches up to a (computed_at, id) never
misses one committed afterwards: the live feed's cursor. Replicas wait for each other only for the last few
statements of a settling.
"""

from __future__ import annotations

from collector.storage.postgres.connection import SNAPSHOTS_LOCK, Connection
from collector.storage.postgres.dialect import POSTGRES
from collector.storage.postgres.notify import notify_settled
from collector.storage.sql import Settling, unsettled, unsettled_params
from collector.storage.store import Judge, SettledTrace, SettleWindow

CLAIM_UNSETTLED = unsettled(POSTGRES) + "\nFOR UPDATE SKIP LOCKED"
SETTLING = Settling(POSTGRES, positional="%s")
# after taking SNAPSHOTS_LOCK: this statement sees the stamps of every settling that held it before
STAMP = "SELECT greatest(%s, coalesce(max(computed_at), 0) + 1) FROM metric_snapshots"


def settle_traces(connection: Connection, window: SettleWindow, judge: Judge) -> list[SettledTrace]:
    """Claim up to ``window.limit`` quiet traces and write the snapshots ``judge`` gives them, in one transaction
    (``connection`` in autocommit)."""
    now_ns = window.now_ns
    with connection.transaction(), connection.cursor() as cursor:
        candidates = cursor.execute(CLAIM_UNSETTLED, unsettled_params(window)).fetchall()
        if not candidates:
            return []
        ids = POSTGRES.list_value(row[0] for row in candidates)
        settled, rows = SETTLING.judge(cursor.execute, window, judge, candidates, ids)
        if rows:
            rows.sort(key=lambda row: (row[0], row[2]))  # by (trace, metric): the order of the unique index
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", SNAPSHOTS_LOCK)
            (stamp,) = cursor.execute(STAMP, (now_ns,)).fetchone() or (now_ns,)
            cursor.executemany(SETTLING.upsert_snapshot, [(*row, stamp) for row in rows])
        cursor.execute(SETTLING.mark_settled, {"now_ns": now_ns, "ids": ids})
        notify_settled(cursor, ids)  # delivered to every replica's live feed at commit
    return settled
