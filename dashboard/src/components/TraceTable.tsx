import { useEffect, useRef } from "react";
import { useVirtualizer } from "@tanstack/react-virtual";
import { Link, useNavigate } from "react-router";
import type { TraceSummary } from "../api/types";
import { formatCost, formatCount, formatDuration, formatTimestamp, formatTokens } from "../format";
import { colorFor } from "../theme";

export type SortKey = "start_time" | "duration" | "cost";
const COLUMNS = "170px minmax(200px,2fr) minmax(120px,1fr) 90px 70px 60px 80px 80px minmax(140px,1fr)";
const ROW_HEIGHT = 32;

function SortHeader({ label, sortKey, sort, order, onSort }: {
  label: string; sortKey: SortKey; sort: SortKey; order: string; onSort: (key: SortKey) => void;
}) {
  const arrow = sort === sortKey ? (order === "desc" ? " ↓" : " ↑") : "";
  return (
    <button className="sort" onClick={() => onSort(sortKey)} data-testid={`sort-${sortKey}`}>
      {label}
      {arrow}
    </button>
  );
}

function TraceBadges({ trace }: { trace: TraceSummary }) {
  return (
    <>
      {trace.error_count > 0 && <span className="badge error">{trace.error_count} error{trace.error_count > 1 ? "s" : ""}</span>}
      {trace.breaches.map((breach) => (
        <span key={breach.rule ?? breach.metric} className="badge breach" title={breach.rule ?? ""}>
          {breach.metric}
        </span>
      ))}
    </>
  );
}

/** The trace list's rows, virtualized; asks for the next page when the last rows come into view. */
export function TraceTable({ traces, sort, order, onSort, hasMore, loadMore }: {
  traces: TraceSummary[];
  sort: SortKey;
  order: string;
  onSort: (key: SortKey) => void;
  hasMore: boolean;
  loadMore: () => void;
}) {
  const scroller = useRef<HTMLDivElement>(null);
  const navigate = useNavigate();
  const virtual = useVirtualizer({
    count: traces.length,
    getScrollElement: () => scroller.current,
    estimateSize: () => ROW_HEIGHT,
    overscan: 10,
  });
  const items = virtual.getVirtualItems();
  const last = items.length ? items[items.length - 1].index : -1;
  useEffect(() => {
    if (hasMore && last >= traces.length - 20) loadMore();
  }, [hasMore, last, traces.length, loadMore]);

  return (
    <div className="table" ref={scroller} data-testid="trace-table">
      <div className="thead" style={{ gridTemplateColumns: COLUMNS, height: ROW_HEIGHT }}>
        <div><SortHeader label="Start" sortKey="start_time" sort={sort} order={order} onSort={onSort} /></div>
        <div>Root span</div>
        <div>Service</div>
        <div className="num"><SortHeader label="Duration" sortKey="duration" sort={sort} order={order} onSort={onSort} /></div>
        <div className="num">Spans</div>
        <div className="num">LLM</div>
        <div className="num">Tokens</div>
        <div className="num"><SortHeader label="Cost" sortKey="cost" sort={sort} order={order} onSort={onSort} /></div>
        <div>Status</div>
      </div>
      <div style={{ height: virtual.getTotalSize(), position: "relative" }}>
        {items.map((item) => {
          const trace = traces[item.index];
          return (
            <div
              key={trace.trace_id}
              className="trow"
              data-testid="trace-row"
              data-trace-id={trace.trace_id}
              style={{ gridTemplateColumns: COLUMNS, position: "absolute", top: 0, left: 0, right: 0, transform: `translateY(${item.start}px)` }}
              onClick={() => navigate(`/traces/${trace.trace_id}`)}
            >
              <div className="mono">{formatTimestamp(trace.start_time_unix_nano)}</div>
              <div title={trace.models.join(", ")}>
                <Link to={`/traces/${trace.trace_id}`} onClick={(event) => event.stopPropagation()}>
                  {trace.root_span_name ?? <span className="muted">(root missing)</span>}
                </Link>{" "}
                <span className="muted">{trace.models.join(", ")}</span>
              </div>
              <div>
                <span className="dot" style={{ display: "inline-block", width: 8, height: 8, borderRadius: 2, marginRight: 6, background: colorFor(trace.service_name) }} />
                {trace.service_name}
              </div>
              <div className="num">{formatDuration(trace.duration_ms)}</div>
              <div className="num">{formatCount(trace.span_count)}</div>
              <div className="num">{trace.llm_calls}</div>
              <div className="num" title={`in ${trace.input_tokens} / out ${trace.output_tokens}`}>{formatTokens(trace.total_tokens)}</div>
              <div className="num">{formatCost(trace.cost_usd)}</div>
              <div><TraceBadges trace={trace} /></div>
            </div>
          );
        })}
      </div>
      {!traces.length && <p className="notice">No traces match these filters.</p>}
    </div>
  );
}
