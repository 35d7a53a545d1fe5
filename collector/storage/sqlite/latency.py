"""Latency histograms: the percentiles of ``/api/v1/stats/latency`` without sorting every stored duration.

``latency_histograms`` holds, per minute and per hour, one row per series (what is measured, service, model,
operation, agent): its count and its bins as a JSONB object ``{"<bin>": count}``. With the spans a writer has
counted in memory and not yet flushed (``latency_pending``: see ``Pending`` below), it is kept equal to what is
stored, in the transactions that change what is stored:

- the writer counts the spans a batch stored and adds them about once a second (``Pending``);
  ``mark_repeated_calls`` takes a span out and puts it back when its ``duplicate_of`` changes, so LLM calls and
  time to first chunk count each call once, as the cost figures do;
- a trace is added when it settles (its duration is final), and taken out when a late span unsettles it;
- retention takes out the spans and traces it deletes.

The bins are ``storage/latency_bins.py``'s (DDSketch's logarithmic mapping, within 1% of every value), which
PostgreSQL's reader counts at read time. A percentile is the nearest rank of the merged bins.
"""

from __future__ import annotations

import contextlib
import json
import math
import secrets
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple, cast

import apsw
import orjson

from collector.model import CALL_CATEGORIES, Span
from collector.storage.latency_bins import bin_of, bin_sql
from collector.storage.sql import genai_calls
from collector.storage.sqlite.connection import write_transaction

# Changing the bin mapping (``storage/latency_bins.py``) or these needs a migration that rebuilds
# ``latency_histograms``.
RESOLUTIONS_NS = (60 * 10**9, 3600 * 10**9)  # a minute, an hour


# --- what is measured, and which rows count ---------------------------------------------------------
# Of a spans row ``{r}``: (value in milliseconds, condition). LLM calls and time to first chunk count each model
# call once; the conditions are written so that the partial index spans_genai_calls serves them.
_MODEL_CALL = genai_calls("{r}.")
SPAN_MEASURES: dict[str, tuple[str, str]] = {
    "span": ("{r}.duration_ns / 1e6", "true"),
    "llm": ("{r}.duration_ns / 1e6", _MODEL_CALL + " AND {r}.category = 'llm'"),
    "ttft": ("{r}.ttft_ms", _MODEL_CALL + " AND {r}.ttft_ms IS NOT NULL"),
}
TRACE_MEASURE = (
    "{r}.duration_ns / 1e6",
    "{r}.settled_at_unix_nano IS NOT NULL AND {r}.start_time_unix_nano IS NOT NULL",
)
# A trace series has a NULL model (agent) for "whatever its models (agents)", and ``with_model`` for "of the traces
# that have this model": every filter and grouping of traces reads series that count each trace once where
# reading the traces would (a trace with two models is in both models' groups).
_WITH_ANY = "json_each(json_insert({array}, '$[#]', NULL))"


def _key(of: str, service: str, model: str, operation: str, agent: str, with_model: str = "NULL") -> str:
    return f"json_array({of}, {service}, {model}, {operation}, {agent}, {with_model})"


def _span_observations(where: str) -> str:
    """(series key, bin, time) of what the spans ``s`` matching ``where`` add."""
    model = "coalesce(s.response_model, s.request_model)"
    return " UNION ALL ".join(
        f"SELECT {_key(repr(of), 's.service_name', model, 's.operation', 's.agent_name')}"
        f" AS key, {bin_sql(value.format(r='s'))} AS bin, s.start_time_unix_nano AS time "
        f"FROM spans s WHERE ({where}) AND {condition.format(r='s')}"
        for of, (value, condition) in SPAN_MEASURES.items()
    )


def _span_series(where: str) -> str:
    """The series keys the spans ``s`` matching ``where`` add to, each once: what ``_ADD_SERIES`` needs of them,
    without the bins (a ``UNION`` of the keys alone costs the writer less than the distinct keys of every
    observation)."""
    model = "coalesce(s.response_model, s.request_model)"
    return " UNION ".join(
        f"SELECT {_key(repr(of), 's.service_name', model, 's.operation', 's.agent_name')} AS key "
        f"FROM spans s WHERE ({where}) AND {condition.format(r='s')}"
        for of, (_, condition) in SPAN_MEASURES.items()
    )


def _trace_observations(where: str) -> str:
    """(series key, bin, time) of what the traces ``t`` matching ``where`` add: one entry per model and agent a trace
    has and for any of them (model, agent, or both NULL), and one per pair of its models (a model ``with_model`` the
    trace has, grouped by each of its models, the other included)."""
    value, condition = TRACE_MEASURE
    observed = f"{bin_sql(value.format(r='t'))} AS bin, t.start_time_unix_nano AS time"
    counted = f"({where}) AND {condition.format(r='t')}"
    return (
        f"SELECT {_key(repr('trace'), 't.service_name', 'm.value', 'NULL', 'a.value')} AS key, {observed} "
        f"FROM traces t, {_WITH_ANY.format(array='t.models')} m, {_WITH_ANY.format(array='t.agents')} a "
        f"WHERE {counted} "
        f"UNION ALL SELECT {_key(repr('trace'), 't.service_name', 'm.value', 'NULL', 'NULL', 'w.value')} AS key, "
        f"{observed} FROM traces t, json_each(t.models) m, json_each(t.models) w WHERE {counted}"
    )


# The series of ``{keys}`` (distinct series keys) that are not stored yet.
_ADD_KEYS = """INSERT INTO latency_series (key, of, service_name, model, operation, agent_name, with_model)
SELECT key, key ->> 0, key ->> 1, key ->> 2, key ->> 3, key ->> 4, key ->> 5
FROM ({keys}) o
WHERE NOT EXISTS (SELECT 1 FROM latency_series WHERE latency_series.key = o.key)"""
_ADD_SERIES = _ADD_KEYS.replace("{keys}", "SELECT DISTINCT key FROM ({observations})")

# ``bins`` gains ``excluded.bins`` bin by bin; a bin whose count falls to 0 is removed (a JSON merge patch removes
# the keys it sets to null). ``sign`` is 1 or -1. Every row changed gets the clock's next tick (see ``_TICK``).
_MERGE = """
ON CONFLICT (resolution_s, start_unix_nano, series_id) DO UPDATE SET count = count + excluded.count,
changed = excluded.changed, bins = jsonb_patch(bins, (
    SELECT json_group_object(d.key, nullif(d.value + coalesce(bins ->> ('$."' || d.key || '"'), 0), 0))
    FROM json_each(excluded.bins) d
))"""
_CHANGE_HISTOGRAMS = (
    """INSERT INTO latency_histograms (resolution_s, start_unix_nano, series_id, count, bins, changed)
SELECT resolution_ns / 1000000000, period, series_id, sum(n), jsonb_group_object(CAST(bin AS TEXT), n),
       (SELECT tick + 1 FROM latency_clock) FROM (
    SELECT r.value AS resolution_ns, o.time / r.value * r.value AS period, s.id AS series_id, o.bin,
           {sign} * count(*) AS n
    FROM ({observations}) o JOIN latency_series s ON s.key = o.key, {resolutions} r
    GROUP BY 1, 2, 3, 4
) WHERE true GROUP BY 1, 2, 3"""
    + _MERGE
)

_DROP_EMPTY = """DELETE FROM latency_histograms WHERE count = 0
AND (resolution_s, start_unix_nano, series_id) IN (SELECT value ->> 0, value ->> 1, value ->> 2 FROM json_each(?))"""


# The rows a change touches get the clock's next tick, and the clock moves to it: larger than any before, whatever
# the wall clock does. A reader that keeps what it computed from some histograms knows them unchanged while their
# number and their largest tick are. (Moved only after a change: a batch that changes none writes no clock page.)
_TICK = "UPDATE latency_clock SET tick = tick + 1"


# The resolutions as the writer's statements read them: a constant row each, cheaper than ``json_each`` parsing
# the array again for every observation (what migration 7 shipped with, and keeps: ``_SHIPPED_RESOLUTIONS``).
_RESOLUTIONS = "(" + " UNION ALL ".join(f"SELECT {ns} AS value" for ns in RESOLUTIONS_NS) + ")"
_SHIPPED_RESOLUTIONS = f"json_each('{json.dumps(RESOLUTIONS_NS)}')"


def _change_sql(observations: str, sign: int, resolutions: str = _RESOLUTIONS) -> str:
    return _CHANGE_HISTOGRAMS.format(observations=observations, sign=sign, resolutions=resolutions)


class Rows(NamedTuple):
    """Stored rows to add or take out: a condition on spans ``s`` (or traces ``t``) with its named parameters."""

    where: str
    params: dict[str, Any]


def spans_inserted_after(rowid: int | None) -> Rows:
    """The spans a statement inserted, given the largest rowid before it (a new row gets a larger one)."""
    return Rows("s.rowid > :after_rowid", {"after_rowid": rowid or 0})


def spans_by_key(keys: Iterable[tuple[str, str]]) -> Rows:
    return Rows(
        "(s.trace_id, s.span_id) IN (SELECT value ->> 0, value ->> 1 FROM json_each(:keys))",
        {"keys": json.dumps(list(keys))},
    )


def spans_of_traces(trace_ids: str) -> Rows:
    """The spans of the traces whose ids are the JSON array ``trace_ids``."""
    return Rows("s.trace_id IN (SELECT value FROM json_each(:trace_ids))", {"trace_ids": trace_ids})


def traces_by_id(trace_ids: str) -> Rows:
    """The traces whose ids are the JSON array ``trace_ids`` (those settled are the ones counted)."""
    return Rows("t.trace_id IN (SELECT value FROM json_each(:trace_ids))", {"trace_ids": trace_ids})


def _add(connection: apsw.Connection, observations: str, params: dict[str, Any], series: str | None = None) -> None:
    """Add ``observations``; ``series``, when given, are their distinct keys (``_span_series``)."""
    connection.execute(_ADD_KEYS.format(keys=series or f"SELECT DISTINCT key FROM ({observations})"), params)
    connection.execute(_change_sql(observations, 1), params)
    if connection.changes():
        connection.execute(_TICK)


def _remove(connection: apsw.Connection, observations: str, params: dict[str, Any]) -> None:
    returning = " RETURNING resolution_s, start_unix_nano, series_id, count"
    changed = connection.execute(_change_sql(observations, -1) + returning, params).fetchall()
    if changed:
        connection.execute(_TICK)
    empty = [row[:3] for row in changed if not row[3]]
    if empty:
        connection.execute(_DROP_EMPTY, (json.dumps(empty),))


def add_spans(connection: apsw.Connection, spans: Rows) -> None:
    _add(connection, _span_observations(spans.where), spans.params, _span_series(spans.where))


def remove_spans(connection: apsw.Connection, spans: Rows) -> None:
    _remove(connection, _span_observations(spans.where), spans.params)


def add_traces(connection: apsw.Connection, traces: Rows) -> None:
    """Add what ``traces`` observe (``_trace_observations``): a row per trace read with its bin, the traces of the
    same service, models, agents and minute counted together, each such group expanded to its series once, and
    each histogram row written once (``add_minutes``). What SQL would add, for less of the writer's CPU per
    settled trace (docs/performance.md)."""
    add_minutes(connection, trace_minutes(observe_traces(connection, traces).values()))


# A trace as the histograms count it: service, models and agents (JSON arrays), minute, bin (``_TRACES_OBSERVED``).
TraceObserved = tuple[Any, ...]
# Counted bins by (of, service, model, operation, agent, with_model, minute): what ``add_minutes`` adds.
Minutes = dict[tuple[Any, ...], dict[int, int]]


def observe_traces(connection: apsw.Connection, traces: Rows, *, due: bool = False) -> dict[str, TraceObserved]:
    """What each of ``traces`` observes, by trace id: of those settled, or with ``due`` of those about to settle
    (read a batch before they are marked: ``storage.sqlite.settle``)."""
    query = _TRACES_OBSERVED.format(where=traces.where, counted=_DUE_TRACE if due else _COUNTED_TRACE)
    return {trace_id: observed for trace_id, *observed in connection.execute(query, traces.params)}


def trace_minutes(observed: Iterable[TraceObserved]) -> Minutes:
    """The bins ``observed`` traces add (pure): the traces of the same service, models, agents and minute counted
    together, each such group expanded to its series once."""
    groups: dict[tuple[Any, ...], dict[int, int]] = {}
    for service, models, agents, minute, index in observed:
        bins = groups.setdefault((service, models, agents, minute), {})
        bins[index] = bins.get(index, 0) + 1
    minutes: Minutes = {}
    for (service, models_json, agents_json, minute), bins in groups.items():
        models, agents = _names(models_json), _names(agents_json)
        series = [("trace", service, model, None, agent, None, minute) for model in models for agent in agents]
        named = models[:-1]
        series += [("trace", service, model, None, None, other, minute) for model in named for other in named]
        for key in series:
            found = minutes.get(key)
            if found is None:
                minutes[key] = bins.copy()
            else:
                for index, count in bins.items():
                    found[index] = found.get(index, 0) + count
    return minutes


def _names(stored: str) -> list[Any]:
    """A trace's models or agents (a JSON array SQLite built from stored text, which holds no lone surrogate for
    orjson to refuse) and NULL after them: what ``_WITH_ANY`` reads."""
    names: list[Any] = orjson.loads(stored)
    names.append(None)
    return names


def remove_traces(connection: apsw.Connection, traces: Rows) -> None:
    _remove(connection, _trace_observations(traces.where), traces.params)


def rebuild(connection: apsw.Connection) -> None:
    """The histograms of everything stored but the pending spans, from scratch (for rows written without the
    writer: the benchmark's prefill, and the tests that check the kept histograms against it)."""
    connection.execute("DELETE FROM latency_histograms")
    add_spans(connection, Rows(f"NOT {_pending()}", {}))
    _add(connection, _trace_observations("true"), {})


# --- pending spans: stored, counted in a writer's memory, not yet in the histograms --------------------------
# A writer adds the spans it stores to counts in memory and writes those into ``latency_histograms`` once a
# second or so (``Pending.flush``), instead of an upsert per batch: over a second the same (series, minute, bin)
# cells come back hundreds of times. Until then the spans' rowids are listed in ``latency_pending``, committed
# with them, so that at any commit
#
#     latency_histograms + what the spans in latency_pending's ranges observe = what everything stored observes
#
# (traces are never pending: settling and unsettling change the histograms in their own transactions). The
# readers add the pending spans, binned from the rows (``percentiles.read_latency``); a range whose writer is
# gone (killed) is taken over, its spans binned from the rows as before, by the next writer to open the file
# (``take_over``); and a change to a pending span by anyone else (another writer of the file marking a repeated
# call, retention deleting it) takes its range over first. A writer whose range was taken over finds it gone
# when it flushes, and bins its remaining ranges from the rows instead of trusting its counts.


def _pending(writer: int | None = None) -> str:
    """The condition on a spans row ``s`` that its rowid is in a pending range (of ``writer``, when given)."""
    mine = "" if writer is None else f" AND p.writer = {writer}"
    return f"EXISTS (SELECT 1 FROM latency_pending p WHERE p.first_rowid <= s.rowid AND p.last_rowid >= s.rowid{mine})"


# The spans ``s`` of the pending ranges, as a FROM clause: a rowid range scan per range. ``CROSS JOIN`` keeps the
# ranges outside and ``NOT INDEXED`` (which leaves the rowid) keeps the planner from the plan it otherwise picks
# for a reader's filters: an automatic index on ``spans``' category, built from every row for every query.
PENDING_SPANS = "latency_pending p CROSS JOIN spans s NOT INDEXED ON s.rowid BETWEEN p.first_rowid AND p.last_rowid"

PENDING_TABLE = """
CREATE TABLE latency_pending (
    first_rowid INTEGER PRIMARY KEY,  -- the spans of rowid first_rowid..last_rowid are not in latency_histograms
    last_rowid INTEGER NOT NULL,
    writer INTEGER NOT NULL  -- the writer that counts them in memory (a random number per SpanWriter)
)"""

_MINUTE_NS, _HOUR_NS = RESOLUTIONS_NS
# What the spans ``s`` matching ``{where}`` observe, a row per span in one scan: (service, model, operation, agent,
# minute as the histograms truncate it, then the bin of each measure of ``SPAN_MEASURES``, NULL where the span is
# not counted). A second of spans repeats these rows far more than it repeats histogram cells: counted as they are.
_OBSERVED = (
    "SELECT s.service_name, coalesce(s.response_model, s.request_model), s.operation, s.agent_name, "
    f"s.start_time_unix_nano / {_MINUTE_NS} * {_MINUTE_NS}, "
    + ", ".join(
        f"CASE WHEN {condition.format(r='s')} THEN {bin_sql(value.format(r='s'))} END"
        for value, condition in SPAN_MEASURES.values()
    )
    + " FROM spans s WHERE {where}"
)
ANY_PENDING = "SELECT 1 FROM latency_pending LIMIT 1"
_ADD_PENDING = "INSERT INTO latency_pending (first_rowid, last_rowid, writer) VALUES (?, ?, ?)"
_EXTEND_PENDING = "UPDATE latency_pending SET last_rowid = ? WHERE first_rowid = ? AND writer = ?"
_TAKE_PENDING = "DELETE FROM latency_pending WHERE writer = ? RETURNING first_rowid, last_rowid"
# The series of a flush's or a settling's histogram rows, from ``[[of, service, model, operation, agent, with_model],
# ...]``: stored if new, then their ids by index in that document.
_SERIES_KEY = _key(*(f"h.value ->> {index}" for index in range(6)))
_ADD_COUNTED_SERIES = _ADD_KEYS.format(keys=f"SELECT DISTINCT {_SERIES_KEY} AS key FROM json_each(:series) h")
_COUNTED_SERIES_IDS = f"SELECT h.key, s.id FROM json_each(:series) h JOIN latency_series s ON s.key = {_SERIES_KEY}"
# A histogram row of a flush or a settling: (resolution_s, start, series id, count, bins as JSON ``{"<bin>": count}``),
# bound row by row (``executemany``): read out of one JSON document of all the rows and joined to their series by
# key, they cost the writer nearly as much as the merge itself (docs/performance.md).
_ADD_COUNTED = (
    """INSERT INTO latency_histograms (resolution_s, start_unix_nano, series_id, count, bins, changed)
VALUES (?, ?, ?, ?, jsonb(?), (SELECT tick + 1 FROM latency_clock))"""
    + _MERGE
)

Observed = tuple[Any, ...]  # a row of ``_OBSERVED``


def _truncated(unix_ns: int, unit_ns: int) -> int:
    """``unix_ns / unit * unit`` as SQL computes it on integers: the division truncates toward zero."""
    return unix_ns // unit_ns * unit_ns if unix_ns >= 0 else -(-unix_ns // unit_ns * unit_ns)


def span_observed(span: Span) -> Observed | None:
    """The row ``_OBSERVED`` reads of ``span`` once ``rows.span_rows`` has stored it (its ``duplicate_of`` NULL, as
    a new row's is), computed from the span: ``rows.span_rows`` counts a request's spans where it encodes their
    rows, and the writer adds these counts instead of reading a batch's rows back (``Pending.add``). None for a
    time to first chunk SQLite would store otherwise (not finite: decoding lets none through)."""
    start = span.start_time_unix_nano
    minute = _truncated(start, _MINUTE_NS)
    duration = bin_of((span.end_time_unix_nano - start) / 1e6)  # the row's duration_ns
    genai = span.genai
    if genai is None:
        return (span.service_name, None, None, None, minute, duration, None, None)
    category, ttft_ms = genai.category, genai.ttft_ms
    ttft = None
    if ttft_ms is not None and category in CALL_CATEGORIES:
        if not math.isfinite(ttft_ms):
            return None
        ttft = bin_of(ttft_ms)
    model = genai.request_model if genai.response_model is None else genai.response_model
    return (
        span.service_name,
        model,
        genai.operation,
        genai.agent_name,
        minute,
        duration,
        duration if category == "llm" else None,
        ttft,
    )


# What the traces ``t`` matching ``{where}`` observe, a row per trace counted (``TRACE_MEASURE``, or ``{counted}``):
# its id, service, models and agents (JSON arrays), the minute as the histograms truncate it, the bin of its duration.
_TRACES_OBSERVED = (
    f"SELECT t.trace_id, t.service_name, t.models, t.agents, t.start_time_unix_nano / {_MINUTE_NS} * {_MINUTE_NS}, "
    f"{bin_sql(TRACE_MEASURE[0].format(r='t'))} FROM traces t WHERE ({{where}}) AND {{counted}}"
)
_COUNTED_TRACE = TRACE_MEASURE[1].format(r="t")
_DUE_TRACE = "t.start_time_unix_nano IS NOT NULL"  # TRACE_MEASURE's condition but the mark of settling


def _add_range(connection: apsw.Connection, first: int, last: int) -> None:
    _add(connection, _span_observations("s.rowid BETWEEN :first AND :last"), {"first": first, "last": last})


def take_over(connection: apsw.Connection, spans: Rows | None = None) -> None:
    """Add to the histograms, binned from the rows, the pending ranges that hold any of ``spans`` (all of them
    when None), and end those ranges: before a change to pending spans that their writer's counts would miss."""
    if spans is None:
        found = connection.execute("SELECT first_rowid, last_rowid FROM latency_pending")
    else:
        found = connection.execute(
            "SELECT DISTINCT p.first_rowid, p.last_rowid FROM spans s JOIN latency_pending p "
            f"ON p.first_rowid <= s.rowid AND p.last_rowid >= s.rowid WHERE {spans.where}",
            spans.params,
        )
    for first, last in cast("list[tuple[int, int]]", found.fetchall()):
        _add_range(connection, first, last)
        connection.execute("DELETE FROM latency_pending WHERE first_rowid = ?", (first,))


def not_pending(spans: Rows) -> Rows:
    return Rows(f"({spans.where}) AND NOT {_pending()}", spans.params)


class Pending:
    """One writer's pending spans: their counts by (series, minute, bin) and their rowid ranges, as committed,
    and what the open transaction adds to them (kept only if it commits: ``transaction``)."""

    def __init__(self) -> None:
        self.writer = secrets.randbits(62)
        self._counts: Counter[Observed] = Counter()
        self._ranges: dict[int, int] = {}  # first rowid -> last
        self._added = 0  # ranges added: more than ``_ranges`` holds when a range took the first rowid of one gone
        self._open_counts: Counter[Observed]
        self._open_ranges: dict[int, int]
        self._open_added: int
        self._flushed: bool  # by the open transaction
        self._close_transaction()

    def _close_transaction(self) -> None:
        self._open_counts, self._open_ranges, self._open_added, self._flushed = Counter(), {}, 0, False

    def __bool__(self) -> bool:
        return bool(self._ranges or self._open_ranges)

    @contextlib.contextmanager
    def transaction(self, connection: apsw.Connection) -> Iterator[None]:
        """``write_transaction``, after whose commit what it added to the pending spans counts."""
        try:
            with write_transaction(connection):
                yield
        except BaseException:
            self._close_transaction()
            raise
        if self._flushed:
            self._counts, self._ranges, self._added = Counter(), {}, 0
        else:
            self._counts.update(self._open_counts)
            self._ranges.update(self._open_ranges)
            self._added += self._open_added
        self._close_transaction()

    def add(
        self, connection: apsw.Connection, after_rowid: int | None, observed: Iterable[Observed] | None = None
    ) -> None:
        """Count the spans the open transaction inserted (the rowids after ``after_rowid``) as pending: ``observed``,
        what those rows observe (``span_observed`` of each) when the caller knows it, else read from the rows."""
        first = (after_rowid or 0) + 1
        ((last,),) = connection.execute("SELECT max(rowid) FROM spans")
        if last is None or last < first:
            return
        if observed is None:
            observed = connection.execute(
                _OBSERVED.format(where="s.rowid BETWEEN :first AND :last"), {"first": first, "last": last}
            )
        self._open_counts.update(observed)
        ranges = {**self._ranges, **self._open_ranges}
        previous = max(ranges, default=None)
        if previous is not None and ranges[previous] == first - 1:  # one range while no other writer comes between
            connection.execute(_EXTEND_PENDING, (last, previous, self.writer))
            if connection.changes():
                self._open_ranges[previous] = last
                return
        connection.execute(_ADD_PENDING, (first, last, self.writer))
        self._open_ranges[first] = last
        self._open_added += 1

    def change(self, connection: apsw.Connection, spans: Rows, change: Callable[[], object]) -> None:
        """Make ``change`` to ``spans`` (stored rows) with the histograms and pending counts following: counted
        as they were, then as they are."""
        take_over(connection, Rows(f"({spans.where}) AND NOT {_pending(self.writer)}", spans.params))
        mine = Rows(f"({spans.where}) AND {_pending(self.writer)}", spans.params)
        stored = not_pending(spans)
        self._count(connection, mine, -1)
        remove_spans(connection, stored)
        change()
        self._count(connection, mine, 1)
        add_spans(connection, stored)

    def _count(self, connection: apsw.Connection, spans: Rows, sign: int) -> None:
        for observed in connection.execute(_OBSERVED.format(where=spans.where), spans.params):
            self._open_counts[observed] += sign

    def flush(self, connection: apsw.Connection) -> None:
        """In a ``transaction``: write the pending counts into the histograms and end the pending ranges."""
        owned = cast("list[tuple[int, int]]", connection.execute(_TAKE_PENDING, (self.writer,)).fetchall())
        ranges = {**self._ranges, **self._open_ranges}
        if len(owned) != self._added + self._open_added or dict(owned) != ranges:  # some taken over: bin the rest
            for first, last in owned:
                _add_range(connection, first, last)
        else:
            counts = self._counts.copy()
            counts.update(self._open_counts)
            _add_counts(connection, counts)
        self._flushed = True


def _add_counts(connection: apsw.Connection, counts: Counter[Observed]) -> None:
    """Add counted observations to the histograms: each histogram row once, with all its bins."""
    minutes: dict[tuple[Any, ...], dict[int, int]] = {}  # (of, service, model, operation, agent, minute) -> bins
    for (service, model, operation, agent, minute, *indexes), count in counts.items():
        if count:
            for of, index in zip(SPAN_MEASURES, indexes, strict=True):
                if index is not None:
                    bins = minutes.setdefault((of, service, model, operation, agent, None, minute), {})
                    bins[index] = bins.get(index, 0) + count
    add_minutes(connection, minutes)


def add_minutes(connection: apsw.Connection, minutes: dict[tuple[Any, ...], dict[int, int]]) -> None:
    """Add counted bins by (of, service, model, operation, agent, with_model, minute) to the minute histograms and
    to the hour histograms, each histogram row once."""
    if not minutes:
        return
    hours: dict[tuple[Any, ...], dict[int, int]] = {}
    for (*series, minute), bins in minutes.items():
        hour = _truncated(minute, _HOUR_NS)
        merged = hours.get((*series, hour))
        if merged is None:
            hours[(*series, hour)] = dict(bins)
        else:
            for index, count in bins.items():
                merged[index] = merged.get(index, 0) + count
    series = list({key[:-1] for key in minutes})
    distinct = {"series": orjson.dumps(series).decode()}
    found = connection.execute(_COUNTED_SERIES_IDS, distinct).fetchall()
    if len(found) < len(series):  # some are new (a statement fewer when none is, as once the series are known)
        connection.execute(_ADD_COUNTED_SERIES, distinct)
        found = connection.execute(_COUNTED_SERIES_IDS, distinct).fetchall()
    ids = {series[index]: series_id for index, series_id in cast("list[tuple[int, int]]", found)}
    connection.executemany(
        _ADD_COUNTED,
        [
            (resolution_s, key[-1], ids[key[:-1]], sum(bins.values()), _bins_json(bins))
            for resolution_s, histograms in ((60, minutes), (3600, hours))
            for key, bins in histograms.items()
        ],
    )
    connection.execute(_TICK)


def _bins_json(bins: dict[int, int]) -> str:
    """``{"<bin>": count}``, as text: ``jsonb(?)`` reads a BLOB as JSONB already."""
    return orjson.dumps(bins, option=orjson.OPT_NON_STR_KEYS).decode()


_TABLES = """
CREATE TABLE latency_series (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,  -- json_array(of, service_name, model, operation, agent_name, with_model)
    of TEXT NOT NULL,  -- span, llm, ttft or trace
    service_name TEXT,
    model TEXT,
    operation TEXT,
    agent_name TEXT,
    with_model TEXT  -- of trace series: the model every trace of it has (NULL: no such condition)
);
CREATE TABLE latency_histograms (
    resolution_s INTEGER NOT NULL,  -- 60 or 3600
    start_unix_nano INTEGER NOT NULL,
    series_id INTEGER NOT NULL REFERENCES latency_series (id),
    count INTEGER NOT NULL,
    bins BLOB NOT NULL,  -- JSONB {"<bin>": count}: collector/storage/sqlite/latency.py
    changed INTEGER NOT NULL,  -- the latency_clock tick of its last change
    PRIMARY KEY (resolution_s, start_unix_nano, series_id)
) WITHOUT ROWID;
CREATE TABLE latency_clock (tick INTEGER NOT NULL);
INSERT INTO latency_clock VALUES (0);
"""


# Migration 7: the tables, and the histograms of what is stored already. Shipped: never edit the text this makes
# (nor the mapping and measures above it depends on); change them with a new migration that rebuilds the table.
MIGRATION = ";\n".join(
    [
        _TABLES,
        _ADD_SERIES.format(observations=_span_observations("true")),
        _change_sql(_span_observations("true"), 1, _SHIPPED_RESOLUTIONS),
        _ADD_SERIES.format(observations=_trace_observations("true")),
        _change_sql(_trace_observations("true"), 1, _SHIPPED_RESOLUTIONS),
    ]
)
