"""Settling traces on PostgreSQL: as SQLite's ``storage.sqlite.settle``, with replicas claiming different traces.

The quiet traces are claimed with ``FOR UPDATE SKIP LOCKED``: a trace another replica is settling, or a writer
is adding spans to, is left for later, so each trace is settled by one replica at a time and each breach is
found new (``SettledTrace.newly_breached``) once across all of them. The claim, the snapshots and the mark are
one transaction. What the snapshots say is decided outside storage (``collector.maintenance.settle``).

A settling's snapshots are stamped (``computed_at``) after every snapshot committed before: the transaction
takes ``SNAPSHOTS_LOCK`` (held to its commit) once it has judged its traces, then stamps its rows with its clock
or one past the newest stamp stored, whichever is later. So snapshots commit in the order of their stamps
across replicas whatever their clocks, and a reader that has seen the breaches up to a (computed_at, id) never
misses one committed afterwards: the live feed's cursor. Replicas wait for each other only for the last few
statements of a settling.
"""

from __future__ import annotations

from collector.storage.postgres.connection import SNAPSHOTS_LOCK, Connection
from collector.storage.postgres.notify import notify_settled
from collector.storage.store import Judge, SettledTrace, SettleWindow, UnsettledTrace

CLAIM_UNSETTLED = """
SELECT trace_id, service_name, models, agents, duration_ns, cost_usd, total_tokens, error_count, llm_calls
FROM traces
WHERE settled_at_unix_nano IS NULL
  AND ((has_root = 1 AND last_span_at_unix_nano <= %(quiet_since)s)
    OR (has_root = 0 AND first_span_at_unix_nano <= %(waited_since)s))
ORDER BY last_span_at_unix_nano
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED
"""
WORST_TTFT = """
SELECT trace_id, max(ttft_ms) FROM spans WHERE trace_id = ANY(%s) AND ttft_ms IS NOT NULL GROUP BY trace_id
"""
LOWEST_EVALUATIONS = """
SELECT trace_id, name, min(score) FROM evaluations WHERE trace_id = ANY(%s) AND name = ANY(%s) GROUP BY trace_id, name
"""
PREVIOUS_BREACHES = "SELECT trace_id, metric FROM metric_snapshots WHERE trace_id = ANY(%s) AND breached = 1"
UPSERT_SNAPSHOT = """
INSERT INTO metric_snapshots (trace_id, service_name, metric, value, threshold, breached, rule, computed_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (trace_id, metric) DO UPDATE SET
    service_name = excluded.service_name,
    value = excluded.value,
    threshold = excluded.threshold,
    breached = excluded.breached,
    rule = excluded.rule,
    computed_at = excluded.computed_at
"""
# after taking SNAPSHOTS_LOCK: this statement sees the stamps of every settling that held it before
STAMP = "SELECT greatest(%s, coalesce(max(computed_at), 0) + 1) FROM metric_snapshots"
MARK_SETTLED = "UPDATE traces SET settled_at_unix_nano = %s WHERE trace_id = ANY(%s)"


def settle_traces(connection: Connection, window: SettleWindow, judge: Judge) -> list[SettledTrace]:
    """Claim up to ``window.limit`` quiet traces and write the snapshots ``judge`` gives them, in one transaction
    (``connection`` in autocommit)."""
    now_ns = window.now_ns
    with connection.transaction(), connection.cursor() as cursor:
        candidates = cursor.execute(
            CLAIM_UNSETTLED,
            {
                "quiet_since": now_ns - window.settle_after_ns,
                "waited_since": now_ns - window.max_wait_ns,
                "limit": window.limit,
            },
        ).fetchall()
        if not candidates:
            return []
        ids = [row[0] for row in candidates]
        ttft: dict[str, float] = dict(cursor.execute(WORST_TTFT, (ids,)).fetchall()) if window.ttft else {}
        scores: dict[str, dict[str, float]] = {}
        if window.evaluation_names:
            for trace_id, name, score in cursor.execute(LOWEST_EVALUATIONS, (ids, list(window.evaluation_names))):
                scores.setdefault(trace_id, {})[name] = score
        already_breached = set(cursor.execute(PREVIOUS_BREACHES, (ids,)).fetchall())
        settled = []
        rows: list[tuple[str, str | None, str, float | None, float | None, int, str | None]] = []
        for trace_id, service, models, agents, duration_ns, cost, total_tokens, errors, llm_calls in candidates:
            trace = UnsettledTrace(
                trace_id=trace_id,
                service_name=service,
                models=tuple(models),
                agents=tuple(agents),
                duration_ns=duration_ns,
                cost_usd=cost,
                total_tokens=total_tokens,
                error_count=errors,
                llm_calls=llm_calls,
                worst_ttft_ms=ttft.get(trace_id),
                lowest_scores=scores.get(trace_id, {}),
            )
            snapshots = judge(trace)
            rows.extend(
                (s.trace_id, s.service_name, s.metric, s.value, s.threshold, int(s.breached), s.rule) for s in snapshots
            )
            newly = [s for s in snapshots if s.breached and (s.trace_id, s.metric) not in already_breached]
            settled.append(SettledTrace(trace, snapshots, newly))
        if rows:
            rows.sort(key=lambda row: (row[0], row[2]))  # by (trace, metric): the order of the unique index
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", SNAPSHOTS_LOCK)
            (stamp,) = cursor.execute(STAMP, (now_ns,)).fetchone() or (now_ns,)
            cursor.executemany(UPSERT_SNAPSHOT, [(*row, stamp) for row in rows])
        cursor.execute(MARK_SETTLED, (now_ns, ids))
        notify_settled(cursor, ids)  # delivered to every replica's live feed at commit
    return settled
