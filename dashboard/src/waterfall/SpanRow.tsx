import { memo } from "react";
import type { SkeletonSpan } from "../api/types";
import { formatCost, formatDuration, formatTokens } from "../format";
import { colorFor } from "../theme";

const INDENT = 14;
const MAX_INDENT_DEPTH = 30;

export interface SpanRowProps {
  span: SkeletonSpan;
  top: number;
  left: number;
  width: number;
  descendants: number;
  collapsed: boolean;
  critical: boolean;
  selected: boolean;
  focused: boolean;
  /** Found by the span search. */
  match: boolean;
  onToggle: (spanId: string) => void;
  onSelect: (spanId: string) => void;
}

function barLabel(span: SkeletonSpan): string {
  const parts = [formatDuration(span.duration_ms)];
  if (span.total_tokens) parts.push(`${formatTokens(span.total_tokens)} tok`);
  if (span.cost_usd !== null) parts.push(formatCost(span.cost_usd));
  // two nested spans describing one model call: the trace's totals count the other one
  if (span.duplicate_of) parts.push(`same call as ${span.duplicate_of.slice(0, 8)}…, counted there`);
  return parts.join(" · ");
}

/** One waterfall row: the span's name in its tree, and its bar on the time axis. */
export const SpanRow = memo(function SpanRow(props: SpanRowProps) {
  const { span, descendants, collapsed } = props;
  const error = span.status_code === "error";
  const labelOnLeft = props.left + props.width > 0.75;
  return (
    <div
      className={`span-row${props.selected ? " selected" : ""}${props.focused ? " focused" : ""}${props.match ? " match" : ""}`}
      style={{ transform: `translateY(${props.top}px)` }}
      data-testid="span-row"
      data-span-id={span.span_id}
      onClick={() => props.onSelect(span.span_id)}
    >
      <div className="span-name" style={{ paddingLeft: 4 + Math.min(span.depth, MAX_INDENT_DEPTH) * INDENT }}>
        {descendants > 0 ? (
          <button
            className="toggle"
            aria-label={collapsed ? "expand" : "collapse"}
            data-testid="span-toggle"
            onClick={(event) => {
              event.stopPropagation();
              props.onToggle(span.span_id);
            }}
          >
            {collapsed ? "▸" : "▾"}
          </button>
        ) : (
          <span className="toggle" />
        )}
        <span className="dot" style={{ background: colorFor(span.service_name) }} title={span.service_name ?? ""} />
        {error && <span className="error-mark" title={span.status_message ?? "error"}>!</span>}
        <span className="label" title={span.name}>
          {span.name}
          {span.model && <span className="muted"> {span.model}</span>}
        </span>
        {collapsed && <span className="hidden-count" data-testid="hidden-count">+{descendants}</span>}
      </div>
      <div className="span-timeline">
        <div
          className={`span-bar${error ? " error" : ""}${props.critical ? " critical" : ""}`}
          style={{ left: `${props.left * 100}%`, width: `${props.width * 100}%`, background: colorFor(span.service_name) }}
        />
        <span
          className="span-bar-label"
          style={
            labelOnLeft
              ? { right: `calc(${(1 - props.left) * 100}% + 4px)` }
              : { left: `calc(${(props.left + props.width) * 100}% + 4px)` }
          }
        >
          {barLabel(span)}
        </span>
      </div>
    </div>
  );
});
