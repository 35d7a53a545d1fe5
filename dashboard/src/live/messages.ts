/**
 * Messages of the live feed (WebSocket /api/v1/live, docs/query-api.md); the feed is not in OpenAPI.
 * Traces and breaches come in batches of up to 100: what settled together (within about 100 ms) comes together.
 */
import type { Breach, TraceSummary } from "../api/types";

export interface CostWindow {
  cost_usd: number | null;
  input_tokens: number;
  output_tokens: number;
  llm_requests: number;
  by_model: { model: string | null; cost_usd: number | null; input_tokens: number; output_tokens: number; llm_requests: number }[];
}

export type LiveMessage =
  | { type: "subscribed"; services: string[] | null; heartbeat_seconds: number; queue_limit: number }
  | { type: "traces"; traces: TraceSummary[] }
  | { type: "breaches"; breaches: Breach[]; cursor: string }
  | { type: "cost_tick"; time_unix_nano: number; last_minute: CostWindow; today: CostWindow }
  | { type: "lagged"; dropped: number; traces: number; breaches: number }
  | { type: "heartbeat"; time_unix_nano: number }
  | { type: "error"; message: string };
