import { useCallback, useMemo, useRef, useState } from "react";
import { useQuery, useQueryClient } from "@tanstack/react-query";
import { apiGet } from "../api/client";
import type { Breach } from "../api/types";
import { BreachFeed } from "../components/BreachFeed";
import { CostTicker } from "../components/CostTicker";
import { SpendBars } from "../components/SpendBars";
import { TimeSeriesChart, type ChartSeries } from "../components/TimeSeriesChart";
import { formatCost } from "../format";
import { withArrived } from "../live/breaches";
import type { CostWindow, LiveMessage } from "../live/messages";
import { useLiveFeed } from "../live/useLiveFeed";
import { startOfUtcDay } from "../timeRange";
import { cssVar } from "../theme";

const KEEP_TICKS = 3_600;
const REFRESH_AFTER_MS = 3_000;

interface Tick {
  time: number;
  today: CostWindow;
  lastMinute: CostWindow;
}

/** Live spend: the WebSocket's once-a-second cost tick drives the figures and the running chart; the REST
 * stats give the day's history, the last hour and the split by service, refreshed when spend moves. */
export function CostPage() {
  const client = useQueryClient();
  const [ticks, setTicks] = useState<Tick[]>([]);
  const [liveBreaches, setLiveBreaches] = useState<Breach[]>([]);
  const lastRefresh = useRef(0);
  const dayStart = useMemo(() => startOfUtcDay(), []);

  const day = useQuery({
    queryKey: ["cost", "day", dayStart],
    queryFn: ({ signal }) => apiGet("/api/v1/stats/cost", { query: { start: dayStart, bucket: "5m" } }, signal),
  });
  const byService = useQuery({
    queryKey: ["cost", "by-service", dayStart],
    queryFn: ({ signal }) => apiGet("/api/v1/stats/cost", { query: { start: dayStart, bucket: "1h", group_by: "service" } }, signal),
  });
  const lastHour = useQuery({
    queryKey: ["cost", "last-hour"],
    queryFn: ({ signal }) =>
      apiGet("/api/v1/stats/cost", { query: { start: new Date(Date.now() - 3_600_000).toISOString(), bucket: "1h" } }, signal),
  });
  const recentBreaches = useQuery({
    queryKey: ["breaches", "recent"],
    queryFn: ({ signal }) => apiGet("/api/v1/breaches", { query: { limit: 20 } }, signal),
  });

  const onMessage = useCallback(
    (message: LiveMessage) => {
      if (message.type === "cost_tick") {
        setTicks((current) => {
          const previous = current[current.length - 1];
          const moved = previous && previous.today.cost_usd !== message.today.cost_usd;
          if (moved && Date.now() - lastRefresh.current > REFRESH_AFTER_MS) {
            lastRefresh.current = Date.now();
            void client.invalidateQueries({ queryKey: ["cost"] });
          }
          const tick = { time: message.time_unix_nano / 1e9, today: message.today, lastMinute: message.last_minute };
          return [...current.slice(-KEEP_TICKS + 1), tick];
        });
      } else if (message.type === "breaches") {
        setLiveBreaches((current) => withArrived(current, message.breaches, 50));
      }
    },
    [client],
  );
  const status = useLiveFeed(onMessage);
  const latest = ticks[ticks.length - 1] ?? null;

  const series = useMemo<ChartSeries[]>(() => {
    let total = 0;
    const firstTick = ticks[0]?.time ?? Infinity;
    const history: [number, number | null][] = [];
    const bucket = day.data?.bucket_seconds ?? 300;
    for (const point of day.data?.series[0]?.points ?? []) {
      total += point.cost_usd ?? 0;
      const end = point.time_unix_nano / 1e9 + bucket;
      if (end < firstTick) history.push([end, total]);
    }
    const live: [number, number | null][] = ticks.map((tick) => [tick.time, tick.today.cost_usd ?? 0]);
    return [{ label: "spend today", color: cssVar("--accent") || "#2f6fdb", points: [...history, ...live] }];
  }, [day.data, ticks]);

  const breaches = useMemo(() => {
    const seen = new Set(liveBreaches.map((breach) => breach.id));
    return [...liveBreaches, ...(recentBreaches.data?.data ?? []).filter((breach) => !seen.has(breach.id))].slice(0, 30);
  }, [liveBreaches, recentBreaches.data]);

  return (
    <main className="page">
      <div className="page-body">
        <h1>
          <span className={`live-dot ${status}`} title={`live feed: ${status}`} data-testid="live-status" data-status={status} />
          Cost
        </h1>
        <CostTicker
          today={latest?.today ?? null}
          lastMinute={latest?.lastMinute ?? null}
          lastHour={lastHour.data?.totals.cost_usd}
          lastHourRequests={lastHour.data?.totals.llm_requests}
        />
        <div className="panels">
          <section className="panel" style={{ gridColumn: "1 / -1" }}>
            <h2>Spend today, live</h2>
            <TimeSeriesChart series={series} format={formatCost} testId="spend-chart" />
          </section>
          <section className="panel">
            <h2>By model (today)</h2>
            <SpendBars
              testId="spend-by-model"
              spends={(latest?.today.by_model ?? []).map((model) => ({
                name: model.model,
                cost_usd: model.cost_usd,
                detail: `${model.llm_requests} requests`,
              }))}
            />
          </section>
          <section className="panel">
            <h2>By service (today)</h2>
            <SpendBars
              testId="spend-by-service"
              spends={(byService.data?.series ?? []).map((service) => ({
                name: service.group,
                cost_usd: service.totals.cost_usd,
                detail: `${service.totals.llm_requests} requests`,
              }))}
            />
          </section>
          <section className="panel" style={{ gridColumn: "1 / -1" }}>
            <h2>Breaches as they happen</h2>
            <BreachFeed breaches={breaches} fresh={new Set(liveBreaches.map((breach) => breach.id))} />
          </section>
        </div>
      </div>
    </main>
  );
}
