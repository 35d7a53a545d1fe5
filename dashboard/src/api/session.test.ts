import { describe, expect, it } from "vitest";
import { loginMessage } from "./session";

describe("loginMessage", () => {
  it("is null when the login worked", () => {
    expect(loginMessage(200)).toBeNull();
  });
  it.each([
    [401, null, "That key is not valid."],
    [403, null, "That key has no read scope."],
    [429, "42", "Too many wrong keys: try again in 42 s."],
    [429, null, "Too many wrong keys: try again later."],
    [500, null, "The login failed (500)."],
  ])("explains %i", (status, retryAfter, expected) => {
    expect(loginMessage(status, retryAfter)).toBe(expected);
  });
});
