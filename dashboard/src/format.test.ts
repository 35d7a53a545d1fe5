import { describe, expect, it } from "vitest";
import { formatCost, formatCount, formatDuration, formatPercent, formatTimestamp, formatTokens } from "./format";

describe("formatDuration", () => {
  it.each([
    [null, "—"],
    [0, "0ms"],
    [0.25, "250µs"],
    [1.5, "1.5ms"],
    [12.34, "12.3ms"],
    [120, "120ms"],
    [999.6, "1000ms"],
    [1234, "1.23s"],
    [60_000, "1m 0s"],
    [125_000, "2m 5s"],
    [3_720_000, "1h 2m"],
  ])("%s ms is %s", (ms, text) => expect(formatDuration(ms)).toBe(text));
});

describe("formatCost", () => {
  it("shows unknown cost as a dash, not $0", () => {
    expect(formatCost(null)).toBe("—");
    expect(formatCost(0)).toBe("$0");
  });
  it.each([
    [0.000123, "$0.00012"],
    [0.004, "$0.004"],
    [0.0123, "$0.01"],
    [1.5, "$1.50"],
    [1234.4, "$1,234"],
  ])("%s USD is %s", (usd, text) => expect(formatCost(usd)).toBe(text));
});

describe("formatTokens and counts", () => {
  it.each([
    [812, "812"],
    [1200, "1.2k"],
    [15_400, "15k"],
    [2_500_000, "2.5M"],
  ])("%s tokens is %s", (count, text) => expect(formatTokens(count)).toBe(text));
  it("groups thousands", () => expect(formatCount(10000)).toBe("10,000"));
  it("shows shares as percents", () => {
    expect(formatPercent(0.05)).toBe("5%");
    expect(formatPercent(0.123)).toBe("12.3%");
    expect(formatPercent(null)).toBe("—");
  });
});

describe("formatTimestamp", () => {
  it("shows only the time today and the date otherwise", () => {
    const now = new Date(2026, 10, 29, 18, 0, 0);
    const today = new Date(2026, 10, 29, 17, 5, 9, 42).getTime() * 1e6;
    const earlier = new Date(2026, 10, 27, 8, 0, 0, 0).getTime() * 1e6;
    expect(formatTimestamp(today, now)).toBe("17:05:09.042");
    expect(formatTimestamp(earlier, now)).toBe("2026-11-27 08:00:00.000");
  });
});
