/** The conversation of an LLM span, from whichever convention its instrumentation used:
 * - OpenTelemetry GenAI attributes gen_ai.system_instructions / gen_ai.input.messages / gen_ai.output.messages
 *   (JSON: [{role, parts: [{type: "text"|"tool_call"|"tool_call_response", ...}], finish_reason}]),
 *   also inside a gen_ai.client.inference.operation.details event;
 * - the older GenAI events (gen_ai.user.message, gen_ai.choice ... with a body);
 * - OpenInference's flattened llm.input_messages.N.message.* attributes;
 * - OpenLLMetry's gen_ai.prompt.N.* / gen_ai.completion.N.* attributes. */

export type MessagePart =
  | { kind: "text"; text: string }
  | { kind: "tool_call"; id: string | null; name: string; arguments: string }
  | { kind: "tool_result"; id: string | null; result: string };

export interface ChatMessage {
  role: string;
  parts: MessagePart[];
  finishReason: string | null;
  output: boolean;
}

export interface ToolActivity {
  name: string | null;
  arguments: string | null;
  result: string | null;
}

type Attributes = Record<string, unknown>;
interface EventLike {
  name: string | null;
  body?: unknown;
  attributes: Attributes;
}

export function conversation(attributes: Attributes, events: readonly EventLike[]): ChatMessage[] {
  const fromAttributes = semconvMessages(attributes);
  if (fromAttributes.length) return fromAttributes;
  for (const event of events) {
    const fromDetails = semconvMessages(event.attributes ?? {});
    if (fromDetails.length) return fromDetails;
  }
  const fromEvents = events.flatMap(eventMessage);
  if (fromEvents.length) return fromEvents;
  const openInference = [
    ...flattenedMessages(attributes, "llm.input_messages.", ".message.", false),
    ...flattenedMessages(attributes, "llm.output_messages.", ".message.", true),
  ];
  if (openInference.length) return openInference;
  return [
    ...flattenedMessages(attributes, "gen_ai.prompt.", ".", false),
    ...flattenedMessages(attributes, "gen_ai.completion.", ".", true),
  ];
}

/** A tool span's call: its arguments and result (GenAI semconv, else OpenInference's input/output). */
export function toolActivity(attributes: Attributes): ToolActivity | null {
  const name = text(attributes["gen_ai.tool.name"] ?? attributes["tool.name"]);
  const args = text(attributes["gen_ai.tool.call.arguments"] ?? attributes["tool.parameters"] ?? attributes["input.value"]);
  const result = text(attributes["gen_ai.tool.call.result"] ?? attributes["output.value"]);
  if (name === null && args === null && result === null) return null;
  return { name, arguments: args, result };
}

function semconvMessages(attributes: Attributes): ChatMessage[] {
  const messages: ChatMessage[] = [];
  const system = parseJson(attributes["gen_ai.system_instructions"]);
  if (system !== undefined) {
    const parts = Array.isArray(system) ? system.flatMap(semconvPart) : [{ kind: "text" as const, text: text(system) ?? "" }];
    if (parts.length) messages.push({ role: "system", parts, finishReason: null, output: false });
  }
  for (const [key, output] of [["gen_ai.input.messages", false], ["gen_ai.output.messages", true]] as const) {
    const list = parseJson(attributes[key]);
    if (!Array.isArray(list)) continue;
    for (const message of list) {
      if (!isRecord(message)) continue;
      const parts = Array.isArray(message.parts)
        ? message.parts.flatMap(semconvPart)
        : contentParts(message.content, message.tool_calls);
      messages.push({
        role: String(message.role ?? (output ? "assistant" : "user")),
        parts,
        finishReason: text(message.finish_reason),
        output,
      });
    }
  }
  return messages;
}

function semconvPart(part: unknown): MessagePart[] {
  if (!isRecord(part)) return typeof part === "string" ? [{ kind: "text", text: part }] : [];
  switch (part.type) {
    case "tool_call":
      return [{ kind: "tool_call", id: text(part.id), name: String(part.name ?? "?"), arguments: pretty(part.arguments) }];
    case "tool_call_response":
      return [{ kind: "tool_result", id: text(part.id), result: pretty(part.response ?? part.result) }];
    default:
      return [{ kind: "text", text: text(part.content ?? part.text) ?? pretty(part) }];
  }
}

const EVENT_ROLES: Record<string, string> = {
  "gen_ai.system.message": "system",
  "gen_ai.user.message": "user",
  "gen_ai.assistant.message": "assistant",
  "gen_ai.tool.message": "tool",
};

function eventMessage(event: EventLike): ChatMessage[] {
  const name = event.name ?? "";
  const body = isRecord(event.body) ? event.body : {};
  if (name in EVENT_ROLES) {
    const role = String(body.role ?? EVENT_ROLES[name]);
    const parts = contentParts(body.content, body.tool_calls);
    if (role === "tool" && parts.length && parts[0].kind === "text") {
      return [{ role, parts: [{ kind: "tool_result", id: text(body.id), result: parts[0].text }], finishReason: null, output: false }];
    }
    return [{ role, parts, finishReason: null, output: false }];
  }
  if (name === "gen_ai.choice") {
    const message = isRecord(body.message) ? body.message : {};
    return [
      {
        role: String(message.role ?? "assistant"),
        parts: contentParts(message.content, message.tool_calls),
        finishReason: text(body.finish_reason),
        output: true,
      },
    ];
  }
  return [];
}

function contentParts(content: unknown, toolCalls: unknown): MessagePart[] {
  const parts: MessagePart[] = [];
  if (typeof content === "string") parts.push({ kind: "text", text: content });
  else if (Array.isArray(content)) parts.push(...content.flatMap(semconvPart));
  else if (content !== undefined && content !== null) parts.push({ kind: "text", text: pretty(content) });
  if (Array.isArray(toolCalls)) {
    for (const call of toolCalls) {
      if (!isRecord(call)) continue;
      const fn = isRecord(call.function) ? call.function : call;
      parts.push({ kind: "tool_call", id: text(call.id), name: String(fn.name ?? "?"), arguments: pretty(fn.arguments) });
    }
  }
  return parts;
}

/** Messages flattened into attributes: ``<prefix><n><infix>role``, ``...content``, ``...tool_calls.<m>...``. */
function flattenedMessages(attributes: Attributes, prefix: string, infix: string, output: boolean): ChatMessage[] {
  const byIndex = new Map<number, Attributes>();
  for (const [key, value] of Object.entries(attributes)) {
    if (!key.startsWith(prefix)) continue;
    const rest = key.slice(prefix.length);
    const dot = rest.indexOf(".");
    const index = Number(rest.slice(0, dot));
    if (dot < 0 || !Number.isInteger(index)) continue;
    const field = rest.slice(dot).startsWith(infix) ? rest.slice(dot + infix.length) : rest.slice(dot + 1);
    if (!byIndex.has(index)) byIndex.set(index, {});
    byIndex.get(index)![field] = value;
  }
  return [...byIndex.entries()]
    .sort(([a], [b]) => a - b)
    .map(([, fields]) => {
      const parts: MessagePart[] = [];
      if (fields.content !== undefined) parts.push({ kind: "text", text: text(fields.content) ?? "" });
      for (let call = 0; ; call++) {
        const name = fields[`tool_calls.${call}.tool_call.function.name`] ?? fields[`tool_calls.${call}.name`];
        if (name === undefined) break;
        const args = fields[`tool_calls.${call}.tool_call.function.arguments`] ?? fields[`tool_calls.${call}.arguments`];
        const id = fields[`tool_calls.${call}.tool_call.id`] ?? fields[`tool_calls.${call}.id`];
        parts.push({ kind: "tool_call", id: text(id), name: String(name), arguments: pretty(args) });
      }
      return {
        role: String(fields.role ?? (output ? "assistant" : "user")),
        parts,
        finishReason: text(fields.finish_reason),
        output,
      };
    });
}

function parseJson(value: unknown): unknown {
  if (typeof value !== "string") return value;
  try {
    return JSON.parse(value);
  } catch {
    return value;
  }
}

/** Arguments and results as readable text: JSON indented, anything else as it is. */
export function pretty(value: unknown): string {
  const parsed = parseJson(value);
  if (parsed === undefined || parsed === null) return "";
  if (typeof parsed === "string") return parsed;
  return JSON.stringify(parsed, null, 2);
}

function text(value: unknown): string | null {
  if (value === undefined || value === null) return null;
  return typeof value === "string" ? value : JSON.stringify(value);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
