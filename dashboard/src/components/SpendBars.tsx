import { formatCost } from "../format";
import { colorFor } from "../theme";

export interface Spend {
  name: string | null;
  cost_usd: number | null;
  detail?: string;
}

/** Spend per model or service as horizontal bars, largest first. */
export function SpendBars({ spends, testId }: { spends: Spend[]; testId?: string }) {
  const sorted = [...spends].sort((a, b) => (b.cost_usd ?? 0) - (a.cost_usd ?? 0));
  const most = Math.max(...sorted.map((spend) => spend.cost_usd ?? 0), 1e-12);
  if (!sorted.length) return <p className="muted">No LLM calls yet.</p>;
  return (
    <div className="bars" data-testid={testId}>
      {sorted.map((spend) => (
        <div key={spend.name ?? "(none)"} className="bar-row">
          <span title={spend.detail}>{spend.name ?? <span className="muted">(none)</span>}</span>
          <div className="bar-track">
            <div className="bar-fill" style={{ width: `${((spend.cost_usd ?? 0) / most) * 100}%`, background: colorFor(spend.name) }} />
          </div>
          <span className="num">{formatCost(spend.cost_usd)}</span>
        </div>
      ))}
    </div>
  );
}
