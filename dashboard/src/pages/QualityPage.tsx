import { useMemo } from "react";
import { useQuery } from "@tanstack/react-query";
import { Link, useSearchParams } from "react-router";
import { apiGet } from "../api/client";
import type { EvaluationStats } from "../api/types";
import { Choice } from "../components/Choice";
import { TimeSeriesChart, type ChartSeries } from "../components/TimeSeriesChart";
import { formatCount, formatPercent, formatScore, formatTimestamp } from "../format";
import { BUCKETS } from "./LatencyPage";
import { isPreset, presetRange, type Preset } from "../timeRange";

const RANGES: readonly (readonly [Preset, string])[] = [["1h", "1h"], ["6h", "6h"], ["24h", "24h"], ["7d", "7d"]];
type Series = EvaluationStats["series"][number];

/** Share of scores below the threshold over the whole range (each bucket weighted by its count). */
export function shareBelow(series: Series): number | null {
  let below = 0;
  let count = 0;
  for (const point of series.points) {
    if (point.share_below === null) continue;
    below += point.share_below * point.count;
    count += point.count;
  }
  return count ? below / count : null;
}

/** Evaluation scores over time per evaluation name, against the configured threshold, so that a drifting
 * judge or a falling faithfulness score shows. */
export function QualityPage() {
  const [params, setParams] = useSearchParams();
  const rangeParam = params.get("range");
  const range: Preset = isPreset(rangeParam) ? rangeParam : "24h";
  const window = useMemo(() => presetRange(range), [range]);
  const stats = useQuery({
    queryKey: ["evaluation-stats", window],
    queryFn: ({ signal }) => apiGet("/api/v1/stats/evaluations", { query: { ...window, bucket: BUCKETS[range] } }, signal),
    refetchInterval: 30_000,
  });
  return (
    <main className="page">
      <div className="page-body">
        <h1>Quality</h1>
        <div className="controls">
          <Choice label="Range" value={range} options={RANGES} onChange={(value) => setParams({ range: value }, { replace: true })} />
        </div>
        {stats.error && <p className="error-text">{stats.error.message}</p>}
        {stats.data && !stats.data.series.length && <p className="muted">No evaluations in this range.</p>}
        <div className="panels">
          {stats.data?.series.map((series) => <EvaluationPanel key={series.name} series={series} window={window} />)}
        </div>
      </div>
    </main>
  );
}

function EvaluationPanel({ series, window }: { series: Series; window: { start: string; end: string } }) {
  const chart = useMemo<ChartSeries[]>(
    () => [
      { label: "mean", color: "#4e79a7", points: series.points.map((point) => [point.time_unix_nano / 1e9, point.mean]) },
      { label: "p50", color: "#76b7b2", dash: [4, 3], points: series.points.map((point) => [point.time_unix_nano / 1e9, point.p50]) },
    ],
    [series],
  );
  const share = useMemo<ChartSeries[]>(
    () => [{ label: "share below", color: "#e15759", points: series.points.map((point) => [point.time_unix_nano / 1e9, point.share_below]) }],
    [series],
  );
  const lowest = Math.min(series.threshold ?? 1, ...series.points.map((point) => point.mean ?? 1));
  const scoreRange: [number, number] = [Math.max(0, Math.floor((lowest - 0.05) * 10) / 10), 1];
  const thresholds = useMemo(() => (series.threshold === null ? [] : [{ label: `threshold ${series.threshold}`, value: series.threshold }]), [series.threshold]);
  const count = series.points.reduce((sum, point) => sum + point.count, 0);
  const xRange: [number, number] = [Date.parse(window.start) / 1000, Date.parse(window.end) / 1000];
  const low = useQuery({
    queryKey: ["evaluations-below", series.name, series.threshold, window],
    queryFn: ({ signal }) =>
      apiGet("/api/v1/evaluations", { query: { name: series.name, below: series.threshold, limit: 5, ...window } }, signal),
    enabled: series.threshold !== null,
  });
  return (
    <section className="panel" data-testid="quality-panel">
      <h2>
        {series.name}{" "}
        <span className="muted">
          · {formatCount(count)} scores · threshold {series.threshold ?? "none"} ·{" "}
          <span data-testid="share-below">{formatPercent(shareBelow(series))}</span> below
        </span>
      </h2>
      <TimeSeriesChart series={chart} thresholds={thresholds} format={formatScore} xRange={xRange} yRange={scoreRange} />
      {series.threshold !== null && (
        <TimeSeriesChart series={share} format={formatPercent} xRange={xRange} yRange={[0, 1]} height={120} />
      )}
      {low.data && low.data.data.length > 0 && (
        <ul className="feed">
          {low.data.data.map((evaluation) => (
            <li key={evaluation.id}>
              <span className="mono muted">{formatTimestamp(evaluation.time_unix_nano)}</span>
              <span className="error-text">{formatScore(evaluation.score)}</span>
              {evaluation.trace_id && (
                <Link to={`/traces/${evaluation.trace_id}${evaluation.span_id ? `?span=${evaluation.span_id}` : ""}`}>
                  trace {evaluation.trace_id.slice(0, 12)}…
                </Link>
              )}
              <span className="muted">{evaluation.explanation}</span>
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}
