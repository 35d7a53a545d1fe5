"""Which spans of a trace describe a model call another span counts (collector/genai/calls.py)."""

from __future__ import annotations

import pytest

from collector.genai.calls import SpanNode, same_calls


def node(
    span_id: str,
    parent: str | None,
    category: str | None,
    usage: bool = True,
    start: int = 0,
    new: bool = False,
    response_id: str | None = None,
) -> SpanNode:
    return SpanNode(span_id, parent, category, usage, start, response_id, new)


@pytest.mark.parametrize(
    ("spans", "repeats"),
    [
        pytest.param([node("a", None, "llm"), node("b", "a", "llm")], {"a": "b"}, id="llm-under-llm"),
        pytest.param(
            [node("a", None, "llm"), node("h", "a", "other"), node("b", "h", "llm")],
            {"a": "b"},
            id="through-a-span-that-is-not-genai",
        ),
        pytest.param(
            [node("a", None, "llm"), node("h", "a", None), node("b", "h", "llm")],
            {"a": "b"},
            id="through-a-span-without-category",
        ),
        pytest.param(
            [node("a", None, "llm"), node("b", "a", "llm"), node("c", "b", "llm")],
            {"a": "c", "b": "c"},
            id="three-deep",
        ),
        pytest.param(
            [node("a", None, "llm"), node("b", "a", "llm", usage=False)],
            {"b": "a"},
            id="inner-without-usage-the-outer-counts",
        ),
        pytest.param(
            [node("a", None, "llm", usage=False), node("b", "a", "llm", usage=False)],
            {"b": "a"},
            id="no-usage-at-all-the-outermost-counts",
        ),
        pytest.param(
            [node("w", None, "workflow"), node("a", "w", "llm"), node("b", "w", "llm")],
            {},
            id="siblings-are-two-calls",
        ),
        pytest.param(
            [node("a", None, "llm"), node("t", "a", "tool"), node("b", "t", "llm")],
            {},
            id="a-tool-between-makes-a-new-call",
        ),
        pytest.param([node("a", None, "agent"), node("b", "a", "llm")], {}, id="llm-under-agent-is-its-own-call"),
        pytest.param([node("a", None, "embedding"), node("b", "a", "llm")], {}, id="different-categories"),
        pytest.param(
            [node("a", None, "embedding"), node("b", "a", "embedding")], {"a": "b"}, id="embedding-under-embedding"
        ),
        pytest.param(
            [node("a", None, "llm"), node("b", "a", "llm", start=2), node("c", "a", "llm", start=1)],
            {"a": "b", "c": "b"},
            id="two-inner-spans-the-later-counts",
        ),
        pytest.param(
            [
                node("r", None, "other"),
                node("a", "r", "llm", start=1, response_id="msg_1"),
                node("b", "r", "llm", start=2, response_id="msg_1"),
            ],
            {"a": "b"},
            id="siblings-with-one-response-id-the-later-counts",
        ),
        pytest.param(
            [
                node("r", None, "workflow"),
                node("a", "r", "llm", response_id="msg_1"),
                node("b", "r", "llm", response_id="msg_2"),
            ],
            {},
            id="siblings-with-different-response-ids",
        ),
        pytest.param(
            [
                node("a", None, "llm", start=1, response_id="msg_1"),
                node("b", "a", "llm", start=2),
                node("c", None, "llm", start=3, response_id="msg_1"),
            ],
            {"a": "b", "c": "b"},
            id="nesting-and-response-id-together",
        ),
        pytest.param(
            [node("a", None, "llm", start=5, response_id="m"), node("b", None, "llm", start=5, response_id="m")],
            {"b": "a"},
            id="a-tie-goes-to-the-smallest-span-id",
        ),
        pytest.param([node("b", "missing", "llm")], {}, id="parent-not-arrived"),
    ],
)
def test_repeats(spans: list[SpanNode], repeats: dict[str, str]) -> None:
    assert same_calls(spans).repeats == repeats


def test_a_cycle_of_parents_in_hostile_input_ends() -> None:
    result = same_calls([node("a", "b", "llm"), node("b", "a", "llm"), node("c", "c", "llm")]).repeats
    assert set(result) <= {"a", "b", "c"}


@pytest.mark.parametrize(
    ("spans", "already_counted"),
    [
        pytest.param([node("a", None, "llm", new=True), node("b", "a", "llm", new=True)], {"a"}, id="together"),
        pytest.param([node("a", None, "llm"), node("b", "a", "llm", new=True)], {"b"}, id="child-after-parent"),
        pytest.param([node("a", None, "llm", new=True), node("b", "a", "llm")], {"a"}, id="parent-after-child"),
        pytest.param([node("a", None, "llm", new=True)], set(), id="alone"),
        pytest.param(
            [node("w", None, "workflow"), node("a", "w", "llm", new=True), node("b", "w", "llm", new=True)],
            set(),
            id="two-calls",
        ),
    ],
)
def test_already_counted(spans: list[SpanNode], already_counted: set[str]) -> None:
    assert same_calls(spans).already_counted == already_counted
