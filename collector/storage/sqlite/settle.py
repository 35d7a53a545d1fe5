"""Settling traces: find the quiet ones, measure them, write their ``metric_snapshots`` rows.

A trace is settled once its root span has arrived and no span came for ``settle_after``, or once
``max_wait`` has passed since its first span without a root. Snapshots are upserted per
(trace, metric), so a trace that settles again after a late span is recomputed in place.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import NamedTuple

import apsw

from collector.config import EVAL_PREFIX, SnapshotRule
from collector.maintenance.snapshots import Snapshot, TraceFigures, evaluate, evaluation_names
from collector.storage.sqlite.connection import write_transaction

UNSETTLED = """
SELECT trace_id, service_name, models, agents, duration_ns, cost_usd, total_tokens, error_count, llm_calls
FROM traces
WHERE settled_at_unix_nano IS NULL
  AND ((has_root AND last_span_at_unix_nano <= :quiet_since) OR (NOT has_root AND first_span_at_unix_nano <= :waited_since))
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


class Settled(NamedTuple):
    figures: TraceFigures
    snapshots: list[Snapshot]
    newly_breached: list[Snapshot]  # breached now, and not already breached before this settling


def settle_traces(
    connection: apsw.Connection,
    rules: Sequence[SnapshotRule],
    *,
    now_ns: int,
    settle_after_ns: int,
    max_wait_ns: int,
    limit: int,
) -> list[Settled]:
    """Settle up to ``limit`` quiet traces in one transaction.

    It holds the write lock from its start, so that another writer of the file (an in-process exporter
    beside the daemon) makes it wait rather than fail; a trace it settles is marked settled in the same
    transaction, so no writer settles it again.
    """
    with write_transaction(connection):
        candidates = list(
            connection.execute(
                UNSETTLED,
                {"quiet_since": now_ns - settle_after_ns, "waited_since": now_ns - max_wait_ns, "limit": limit},
            )
        )
        if not candidates:
            return []
        ids = json.dumps([row[0] for row in candidates])
        ttft = dict(connection.execute(WORST_TTFT, (ids,))) if any(r.metric == "ttft_ms" for r in rules) else {}
        evaluations: dict[str, dict[str, float]] = {}
        names = evaluation_names(rules)
        if names:
            for trace_id, name, score in connection.execute(LOWEST_EVALUATIONS, (ids, json.dumps(names))):
                evaluations.setdefault(trace_id, {})[EVAL_PREFIX + name] = score
        already_breached = set(connection.execute(PREVIOUS_BREACHES, (ids,)))
        settled = []
        rows = []
        for trace_id, service, models, agents, duration_ns, cost, total_tokens, errors, llm_calls in candidates:
            figures = TraceFigures(
                trace_id=trace_id,
                service_name=service,
                models=tuple(json.loads(models)),
                agents=tuple(json.loads(agents)),
                duration_seconds=duration_ns / 1e9,
                values={
                    "latency_ms": duration_ns / 1e6,
                    "cost_usd": cost,
                    "total_tokens": total_tokens,
                    "error_count": errors,
                    "llm_calls": llm_calls,
                    "ttft_ms": ttft.get(trace_id),
                    **evaluations.get(trace_id, {}),
                },
            )
            snapshots = evaluate(figures, rules)
            rows.extend(
                (s.trace_id, s.service_name, s.metric, s.value, s.threshold, int(s.breached), s.rule, now_ns)
                for s in snapshots
            )
            newly = [s for s in snapshots if s.breached and (s.trace_id, s.metric) not in already_breached]
            settled.append(Settled(figures, snapshots, newly))
        connection.executemany(UPSERT_SNAPSHOT, rows)
        connection.execute(MARK_SETTLED, (now_ns, ids))
    return settled
