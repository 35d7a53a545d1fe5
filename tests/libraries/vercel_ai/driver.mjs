// The Vercel AI SDK (npm `ai`) with its OpenAI and Anthropic providers, calling the fake LLM server and
// exporting its spans over OTLP/HTTP to the collector under test. Run by tests/libraries/test_libraries.py.
//
// Environment: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (the collector's /v1/traces), FAKE_LLM_URL, and
// DRIVER_SCENARIOS (comma-separated; all when unset). Each scenario runs under a root span
// `scenario <name>` that carries no GenAI attribute, as an application's own span would.
import { createAnthropic } from "@ai-sdk/anthropic";
import { createOpenAI } from "@ai-sdk/openai";
import { trace } from "@opentelemetry/api";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { NodeTracerProvider, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-node";
import { generateText, stepCountIs, streamText, tool } from "ai";
import { z } from "zod";

const provider = new NodeTracerProvider({
  resource: resourceFromAttributes({ "service.name": "vercel-ai" }),
  spanProcessors: [new SimpleSpanProcessor(new OTLPTraceExporter())],
});
provider.register();
const tracer = trace.getTracer("tests.libraries.driver");

const base = process.env.FAKE_LLM_URL;
const apiKey = "sk-test-not-a-real-key-000000000000";
const openai = createOpenAI({ baseURL: `${base}/v1`, apiKey });
const anthropic = createAnthropic({ baseURL: `${base}/v1`, apiKey });
const models = { openai: openai.chat("gpt-4o-mini"), anthropic: anthropic("claude-sonnet-4-5") };
const telemetry = { isEnabled: true, functionId: "support-bot" };
const question = "What is the capital of France?";
const weather = tool({
  description: "The weather in a city",
  inputSchema: z.object({ city: z.string() }),
  execute: async () => ({ weather: "sunny" }),
});

const kinds = {
  chat: async (model) => {
    const { text } = await generateText({ model, prompt: question, maxRetries: 0, experimental_telemetry: telemetry });
    if (!text) throw new Error("no text");
  },
  stream: async (model) => {
    const result = streamText({ model, prompt: question, maxRetries: 0, experimental_telemetry: telemetry });
    let text = "";
    for await (const part of result.textStream) text += part;
    if (!text) throw new Error("no streamed text");
  },
  tool: async (model) => {
    const { text, steps } = await generateText({
      model,
      prompt: "What is the weather in Paris?",
      tools: { get_weather: weather },
      stopWhen: stepCountIs(2),
      maxRetries: 0,
      experimental_telemetry: telemetry,
    });
    if (steps.length !== 2 || !text) throw new Error(`expected a tool call and an answer, got ${steps.length} steps`);
  },
};

const scenarios = {};
for (const api of Object.keys(models)) {
  for (const [kind, run] of Object.entries(kinds)) scenarios[`${api}.${kind}`] = () => run(models[api]);
}
const chosen = process.env.DRIVER_SCENARIOS ? process.env.DRIVER_SCENARIOS.split(",") : Object.keys(scenarios);
for (const name of chosen) {
  await tracer.startActiveSpan(`scenario ${name}`, async (span) => {
    try {
      await scenarios[name]();
    } finally {
      span.end();
    }
  });
}
await provider.forceFlush();
await provider.shutdown();
