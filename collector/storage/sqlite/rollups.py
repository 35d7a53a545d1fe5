"""Per-trace rollups, recomputed from the spans table inside the transaction that stored the spans.

Recomputing (rather than adding deltas) makes a rollup right whatever the order, the split across
requests, or the duplicates its spans arrived with. A trace that gets a span after it settled is
marked unsettled again, so its snapshots are recomputed in place.

A model call described by two nested spans counts once (``collector.genai.calls``): ``mark_repeated_calls``
sets ``spans.duplicate_of`` from the stored spans first, and the sums leave those spans out.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from itertools import compress, repeat
from operator import eq
from typing import Any, NamedTuple

import apsw

from collector.genai.calls import MAX_DEPTH, NOT_GENAI
from collector.genai.normalize import GenAI
from collector.model import CALL_CATEGORIES
from collector.storage.sql import GENAI_CALLS, MODEL, call_trees, candidate_traces, repeated_calls
from collector.storage.sqlite import latency
from collector.storage.sqlite.dialect import SQLITE
from collector.storage.sqlite.rows import SPAN_COLUMNS, WIDTH, SpanRows

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


def roll_up(connection: apsw.Connection, trace_ids: Iterable[str], stored: Sequence[str] | None = None) -> None:
    """Recompute the rollups of these traces; call inside the transaction that stored their spans.

    A settled trace among them is unsettled: its duration leaves the latency histograms until it settles again.
    ``stored``, when given, are those of them that had spans before the batch (``NewRows.stored``): the others have
    no ``traces`` row yet (the row comes with a trace's first spans, and retention deletes both together)."""
    ids = json.dumps(sorted(set(trace_ids)))
    if stored is None or stored:
        latency.remove_traces(connection, latency.traces_by_id(ids if stored is None else json.dumps(stored)))
    connection.execute(ROLL_UP, (ids,))


CANDIDATE_TRACES = candidate_traces(SQLITE)
CALL_TREES = call_trees(SQLITE)
_SET_DUPLICATE_OF = "UPDATE spans SET duplicate_of = ? WHERE trace_id = ? AND span_id = ?"

# The traces of ``:traces`` (a ``list_value``) with a span stored before a batch whose rows come after ``:before``
# (reads the primary key's index alone).
TRACES_STORED_BEFORE = """SELECT value FROM json_each(:traces)
WHERE EXISTS (SELECT 1 FROM spans WHERE trace_id = value AND rowid <= :before)"""

_CALLS = frozenset(CALL_CATEGORIES)
_NOT_GENAI = frozenset((None, NOT_GENAI))  # a span the rule looks up through
_MISSING = object()  # a span not among the rows
_TRACE, _SPAN, _PARENT, _CATEGORY, _RESPONSE = map(
    SPAN_COLUMNS.index, ("trace_id", "span_id", "parent_span_id", "category", "response_id")
)


class NewRows(NamedTuple):
    """A batch's rows when every one of them was inserted (none was stored before, none twice), and the traces of
    the batch that had spans stored before it (``traces_stored_before``)."""

    requests: Sequence[SpanRows]
    stored: list[str]


def traces_stored_before(connection: apsw.Connection, trace_ids: Iterable[str], after_rowid: int | None) -> list[str]:
    """Those of ``trace_ids`` that had spans stored before the rows of rowid after ``after_rowid`` (a batch's)."""
    params = {"traces": SQLITE.list_value(sorted(set(trace_ids))), "before": after_rowid or 0}
    return [row[0] for row in connection.execute(TRACES_STORED_BEFORE, params)]


def candidates_among(requests: Sequence[SpanRows]) -> set[str]:
    """The traces ``CANDIDATE_TRACES`` finds when the spans of ``requests`` (each span once) are all of their
    spans: a model-call span whose nearest GenAI ancestor, up through spans that are not GenAI (``MAX_DEPTH``
    steps at the most), has its category, or two model-call spans with one response id. Read from the rows'
    values as the query would read them from the stored rows; the common case (no call, or a call whose parent
    is missing, a GenAI span or a call of its category) without a Python loop over the spans."""
    columns: list[list[Any]] = [[], [], [], [], []]
    for request in requests:
        values = request.values
        for column, index in zip(columns, (_TRACE, _SPAN, _PARENT, _CATEGORY, _RESPONSE), strict=True):
            column += values[index::WIDTH]
    trace_ids, span_ids, parents, categories, response_ids = columns
    is_call = list(map(_CALLS.__contains__, categories))
    call_traces = list(compress(trace_ids, is_call))
    if not call_traces:
        return set()
    call_categories, call_parents = list(compress(categories, is_call)), list(compress(parents, is_call))
    answered = [pair for pair in zip(call_traces, compress(response_ids, is_call), strict=True) if pair[1] is not None]
    found = {trace_id for (trace_id, _), count in Counter(answered).items() if count > 1}
    keys = list(zip(trace_ids, span_ids, strict=True))
    category_of = dict(zip(keys, categories, strict=True))
    parent_categories = list(map(category_of.get, zip(call_traces, call_parents, strict=True), repeat(_MISSING)))
    found.update(compress(call_traces, map(eq, parent_categories, call_categories)))
    through = list(map(_NOT_GENAI.__contains__, parent_categories))  # a parent to look up through
    if any(through):
        parent_of = dict(zip(keys, parents, strict=True))
        for trace_id, category, parent in compress(
            zip(call_traces, call_categories, call_parents, strict=True), through
        ):
            key, depth = (trace_id, parent), 0
            while depth < MAX_DEPTH and (parent := parent_of[key]) is not None:
                key, depth = (trace_id, parent), depth + 1
                ancestor = category_of.get(key, _MISSING)
                if ancestor == category:
                    found.add(trace_id)
                if ancestor not in _NOT_GENAI:
                    break
    return found


def _candidates(connection: apsw.Connection, trace_ids: list[str], new: NewRows | None) -> list[str]:
    """The traces of ``trace_ids`` ``CANDIDATE_TRACES`` finds. Those that had no span before the batch, when all
    its rows were inserted (``new``), are found in its rows (``candidates_among``), without the query."""
    touched = SQLITE.list_value(trace_ids)
    found: set[str] = set()
    if new is not None:
        found = candidates_among(new.requests).difference(new.stored)
        if not new.stored:
            return sorted(found)
        touched = SQLITE.list_value(new.stored)
    found.update(row[0] for row in connection.execute(CANDIDATE_TRACES, {"traces": touched, "max_depth": MAX_DEPTH}))
    return sorted(found)


def mark_repeated_calls(
    connection: apsw.Connection,
    trace_ids: Iterable[str],
    received_at_unix_nano: int,
    pending: latency.Pending,
    new: NewRows | None = None,
) -> frozenset[tuple[str, str]]:
    """Set ``duplicate_of`` on the spans of these traces that repeat another span's call.

    Call inside the transaction that stored the batch (whose spans have ``received_at_unix_nano``; ``new``, its
    rows, when every one was inserted) and before ``roll_up``. Returns the (trace id, span id) of the batch's new
    spans whose call is counted by another span stored before or with them: the GenAI metrics leave them out.
    The latency histograms follow, or the writer's ``pending`` counts for the spans it has not flushed yet.
    """
    candidates = _candidates(connection, sorted(set(trace_ids)), new)
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
