import { useCallback, useMemo } from "react";
import { useQuery } from "@tanstack/react-query";
import { Link, useParams, useSearchParams } from "react-router";
import { apiGet } from "../api/client";
import type { SkeletonSpan, TraceSkeleton } from "../api/types";
import { SpanDetailPanel } from "../span/SpanDetailPanel";
import { buildLayout } from "../waterfall/layout";
import { TraceHeader } from "../waterfall/TraceHeader";
import { Waterfall } from "../waterfall/Waterfall";

/** Spans beyond this are not fetched (the header says so); the API pages the skeleton 20,000 at a time. */
const MAX_SPANS = 100_000;
const PAGE = 20_000;

async function fetchSkeleton(traceId: string, signal: AbortSignal): Promise<TraceSkeleton> {
  const first = await apiGet("/api/v1/traces/{trace_id}", { path: { trace_id: traceId }, query: { limit: PAGE } }, signal);
  const spans: SkeletonSpan[] = first.spans;
  for (let cursor = first.next_cursor; cursor && spans.length < MAX_SPANS; ) {
    const page = await apiGet("/api/v1/traces/{trace_id}", { path: { trace_id: traceId }, query: { limit: PAGE, cursor } }, signal);
    spans.push(...page.spans);
    cursor = page.next_cursor;
  }
  performance.mark("trace-skeleton-parsed");
  return { ...first, spans };
}

/** One trace: its figures, the waterfall and the selected span's detail (deep link: ?span=<span id>). */
export function TracePage() {
  const { traceId = "" } = useParams();
  const [params, setParams] = useSearchParams();
  const selected = params.get("span");
  const skeleton = useQuery({
    queryKey: ["trace", traceId],
    queryFn: ({ signal }) => fetchSkeleton(traceId, signal),
    staleTime: 60_000,
    structuralSharing: false, // 10,000 spans: comparing with the previous answer costs more than it saves
  });
  const layout = useMemo(() => buildLayout(skeleton.data?.spans ?? []), [skeleton.data]);
  const services = useMemo(
    () => [...new Set(layout.spans.map((span) => span.service_name).filter((name): name is string => !!name))],
    [layout],
  );
  const select = useCallback(
    (spanId: string | null) =>
      setParams(
        (current) => {
          const next = new URLSearchParams(current);
          if (spanId) next.set("span", spanId);
          else next.delete("span");
          return next;
        },
        { replace: true },
      ),
    [setParams],
  );

  if (skeleton.isPending) return <p className="notice">Loading trace {traceId}…</p>;
  if (skeleton.error)
    return (
      <p className="notice">
        <span className="error-text">{skeleton.error.message}</span> · <Link to="/traces">back to traces</Link>
      </p>
    );
  return (
    <main className="page fixed trace-page">
      <TraceHeader trace={skeleton.data.trace} services={services} depth={layout.maxDepth + 1} loadedSpans={layout.spans.length} />
      <div className="trace-main">
        <Waterfall layout={layout} selectedSpanId={selected} onSelect={select} />
        {selected && <SpanDetailPanel traceId={traceId} spanId={selected} onClose={() => select(null)} />}
      </div>
    </main>
  );
}
