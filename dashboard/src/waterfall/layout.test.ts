import { describe, expect, it } from "vitest";
import {
  barGeometry,
  buildLayout,
  collapsibleSpanIds,
  criticalPath,
  descendantCount,
  matchingRows,
  revealSpan,
  timeTicks,
  visibleRows,
  type LayoutSpan,
} from "./layout";

const T0 = 1_764_435_600_000_000_000;
const MS = 1_000_000;

function span(id: string, parent: string | null, depth: number, startMs: number, endMs: number): LayoutSpan {
  return {
    span_id: id,
    parent_span_id: parent,
    depth,
    start_time_unix_nano: T0 + startMs * MS,
    end_time_unix_nano: T0 + endMs * MS,
    duration_ms: endMs - startMs,
  };
}

// root 0..100
//   a 0..40          (plan)
//     a1 5..20
//     a2 20..40
//   b 45..95         (act)
//     b1 50..60
//       b1x 52..58
//     b2 60..90
//   c 10..30         (a side call that the trace did not wait on)
// orphan 120..130    (its parent was never stored)
const SPANS = [
  span("root", null, 0, 0, 100),
  span("a", "root", 1, 0, 40),
  span("a1", "a", 2, 5, 20),
  span("a2", "a", 2, 20, 40),
  span("b", "root", 1, 45, 95),
  span("b1", "b", 2, 50, 60),
  span("b1x", "b1", 3, 52, 58),
  span("b2", "b", 2, 60, 90),
  span("c", "root", 1, 10, 30),
  span("orphan", "gone", 0, 120, 130),
];
const ids = (layout: ReturnType<typeof buildLayout>, rows: number[]) => rows.map((row) => layout.spans[row].span_id);

describe("buildLayout", () => {
  const layout = buildLayout(SPANS);

  it("finds each subtree's extent and parent in one depth-first pass", () => {
    expect(Array.from(layout.subtreeEnd)).toEqual([9, 4, 3, 4, 8, 7, 7, 8, 9, 10]);
    expect(Array.from(layout.parentIndex)).toEqual([-1, 0, 1, 1, 0, 4, 5, 4, 0, -1]);
    expect(descendantCount(layout, 0)).toBe(8);
    expect(descendantCount(layout, 4)).toBe(3);
    expect(descendantCount(layout, 6)).toBe(0);
  });

  it("spans the time axis from the first start to the last end", () => {
    expect(layout.startNs).toBe(T0);
    expect(layout.durationMs).toBeCloseTo(130, 3); // unix-nano doubles are exact to ~256 ns
    expect(layout.maxDepth).toBe(3);
  });

  it("handles an empty trace", () => {
    const empty = buildLayout([]);
    expect(empty.durationMs).toBe(0);
    expect(visibleRows(empty, new Set())).toEqual([]);
  });
});

describe("visibleRows", () => {
  const layout = buildLayout(SPANS);

  it("shows every span depth first when nothing is collapsed", () => {
    expect(ids(layout, visibleRows(layout, new Set()))).toEqual(SPANS.map((s) => s.span_id));
  });

  it("hides the descendants of a collapsed span, and only them", () => {
    expect(ids(layout, visibleRows(layout, new Set(["b"])))).toEqual(["root", "a", "a1", "a2", "b", "c", "orphan"]);
    expect(ids(layout, visibleRows(layout, new Set(["b1"])))).toEqual([
      "root", "a", "a1", "a2", "b", "b1", "b2", "c", "orphan",
    ]);
  });

  it("collapse all leaves the roots; a collapsed span inside a collapsed one stays collapsed when its parent opens", () => {
    const all = collapsibleSpanIds(layout);
    expect([...all].sort()).toEqual(["a", "b", "b1", "root"]);
    expect(ids(layout, visibleRows(layout, all))).toEqual(["root", "orphan"]);
    const opened = new Set(all);
    opened.delete("root");
    opened.delete("b");
    expect(ids(layout, visibleRows(layout, opened))).toEqual(["root", "a", "b", "b1", "b2", "c", "orphan"]);
  });

  it("reveals a deep-linked span by opening its ancestors", () => {
    const revealed = revealSpan(layout, collapsibleSpanIds(layout), 6);
    expect(ids(layout, visibleRows(layout, revealed))).toContain("b1x");
    expect(revealed.has("a")).toBe(true);
  });
});

describe("time scale", () => {
  const layout = buildLayout(SPANS);

  it("places bars as fractions of the trace's duration", () => {
    expect(barGeometry(layout, SPANS[0]).left).toBe(0);
    expect(barGeometry(layout, SPANS[0]).width).toBeCloseTo(100 / 130, 5);
    const b2 = barGeometry(layout, SPANS[7]);
    expect(b2.left).toBeCloseTo(60 / 130);
    expect(b2.width).toBeCloseTo(30 / 130);
    expect(barGeometry(layout, SPANS[9]).left + barGeometry(layout, SPANS[9]).width).toBeCloseTo(1);
  });

  it("keeps nanosecond offsets of unix-nano times (beyond 2^53) within a microsecond", () => {
    const tiny = buildLayout([span("x", null, 0, 0, 0.002), span("y", "x", 1, 0.001, 0.002)]);
    expect(tiny.durationMs).toBeCloseTo(0.002, 3);
    expect(barGeometry(tiny, tiny.spans[1]).left).toBeCloseTo(0.5, 0);
  });

  it("ticks the axis evenly", () => {
    expect(timeTicks(130, 5)).toEqual([0, 26, 52, 78, 104, 130]);
    expect(timeTicks(0)).toEqual([0]);
  });
});

describe("criticalPath", () => {
  it("follows what the root waited on, sequential steps included, not side calls", () => {
    const path = criticalPath(buildLayout(SPANS.slice(0, 9)));
    expect([...path].sort()).toEqual(["a", "a1", "a2", "b", "b1", "b1x", "b2", "root"]);
    expect(path.has("c")).toBe(false);
  });

  it("skips a child that overlaps a later sibling it did not wait for", () => {
    const path = criticalPath(
      buildLayout([span("r", null, 0, 0, 100), span("slow", "r", 1, 0, 80), span("last", "r", 1, 50, 100)]),
    );
    expect([...path].sort()).toEqual(["last", "r"]);
  });
});

describe("matchingRows", () => {
  const layout = buildLayout(SPANS);

  it("keeps the matches and their ancestors, in depth-first order, whatever is collapsed", () => {
    const byName = (name: string) => (index: number) => layout.spans[index].span_id === name;
    expect(ids(layout, matchingRows(layout, byName("b1x")))).toEqual(["root", "b", "b1", "b1x"]);
    expect(ids(layout, matchingRows(layout, (index) => layout.spans[index].span_id.startsWith("a")))).toEqual([
      "root", "a", "a1", "a2",
    ]);
    expect(matchingRows(layout, () => false)).toEqual([]);
    expect(ids(layout, matchingRows(layout, byName("orphan")))).toEqual(["orphan"]);
  });
});
