"""Per-trace rollups on PostgreSQL, recomputed from the spans under the trace's row lock.

The same rollups as SQLite's (``storage.sqlite.rollups``), with what several writers at once need: a batch locks
the rows of the traces it added spans to, in trace id order (so that two replicas never wait for each other
in a cycle), and only then reads the trace's spans. Under READ COMMITTED each statement sees what committed
before it began, so the last writer to take a trace's lock sees every span of it, its own and those of the
writers that held the lock before: the rollup is the sum of all the spans whatever the interleaving, and
which span counts a repeated model call (``collector.genai.calls``) is decided on all of them.

A span's key is its ids, as on SQLite, but the primary key of ``spans`` also holds the start time (the partition
key): a copy of a span sent with another start time gets past ``ON CONFLICT``. Under the trace's lock, a copy
this transaction stored is deleted again when another copy of the span is stored (committed before the lock was
taken, so first): whichever of two writers locks the trace last sees the other's copy and drops its own.

The rows are locked by one upsert in trace id order (``LOCK_TRACES``): a trace with no row yet gets an empty one,
filled when the rollups are recomputed; when another writer is inserting it too, the upsert waits for that
writer's commit and then locks the row it made.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

import psycopg

from collector.genai.calls import MAX_DEPTH
from collector.storage.postgres.dialect import POSTGRES
from collector.storage.sql import GENAI_CALLS, MODEL, call_trees, candidate_traces, repeated_calls

_ROLLUP_COLUMNS = (
    "trace_id, service_name, root_span_name, has_root, start_time_unix_nano, end_time_unix_nano, duration_ns, "
    "span_count, error_count, llm_calls, input_tokens, output_tokens, total_tokens, cache_read_tokens, "
    "cache_write_tokens, reasoning_tokens, cost_usd, models, agents, first_span_at_unix_nano, "
    "last_span_at_unix_nano, settled_at_unix_nano"
)
_ROLLUPS = f"""
SELECT
    trace_id,
    coalesce(max(service_name) FILTER (WHERE parent_span_id IS NULL), min(service_name)),
    max(name) FILTER (WHERE parent_span_id IS NULL),
    (count(*) FILTER (WHERE parent_span_id IS NULL) > 0)::integer,
    min(start_time_unix_nano),
    max(end_time_unix_nano),
    max(end_time_unix_nano) - min(start_time_unix_nano),
    count(*),
    count(*) FILTER (WHERE status_code = 'error'),
    count(*) FILTER (WHERE category = 'llm' AND duplicate_of IS NULL),
    coalesce(sum(input_tokens) FILTER (WHERE {GENAI_CALLS}), 0),
    coalesce(sum(output_tokens) FILTER (WHERE {GENAI_CALLS}), 0),
    coalesce(sum(total_tokens) FILTER (WHERE {GENAI_CALLS}), 0),
    coalesce(sum(cache_read_tokens) FILTER (WHERE {GENAI_CALLS}), 0),
    coalesce(sum(cache_write_tokens) FILTER (WHERE {GENAI_CALLS}), 0),
    coalesce(sum(reasoning_tokens) FILTER (WHERE {GENAI_CALLS}), 0),
    sum(cost_usd) FILTER (WHERE {GENAI_CALLS}),
    coalesce(jsonb_agg(DISTINCT {MODEL} ORDER BY {MODEL}) FILTER (WHERE {MODEL} IS NOT NULL), '[]'),
    coalesce(jsonb_agg(DISTINCT agent_name ORDER BY agent_name) FILTER (WHERE agent_name IS NOT NULL), '[]'),
    min(received_at_unix_nano),
    max(received_at_unix_nano),
    NULL::bigint
FROM spans
WHERE trace_id = ANY(%s)
GROUP BY trace_id
ORDER BY trace_id
"""
# The traces whose rows this transaction holds (LOCK_TRACES): recomputed in place.
UPDATE_ROLLUPS = f"""
INSERT INTO traces ({_ROLLUP_COLUMNS})
{_ROLLUPS}
ON CONFLICT (trace_id) DO UPDATE SET
    service_name = excluded.service_name,
    root_span_name = excluded.root_span_name,
    has_root = excluded.has_root,
    start_time_unix_nano = excluded.start_time_unix_nano,
    end_time_unix_nano = excluded.end_time_unix_nano,
    duration_ns = excluded.duration_ns,
    span_count = excluded.span_count,
    error_count = excluded.error_count,
    llm_calls = excluded.llm_calls,
    input_tokens = excluded.input_tokens,
    output_tokens = excluded.output_tokens,
    total_tokens = excluded.total_tokens,
    cache_read_tokens = excluded.cache_read_tokens,
    cache_write_tokens = excluded.cache_write_tokens,
    reasoning_tokens = excluded.reasoning_tokens,
    cost_usd = excluded.cost_usd,
    models = excluded.models,
    agents = excluded.agents,
    first_span_at_unix_nano = excluded.first_span_at_unix_nano,
    last_span_at_unix_nano = excluded.last_span_at_unix_nano,
    settled_at_unix_nano = NULL
"""
# Every trace's row locked in one statement, in trace id order: an existing row by the conflict (``DO UPDATE ...
# WHERE false`` locks the row and writes nothing), a missing one by inserting it empty, to be filled by
# UPDATE_ROLLUPS. Locking the existing rows first and inserting the missing ones after would take two replicas'
# locks in different orders (one finds a trace missing that the other finds stored) and deadlock them.
LOCK_TRACES = """
INSERT INTO traces (trace_id) SELECT trace_id FROM unnest(%s::text[]) AS pending(trace_id) ORDER BY trace_id
ON CONFLICT (trace_id) DO UPDATE SET trace_id = excluded.trace_id WHERE false
"""

CANDIDATE_TRACES = candidate_traces(POSTGRES)
CALL_TREES = call_trees(POSTGRES)
# The spans of these traces stored more than once, by ids (with other start times).
_STORED_TWICE = """
SELECT trace_id, span_id FROM spans WHERE trace_id = ANY(%s) GROUP BY trace_id, span_id HAVING count(*) > 1
"""
_DELETE_COPIES = """
DELETE FROM spans USING unnest(%s::text[], %s::text[], %s::bigint[]) AS copy(trace_id, span_id, start)
WHERE spans.trace_id = copy.trace_id AND spans.span_id = copy.span_id AND spans.start_time_unix_nano = copy.start
"""
_SET_DUPLICATE_OF = """
UPDATE spans SET duplicate_of = change.duplicate_of
FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::text[]) AS change(trace_id, span_id, start, duplicate_of)
WHERE spans.trace_id = change.trace_id AND spans.span_id = change.span_id
  AND spans.start_time_unix_nano = change.start
"""


def mark_repeated_calls(
    cursor: psycopg.Cursor[Any], trace_ids: Collection[str], new: Collection[tuple[str, str]]
) -> frozenset[tuple[str, str]]:
    """Set ``duplicate_of`` on the spans of these (locked) traces that repeat another span's call; returns the
    (trace id, span id) of the ``new`` spans whose call another span counts. As ``storage.sqlite.rollups`` does."""
    params = {"traces": list(trace_ids), "max_depth": MAX_DEPTH}
    candidates = [row[0] for row in cursor.execute(CANDIDATE_TRACES, params)]
    if not candidates:
        return frozenset()
    trees = cursor.execute(CALL_TREES, {"traces": candidates})
    changes, already_counted = repeated_calls(trees, lambda trace_id, span_id, _: (trace_id, span_id) in new)
    if changes:
        cursor.execute(_SET_DUPLICATE_OF, [list(column) for column in zip(*sorted(changes), strict=True)])
    return already_counted


def drop_copies_stored_before(
    cursor: psycopg.Cursor[Any], trace_ids: list[str], new: dict[tuple[str, str], int]
) -> set[tuple[str, str]]:
    """Delete the ``new`` spans ((trace id, span id) -> start time) of these locked traces of which another copy,
    with another start time, was stored before; returns their (trace id, span id), removed from ``new``."""
    stored_before = {key for key in cursor.execute(_STORED_TWICE, (trace_ids,)) if key in new}
    if stored_before:
        copies = sorted((trace_id, span_id, new.pop((trace_id, span_id))) for trace_id, span_id in stored_before)
        cursor.execute(_DELETE_COPIES, [list(column) for column in zip(*copies, strict=True)])
    return stored_before


def roll_up(
    cursor: psycopg.Cursor[Any], trace_ids: Iterable[str], new: dict[tuple[str, str], int]
) -> tuple[frozenset[tuple[str, str]], set[tuple[str, str]]]:
    """Lock these traces, drop the ``new`` spans ((trace id, span id) -> start time) stored before with another
    start time, mark the traces' repeated calls and recompute their rollups, in the transaction that stored the
    ``new`` spans; returns what ``mark_repeated_calls`` does and the spans dropped."""
    pending = sorted(set(trace_ids))
    new = dict(new)
    cursor.execute(LOCK_TRACES, (pending,))
    stored_before = drop_copies_stored_before(cursor, pending, new)
    already_counted = mark_repeated_calls(cursor, pending, new)
    cursor.execute(UPDATE_ROLLUPS, (pending,))
    return already_counted, stored_before
