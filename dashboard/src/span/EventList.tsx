import type { GenAIEvent, SpanDetail } from "../api/types";
import { formatTimestamp } from "../format";
import { AttributeTable } from "./AttributeTable";

/** The span's events, and the GenAI events (from span events or log records) with their bodies. */
export function EventList({ events, genaiEvents }: { events: SpanDetail["events"]; genaiEvents: GenAIEvent[] }) {
  if (!events.length && !genaiEvents.length) return <p className="muted">No events.</p>;
  return (
    <>
      {events.map((event, index) => (
        <div key={`e${index}`} className="event">
          <strong>{String(event.name)}</strong> <span className="muted">{formatTimestamp(Number(event.time_unix_nano))}</span>
          <AttributeTable attributes={(event.attributes ?? {}) as Record<string, unknown>} />
        </div>
      ))}
      {genaiEvents.length > 0 && <h2>GenAI events</h2>}
      {genaiEvents.map((event, index) => (
        <div key={`g${index}`} className="event">
          <strong>{event.name}</strong> <span className="muted">{formatTimestamp(event.time_unix_nano)} · {event.source}</span>
          {event.body !== null && event.body !== undefined && <pre className="pre">{JSON.stringify(event.body, null, 2)}</pre>}
          <AttributeTable attributes={event.attributes} />
        </div>
      ))}
    </>
  );
}
