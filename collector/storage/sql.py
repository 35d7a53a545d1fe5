"""The SQL both engines read, settle and mark repeated calls with, written once and spelt for each by a ``Dialect``.

SQLite and PostgreSQL answer the same queries (``storage/read.py``) over tables of the same names and columns;
their SQL differs in a few spellings: a parameter (``:name`` or ``%(name)s``), a 0/1 flag, a value in a JSON
array of names, a value in a list of ids, an attribute equal to a value, and an integer sum (``numeric`` on
PostgreSQL unless cast). Statements here are written with SQLite's ``:name`` parameters; ``Dialect.statement``
spells them for its engine. Each engine keeps what is its alone: connections and row shapes, SQLite's
histogram percentiles and skeleton walk, PostgreSQL's row claims (the latency bins both count are
``storage/latency_bins.py``'s).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from collector.genai.calls import SpanNode, same_calls
from collector.model import CALL_CATEGORIES, EvaluationRecord
from collector.storage.read import (
    SKELETON_FIELDS,
    BreachQuery,
    CostGroup,
    EvaluationQuery,
    SpanSearch,
    StatsRange,
    TraceQuery,
)
from collector.storage.store import Judge, SettledTrace, SettleWindow, UnsettledTrace


class Dialect(ABC):
    """How one engine spells what the statements below need (``sqlite/dialect.py``, ``postgres/dialect.py``)."""

    null_text: str  # a NULL group column

    def statement(self, sql: str) -> str:
        """A statement written with ``:name`` parameters, as this engine takes it."""
        return sql

    @abstractmethod
    def flag(self, column: str, value: bool = True) -> str:
        """A 0/1 integer column (``breached``, ``has_root``) tested for ``value``."""

    @abstractmethod
    def contains(self, array: str, parameter: str) -> str:
        """The JSON array of names in column ``array`` holds the text ``parameter``."""

    @abstractmethod
    def in_list(self, column: str, parameter: str) -> str:
        """``column`` is one of the list ``parameter`` (bound to a ``list_value``)."""

    @abstractmethod
    def list_value(self, values: Iterable[Any]) -> Any:
        """A list of ids or names as ``in_list`` binds it."""

    @abstractmethod
    def names(self, stored: Any) -> list[str]:
        """A stored JSON array of names (``traces.models``, ``traces.agents``) as a list."""

    @abstractmethod
    def attribute_equals(self, column: str, index: int, key: str, value: Any) -> tuple[str, dict[str, Any]]:
        """The JSON object in ``column`` holds ``value`` at ``key`` (a key may hold dots): the condition and its
        parameters, named ``attr_key{index}`` and ``attr_value{index}``."""

    @abstractmethod
    def int_sum(self, expression: str) -> str:
        """The sum of an integer column, 0 over no rows, as an integer."""

    @abstractmethod
    def grouped(self, sql: str) -> str:
        """A statement of (bucket, grp, ...) rows grouped by both, ordered by group (NULL first) then time."""


# --- model calls -------------------------------------------------------------------------------------


def model_call(alias: str = "") -> str:
    """The SQL condition of a model call (``model.CALL_CATEGORIES``), of the spans aliased ``alias``."""
    categories = ", ".join(f"'{category}'" for category in CALL_CATEGORIES)
    return f"{alias}category IN ({categories})"


def genai_calls(alias: str = "") -> str:
    """The SQL condition of a model call counted once: what the token and cost figures sum. Written as the
    partial index ``spans_genai_calls`` is (on both engines), so that the stats can be answered from it."""
    return f"{model_call(alias)} AND {alias}duplicate_of IS NULL"


MODEL_CALL = model_call()
GENAI_CALLS = genai_calls()
MODEL = "coalesce(response_model, request_model)"

# The group column of span statistics (cost, span latency) by what they are grouped by.
_SPAN_GROUPS = {
    "service": "s.service_name",
    "model": "coalesce(s.response_model, s.request_model)",
    "operation": "s.operation",
    "agent": "s.agent_name",
    "provider": "s.provider",
    "user": "s.user_id",
}


def span_groups(dialect: Dialect) -> dict[str, str]:
    return {"none": dialect.null_text, **_SPAN_GROUPS}


class Where:
    """The conditions of one statement and the parameters they name."""

    def __init__(self, dialect: Dialect, **params: Any) -> None:
        self.dialect = dialect
        self.conditions: list[str] = []
        self.params: dict[str, Any] = params

    def add(self, condition: str, **params: Any) -> None:
        self.conditions.append(condition)
        self.params.update(params)

    def compare(self, column: str, name: str, value: Any, comparison: str = "=") -> None:
        """``column`` compared with ``value`` (a parameter named ``name``), unless ``value`` is None."""
        if value is not None:
            self.add(f"{column} {comparison} :{name}", **{name: value})

    def time_range(self, column: str, start_ns: int | None, end_ns: int | None) -> None:
        if start_ns is not None:
            self.add(f"{column} >= :start_ns", start_ns=start_ns)
        if end_ns is not None:
            self.add(f"{column} < :end_ns", end_ns=end_ns)

    def attributes(self, column: str, attributes: tuple[tuple[str, Any], ...], wrap: Callable[[str], str]) -> None:
        for index, (key, value) in enumerate(attributes):
            condition, params = self.dialect.attribute_equals(column, index, key, value)
            self.add(wrap(condition), **params)

    def __str__(self) -> str:
        return " AND ".join(self.conditions)


# --- trace list --------------------------------------------------------------------------------------

SORT_KEYS = {
    "start_time": "t.start_time_unix_nano",
    "duration": "t.duration_ns",
    "cost": "coalesce(t.cost_usd, -1.0)",
}


def _span_has(condition: str) -> str:
    return f"EXISTS (SELECT 1 FROM spans s WHERE s.trace_id = t.trace_id AND {condition})"


def trace_list_sql(dialect: Dialect, query: TraceQuery, columns: str) -> tuple[str, dict[str, Any]]:
    """A page of trace rows (``columns`` of ``traces t``, then the sort key) after the keyset position."""
    where = Where(dialect, limit=query.limit + 1)
    where.time_range("t.start_time_unix_nano", query.start_ns, query.end_ns)
    where.add("t.start_time_unix_nano IS NOT NULL")
    where.compare("t.service_name", "eq0", query.service)
    where.compare("t.root_span_name", "eq1", query.root_name)
    if query.status == "error":
        where.add("t.error_count > 0")
    elif query.status == "ok":
        where.add("t.error_count = 0")
    if query.model is not None:
        where.add(dialect.contains("t.models", ":model"), model=query.model)
    if query.agent is not None:
        where.add(dialect.contains("t.agents", ":agent"), agent=query.agent)
    for name in ("provider", "conversation_id", "user_id"):
        if getattr(query, name) is not None:
            where.add(_span_has(f"s.{name} = :{name}"), **{name: getattr(query, name)})
    where.attributes("s.attributes", query.attributes, _span_has)
    for name, column, comparison in (
        ("min_duration_ns", "t.duration_ns", ">="),
        ("max_duration_ns", "t.duration_ns", "<="),
        ("min_cost_usd", "t.cost_usd", ">="),
        ("max_cost_usd", "t.cost_usd", "<="),
    ):
        where.compare(column, name, getattr(query, name), comparison)
    breached = dialect.flag("m.breached")
    if query.breached_metric is not None:
        where.add(
            "EXISTS (SELECT 1 FROM metric_snapshots m WHERE m.trace_id = t.trace_id AND m.metric = :breached_metric "
            f"AND {breached})",
            breached_metric=query.breached_metric,
        )
    elif query.breached is not None:
        exists = f"EXISTS (SELECT 1 FROM metric_snapshots m WHERE m.trace_id = t.trace_id AND {breached})"
        where.add(exists if query.breached else "NOT " + exists)
    if query.evaluation_below is not None:
        condition = "e.trace_id = t.trace_id AND e.score < :evaluation_below"
        if query.evaluation is not None:
            condition += " AND e.name = :evaluation"
            where.params["evaluation"] = query.evaluation
        where.add(f"EXISTS (SELECT 1 FROM evaluations e WHERE {condition})", evaluation_below=query.evaluation_below)
    key = SORT_KEYS[query.sort]
    direction = "DESC" if query.order == "desc" else "ASC"
    if query.after is not None:
        # Written so that the index on the sort key bounds the scan: key <= k, then the tie on the id.
        before, strictly = ("<=", "<") if query.order == "desc" else (">=", ">")
        where.add(
            f"{key} {before} :after_key AND ({key} {strictly} :after_key OR t.trace_id {strictly} :after_id)",
            after_key=query.after[0],
            after_id=query.after[1],
        )
    sql = (
        f"SELECT {columns}, {key} AS sort_key FROM traces t WHERE {where} "
        f"ORDER BY {key} {direction}, t.trace_id {direction} LIMIT :limit"
    )
    return dialect.statement(sql), where.params


def traces_of(dialect: Dialect, columns: str) -> str:
    """``columns`` of ``traces t`` of the traces ``:ids`` (a ``list_value``)."""
    return dialect.statement(f"SELECT {columns} FROM traces t WHERE {dialect.in_list('t.trace_id', ':ids')}")


def breaches_of(dialect: Dialect) -> str:
    """The breaches of the traces ``:ids`` (a ``list_value``), for their summaries."""
    return dialect.statement(
        "SELECT trace_id, metric, rule, value, threshold FROM metric_snapshots "
        f"WHERE {dialect.flag('breached')} AND {dialect.in_list('trace_id', ':ids')} ORDER BY trace_id, metric"
    )


# --- spans -------------------------------------------------------------------------------------------


def search_where(dialect: Dialect, search: SpanSearch) -> Where:
    """The conditions of a span matching a Jaeger search."""
    where = Where(dialect, start_ns=search.start_ns, end_ns=search.end_ns)
    where.add("start_time_unix_nano >= :start_ns")
    where.add("start_time_unix_nano < :end_ns")
    for column, value in (("service_name", search.service), ("name", search.operation), ("kind", search.kind)):
        where.compare(column, column, value)
    if search.error is not None:
        where.add("status_code = 'error'" if search.error else "status_code <> 'error'")
    where.compare("duration_ns", "min_duration_ns", search.min_duration_ns, ">=")
    where.compare("duration_ns", "max_duration_ns", search.max_duration_ns, "<=")
    where.attributes("attributes", search.attributes, lambda condition: condition)
    return where


def span_events(dialect: Dialect) -> str:
    return dialect.statement(
        "SELECT name, time_unix_nano, source, body, attributes, severity_text FROM events "
        "WHERE trace_id = :trace_id AND span_id = :span_id ORDER BY time_unix_nano, id"
    )


def span_evaluations(dialect: Dialect) -> str:
    return dialect.statement(
        "SELECT name, score, label, explanation, source, time_unix_nano FROM evaluations "
        "WHERE trace_id = :trace_id AND span_id = :span_id ORDER BY time_unix_nano, id"
    )


def skeleton_columns(alias: str, duration_ms: str) -> dict[str, str]:
    """Each of the ``SKELETON_FIELDS`` and its expression over the ``spans`` aliased ``alias`` (``"s."`` or
    ``""``): the column of its name, but the model and the duration in milliseconds (``duration_ms``, spelt by
    the engine)."""
    spelt = {"duration_ms": duration_ms, "model": f"coalesce({alias}response_model, {alias}request_model)"}
    return {name: spelt.get(name, f"{alias}{name}") for name in SKELETON_FIELDS}


SPAN_EVALUATION_FIELDS = ("name", "score", "label", "explanation", "source", "time_unix_nano")


# --- stats -------------------------------------------------------------------------------------------


def cost_sql(dialect: Dialect, stats: StatsRange, group_by: CostGroup) -> tuple[str, dict[str, Any]]:
    """Cost and tokens of model calls (each counted once) per (bucket, group): ``COST_FIELDS`` after both."""
    where = Where(
        dialect,
        start_ns=stats.start_ns,
        end_ns=stats.end_ns,
        bucket_ns=stats.bucket_ns,
        service=stats.service,
        model=stats.model,
        provider=stats.provider,
    )
    where.add("s.start_time_unix_nano >= :start_ns")
    where.add("s.start_time_unix_nano < :end_ns")
    where.add(genai_calls("s."))
    if stats.service is not None:
        where.add("s.service_name = :service")
    if stats.model is not None:
        where.add("coalesce(s.response_model, s.request_model) = :model")
    if stats.provider is not None:
        where.add("s.provider = :provider")
    sums = ", ".join(
        dialect.int_sum(f"s.{column}")
        for column in ("input_tokens", "output_tokens", "cache_read_tokens", "reasoning_tokens", "total_tokens")
    )
    sql = f"""SELECT (s.start_time_unix_nano / :bucket_ns) * :bucket_ns AS bucket,
    {span_groups(dialect)[group_by]} AS grp, sum(s.cost_usd), {sums}, count(*) FILTER (WHERE s.category = 'llm'),
    count(*) FILTER (WHERE s.cost_usd IS NULL AND (s.input_tokens IS NOT NULL OR s.output_tokens IS NOT NULL))
FROM spans s WHERE {where}"""
    return dialect.statement(dialect.grouped(sql)), where.params


# --- breaches and evaluations ------------------------------------------------------------------------

BREACH_FIELDS = (
    "id",
    "trace_id",
    "service_name",
    "root_span_name",
    "metric",
    "value",
    "threshold",
    "breached",
    "rule",
    "computed_at_unix_nano",
)


def breaches_sql(dialect: Dialect, query: BreachQuery) -> tuple[str, dict[str, Any]]:
    """A page of the breach feed (``BREACH_FIELDS``) after the keyset position (computed_at, id)."""
    where = Where(dialect, limit=query.limit + 1)
    where.add("m.breached = :breached", breached=int(query.breached))
    where.time_range("m.computed_at", query.start_ns, query.end_ns)
    for column in ("metric", "rule", "service", "trace_id"):
        where.compare(f"m.{'service_name' if column == 'service' else column}", column, getattr(query, column))
    if query.services is not None:
        where.add(dialect.in_list("m.service_name", ":services"), services=dialect.list_value(query.services))
    direction, comparison = ("DESC", "<") if query.order == "desc" else ("ASC", ">")
    if query.after is not None:
        where.add(
            f"(m.computed_at, m.id) {comparison} (:after_key, :after_id)",
            after_key=query.after[0],
            after_id=query.after[1],
        )
    sql = f"""SELECT m.id, m.trace_id, m.service_name, t.root_span_name, m.metric, m.value, m.threshold, m.breached,
m.rule, m.computed_at FROM metric_snapshots m LEFT JOIN traces t ON t.trace_id = m.trace_id
WHERE {where} ORDER BY m.computed_at {direction}, m.id {direction} LIMIT :limit"""
    return dialect.statement(sql), where.params


# The columns of ``evaluations`` an ``EvaluationRecord`` fills (its resource aside), in the record's order: the
# writers' rows begin with them.
EVALUATION_COLUMNS = tuple(
    name for name in EvaluationRecord._fields if name not in ("resource_attributes", "scope_name", "scope_version")
)
EVALUATION_FIELDS = ("id", *EVALUATION_COLUMNS)


def evaluations_sql(dialect: Dialect, query: EvaluationQuery) -> tuple[str, dict[str, Any]]:
    """A page of the evaluation feed (``EVALUATION_FIELDS``), newest first, after the position (time, id)."""
    where = Where(dialect, limit=query.limit + 1)
    where.add("true")
    where.time_range("time_unix_nano", query.start_ns, query.end_ns)
    for column in ("name", "trace_id", "span_id"):
        where.compare(column, column, getattr(query, column))
    where.compare("score", "below", query.below, "<")
    if query.after is not None:
        where.add("(time_unix_nano, id) < (:after_key, :after_id)", after_key=query.after[0], after_id=query.after[1])
    sql = f"""SELECT {", ".join(EVALUATION_FIELDS)}
FROM evaluations WHERE {where} ORDER BY time_unix_nano DESC, id DESC LIMIT :limit"""
    return dialect.statement(sql), where.params


# --- what the filters can offer ----------------------------------------------------------------------

# Distinct services by hopping through the (service_name, start) index: one seek per service, not a scan.
SERVICES = """WITH RECURSIVE found(name) AS (
    SELECT min(service_name) FROM spans
    UNION ALL
    SELECT (SELECT min(service_name) FROM spans WHERE service_name > found.name) FROM found WHERE found.name IS NOT NULL
)
SELECT name FROM found WHERE name IS NOT NULL"""

# A dropdown's worth of operations: read newest first through the (service, start) index.
OPERATIONS_SCAN = 50_000


def operations_sql(dialect: Dialect, kind: str | None) -> str:
    """Span names and kinds of a service's newest ``:limit`` spans (of ``:kind`` when given)."""
    of_kind = " AND kind = :kind" if kind else ""
    return dialect.statement(
        f"SELECT name, kind FROM spans WHERE service_name = :service{of_kind} "
        "ORDER BY start_time_unix_nano DESC LIMIT :limit"
    )


DEPENDENCIES = """SELECT parent.service_name, child.service_name, count(*)
FROM spans child JOIN spans parent ON parent.trace_id = child.trace_id AND parent.span_id = child.parent_span_id
WHERE child.start_time_unix_nano >= :start_ns AND child.start_time_unix_nano < :end_ns
  AND child.parent_span_id IS NOT NULL AND parent.service_name IS DISTINCT FROM child.service_name
GROUP BY 1, 2 ORDER BY 1 NULLS FIRST, 2 NULLS FIRST"""

MODELS = f"""SELECT {MODEL} AS model, provider, count(*) AS calls FROM spans
WHERE start_time_unix_nano >= :start_ns AND start_time_unix_nano < :end_ns AND {GENAI_CALLS} AND {MODEL} IS NOT NULL
GROUP BY 1, 2 ORDER BY calls DESC, model"""


def spend_by_model(dialect: Dialect) -> str:
    return dialect.statement(
        f"""SELECT coalesce({MODEL}, 'unknown'), sum(cost_usd), {dialect.int_sum("input_tokens")},
{dialect.int_sum("output_tokens")}, count(*) FILTER (WHERE category = 'llm')
FROM spans WHERE start_time_unix_nano >= :start_ns AND {GENAI_CALLS} GROUP BY 1 ORDER BY 1"""
    )


# --- repeated model calls (rollups) ------------------------------------------------------------------


def candidate_traces(dialect: Dialect) -> str:
    """The traces of ``:traces`` (a ``list_value``) where one call may be described by two spans: a model-call
    span whose nearest GenAI ancestor (up through spans that are not GenAI, ``:max_depth`` at the most) has its
    category, or two model-call spans with one response id. Most traces have neither, and are done with in SQL."""
    return dialect.statement(f"""
WITH RECURSIVE
calls(trace_id, span_id, parent_span_id, category, response_id) AS (
    SELECT trace_id, span_id, parent_span_id, category, response_id FROM spans
    WHERE {dialect.in_list("trace_id", ":traces")} AND {MODEL_CALL}
),
up(trace_id, category, ancestor, depth) AS (
    SELECT trace_id, category, parent_span_id, 0 FROM calls WHERE parent_span_id IS NOT NULL
    UNION ALL
    SELECT up.trace_id, up.category, spans.parent_span_id, up.depth + 1
    FROM up JOIN spans ON spans.trace_id = up.trace_id AND spans.span_id = up.ancestor
    WHERE coalesce(spans.category, 'other') = 'other' AND spans.parent_span_id IS NOT NULL
      AND up.depth < :max_depth
)
SELECT up.trace_id FROM up JOIN spans ON spans.trace_id = up.trace_id AND spans.span_id = up.ancestor
WHERE spans.category = up.category
UNION
SELECT trace_id FROM calls WHERE response_id IS NOT NULL GROUP BY trace_id, response_id HAVING count(*) > 1
""")


def call_trees(dialect: Dialect) -> str:
    """The spans of the traces ``:traces`` (a ``list_value``), those that are not calls too (to look up through
    them), as ``repeated_calls`` reads them."""
    return dialect.statement(f"""
SELECT trace_id, span_id, parent_span_id, category,
       coalesce(input_tokens, output_tokens, total_tokens, cost_usd) IS NOT NULL,
       start_time_unix_nano, response_id, duplicate_of, received_at_unix_nano
FROM spans WHERE {dialect.in_list("trace_id", ":traces")}
""")


# A span whose ``duplicate_of`` is to change: (trace id, span id, start time, the span whose call it repeats).
DuplicateChange = tuple[str, str, int, str | None]


def repeated_calls(
    trees: Iterable[Sequence[Any]], is_new: Callable[[str, str, int], bool]
) -> tuple[list[DuplicateChange], frozenset[tuple[str, str]]]:
    """Which spans of the rows of ``call_trees`` repeat another span's call (``collector.genai.calls``): the
    changes to their stored ``duplicate_of``, and the (trace id, span id) of the new spans (``is_new`` of trace
    id, span id and receipt time) whose call another span counts."""
    spans_of: dict[str, list[SpanNode]] = {}
    stored: dict[tuple[str, str], tuple[int, str | None]] = {}
    for trace_id, span_id, parent, category, has_usage, start, response, duplicate_of, received_at in trees:
        spans_of.setdefault(trace_id, []).append(
            SpanNode(
                span_id, parent, category, bool(has_usage), start, response, is_new(trace_id, span_id, received_at)
            )
        )
        stored[trace_id, span_id] = (start, duplicate_of)
    changes: list[DuplicateChange] = []
    already_counted: set[tuple[str, str]] = set()
    for trace_id, spans in spans_of.items():
        calls = same_calls(spans)
        for span in spans:
            duplicate_of = calls.repeats.get(span.span_id)
            start, was = stored[trace_id, span.span_id]
            if was != duplicate_of:
                changes.append((trace_id, span.span_id, start, duplicate_of))
        already_counted.update((trace_id, span_id) for span_id in calls.already_counted)
    return changes, frozenset(already_counted)


# --- settling ----------------------------------------------------------------------------------------


def unsettled(dialect: Dialect) -> str:
    """Quiet traces not yet settled, oldest first: the root came and no span since ``:quiet_since``, or no root
    came by ``:waited_since``; the columns an ``UnsettledTrace`` is made of, then the trace's version: its span count
    and last span's receipt, which every span it gets changes (what SQLite's settling in two steps checks)."""
    return dialect.statement(
        f"""SELECT trace_id, service_name, models, agents, duration_ns, cost_usd, total_tokens, error_count, llm_calls,
       span_count, last_span_at_unix_nano
FROM traces
WHERE settled_at_unix_nano IS NULL
  AND (({dialect.flag("has_root")} AND last_span_at_unix_nano <= :quiet_since)
    OR ({dialect.flag("has_root", False)} AND first_span_at_unix_nano <= :waited_since))
ORDER BY last_span_at_unix_nano
LIMIT :limit"""
    )


def unsettled_params(window: SettleWindow) -> dict[str, int]:
    """The parameters of ``unsettled`` for a settling's window."""
    return {
        "quiet_since": window.now_ns - window.settle_after_ns,
        "waited_since": window.now_ns - window.max_wait_ns,
        "limit": window.limit,
    }


# A snapshot's row without its stamp (``computed_at``), which the engine gives: ``upsert_snapshot`` takes
# ``(*row, stamp)``.
SnapshotRow = tuple[str, str | None, str, float | None, float | None, int, str | None]


class Settling:
    """What settling reads and writes besides its candidates (rows of ``unsettled``), in one engine's spelling,
    and the judging of the candidates, the same on both."""

    def __init__(self, dialect: Dialect, positional: str) -> None:
        self.dialect = dialect
        ids = dialect.in_list("trace_id", ":ids")
        self.worst_ttft = dialect.statement(
            f"SELECT trace_id, max(ttft_ms) FROM spans WHERE {ids} AND ttft_ms IS NOT NULL GROUP BY trace_id"
        )
        self.lowest_evaluations = dialect.statement(
            f"SELECT trace_id, name, min(score) FROM evaluations WHERE {ids} "
            f"AND {dialect.in_list('name', ':names')} GROUP BY trace_id, name"
        )
        self.previous_breaches = dialect.statement(
            f"SELECT trace_id, metric FROM metric_snapshots WHERE {ids} AND {dialect.flag('breached')}"
        )
        values = ", ".join([positional] * 8)
        self.upsert_snapshot = f"""
INSERT INTO metric_snapshots (trace_id, service_name, metric, value, threshold, breached, rule, computed_at)
VALUES ({values})
ON CONFLICT (trace_id, metric) DO UPDATE SET
    service_name = excluded.service_name,
    value = excluded.value,
    threshold = excluded.threshold,
    breached = excluded.breached,
    rule = excluded.rule,
    computed_at = excluded.computed_at
"""
        self.mark_settled = dialect.statement(f"UPDATE traces SET settled_at_unix_nano = :now_ns WHERE {ids}")

    def judge(
        self,
        execute: Callable[[str, dict[str, Any]], Iterable[Sequence[Any]]],
        window: SettleWindow,
        judge: Judge,
        candidates: Sequence[Sequence[Any]],
        ids: Any,
    ) -> tuple[list[SettledTrace], list[SnapshotRow]]:
        """The settled traces of ``candidates`` (``ids``, their ``list_value``) and the snapshot rows to upsert
        (without their stamp), read through ``execute`` in the transaction that claimed them."""
        ttft = {row[0]: row[1] for row in execute(self.worst_ttft, {"ids": ids})} if window.ttft else {}
        scores: dict[str, dict[str, float]] = {}
        if window.evaluation_names:
            params = {"ids": ids, "names": self.dialect.list_value(window.evaluation_names)}
            for trace_id, name, score in execute(self.lowest_evaluations, params):
                scores.setdefault(trace_id, {})[name] = score
        already_breached = {(trace_id, metric) for trace_id, metric in execute(self.previous_breaches, {"ids": ids})}
        settled = []
        rows: list[SnapshotRow] = []
        for trace_id, service, models, agents, duration_ns, cost, total_tokens, errors, llm_calls, *_ in candidates:
            trace = UnsettledTrace(
                trace_id=trace_id,
                service_name=service,
                models=tuple(self.dialect.names(models)),
                agents=tuple(self.dialect.names(agents)),
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
        return settled, rows
