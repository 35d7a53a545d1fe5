import { describe, expect, it } from "vitest";
import { conversation, toolActivity } from "./conversation";

describe("conversation", () => {
  it("reads GenAI semconv messages with tool calls and finish reasons", () => {
    const messages = conversation(
      {
        "gen_ai.system_instructions": '[{"type":"text","content":"be brief"}]',
        "gen_ai.input.messages": JSON.stringify([
          { role: "user", parts: [{ type: "text", content: "where is my order?" }] },
          { role: "assistant", parts: [{ type: "tool_call", id: "c1", name: "lookup", arguments: { order: 7 } }] },
          { role: "tool", parts: [{ type: "tool_call_response", id: "c1", response: "shipped" }] },
        ]),
        "gen_ai.output.messages": JSON.stringify([
          { role: "assistant", parts: [{ type: "text", content: "It shipped." }], finish_reason: "stop" },
        ]),
      },
      [],
    );
    expect(messages.map((m) => m.role)).toEqual(["system", "user", "assistant", "tool", "assistant"]);
    expect(messages[2].parts[0]).toEqual({ kind: "tool_call", id: "c1", name: "lookup", arguments: '{\n  "order": 7\n}' });
    expect(messages[3].parts[0]).toEqual({ kind: "tool_result", id: "c1", result: "shipped" });
    expect(messages[4]).toMatchObject({ output: true, finishReason: "stop", parts: [{ kind: "text", text: "It shipped." }] });
  });

  it("reads the older GenAI events", () => {
    const messages = conversation({}, [
      { name: "gen_ai.user.message", body: { content: "hi" }, attributes: {} },
      {
        name: "gen_ai.choice",
        body: {
          index: 0,
          finish_reason: "tool_calls",
          message: { role: "assistant", tool_calls: [{ id: "t", type: "function", function: { name: "f", arguments: "{}" } }] },
        },
        attributes: {},
      },
    ]);
    expect(messages).toEqual([
      { role: "user", parts: [{ kind: "text", text: "hi" }], finishReason: null, output: false },
      { role: "assistant", parts: [{ kind: "tool_call", id: "t", name: "f", arguments: "{}" }], finishReason: "tool_calls", output: true },
    ]);
  });

  it("reads OpenInference's flattened attributes in index order", () => {
    const messages = conversation(
      {
        "llm.input_messages.1.message.role": "user",
        "llm.input_messages.1.message.content": "second",
        "llm.input_messages.0.message.role": "system",
        "llm.input_messages.0.message.content": "first",
        "llm.output_messages.0.message.role": "assistant",
        "llm.output_messages.0.message.tool_calls.0.tool_call.function.name": "search",
        "llm.output_messages.0.message.tool_calls.0.tool_call.function.arguments": '{"q":"x"}',
      },
      [],
    );
    expect(messages.map((m) => [m.role, m.output])).toEqual([["system", false], ["user", false], ["assistant", true]]);
    expect(messages[2].parts).toEqual([{ kind: "tool_call", id: null, name: "search", arguments: '{\n  "q": "x"\n}' }]);
  });

  it("is empty without content", () => {
    expect(conversation({ "gen_ai.request.model": "gpt-4o" }, [{ name: "exception", attributes: {} }])).toEqual([]);
  });
});

describe("toolActivity", () => {
  it("reads a tool span's arguments and result", () => {
    expect(toolActivity({ "gen_ai.tool.name": "lookup", "gen_ai.tool.call.arguments": '{"id":1}', "gen_ai.tool.call.result": "ok" }))
      .toEqual({ name: "lookup", arguments: '{"id":1}', result: "ok" });
    expect(toolActivity({ "http.method": "GET" })).toBeNull();
  });
});
