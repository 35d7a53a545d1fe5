"""The read side of storage: what the query API asks, as a protocol any backend implements.

The query server (REST, Jaeger, live feed) reads only through ``TraceReader``; the SQLite implementation
is ``storage.sqlite.read``. Shapes here are plain typed records; ``depth_first_places`` orders a trace's skeleton
for every backend (SQLite reads the tree, orders it with this function and builds the page's objects in SQL).

The records the reader returns are the query API's answers as they are served: each shape is defined here once,
as a ``TypedDict`` (a plain dict at run time, serialized without being validated again), and the REST API's
response models (``query.models``) document them in OpenAPI from these same classes. ``typing_extensions``'
``TypedDict``, which pydantic needs on Python 3.11.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, Literal, Protocol

from typing_extensions import TypedDict

TraceSort = Literal["start_time", "duration", "cost"]
Order = Literal["asc", "desc"]
LatencyOf = Literal["trace", "span", "llm", "ttft"]
LatencyGroup = Literal["none", "service", "model", "operation", "agent"]
CostGroup = Literal["none", "model", "provider", "service", "user", "agent"]
# What each point of ``TraceReader.cost`` holds besides its bucket and group, in the order the engines select it.
COST_FIELDS = (
    "cost_usd",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "reasoning_tokens",
    "total_tokens",
    "llm_requests",
    "unpriced_calls",
)

# A keyset position: (sort value, id) of the last row of the previous page.
Keyset = tuple[Any, Any]

# Latency percentiles are within this relative error of the exact nearest-rank value (both engines count values in
# the bins of storage/latency_bins.py: SQLite as it writes, in histograms; PostgreSQL as it reads).
PERCENTILE_ERROR = 0.01


class QueryTooBroad(Exception):
    """A query that would scan too much (or ran past the statement timeout); the message says what to narrow."""


class ReadBusy(Exception):
    """Every read connection is busy and the wait list is full; retry shortly."""


@dataclass(frozen=True, slots=True)
class TraceQuery:
    start_ns: int | None = None
    end_ns: int | None = None
    service: str | None = None
    root_name: str | None = None
    status: Literal["error", "ok"] | None = None
    model: str | None = None
    provider: str | None = None
    agent: str | None = None
    min_duration_ns: int | None = None
    max_duration_ns: int | None = None
    min_cost_usd: float | None = None
    max_cost_usd: float | None = None
    breached: bool | None = None
    breached_metric: str | None = None
    evaluation: str | None = None
    evaluation_below: float | None = None
    conversation_id: str | None = None
    user_id: str | None = None
    attributes: tuple[tuple[str, Any], ...] = ()
    sort: TraceSort = "start_time"
    order: Order = "desc"
    limit: int = 50
    after: Keyset | None = None

    @property
    def reads_spans(self) -> bool:
        """Filters that look inside the trace's spans (or its evaluations): they need a bounded time range."""
        return bool(
            self.provider
            or self.conversation_id
            or self.user_id
            or self.attributes
            or self.evaluation_below is not None
        )


@dataclass(frozen=True, slots=True)
class SpanSearch:
    """Jaeger's search: traces with at least one span matching every criterion."""

    start_ns: int
    end_ns: int
    service: str | None = None
    operation: str | None = None
    kind: str | None = None
    error: bool | None = None
    attributes: tuple[tuple[str, Any], ...] = ()
    min_duration_ns: int | None = None
    max_duration_ns: int | None = None
    limit: int = 20


@dataclass(frozen=True, slots=True)
class BreachQuery:
    start_ns: int | None = None
    end_ns: int | None = None
    metric: str | None = None
    rule: str | None = None
    service: str | None = None
    trace_id: str | None = None
    services: tuple[str, ...] | None = None
    breached: bool = True
    order: Order = "desc"
    limit: int = 100
    after: Keyset | None = None


@dataclass(frozen=True, slots=True)
class EvaluationQuery:
    start_ns: int | None = None
    end_ns: int | None = None
    name: str | None = None
    trace_id: str | None = None
    span_id: str | None = None
    below: float | None = None
    limit: int = 100
    after: Keyset | None = None


@dataclass(frozen=True, slots=True)
class StatsRange:
    start_ns: int
    end_ns: int
    bucket_ns: int
    service: str | None = None
    model: str | None = None
    provider: str | None = None
    name: str | None = None
    thresholds: dict[str, float] = field(default_factory=dict)


class BreachRef(TypedDict):  # a rule a trace breached, as its summary lists it
    metric: str
    rule: str | None
    value: float | None
    threshold: float | None


class TraceSummary(TypedDict):
    trace_id: str
    root_span_name: str | None
    service_name: str | None
    start_time_unix_nano: int
    end_time_unix_nano: int
    duration_ms: float
    span_count: int
    error_count: int
    llm_calls: int
    input_tokens: int
    output_tokens: int
    total_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    cost_usd: float | None
    models: list[str]
    agents: list[str]
    has_root: bool
    settled: bool
    breaches: list[BreachRef]


class SkeletonSpan(TypedDict):
    span_id: str
    parent_span_id: str | None
    depth: int
    orphan: bool
    child_count: int
    name: str
    kind: str
    status_code: str
    status_message: str | None
    service_name: str | None
    start_time_unix_nano: int
    end_time_unix_nano: int
    duration_ms: float
    category: str | None
    operation: str | None
    provider: str | None
    model: str | None
    input_tokens: int | None
    output_tokens: int | None
    total_tokens: int | None
    cache_read_tokens: int | None
    reasoning_tokens: int | None
    cost_usd: float | None
    ttft_ms: float | None
    agent_name: str | None
    tool_name: str | None
    duplicate_of: str | None  # the span that counts this span's model call, when another one does


# What a skeleton span's row holds: its fields but its place in the tree (``depth_first`` adds that).
SKELETON_FIELDS = tuple(name for name in SkeletonSpan.__annotations__ if name not in ("depth", "orphan", "child_count"))


class SkeletonPage(TypedDict):
    """A page of a trace's skeleton: its spans (``SkeletonSpan``, depth first), encoded as one JSON array by the
    backend, which can build the objects where it reads the rows: the skeleton is the largest answer, and turning
    every field into a Python object only to encode it again was most of its cost."""

    trace: TraceSummary
    spans_json: str
    total_spans: int


class Resource(TypedDict):
    attributes: dict[str, Any]
    scope_name: str | None
    scope_version: str | None


class StoredSpan(TypedDict):
    """A span with everything stored about it (the Jaeger API and the detail call read this)."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    trace_state: str | None
    flags: int
    name: str
    kind: str
    start_time_unix_nano: int
    end_time_unix_nano: int
    status_code: str
    status_message: str | None
    service_name: str | None
    attributes: dict[str, Any]
    events: list[dict[str, Any]]
    links: list[dict[str, Any]]
    dropped_attributes_count: int
    dropped_events_count: int
    dropped_links_count: int
    genai: dict[str, Any]
    resource: Resource


class GenAIEvent(TypedDict):
    name: str | None
    time_unix_nano: int
    source: str
    body: Any
    attributes: dict[str, Any]
    severity_text: str | None


class SpanEvaluation(TypedDict):
    name: str
    score: float | None
    label: str | None
    explanation: str | None
    source: str
    time_unix_nano: int


class SpanDetail(StoredSpan):
    """One span in full: everything stored about it, its GenAI events and its evaluations."""

    duration_ms: float
    genai_events: list[GenAIEvent]
    evaluations: list[SpanEvaluation]


class LatencyPoint(TypedDict):
    time_unix_nano: int
    count: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None


class LatencySeries(TypedDict):
    group: str | None
    points: list[LatencyPoint]


class EvaluationPoint(TypedDict):
    time_unix_nano: int
    count: int
    mean: float | None
    p50: float | None
    share_below: float | None


class EvaluationSeries(TypedDict):
    name: str
    threshold: float | None
    points: list[EvaluationPoint]


class Model(TypedDict):
    name: str
    provider: str | None
    calls: int


class Breach(TypedDict):  # a row of the metric_snapshots feed
    id: int
    trace_id: str
    service_name: str | None
    root_span_name: str | None
    metric: str
    value: float | None
    threshold: float | None
    breached: bool
    rule: str | None
    computed_at_unix_nano: int


class Evaluation(TypedDict):
    id: int
    trace_id: str | None
    span_id: str | None
    response_id: str | None
    name: str
    score: float | None
    label: str | None
    explanation: str | None
    source: str
    time_unix_nano: int


class Page(TypedDict):
    """A page of a keyset-paginated list: the rows, and the position after the last one if more follow."""

    data: list[Any]
    after: Keyset | None


class TraceReader(Protocol):
    """Every read the query API makes. Implementations run on connections of their own, bound concurrency,
    and raise ``QueryTooBroad`` past their statement timeout and ``ReadBusy`` when saturated."""

    async def traces(self, query: TraceQuery) -> Page: ...

    async def trace_summaries(self, trace_ids: Sequence[str]) -> list[TraceSummary]: ...

    async def trace_skeleton(self, trace_id: str, offset: int, limit: int) -> SkeletonPage | None: ...

    async def span_detail(self, trace_id: str, span_id: str) -> SpanDetail | None: ...

    async def trace_spans(self, trace_ids: Sequence[str]) -> dict[str, list[StoredSpan]]: ...

    async def search_traces(self, search: SpanSearch) -> list[str]: ...

    async def latency(self, stats: StatsRange, of: LatencyOf, group_by: LatencyGroup) -> list[LatencySeries]: ...

    async def cost(self, stats: StatsRange, group_by: CostGroup) -> list[dict[str, Any]]: ...

    async def evaluation_stats(self, stats: StatsRange) -> list[EvaluationSeries]: ...

    async def breaches(self, query: BreachQuery) -> Page: ...

    async def evaluations(self, query: EvaluationQuery) -> Page: ...

    async def services(self) -> list[str]: ...

    async def operations(self, service: str, kind: str | None = None) -> list[tuple[str, str]]: ...

    async def models(self, start_ns: int, end_ns: int) -> list[Model]: ...

    async def dependencies(self, start_ns: int, end_ns: int) -> list[tuple[str, str, int]]: ...

    async def spend_by_model(self, start_ns: int) -> list[dict[str, Any]]: ...

    def close(self) -> None: ...


# A span's place in a trace's skeleton: its index among the spans given, its depth, whether it is an orphan (a root
# that names a parent), and how many children it has.
Place = tuple[int, int, bool, int]


def depth_first_places(span_ids: Sequence[str], parent_ids: Sequence[str | None]) -> list[Place]:
    """The places of a trace's spans in depth-first order, the spans given by id and parent id in the order of
    their start time then span id (so children come in that order): a span whose parent is not among them, or
    is itself, is a root (an orphan if it names a parent); the spans on a cycle of parents, never reached from a
    root, come after the rest as orphan roots without children, in the order given.

    The tree is held as integer lists (each span's first child and next sibling, the roots chained as siblings)
    and walked without recursion, so a deep chain costs what a wide tree does, and a thousand spans allocate no
    list per span: this runs holding the GIL on every read of a skeleton."""
    count = len(span_ids)
    index: dict[str | None, int] = dict(zip(span_ids, range(count), strict=True))
    parents = list(map(index.get, parent_ids))
    first_child = [-1] * count
    next_sibling = [-1] * count
    child_counts = [0] * count
    root = -1
    for span in range(count - 1, -1, -1):  # backwards, each span put in front of its later siblings
        parent = parents[span]
        if parent is None or parent == span:
            next_sibling[span], root = root, span
        else:
            next_sibling[span], first_child[parent] = first_child[parent], span
            child_counts[parent] += 1

    places: list[Place] = []
    resume: list[int] = []  # the sibling to go on with after each open span's subtree
    depth = 0
    span = root
    while span >= 0:
        places.append((span, depth, not depth and parent_ids[span] is not None, child_counts[span]))
        if first_child[span] >= 0:
            resume.append(next_sibling[span])
            depth += 1
            span = first_child[span]
        else:
            span = next_sibling[span]
            while span < 0 and resume:
                span = resume.pop()
                depth -= 1
    if len(places) < count:  # a cycle of parents (a hostile or broken client): show its spans as roots
        reached = {place[0] for place in places}
        places.extend((span, 0, True, 0) for span in range(count) if span not in reached)
    return places


def depth_first(spans: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The spans in depth-first order (``depth_first_places``), each a new dict with ``depth``, ``orphan`` and
    ``child_count`` first, then the span's fields."""
    by_start = sorted(spans, key=itemgetter("start_time_unix_nano", "span_id"))
    places = depth_first_places([span["span_id"] for span in by_start], [span["parent_span_id"] for span in by_start])
    return [
        {"depth": depth, "orphan": orphan, "child_count": child_count, **by_start[index]}
        for index, depth, orphan, child_count in places
    ]
