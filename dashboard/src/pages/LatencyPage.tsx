import { useMemo } from "react";
import { useQuery } from "@tanstack/react-query";
import { useSearchParams } from "react-router";
import { apiGet } from "../api/client";
import type { LatencyStats, Threshold } from "../api/types";
import { Choice } from "../components/Choice";
import { TimeSeriesChart, type ChartSeries, type ChartThreshold } from "../components/TimeSeriesChart";
import { formatCount, formatDuration } from "../format";
import { isPreset, presetRange, type Preset } from "../timeRange";

type Of = "trace" | "llm" | "ttft";
type GroupBy = "none" | "service" | "model";
const OF: readonly (readonly [Of, string])[] = [["trace", "Trace duration"], ["llm", "LLM calls"], ["ttft", "Time to first chunk"]];
const GROUP: readonly (readonly [GroupBy, string])[] = [["none", "All"], ["service", "By service"], ["model", "By model"]];
const RANGES: readonly (readonly [Preset, string])[] = [["1h", "1h"], ["6h", "6h"], ["24h", "24h"], ["7d", "7d"]];
/** About 30 buckets per range: enough values in each for p95 and p99 to mean something. */
export const BUCKETS: Record<Preset, string> = { "15m": "30s", "1h": "2m", "6h": "15m", "24h": "1h", "7d": "6h" };
const METRIC_OF: Record<Of, string | null> = { trace: "latency_ms", llm: null, ttft: "ttft_ms" };
const MAX_GROUPS = 8;
const PERCENTILE_COLORS = { p50: "#59a14f", p95: "#f28e2b", p99: "#e15759" };

/** The configured rules that apply to one group's chart: unscoped ones, and those scoped to this group. */
export function thresholdsFor(rules: Threshold[], metric: string | null, groupBy: GroupBy, group: string | null): ChartThreshold[] {
  return rules
    .filter((rule) => rule.metric === metric && rule.above !== null)
    .filter((rule) => {
      if (rule.agent) return false;
      if (groupBy === "none") return true;
      const scope = groupBy === "service" ? rule.service : rule.model;
      const other = groupBy === "service" ? rule.model : rule.service;
      return !other && (!scope || scope === group);
    })
    .map((rule) => ({ label: rule.rule, value: rule.above! }));
}

/** p50/p95/p99 over time of trace durations, LLM-call durations or time to first chunk, by service or model,
 * with the configured thresholds as dashed lines. */
export function LatencyPage() {
  const [params, setParams] = useSearchParams();
  const of = (params.get("of") ?? "trace") as Of;
  const groupBy = (params.get("group_by") ?? "none") as GroupBy;
  const rangeParam = params.get("range");
  const range: Preset = isPreset(rangeParam) ? rangeParam : "1h";
  const set = (key: string, value: string) => setParams((current) => { const next = new URLSearchParams(current); next.set(key, value); return next; }, { replace: true });

  const window = useMemo(() => presetRange(range), [range]);
  const stats = useQuery({
    queryKey: ["latency", of, groupBy, window],
    queryFn: ({ signal }) => apiGet("/api/v1/stats/latency", { query: { of, group_by: groupBy, bucket: BUCKETS[range], ...window } }, signal),
    refetchInterval: 30_000,
  });
  const rules = useQuery({
    queryKey: ["thresholds"],
    queryFn: ({ signal }) => apiGet("/api/v1/config/thresholds", {}, signal),
    staleTime: Infinity,
  });

  return (
    <main className="page">
      <div className="page-body">
        <h1>Latency</h1>
        <div className="controls">
          <Choice label="Of" value={of} options={OF} onChange={(value) => set("of", value)} />
          <Choice label="Group" value={groupBy} options={GROUP} onChange={(value) => set("group_by", value)} />
          <Choice label="Range" value={range} options={RANGES} onChange={(value) => set("range", value)} />
        </div>
        {stats.error && <p className="error-text">{stats.error.message}</p>}
        {stats.data && !stats.data.series.length && <p className="muted">No data in this range.</p>}
        <div className="panels">
          {stats.data && topSeries(stats.data).map((entry) => (
            <LatencyPanel
              key={entry.group ?? "(all)"}
              title={entry.group ?? (groupBy === "none" ? "all" : "(none)")}
              entry={entry}
              thresholds={thresholdsFor(rules.data?.data ?? [], METRIC_OF[of], groupBy, entry.group)}
              xRange={[Date.parse(window.start) / 1000, Date.parse(window.end) / 1000]}
            />
          ))}
        </div>
      </div>
    </main>
  );
}

function topSeries(stats: LatencyStats): LatencyStats["series"] {
  const total = (entry: LatencyStats["series"][number]) => entry.points.reduce((sum, point) => sum + point.count, 0);
  return [...stats.series].sort((a, b) => total(b) - total(a)).slice(0, MAX_GROUPS);
}

function LatencyPanel({ title, entry, thresholds, xRange }: {
  title: string;
  entry: LatencyStats["series"][number];
  thresholds: ChartThreshold[];
  xRange: [number, number];
}) {
  const series = useMemo<ChartSeries[]>(
    () =>
      (["p50", "p95", "p99"] as const).map((percentile) => ({
        label: percentile,
        color: PERCENTILE_COLORS[percentile],
        points: entry.points.map((point) => [point.time_unix_nano / 1e9, point[`${percentile}_ms`]] as [number, number | null]),
      })),
    [entry],
  );
  const count = entry.points.reduce((sum, point) => sum + point.count, 0);
  return (
    <section className="panel" data-testid="latency-panel">
      <h2>
        {title} <span className="muted">· {formatCount(count)} values</span>
      </h2>
      <TimeSeriesChart series={series} thresholds={thresholds} format={formatDuration} xRange={xRange} />
    </section>
  );
}
