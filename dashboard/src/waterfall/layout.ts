/** The waterfall's geometry, as pure functions over the skeleton (spans already in depth-first order):
 * subtree extents, the rows left visible by collapsed spans, the time scale and the critical path.
 * One pass each, so a 10,000-span trace lays out in a few milliseconds (Jaeger UI's generateRowStates). */

export interface LayoutSpan {
  span_id: string;
  parent_span_id: string | null;
  depth: number;
  start_time_unix_nano: number;
  end_time_unix_nano: number;
  duration_ms: number;
}

export interface TraceLayout<S extends LayoutSpan = LayoutSpan> {
  spans: readonly S[];
  /** subtreeEnd[i]: the index just past span i's last descendant. */
  subtreeEnd: Int32Array;
  /** parentIndex[i]: the index of span i's parent, -1 for a root. */
  parentIndex: Int32Array;
  /** Start of the trace (unix ns) and its length, the span of the time axis. */
  startNs: number;
  durationMs: number;
  maxDepth: number;
}

export function buildLayout<S extends LayoutSpan>(spans: readonly S[]): TraceLayout<S> {
  const count = spans.length;
  const subtreeEnd = new Int32Array(count);
  const parentIndex = new Int32Array(count).fill(-1);
  const open: number[] = [];
  let startNs = Infinity;
  let endNs = -Infinity;
  let maxDepth = 0;
  for (let index = 0; index < count; index++) {
    const span = spans[index];
    while (open.length && spans[open[open.length - 1]].depth >= span.depth) subtreeEnd[open.pop()!] = index;
    if (open.length) parentIndex[index] = open[open.length - 1];
    open.push(index);
    startNs = Math.min(startNs, span.start_time_unix_nano);
    endNs = Math.max(endNs, span.end_time_unix_nano);
    maxDepth = Math.max(maxDepth, span.depth);
  }
  for (const index of open) subtreeEnd[index] = count;
  return {
    spans,
    subtreeEnd,
    parentIndex,
    startNs: count ? startNs : 0,
    durationMs: count ? Math.max(0, (endNs - startNs) / 1e6) : 0,
    maxDepth,
  };
}

export function descendantCount(layout: TraceLayout, index: number): number {
  return layout.subtreeEnd[index] - index - 1;
}

/** Indices of the spans shown: every span except the descendants of a collapsed one. */
export function visibleRows(layout: TraceLayout, collapsed: ReadonlySet<string>): number[] {
  const rows: number[] = [];
  const { spans, subtreeEnd } = layout;
  for (let index = 0; index < spans.length; ) {
    rows.push(index);
    index = collapsed.has(spans[index].span_id) ? subtreeEnd[index] : index + 1;
  }
  return rows;
}

/** Every span with descendants: "collapse all" leaves the roots. */
export function collapsibleSpanIds(layout: TraceLayout): Set<string> {
  const ids = new Set<string>();
  layout.spans.forEach((span, index) => {
    if (descendantCount(layout, index) > 0) ids.add(span.span_id);
  });
  return ids;
}

/** The collapsed set without the ancestors of ``index``, so that a deep-linked span is visible. */
export function revealSpan(layout: TraceLayout, collapsed: ReadonlySet<string>, index: number): Set<string> {
  const next = new Set(collapsed);
  for (let parent = layout.parentIndex[index]; parent >= 0; parent = layout.parentIndex[parent]) {
    next.delete(layout.spans[parent].span_id);
  }
  return next;
}

/** Where a span's bar sits on the time axis, as fractions of the trace's duration (0..1). */
export function barGeometry(layout: TraceLayout, span: LayoutSpan): { left: number; width: number } {
  if (layout.durationMs <= 0) return { left: 0, width: 1 };
  const left = (span.start_time_unix_nano - layout.startNs) / 1e6 / layout.durationMs;
  const width = span.duration_ms / layout.durationMs;
  return { left: clamp(left), width: Math.min(clamp(width), 1 - clamp(left)) };
}

/** Evenly spaced axis ticks: offsets in milliseconds from the trace's start. */
export function timeTicks(durationMs: number, count = 5): number[] {
  if (durationMs <= 0) return [0];
  return Array.from({ length: count + 1 }, (_, step) => (durationMs * step) / count);
}

/** The spans on the critical path: from the root, repeatedly the child that finished last before the
 * point reached so far (Jaeger UI's definition: what the trace's duration waited on). */
export function criticalPath(layout: TraceLayout): Set<string> {
  const { spans, subtreeEnd } = layout;
  const onPath = new Set<string>();
  if (!spans.length) return onPath;
  let root = 0;
  for (let index = 0; index < spans.length; index = subtreeEnd[index]) {
    if (spans[index].end_time_unix_nano > spans[root].end_time_unix_nano) root = index;
  }
  const work: { index: number; until: number }[] = [{ index: root, until: spans[root].end_time_unix_nano }];
  while (work.length) {
    const { index, until } = work.pop()!;
    onPath.add(spans[index].span_id);
    const children: number[] = [];
    for (let child = index + 1; child < subtreeEnd[index]; child = subtreeEnd[child]) children.push(child);
    children.sort((a, b) => spans[b].end_time_unix_nano - spans[a].end_time_unix_nano);
    let cursor = Math.min(until, spans[index].end_time_unix_nano);
    for (const child of children) {
      if (spans[child].end_time_unix_nano > cursor || spans[child].end_time_unix_nano < spans[index].start_time_unix_nano) continue;
      work.push({ index: child, until: cursor });
      cursor = spans[child].start_time_unix_nano;
    }
  }
  return onPath;
}

function clamp(fraction: number): number {
  return Math.min(1, Math.max(0, fraction));
}

/** Indices of the spans that match and of their ancestors (so each match keeps its place in the tree), in
 * depth-first order; collapsing does not apply. One backward pass: a kept span keeps its parent. */
export function matchingRows(layout: TraceLayout, matches: (index: number) => boolean): number[] {
  const keep = new Uint8Array(layout.spans.length);
  for (let index = layout.spans.length - 1; index >= 0; index--) {
    if (keep[index] || matches(index)) {
      keep[index] = 1;
      const parent = layout.parentIndex[index];
      if (parent >= 0) keep[parent] = 1;
    }
  }
  const rows: number[] = [];
  keep.forEach((kept, index) => kept && rows.push(index));
  return rows;
}
