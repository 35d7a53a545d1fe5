import { describe, expect, it } from "vitest";
import type { Breach } from "../api/types";
import { withArrived } from "./breaches";

const breach = (id: number) => ({ id, metric: "latency_ms" }) as unknown as Breach;
const ids = (breaches: Breach[]) => breaches.map((one) => one.id);

describe("withArrived", () => {
  it("puts a batch (oldest first) on top, newest first", () => {
    expect(ids(withArrived([breach(2), breach(1)], [breach(3), breach(4)], 10))).toEqual([4, 3, 2, 1]);
  });
  it("keeps each breach once, at its newest place", () => {
    expect(ids(withArrived([breach(3), breach(2), breach(1)], [breach(2), breach(4)], 10))).toEqual([4, 2, 3, 1]);
  });
  it("keeps at most the given number", () => {
    expect(ids(withArrived([breach(2), breach(1)], [breach(3), breach(4), breach(5)], 3))).toEqual([5, 4, 3]);
  });
});
