import { useCallback, useEffect, useMemo, useRef, useState } from "react";
import { useVirtualizer } from "@tanstack/react-virtual";
import type { SkeletonSpan } from "../api/types";
import { formatCount, formatDuration } from "../format";
import {
  barGeometry,
  collapsibleSpanIds,
  criticalPath,
  descendantCount,
  matchingRows,
  revealSpan,
  timeTicks,
  visibleRows,
  type TraceLayout,
} from "./layout";
import { Minimap } from "./Minimap";
import { SpanRow } from "./SpanRow";
import { SpanSearch } from "./SpanSearch";
import { useWaterfallKeys } from "./useWaterfallKeys";

const ROW_HEIGHT = 26;

/** The row showing span ``spanIndex`` (rows are ascending span indices), -1 when it is hidden. */
function rowOf(rows: number[], spanIndex: number): number {
  const row = rowAtOrBefore(rows, spanIndex);
  return rows[row] === spanIndex ? row : -1;
}

/** The last row at or before span ``spanIndex``: for a hidden span, its collapsed ancestor's row. */
function rowAtOrBefore(rows: number[], spanIndex: number): number {
  let low = 0;
  let high = rows.length - 1;
  while (low <= high) {
    const middle = (low + high) >> 1;
    if (rows[middle] <= spanIndex) low = middle + 1;
    else high = middle - 1;
  }
  return Math.max(0, high);
}

/** Indices of the spans whose name, service, model, operation or id contain ``text`` (any case); null without text. */
function findSpans(layout: TraceLayout<SkeletonSpan>, text: string): Set<number> | null {
  const needle = text.trim().toLowerCase();
  if (!needle) return null;
  const found = new Set<number>();
  layout.spans.forEach((span, index) => {
    const fields = [span.name, span.service_name, span.model, span.operation, span.span_id, span.tool_name, span.agent_name];
    if (fields.some((field) => field?.toLowerCase().includes(needle))) found.add(index);
  });
  return found;
}

/** Jaeger-style waterfall: the span tree with collapsible subtrees and bars on a time axis, a minimap,
 * the critical path and errors marked; only the rows in view are in the DOM. Keys: j/k move, Enter opens the
 * span, Esc closes it, h/l (or ←/→) collapse and expand. */
export function Waterfall({ layout, selectedSpanId, onSelect }: {
  layout: TraceLayout<SkeletonSpan>;
  selectedSpanId: string | null;
  onSelect: (spanId: string | null) => void;
}) {
  const [collapsed, setCollapsed] = useState<Set<string>>(() => new Set());
  const [focusedSpan, setFocusedSpan] = useState(0);
  const [search, setSearch] = useState("");
  const [onlyMatches, setOnlyMatches] = useState(false);
  const searchBox = useRef<HTMLInputElement>(null);
  const matched = useMemo(() => findSpans(layout, search), [layout, search]);
  const filtered = matched !== null && onlyMatches;
  const rows = useMemo(
    () => (filtered ? matchingRows(layout, (index) => matched.has(index)) : visibleRows(layout, collapsed)),
    [layout, collapsed, matched, filtered],
  );
  const critical = useMemo(() => criticalPath(layout), [layout]);
  const indexOf = useMemo(() => new Map(layout.spans.map((span, index) => [span.span_id, index])), [layout]);
  const scroller = useRef<HTMLDivElement>(null);
  const virtual = useVirtualizer({
    count: rows.length,
    getScrollElement: () => scroller.current,
    estimateSize: () => ROW_HEIGHT,
    overscan: 15,
  });

  const toggle = useCallback((spanId: string) => {
    setCollapsed((current) => {
      const next = new Set(current);
      if (!next.delete(spanId)) next.add(spanId);
      return next;
    });
  }, []);
  const focused = rowAtOrBefore(rows, focusedSpan);
  const select = useCallback(
    (spanId: string) => {
      setFocusedSpan(indexOf.get(spanId) ?? 0);
      onSelect(spanId);
    },
    [indexOf, onSelect],
  );

  /** Show a span: open its collapsed ancestors, scroll to it. */
  const reveal = useCallback(
    (spanIndex: number) => {
      let visible = rows;
      if (rowOf(rows, spanIndex) < 0) {
        const opened = revealSpan(layout, collapsed, spanIndex);
        setCollapsed(opened);
        visible = visibleRows(layout, opened);
      }
      const row = rowOf(visible, spanIndex);
      setFocusedSpan(spanIndex);
      requestAnimationFrame(() => virtual.scrollToIndex(row, { align: "center" }));
    },
    [rows, layout, collapsed, virtual],
  );

  useEffect(() => {
    const index = selectedSpanId ? indexOf.get(selectedSpanId) : undefined;
    if (index !== undefined && rowOf(rows, index) < 0) reveal(index);
    else if (index !== undefined) setFocusedSpan(index);
  }, [selectedSpanId, indexOf]); // only when the selection changes (a deep link, a click), not on every collapse

  /** The next match after the focused row, revealed. */
  const nextMatch = useCallback(() => {
    if (!matched?.size) return;
    const from = focusedSpan;
    const sorted = [...matched].sort((a, b) => a - b);
    reveal(sorted.find((index) => index > from) ?? sorted[0]);
  }, [matched, focusedSpan, reveal]);

  useWaterfallKeys((action) => {
    const current = Math.min(focused, rows.length - 1);
    const spanId = layout.spans[rows[current]]?.span_id;
    const move = (row: number) => {
      const next = Math.max(0, Math.min(rows.length - 1, row));
      setFocusedSpan(rows[next]);
      virtual.scrollToIndex(next, { align: "auto" });
    };
    if (action === "down") move(current + 1);
    else if (action === "up") move(current - 1);
    else if (action === "open" && spanId) onSelect(spanId);
    else if (action === "close") onSelect(null);
    else if (action === "collapse" && spanId && descendantCount(layout, rows[current]) > 0 && !collapsed.has(spanId)) toggle(spanId);
    else if (action === "expand" && spanId && collapsed.has(spanId)) toggle(spanId);
    else if (action === "find") searchBox.current?.focus();
  });

  useEffect(() => {
    performance.mark("waterfall-rendered"); // the e2e test reports where a big trace's time goes
  }, [layout]);

  const items = virtual.getVirtualItems();
  const viewFrom = items.length ? rows[items[0].index] : 0;
  const viewTo = items.length ? rows[items[items.length - 1].index] : 0;
  const ticks = timeTicks(layout.durationMs);

  return (
    <section className="waterfall" style={{ ["--name-col" as string]: "34%" }} data-testid="waterfall">
      <div className="waterfall-tools">
        <button onClick={() => setCollapsed(collapsibleSpanIds(layout))} data-testid="collapse-all">Collapse all</button>
        <button onClick={() => setCollapsed(new Set())} data-testid="expand-all">Expand all</button>
        <SpanSearch
          ref={searchBox}
          search={search}
          onSearch={setSearch}
          onlyMatches={onlyMatches}
          onOnlyMatches={setOnlyMatches}
          matches={matched?.size ?? null}
          onNext={nextMatch}
        />
        <span className="muted" data-testid="row-count">
          {formatCount(rows.length)} of {formatCount(layout.spans.length)} spans shown
        </span>
        <span className="spacer" style={{ flex: 1 }} />
        <span className="muted">
          <span className="span-bar critical" style={{ position: "relative", display: "inline-block", width: 16, top: 0, background: "var(--fg-muted)" }} />{" "}
          critical path · <span className="error-text">!</span> error · j/k ↵ esc h/l
        </span>
      </div>
      <Minimap layout={layout} viewFrom={viewFrom} viewTo={viewTo} onPick={reveal} />
      <div className="axis">
        <div style={{ paddingLeft: 8, paddingTop: 4 }}>Span</div>
        <div className="ticks">
          {ticks.map((tick) => (
            <span key={tick} className="tick" style={{ left: `${(tick / (layout.durationMs || 1)) * 100}%` }}>
              {formatDuration(tick)}
            </span>
          ))}
        </div>
      </div>
      <div className="rows" ref={scroller} data-testid="waterfall-rows">
        <div style={{ height: virtual.getTotalSize(), position: "relative" }}>
          {items.map((item) => {
            const spanIndex = rows[item.index];
            const span = layout.spans[spanIndex];
            const { left, width } = barGeometry(layout, span);
            return (
              <SpanRow
                key={span.span_id}
                span={span}
                top={item.start}
                left={left}
                width={width}
                descendants={filtered ? 0 : descendantCount(layout, spanIndex)}
                match={!!matched?.has(spanIndex)}
                collapsed={collapsed.has(span.span_id)}
                critical={critical.has(span.span_id)}
                selected={span.span_id === selectedSpanId}
                focused={item.index === focused}
                onToggle={toggle}
                onSelect={select}
              />
            );
          })}
        </div>
      </div>
    </section>
  );
}
