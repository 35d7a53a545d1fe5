import type { TraceSummary } from "../api/types";
import { formatCost, formatCount, formatDuration, formatTimestamp, formatTokens } from "../format";
import { colorFor } from "../theme";

function Figure({ label, value, testId }: { label: string; value: React.ReactNode; testId?: string }) {
  return (
    <div className="figure" data-testid={testId}>
      <span className="label">{label}</span>
      <span className="value">{value}</span>
    </div>
  );
}

/** The figures of a whole trace, above its waterfall. */
export function TraceHeader({ trace, services, depth, loadedSpans }: {
  trace: TraceSummary;
  services: string[];
  depth: number;
  loadedSpans: number;
}) {
  return (
    <header className="trace-header">
      <h1>
        {trace.root_span_name ?? "(root span missing)"} <span className="muted mono">{trace.trace_id}</span>
      </h1>
      <div className="figures">
        <Figure label="Start" value={formatTimestamp(trace.start_time_unix_nano)} />
        <Figure label="Duration" value={formatDuration(trace.duration_ms)} testId="trace-duration" />
        <Figure
          label="Services"
          value={services.map((service) => (
            <span key={service} style={{ marginRight: 8 }}>
              <span className="dot" style={{ display: "inline-block", width: 8, height: 8, borderRadius: 2, marginRight: 4, background: colorFor(service) }} />
              {service}
            </span>
          ))}
        />
        <Figure label="Depth" value={depth} />
        <Figure label="Spans" value={formatCount(trace.span_count)} testId="trace-spans" />
        <Figure label="LLM calls" value={trace.llm_calls} />
        <Figure
          label="Tokens (in / out)"
          value={`${formatTokens(trace.total_tokens)} (${formatTokens(trace.input_tokens)} / ${formatTokens(trace.output_tokens)})`}
        />
        <Figure label="Cost" value={formatCost(trace.cost_usd)} testId="trace-cost" />
        <Figure
          label="Errors"
          value={trace.error_count ? <span className="error-text">{trace.error_count}</span> : 0}
        />
        <Figure
          label="Breaches"
          value={
            trace.breaches.length
              ? trace.breaches.map((breach) => (
                  <span key={breach.rule ?? breach.metric} className="badge breach" title={breach.rule ?? ""}>
                    {breach.metric} {breach.value !== null && breach.value.toLocaleString("en-US", { maximumFractionDigits: 4 })}
                  </span>
                ))
              : "none"
          }
        />
      </div>
      {loadedSpans < trace.span_count && (
        <p className="notice" style={{ padding: "4px 0 0" }}>
          Showing the first {formatCount(loadedSpans)} of {formatCount(trace.span_count)} spans.
        </p>
      )}
    </header>
  );
}
