"""The pure part of the read side every backend shares: a trace's spans in depth-first order."""

from __future__ import annotations

import random
from typing import Any

from collector.storage.read import depth_first, depth_first_places


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


def by_paths(span_ids: list[str], parent_ids: list[str | None]) -> list[tuple[int, int, bool, int]]:
    """The depth-first order by its definition, for spans given in the order of their start: a span reached from
    a root sorts by the positions of its ancestors and itself (the path from its root), so a parent comes before
    its children and children in the order given; the rest (on a cycle of parents) after, in the order given."""
    given: dict[str | None, int] = {span_id: index for index, span_id in enumerate(span_ids)}

    def parent(index: int) -> int | None:
        found = given.get(parent_ids[index])
        return None if found == index else found

    paths: dict[int, tuple[int, ...]] = {}
    for index in range(len(span_ids)):
        path, at = [index], parent(index)
        while at is not None and at not in path:
            path.append(at)
            at = parent(at)
        if at is None:  # reached from a root: not on a cycle of parents
            paths[index] = tuple(reversed(path))
    reached = sorted(paths, key=paths.__getitem__)
    children = {index: sum(parent(kid) == index for kid in range(len(span_ids))) for index in reached}
    places = [
        (index, len(paths[index]) - 1, paths[index] == (index,) and parent_ids[index] is not None, children[index])
        for index in reached
    ]
    return places + [(index, 0, True, 0) for index in range(len(span_ids)) if index not in paths]


def test_the_places_follow_the_definition_of_the_order_whatever_the_tree() -> None:
    rng = random.Random(13)
    for _ in range(500):
        span_ids = [f"s{index}" for index in range(rng.randint(0, 40))]
        parent_ids: list[str | None] = [
            rng.choice([None, "gone", span_id, *rng.choices(span_ids, k=3)]) for span_id in span_ids
        ]
        assert depth_first_places(span_ids, parent_ids) == by_paths(span_ids, parent_ids)
