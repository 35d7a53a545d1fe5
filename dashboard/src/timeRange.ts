/** Time presets shared by the pages: the range a preset names, as RFC 3339 strings the API accepts. */

export const PRESETS = { "15m": 15 * 60_000, "1h": 3_600_000, "6h": 6 * 3_600_000, "24h": 86_400_000, "7d": 7 * 86_400_000 } as const;
export type Preset = keyof typeof PRESETS;

export function isPreset(value: string | null): value is Preset {
  return value !== null && value in PRESETS;
}

export function presetRange(preset: Preset, now = Date.now()): { start: string; end: string } {
  return { start: new Date(now - PRESETS[preset]).toISOString(), end: new Date(now).toISOString() };
}

/** A value for <input type="datetime-local"> from an RFC 3339 string, and back (local time). */
export function toLocalInput(iso: string | null): string {
  if (!iso) return "";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "";
  return new Date(date.getTime() - date.getTimezoneOffset() * 60_000).toISOString().slice(0, 16);
}

export function fromLocalInput(value: string): string | null {
  if (!value) return null;
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? null : date.toISOString();
}

/** Start of today (UTC): the live feed's "today" is the UTC day. */
export function startOfUtcDay(now = Date.now()): string {
  const date = new Date(now);
  return new Date(Date.UTC(date.getUTCFullYear(), date.getUTCMonth(), date.getUTCDate())).toISOString();
}
