import { useState } from "react";
import { useQuery } from "@tanstack/react-query";
import { Link } from "react-router";
import { apiGet } from "../api/client";
import type { SpanDetail } from "../api/types";
import { formatDuration, formatTimestamp } from "../format";
import { AttributeTable } from "./AttributeTable";
import { EventList } from "./EventList";
import { GenAIView } from "./GenAIView";

const TABS = ["GenAI", "Attributes", "Events", "Links", "Resource"] as const;
type Tab = (typeof TABS)[number];

/** The selected span in full, fetched on selection: the GenAI view first, then the raw data. */
export function SpanDetailPanel({ traceId, spanId, onClose }: { traceId: string; spanId: string; onClose: () => void }) {
  const [tab, setTab] = useState<Tab>("GenAI");
  const detail = useQuery({
    queryKey: ["span", traceId, spanId],
    queryFn: ({ signal }) =>
      apiGet("/api/v1/traces/{trace_id}/spans/{span_id}", { path: { trace_id: traceId, span_id: spanId } }, signal),
    staleTime: Infinity,
  });
  return (
    <aside className="detail" data-testid="span-detail">
      <div className="detail-head">
        <div className="title">
          <h2>{detail.data?.name ?? spanId}</h2>
          <button onClick={onClose} aria-label="close" title="Close (Esc)">✕</button>
        </div>
        {detail.data && <SpanSummaryLine span={detail.data} />}
        <div className="tabs">
          {TABS.map((name) => (
            <button key={name} className={tab === name ? "active" : ""} onClick={() => setTab(name)}>
              {name}
              {name === "Events" && detail.data ? ` (${detail.data.events.length + detail.data.genai_events.length})` : ""}
              {name === "Attributes" && detail.data ? ` (${Object.keys(detail.data.attributes).length})` : ""}
            </button>
          ))}
        </div>
      </div>
      <div className="detail-body">
        {detail.isPending && <p className="muted">Loading…</p>}
        {detail.error && <p className="error-text">{detail.error.message}</p>}
        {detail.data && tab === "GenAI" && <GenAIView span={detail.data} />}
        {detail.data && tab === "Attributes" && <AttributeTable attributes={detail.data.attributes} />}
        {detail.data && tab === "Events" && <EventList events={detail.data.events} genaiEvents={detail.data.genai_events} />}
        {detail.data && tab === "Links" && <SpanLinks links={detail.data.links} />}
        {detail.data && tab === "Resource" && (
          <>
            <AttributeTable attributes={detail.data.resource.attributes} />
            <h2>Scope</h2>
            <AttributeTable attributes={{ name: detail.data.resource.scope_name, version: detail.data.resource.scope_version }} />
          </>
        )}
      </div>
    </aside>
  );
}

function SpanSummaryLine({ span }: { span: SpanDetail }) {
  return (
    <div className="muted">
      {span.service_name} · {span.kind} · {formatDuration(span.duration_ms)} · {formatTimestamp(span.start_time_unix_nano)} ·{" "}
      <span className={span.status_code === "error" ? "error-text" : ""}>
        {span.status_code}
        {span.status_message ? `: ${span.status_message}` : ""}
      </span>{" "}
      · <span className="mono">{span.span_id}</span>
    </div>
  );
}

function SpanLinks({ links }: { links: SpanDetail["links"] }) {
  if (!links.length) return <p className="muted">No links.</p>;
  return (
    <ul className="feed">
      {links.map((link, index) => (
        <li key={index}>
          <Link to={`/traces/${String(link.trace_id)}?span=${String(link.span_id)}`} className="mono">
            {String(link.trace_id)} / {String(link.span_id)}
          </Link>
          <AttributeTable attributes={(link.attributes ?? {}) as Record<string, unknown>} />
        </li>
      ))}
    </ul>
  );
}
