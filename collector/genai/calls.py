"""One model call, one count: which spans of a trace describe a call that another of its spans counts.

Instrumentation nests and repeats: an instrumentation library's LLM span (OpenInference, LangChain, a
Langfuse generation) wraps the client SDK's own span of the same call (the Anthropic SDK emits one);
OpenLLMetry's sits beside it, a sibling with the same response id; some libraries emit two LLM spans
for one streamed call. Summing every LLM span counts such a call twice. The rule
(docs/genai-conventions.md, "One call counted once"):

- A model-call span (category ``llm`` or ``embedding``) whose nearest GenAI ancestor, looking up
  through spans that are not GenAI (category ``other`` or none), has the same category describes the
  same call as that ancestor.
- Model-call spans of one trace with the same response id describe the same call.
- Of one call's spans, one counts: among those that report usage (tokens or a cost), the innermost,
  being the nearest to the provider's answer: the deepest in the nesting, then the latest to start (a
  wrapper starts before what it wraps), then the smallest span id. When none reports usage, the
  outermost counts. The others are marked as repeating it.

Pure, no I/O: ``storage.sqlite.rollups`` feeds it the stored spans of the traces a batch touched, so the answer
is the same whatever order or requests the spans came in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import NamedTuple

from collector.model import CALL_CATEGORIES

NOT_GENAI = "other"
MAX_DEPTH = 256  # a guard against parent cycles in hostile input, far deeper than any real trace


class SpanNode(NamedTuple):
    """What the rule needs of one stored span."""

    span_id: str
    parent_span_id: str | None
    category: str | None
    has_usage: bool
    start_time_unix_nano: int
    response_id: str | None = None
    new: bool = False  # stored by the batch being committed


class Calls(NamedTuple):
    repeats: dict[str, str]  # span id -> the span id counted for its call, for every span not counted
    already_counted: frozenset[str]  # new spans whose call an earlier batch's span, or another new span, counts


def _enclosing_call(node: SpanNode, by_id: Mapping[str, SpanNode]) -> str | None:
    """The span whose call ``node`` describes too, or None when it is a call of its own."""
    parent = node.parent_span_id
    for _ in range(MAX_DEPTH):
        ancestor = by_id.get(parent) if parent else None
        if ancestor is None:
            return None
        if ancestor.category != NOT_GENAI and ancestor.category is not None:
            return ancestor.span_id if ancestor.category == node.category else None
        parent = ancestor.parent_span_id
    return None


def _root(parents: dict[str, str], span_id: str) -> str:
    while parents[span_id] != span_id:
        parents[span_id] = parents[parents[span_id]]
        span_id = parents[span_id]
    return span_id


def same_calls(spans: Iterable[SpanNode]) -> Calls:
    """The spans of one trace that repeat a call another span counts, and the new ones already counted."""
    by_id = {node.span_id: node for node in spans}
    calls = [node for node in by_id.values() if node.category in CALL_CATEGORIES]
    enclosing = {node.span_id: outer for node in calls if (outer := _enclosing_call(node, by_id)) is not None}
    parents = {node.span_id: node.span_id for node in calls}  # union-find over the call spans
    links = list(enclosing.items())
    first_with_id: dict[str, str] = {}
    for node in calls:
        if node.response_id:
            links.append((node.span_id, first_with_id.setdefault(node.response_id, node.span_id)))
    for one, other in links:
        parents[_root(parents, one)] = _root(parents, other)
    members: dict[str, list[SpanNode]] = {}
    for node in calls:
        members.setdefault(_root(parents, node.span_id), []).append(node)

    repeats: dict[str, str] = {}
    already_counted: set[str] = set()
    for call in members.values():
        if len(call) == 1:
            continue
        depth = {node.span_id: _depth(node.span_id, enclosing) for node in call}
        with_usage = [node for node in call if node.has_usage]
        if with_usage:
            counted = min(with_usage, key=lambda node: (-depth[node.span_id], -node.start_time_unix_nano, node.span_id))
        else:
            counted = min(call, key=lambda node: (depth[node.span_id], node.start_time_unix_nano, node.span_id))
        repeats.update((node.span_id, counted.span_id) for node in call if node is not counted)
        new = [node for node in call if node.new]
        if len(new) < len(call):  # an earlier batch stored (and so counted) this call
            already_counted.update(node.span_id for node in new)
        else:
            already_counted.update(node.span_id for node in new if node is not counted)
    return Calls(repeats, frozenset(already_counted))


def _depth(span_id: str, enclosing: Mapping[str, str]) -> int:
    depth = 0
    while span_id in enclosing and depth < MAX_DEPTH:
        span_id, depth = enclosing[span_id], depth + 1
    return depth
