import type { CostWindow } from "../live/messages";
import { formatCost, formatCount } from "../format";

function Card({ label, value, sub, testId }: { label: string; value: string; sub?: string; testId?: string }) {
  return (
    <div className="card">
      <div className="label">{label}</div>
      <div className="value" data-testid={testId}>{value}</div>
      {sub && <div className="sub">{sub}</div>}
    </div>
  );
}

/** The headline spend figures: today and the last minute from the live tick, the last hour from the API. */
export function CostTicker({ today, lastMinute, lastHour, lastHourRequests }: {
  today: CostWindow | null;
  lastMinute: CostWindow | null;
  lastHour: number | null | undefined;
  lastHourRequests: number | undefined;
}) {
  const per1k = today && today.llm_requests && today.cost_usd !== null ? (1000 * today.cost_usd) / today.llm_requests : null;
  return (
    <div className="cards">
      <Card label="Spend today (UTC)" value={formatCost(today?.cost_usd)} sub={today ? `${formatCount(today.llm_requests)} LLM requests` : "waiting for the live feed"} testId="spend-today" />
      <Card label="Last hour" value={formatCost(lastHour)} sub={lastHourRequests !== undefined ? `${formatCount(lastHourRequests)} LLM requests` : undefined} testId="spend-hour" />
      <Card label="Last minute" value={formatCost(lastMinute?.cost_usd)} sub={lastMinute ? `${formatCount(lastMinute.llm_requests)} LLM requests` : undefined} testId="spend-minute" />
      <Card label="Cost per 1,000 requests" value={formatCost(per1k)} sub="today" testId="cost-per-1k" />
      <Card label="Tokens today" value={today ? formatCount(today.input_tokens + today.output_tokens) : "—"} sub={today ? `in ${formatCount(today.input_tokens)} / out ${formatCount(today.output_tokens)}` : undefined} />
    </div>
  );
}
