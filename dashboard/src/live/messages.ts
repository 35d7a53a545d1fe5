/** Messages of the live feed (WebSocket /api/v1/live, docs/query-api.md); the feed is not in OpenAPI. */
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
  | { type: "trace"; trace: TraceSummary }
  | { type: "breach"; breach: Breach; cursor: string }
  | { type: "cost_tick"; time_unix_nano: number; last_minute: CostWindow; today: CostWindow }
  | { type: "lagged"; dropped: number }
  | { type: "heartbeat"; time_unix_nano: number }
  | { type: "error"; message: string };
