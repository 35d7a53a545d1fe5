import { Link } from "react-router";
import type { Breach } from "../api/types";
import { formatTimestamp } from "../format";

function formatValue(metric: string, value: number | null): string {
  if (value === null) return "—";
  if (metric === "cost_usd") return `$${value.toPrecision(3)}`;
  if (metric.endsWith("_ms")) return `${value.toLocaleString("en-US", { maximumFractionDigits: 1 })} ms`;
  return value.toLocaleString("en-US", { maximumFractionDigits: 3 });
}

/** Breached snapshots, newest first, each linking to its trace; ``fresh`` ones (just arrived live) flash. */
export function BreachFeed({ breaches, fresh = new Set<number>() }: { breaches: Breach[]; fresh?: ReadonlySet<number> }) {
  if (!breaches.length) return <p className="muted">No breaches.</p>;
  return (
    <ul className="feed" data-testid="breach-feed">
      {breaches.map((breach) => (
        <li key={breach.id} className={fresh.has(breach.id) ? "fresh" : ""} data-testid="breach">
          <span className="mono muted">{formatTimestamp(breach.computed_at_unix_nano)}</span>
          <span className="badge breach">{breach.metric}</span>
          <span>
            {formatValue(breach.metric, breach.value)} <span className="muted">vs {formatValue(breach.metric, breach.threshold)}</span>
          </span>
          <Link to={`/traces/${breach.trace_id}`}>
            {breach.service_name ?? "?"} · {breach.root_span_name ?? breach.trace_id.slice(0, 8)}
          </Link>
          <span className="muted mono" title="rule">{breach.rule}</span>
        </li>
      ))}
    </ul>
  );
}
