import { useCallback, useMemo, useState } from "react";
import { useInfiniteQuery, useQuery } from "@tanstack/react-query";
import { useSearchParams } from "react-router";
import { apiGet } from "../api/client";
import type { Breach } from "../api/types";
import { BreachFeed } from "../components/BreachFeed";
import { withArrived } from "../live/breaches";
import type { LiveMessage } from "../live/messages";
import { useLiveFeed } from "../live/useLiveFeed";

/** The metric_snapshots feed: breaches newest first, new ones arriving live, each linking to its trace. */
export function BreachesPage() {
  const [params, setParams] = useSearchParams();
  const metric = params.get("metric") ?? "";
  const service = params.get("service") ?? "";
  const [live, setLive] = useState<Breach[]>([]);
  const rules = useQuery({ queryKey: ["thresholds"], queryFn: ({ signal }) => apiGet("/api/v1/config/thresholds", {}, signal) });
  const metrics = [...new Set(rules.data?.data.map((rule) => rule.metric) ?? [])];
  const pages = useInfiniteQuery({
    queryKey: ["breaches", metric, service],
    queryFn: ({ pageParam, signal }) =>
      apiGet("/api/v1/breaches", { query: { metric, service, limit: 100, cursor: pageParam } }, signal),
    initialPageParam: null as string | null,
    getNextPageParam: (page) => page.next_cursor,
  });
  const onMessage = useCallback(
    (message: LiveMessage) => {
      if (message.type !== "breaches") return;
      const arrived = message.breaches.filter(
        (breach) => (!metric || breach.metric === metric) && (!service || breach.service_name === service),
      );
      if (arrived.length) setLive((current) => withArrived(current, arrived, 200));
    },
    [metric, service],
  );
  const status = useLiveFeed(onMessage);
  const breaches = useMemo(() => {
    const seen = new Set(live.map((breach) => breach.id));
    return [...live, ...(pages.data?.pages.flatMap((page) => page.data) ?? []).filter((breach) => !seen.has(breach.id))];
  }, [live, pages.data]);
  const set = (key: string, value: string) =>
    setParams((current) => { const next = new URLSearchParams(current); if (value) next.set(key, value); else next.delete(key); return next; }, { replace: true });

  return (
    <main className="page">
      <div className="page-body">
        <h1>
          <span className={`live-dot ${status}`} title={`live feed: ${status}`} />
          Breaches
        </h1>
        <div className="controls">
          <label>
            Metric{" "}
            <select value={metric} onChange={(event) => set("metric", event.currentTarget.value)}>
              <option value="">any</option>
              {metrics.map((name) => <option key={name}>{name}</option>)}
            </select>
          </label>
          <label>
            Service <input defaultValue={service} onKeyDown={(event) => event.key === "Enter" && set("service", event.currentTarget.value.trim())} onBlur={(event) => set("service", event.currentTarget.value.trim())} />
          </label>
        </div>
        {pages.error && <p className="error-text">{pages.error.message}</p>}
        <BreachFeed breaches={breaches} fresh={new Set(live.map((breach) => breach.id))} />
        {pages.hasNextPage && (
          <button onClick={() => pages.fetchNextPage()} disabled={pages.isFetchingNextPage} style={{ marginTop: 8 }}>
            Older breaches
          </button>
        )}
      </div>
    </main>
  );
}
