/** Formatters for the figures the dashboard shows; every page uses these, never its own. */

export const DASH = "—";

export function formatDuration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return DASH;
  if (ms < 0) return `-${formatDuration(-ms)}`;
  if (ms === 0) return "0ms";
  if (ms < 1) return `${Math.round(ms * 1000)}µs`;
  if (ms < 10) return `${trim(ms.toFixed(2))}ms`;
  if (ms < 1000) return `${trim(ms.toFixed(ms < 100 ? 1 : 0))}ms`;
  if (ms < 60_000) return `${trim((ms / 1000).toFixed(2))}s`;
  const minutes = Math.floor(ms / 60_000);
  if (minutes < 60) return `${minutes}m ${Math.round((ms % 60_000) / 1000)}s`;
  return `${Math.floor(minutes / 60)}h ${minutes % 60}m`;
}

/** Unknown cost (a model without a price) is a dash, never $0. */
export function formatCost(usd: number | null | undefined): string {
  if (usd === null || usd === undefined) return DASH;
  if (usd === 0) return "$0";
  if (Math.abs(usd) < 0.01) return `$${trim(usd.toPrecision(2))}`;
  if (Math.abs(usd) < 100) return `$${usd.toFixed(2)}`;
  return `$${Math.round(usd).toLocaleString("en-US")}`;
}

export function formatTokens(count: number | null | undefined): string {
  if (count === null || count === undefined) return DASH;
  if (count < 1000) return String(count);
  if (count < 1_000_000) return `${trim((count / 1000).toFixed(count < 10_000 ? 1 : 0))}k`;
  return `${trim((count / 1_000_000).toFixed(1))}M`;
}

export function formatCount(count: number | null | undefined): string {
  return count === null || count === undefined ? DASH : count.toLocaleString("en-US");
}

export function formatPercent(share: number | null | undefined): string {
  return share === null || share === undefined ? DASH : `${trim((share * 100).toFixed(1))}%`;
}

export function formatScore(score: number | null | undefined): string {
  return score === null || score === undefined ? DASH : trim(score.toFixed(3));
}

const pad = (value: number, width = 2) => String(value).padStart(width, "0");

/** Local wall-clock time of a unix-nanosecond timestamp; the date only when it is not today. */
export function formatTimestamp(unixNano: number, now: Date = new Date()): string {
  const date = new Date(Math.round(unixNano / 1e6));
  const time = `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}.${pad(date.getMilliseconds(), 3)}`;
  if (date.toDateString() === now.toDateString()) return time;
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ${time}`;
}

function trim(fixed: string): string {
  return fixed.includes(".") && !fixed.includes("e") ? fixed.replace(/\.?0+$/, "") : fixed;
}
