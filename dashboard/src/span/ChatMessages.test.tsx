// @vitest-environment jsdom
import { afterEach, describe, expect, it } from "vitest";
import { cleanup, render } from "@testing-library/react";
import { ChatMessages } from "./ChatMessages";
import { conversation } from "./conversation";

afterEach(cleanup);

describe("ChatMessages", () => {
  it("renders each message with its role, text and tool calls, the answer marked as output", () => {
    const messages = conversation(
      {
        "gen_ai.input.messages": JSON.stringify([
          { role: "user", parts: [{ type: "text", content: "where is my order?" }] },
        ]),
        "gen_ai.output.messages": JSON.stringify([
          {
            role: "assistant",
            finish_reason: "tool_call",
            parts: [{ type: "tool_call", id: "call_1", name: "lookup_order", arguments: { order: 7 } }],
          },
        ]),
      },
      [],
    );
    const view = render(<ChatMessages messages={messages} />);
    const shown = view.getAllByTestId("chat-message");
    expect(shown).toHaveLength(2);
    expect(shown[0].className).toContain("user");
    expect(shown[0].textContent).toContain("where is my order?");
    expect(shown[1].textContent).toContain("assistant · output · tool_call");
    expect(shown[1].textContent).toContain("lookup_order");
    expect(shown[1].querySelector("pre")?.textContent).toBe('{\n  "order": 7\n}');
  });

  it("says when a message has no captured content", () => {
    const view = render(<ChatMessages messages={[{ role: "user", parts: [], finishReason: null, output: false }]} />);
    expect(view.getByTestId("chat-message").textContent).toContain("(no content captured)");
  });
});
