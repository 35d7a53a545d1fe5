import { useQuery } from "@tanstack/react-query";
import type { SetURLSearchParams } from "react-router";
import { apiGet } from "../api/client";
import { PRESETS, fromLocalInput, toLocalInput } from "../timeRange";

/** Filters of the trace list, kept in the URL (a view can be shared). Text fields apply on Enter or blur. */
export function TraceFilters({ params, setParams }: { params: URLSearchParams; setParams: SetURLSearchParams }) {
  const services = useQuery({ queryKey: ["services"], queryFn: ({ signal }) => apiGet("/api/v1/services", {}, signal) });
  const models = useQuery({ queryKey: ["models"], queryFn: ({ signal }) => apiGet("/api/v1/models", {}, signal) });
  const rules = useQuery({ queryKey: ["thresholds"], queryFn: ({ signal }) => apiGet("/api/v1/config/thresholds", {}, signal) });
  const breachMetrics = [...new Set(rules.data?.data.map((rule) => rule.metric) ?? [])];
  const range = params.get("range") ?? "24h";

  const set = (changes: Record<string, string | null>) =>
    setParams(
      (current) => {
        const next = new URLSearchParams(current);
        for (const [key, value] of Object.entries(changes)) {
          if (value === null || value === "") next.delete(key);
          else next.set(key, value);
        }
        return next;
      },
      { replace: true },
    );

  const text = (name: string, label: string, props: React.InputHTMLAttributes<HTMLInputElement> = {}) => (
    <label>
      {label}
      <input
        key={`${name}=${params.get(name) ?? ""}`}
        name={name}
        defaultValue={params.get(name) ?? ""}
        onBlur={(event) => set({ [name]: event.currentTarget.value.trim() })}
        onKeyDown={(event) => event.key === "Enter" && set({ [name]: event.currentTarget.value.trim() })}
        {...props}
      />
    </label>
  );

  return (
    <div className="filters" data-testid="trace-filters">
      <label>
        Time
        <span className="presets">
          {[...Object.keys(PRESETS), "all", "custom"].map((preset) => (
            <button
              key={preset}
              className={range === preset ? "active" : ""}
              onClick={() => set({ range: preset === "24h" ? null : preset })}
            >
              {preset}
            </button>
          ))}
        </span>
      </label>
      {range === "custom" && (
        <>
          <label>
            From
            <input
              type="datetime-local"
              value={toLocalInput(params.get("start"))}
              onChange={(event) => set({ start: fromLocalInput(event.currentTarget.value) })}
            />
          </label>
          <label>
            To
            <input
              type="datetime-local"
              value={toLocalInput(params.get("end"))}
              onChange={(event) => set({ end: fromLocalInput(event.currentTarget.value) })}
            />
          </label>
        </>
      )}
      <label>
        Service
        <select name="service" value={params.get("service") ?? ""} onChange={(event) => set({ service: event.currentTarget.value })}>
          <option value="">any</option>
          {services.data?.data.map((service) => <option key={service.name}>{service.name}</option>)}
        </select>
      </label>
      <label>
        Model
        <select name="model" value={params.get("model") ?? ""} onChange={(event) => set({ model: event.currentTarget.value })}>
          <option value="">any</option>
          {models.data?.data.map((model) => (
            <option key={model.name} value={model.name}>
              {model.name} ({model.calls})
            </option>
          ))}
        </select>
      </label>
      <label>
        Status
        <select name="status" value={params.get("status") ?? ""} onChange={(event) => set({ status: event.currentTarget.value })}>
          <option value="">any</option>
          <option value="error">error</option>
          <option value="ok">ok</option>
        </select>
      </label>
      <label>
        Breached
        <select name="breached" value={params.get("breached") ?? ""} onChange={(event) => set({ breached: event.currentTarget.value })}>
          <option value="">any</option>
          <option value="true">any rule</option>
          <option value="false">none</option>
          {breachMetrics.map((metric) => <option key={metric}>{metric}</option>)}
        </select>
      </label>
      {text("min_duration_ms", "Min ms", { type: "number", min: 0 })}
      {text("max_duration_ms", "Max ms", { type: "number", min: 0 })}
      {text("min_cost_usd", "Min $", { type: "number", min: 0, step: "any" })}
      {text("max_cost_usd", "Max $", { type: "number", min: 0, step: "any" })}
      {text("attr", "Attribute key:value", { placeholder: "gen_ai.agent.name:checkout", size: 26 })}
    </div>
  );
}
