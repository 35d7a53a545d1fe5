"""Settling traces on SQLite: read the quiet ones, write the ``metric_snapshots`` rows they were judged to get.

A trace is settled once its root span has arrived and no span came for ``settle_after``, or once
``max_wait`` has passed since its first span without a root. Snapshots are upserted per
(trace, metric), so a trace that settles again after a late span is recomputed in place. What the
snapshots say is decided outside storage (``collector.maintenance.settle``).
"""

from __future__ import annotations

import json

import apsw

from collector.storage.sqlite import latency
from collector.storage.sqlite.connection import write_transaction
from collector.storage.store import Judge, SettledTrace, SettleWindow, UnsettledTrace

UNSETTLED = """
SELECT trace_id, service_name, models, agents, duration_ns, cost_usd, total_tokens, error_count, llm_calls
FROM traces
WHERE settled_at_unix_nano IS NULL
  AND ((has_root AND last_span_at_unix_nano <= :quiet_since)
    OR (NOT has_root AND first_span_at_unix_nano <= :waited_since))
ORDER BY last_span_at_unix_nano
LIMIT :limit
"""

WORST_TTFT = """
SELECT trace_id, max(ttft_ms) FROM spans
WHERE trace_id IN (SELECT value FROM json_each(?)) AND ttft_ms IS NOT NULL
GROUP BY trace_id
"""

LOWEST_EVALUATIONS = """
SELECT trace_id, name, min(score) FROM evaluations
WHERE trace_id IN (SELECT value FROM json_each(?)) AND name IN (SELECT value FROM json_each(?))
GROUP BY trace_id, name
"""

PREVIOUS_BREACHES = """
SELECT trace_id, metric FROM metric_snapshots
WHERE trace_id IN (SELECT value FROM json_each(?)) AND breached
"""

UPSERT_SNAPSHOT = """
INSERT INTO metric_snapshots (trace_id, service_name, metric, value, threshold, breached, rule, computed_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (trace_id, metric) DO UPDATE SET
    service_name = excluded.service_name,
    value = excluded.value,
    threshold = excluded.threshold,
    breached = excluded.breached,
    rule = excluded.rule,
    computed_at = excluded.computed_at
"""

MARK_SETTLED = "UPDATE traces SET settled_at_unix_nano = ? WHERE trace_id IN (SELECT value FROM json_each(?))"


def settle_traces(connection: apsw.Connection, window: SettleWindow, judge: Judge) -> list[SettledTrace]:
    """Settle up to ``window.limit`` quiet traces in one transaction.

    It holds the write lock from its start, so that another writer of the file (an in-process exporter
    beside the daemon) makes it wait rather than fail; a trace it settles is marked settled in the same
    transaction, so no writer settles it again.
    """
    now_ns = window.now_ns
    with write_transaction(connection):
        candidates = list(
            connection.execute(
                UNSETTLED,
                {
                    "quiet_since": now_ns - window.settle_after_ns,
                    "waited_since": now_ns - window.max_wait_ns,
                    "limit": window.limit,
                },
            )
        )
        if not candidates:
            return []
        ids = json.dumps([row[0] for row in candidates])
        ttft = dict(connection.execute(WORST_TTFT, (ids,))) if window.ttft else {}
        scores: dict[str, dict[str, float]] = {}
        if window.evaluation_names:
            names = json.dumps(window.evaluation_names)
            for trace_id, name, score in connection.execute(LOWEST_EVALUATIONS, (ids, names)):
                scores.setdefault(trace_id, {})[name] = score
        already_breached = set(connection.execute(PREVIOUS_BREACHES, (ids,)))
        settled = []
        rows: list[tuple[object, ...]] = []
        for trace_id, service, models, agents, duration_ns, cost, total_tokens, errors, llm_calls in candidates:
            trace = UnsettledTrace(
                trace_id=trace_id,
                service_name=service,
                models=tuple(json.loads(models)),
                agents=tuple(json.loads(agents)),
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
                (s.trace_id, s.service_name, s.metric, s.value, s.threshold, int(s.breached), s.rule, now_ns)
                for s in snapshots
            )
            newly = [s for s in snapshots if s.breached and (s.trace_id, s.metric) not in already_breached]
            settled.append(SettledTrace(trace, snapshots, newly))
        connection.executemany(UPSERT_SNAPSHOT, rows)
        connection.execute(MARK_SETTLED, (now_ns, ids))
        latency.add_traces(connection, latency.traces_by_id(ids))  # their durations are final
    return settled
