"""The pure part of the read side every backend shares: a trace's spans in depth-first order."""

from __future__ import annotations

from typing import Any

from collector.storage.read import depth_first


def span(span_id: str, parent: str | None, start: int) -> dict[str, Any]:
    return {"span_id": span_id, "parent_span_id": parent, "start_time_unix_nano": start}


def order(spans: list[dict[str, Any]]) -> list[tuple[str, int, bool, int]]:
    return [(s["span_id"], s["depth"], s["orphan"], s["child_count"]) for s in depth_first(spans)]


def test_children_follow_their_parent_by_start_time() -> None:
    spans = [span("c2", "root", 30), span("root", None, 0), span("c1", "root", 10), span("g1", "c1", 20)]
    assert order(spans) == [("root", 0, False, 2), ("c1", 1, False, 1), ("g1", 2, False, 0), ("c2", 1, False, 0)]


def test_a_span_whose_parent_is_missing_is_an_orphan_root() -> None:
    spans = [span("root", None, 0), span("lost", "gone", 5), span("child", "lost", 6)]
    assert order(spans) == [("root", 0, False, 0), ("lost", 0, True, 1), ("child", 1, False, 0)]


def test_a_cycle_of_parents_still_shows_every_span() -> None:
    spans = [span("a", "b", 0), span("b", "a", 1), span("self", "self", 2)]
    rows = order(spans)
    assert sorted(row[0] for row in rows) == ["a", "b", "self"]


def test_deep_traces_do_not_recurse() -> None:
    spans = [span("0", None, 0), *(span(str(i), str(i - 1), i) for i in range(1, 20_000))]
    rows = order(spans)
    assert rows[-1] == ("19999", 19_999, False, 0)
