import { useCallback, useMemo, useState } from "react";
import { useInfiniteQuery } from "@tanstack/react-query";
import { useSearchParams } from "react-router";
import { apiGet, type QueryParams } from "../api/client";
import { TraceFilters } from "../components/TraceFilters";
import { TraceTable, type SortKey } from "../components/TraceTable";
import type { LiveMessage } from "../live/messages";
import { useLiveFeed } from "../live/useLiveFeed";
import { isPreset, presetRange } from "../timeRange";

const PASSED_ON = [
  "service", "model", "status", "breached", "min_duration_ms", "max_duration_ms", "min_cost_usd", "max_cost_usd",
  "root_name", "agent", "provider", "user_id", "conversation_id",
] as const;

/** The trace list: filters in the URL, sortable columns, infinite scroll on the API's keyset cursor. */
export function TracesPage() {
  const [params, setParams] = useSearchParams();
  const [refreshed, setRefreshed] = useState(0);
  const sort = (params.get("sort") ?? "start_time") as SortKey;
  const order = params.get("order") === "asc" ? "asc" : "desc";

  const query = useMemo(() => {
    const range = params.get("range") ?? "24h";
    const window =
      range === "custom" ? { start: params.get("start"), end: params.get("end") } : isPreset(range) ? presetRange(range) : {};
    const filters: QueryParams<"/api/v1/traces"> = { ...window, sort, order, limit: 100, attr: params.getAll("attr") };
    for (const key of PASSED_ON) filters[key] = params.get(key);
    return filters;
  }, [params, refreshed]); // a preset's window is computed once per filter change or refresh, so pages share it

  const traces = useInfiniteQuery({
    queryKey: ["traces", query],
    queryFn: ({ pageParam, signal }) => apiGet("/api/v1/traces", { query: { ...query, cursor: pageParam } }, signal),
    initialPageParam: null as string | null,
    getNextPageParam: (page) => page.next_cursor,
  });

  const rows = useMemo(() => traces.data?.pages.flatMap((page) => page.data) ?? [], [traces.data]);

  // New traces are announced, not inserted: the list (and its pages) stays put until the user refreshes.
  const [arrived, setArrived] = useState(0);
  const onLive = useCallback((message: LiveMessage) => {
    if (message.type === "traces") setArrived((count) => count + message.traces.length);
  }, []);
  useLiveFeed(onLive);
  const refresh = () => {
    setArrived(0);
    setRefreshed((count) => count + 1);
  };
  const setSort = (key: SortKey) =>
    setParams(
      (current) => {
        const next = new URLSearchParams(current);
        const flip = sort === key && order === "desc";
        next.set("sort", key);
        next.set("order", flip ? "asc" : "desc");
        return next;
      },
      { replace: true },
    );

  return (
    <main className="page fixed">
      <TraceFilters params={params} setParams={setParams} />
      <div className="notice" style={{ display: "flex", gap: 12, alignItems: "center" }}>
        <span data-testid="trace-count">
          {traces.isPending ? "Loading…" : `${rows.length}${traces.hasNextPage ? "+" : ""} traces`}
        </span>
        <button onClick={refresh} className={arrived ? "active" : ""} data-testid="refresh">
          {arrived ? `${arrived} new trace${arrived > 1 ? "s" : ""} · refresh` : "Refresh"}
        </button>
        {traces.error && <span className="error-text">{traces.error.message}</span>}
      </div>
      <TraceTable
        traces={rows}
        sort={sort}
        order={order}
        onSort={setSort}
        hasMore={!!traces.hasNextPage}
        loadMore={() => !traces.isFetchingNextPage && traces.fetchNextPage()}
      />
    </main>
  );
}
