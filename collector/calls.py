"""One model call, one count: which spans of a trace describe a call that another of its spans counts.

Instrumentation nests: an instrumentation library's LLM span (OpenInference, OpenLLMetry, LangChain,
a Langfuse generation) wraps the client SDK's own span of the same call (the Anthropic SDK emits one),
and some libraries emit two LLM spans for one streamed call. Summing every LLM span counts such a call
twice. The rule (docs/genai-conventions.md, "One call counted once"):

- A model-call span (category ``llm`` or ``embedding``) whose nearest GenAI ancestor, looking up
  through spans that are not GenAI (category ``other``), has the same category describes the same call
  as that ancestor. Chains of such spans are one call.
- Of one call's spans, one counts: the innermost that reports usage (tokens or a cost), being the
  nearest to the provider's answer; when none does, the outermost. The others are marked as repeating it.

Pure, no I/O: ``storage.rollups`` feeds it the stored spans of the traces a batch touched, so the answer
is the same whatever order or requests the spans came in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import NamedTuple

CALL_CATEGORIES = frozenset({"llm", "embedding"})
NOT_GENAI = "other"
MAX_DEPTH = 256  # a guard against parent cycles in hostile input, far deeper than any real trace


class SpanNode(NamedTuple):
    """What the rule needs of one stored span."""

    span_id: str
    parent_span_id: str | None
    category: str | None
    has_usage: bool
    start_time_unix_nano: int
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


def same_calls(spans: Iterable[SpanNode]) -> Calls:
    """The spans of one trace that repeat a call another span counts, and the new ones already counted."""
    by_id = {node.span_id: node for node in spans}
    enclosing = {
        node.span_id: outer
        for node in by_id.values()
        if node.category in CALL_CATEGORIES and (outer := _enclosing_call(node, by_id)) is not None
    }
    if not enclosing:
        return Calls({}, frozenset())

    # Each call's spans, keyed by the outermost, with each span's depth inside the call.
    members: dict[str, list[tuple[int, SpanNode]]] = {}
    for span_id in set(enclosing) | set(enclosing.values()):
        outermost, depth = span_id, 0
        while outermost in enclosing and depth < MAX_DEPTH:
            outermost, depth = enclosing[outermost], depth + 1
        members.setdefault(outermost, []).append((depth, by_id[span_id]))

    repeats: dict[str, str] = {}
    already_counted: set[str] = set()
    for outermost, call in members.items():
        with_usage = [(depth, node) for depth, node in call if node.has_usage]
        if with_usage:
            counted = min(with_usage, key=lambda item: (-item[0], item[1].start_time_unix_nano, item[1].span_id))[1]
        else:
            counted = by_id[outermost]
        repeats.update((node.span_id, counted.span_id) for _, node in call if node is not counted)
        new = [node for _, node in call if node.new]
        if len(new) < len(call):  # an earlier batch stored (and so counted) this call
            already_counted.update(node.span_id for node in new)
        else:
            already_counted.update(node.span_id for node in new if node is not counted)
    return Calls(repeats, frozenset(already_counted))
