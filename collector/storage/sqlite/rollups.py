"""Per-trace rollups, recomputed from the spans table inside the transaction that stored the spans.

Recomputing (rather than adding deltas) makes a rollup right whatever the order, the split across
requests, or the duplicates its spans arrived with. A trace that gets a span after it settled is
marked unsettled again, so its snapshots are recomputed in place.

A model call described by two nested spans counts once (``collector.genai.calls``): ``mark_repeated_calls``
sets ``spans.duplicate_of`` from the stored spans first, and the sums leave those spans out.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import apsw

from collector.genai.calls import MAX_DEPTH
from collector.genai.normalize import GenAI
from collector.storage.sql import GENAI_CALLS, MODEL, call_trees, candidate_traces, repeated_calls
from collector.storage.sqlite import latency
from collector.storage.sqlite.dialect import SQLITE

# Token and cost sums count LLM and embedding calls only: an agent or workflow span that carries the
# sum of its children (the Vercel AI SDK's outer spans do) must not count them twice.
_ROOT = "parent_span_id IS NULL"
TOKEN_COLUMNS = tuple(name for name in GenAI._fields if name.endswith("_tokens"))

# Each column of ``traces`` but its key, and how it is computed from the trace's spans; the token sums follow
# the token fields of the record (``GenAI``), as the ``spans`` columns do.
ROLLUP_COLUMNS: tuple[tuple[str, str], ...] = (
    ("service_name", f"coalesce(max(service_name) FILTER (WHERE {_ROOT}), min(service_name))"),
    ("root_span_name", f"max(name) FILTER (WHERE {_ROOT})"),
    ("has_root", f"count(*) FILTER (WHERE {_ROOT}) > 0"),
    ("start_time_unix_nano", "min(start_time_unix_nano)"),
    ("end_time_unix_nano", "max(end_time_unix_nano)"),
    ("duration_ns", "max(end_time_unix_nano) - min(start_time_unix_nano)"),
    ("span_count", "count(*)"),
    ("error_count", "count(*) FILTER (WHERE status_code = 'error')"),
    ("llm_calls", "count(*) FILTER (WHERE category = 'llm' AND duplicate_of IS NULL)"),
    *((name, f"coalesce(sum({name}) FILTER (WHERE {GENAI_CALLS}), 0)") for name in TOKEN_COLUMNS),
    ("cost_usd", f"sum(cost_usd) FILTER (WHERE {GENAI_CALLS})"),
    (
        "models",
        f"coalesce(json_group_array(DISTINCT {MODEL} ORDER BY {MODEL}) FILTER (WHERE {MODEL} IS NOT NULL), '[]')",
    ),
    (
        "agents",
        (
            "coalesce(json_group_array(DISTINCT agent_name ORDER BY agent_name) FILTER (WHERE agent_name IS NOT NULL), "
            "'[]')"
        ),
    ),
    ("first_span_at_unix_nano", "min(received_at_unix_nano)"),
    ("last_span_at_unix_nano", "max(received_at_unix_nano)"),
    ("settled_at_unix_nano", "NULL"),  # a trace that gets a span after it settled is settled again
)

_SEPARATOR = ",\n    "
ROLL_UP = f"""
INSERT INTO traces (trace_id, {", ".join(name for name, _ in ROLLUP_COLUMNS)})
SELECT
    trace_id,
    {_SEPARATOR.join(expression for _, expression in ROLLUP_COLUMNS)}
FROM spans
WHERE trace_id IN (SELECT value FROM json_each(?))
GROUP BY trace_id
ON CONFLICT (trace_id) DO UPDATE SET
    {_SEPARATOR.join(f"{name} = excluded.{name}" for name, _ in ROLLUP_COLUMNS)}
"""


def roll_up(connection: apsw.Connection, trace_ids: Iterable[str]) -> None:
    """Recompute the rollups of these traces; call inside the transaction that stored their spans.

    A settled trace among them is unsettled: its duration leaves the latency histograms until it settles again."""
    ids = json.dumps(sorted(set(trace_ids)))
    latency.remove_traces(connection, latency.traces_by_id(ids))
    connection.execute(ROLL_UP, (ids,))


CANDIDATE_TRACES = candidate_traces(SQLITE)
CALL_TREES = call_trees(SQLITE)
_SET_DUPLICATE_OF = "UPDATE spans SET duplicate_of = ? WHERE trace_id = ? AND span_id = ?"


def mark_repeated_calls(
    connection: apsw.Connection, trace_ids: Iterable[str], received_at_unix_nano: int, pending: latency.Pending
) -> frozenset[tuple[str, str]]:
    """Set ``duplicate_of`` on the spans of these traces that repeat another span's call.

    Call inside the transaction that stored the batch (whose spans have ``received_at_unix_nano``) and
    before ``roll_up``. Returns the (trace id, span id) of the batch's new spans whose call is counted
    by another span stored before or with them: the GenAI metrics leave them out. The latency histograms
    follow, or the writer's ``pending`` counts for the spans it has not flushed yet.
    """
    touched = SQLITE.list_value(sorted(set(trace_ids)))
    candidates = [row[0] for row in connection.execute(CANDIDATE_TRACES, {"traces": touched, "max_depth": MAX_DEPTH})]
    if not candidates:
        return frozenset()
    trees = connection.execute(CALL_TREES, {"traces": SQLITE.list_value(candidates)})
    changes, already_counted = repeated_calls(trees, lambda _, __, received_at: received_at == received_at_unix_nano)
    if changes:
        pending.change(
            connection,
            latency.spans_by_key((trace_id, span_id) for trace_id, span_id, _, _ in changes),
            lambda: connection.executemany(
                _SET_DUPLICATE_OF, [(repeats, trace_id, span_id) for trace_id, span_id, _, repeats in changes]
            ),
        )
    return already_counted
