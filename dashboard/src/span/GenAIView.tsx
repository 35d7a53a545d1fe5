import type { SpanDetail, SpanEvaluation } from "../api/types";
import { DASH, formatCost, formatDuration, formatScore, formatTokens } from "../format";
import { ChatMessages } from "./ChatMessages";
import { conversation, toolActivity } from "./conversation";

/** The span's GenAI fields as the API's detail call gives them (docs/query-api.md, "genai"). */
interface GenAIFields {
  category?: string | null;
  provider?: string | null;
  request_model?: string | null;
  response_model?: string | null;
  operation?: string | null;
  input_tokens?: number | null;
  output_tokens?: number | null;
  total_tokens?: number | null;
  cache_read_tokens?: number | null;
  cache_write_tokens?: number | null;
  reasoning_tokens?: number | null;
  finish_reasons?: string[] | null;
  response_id?: string | null;
  ttft_ms?: number | null;
  conversation_id?: string | null;
  user_id?: string | null;
  agent_name?: string | null;
  tool_name?: string | null;
  cost_usd?: number | null;
}

function Figure({ label, value, testId }: { label: string; value: React.ReactNode; testId?: string }) {
  return (
    <div className="figure" data-testid={testId}>
      <span className="label">{label}</span>
      <span className="value">{value ?? DASH}</span>
    </div>
  );
}

/** Model, tokens, cost and timing of an LLM call; the conversation as a chat; tool calls; evaluations. */
export function GenAIView({ span }: { span: SpanDetail }) {
  const genai = span.genai as GenAIFields;
  const messages = conversation(span.attributes, span.genai_events);
  const tool = toolActivity(span.attributes);
  const model =
    genai.response_model && genai.request_model && genai.response_model !== genai.request_model
      ? `${genai.request_model} → ${genai.response_model}`
      : genai.response_model ?? genai.request_model;
  if (!genai.category && !messages.length && !tool && !span.evaluations.length)
    return <p className="muted">No GenAI data on this span: see its attributes.</p>;
  return (
    <div data-testid="genai-view">
      <div className="grid-figures">
        <Figure label="Model" value={model} testId="genai-model" />
        <Figure label="Provider" value={genai.provider} />
        <Figure label="Operation" value={genai.operation ?? genai.category} />
        <Figure label="Input tokens" value={formatTokens(genai.input_tokens)} testId="genai-input-tokens" />
        <Figure label="Output tokens" value={formatTokens(genai.output_tokens)} testId="genai-output-tokens" />
        <Figure label="Cached tokens" value={formatTokens(genai.cache_read_tokens)} />
        <Figure label="Reasoning tokens" value={formatTokens(genai.reasoning_tokens)} />
        <Figure label="Cost" value={formatCost(genai.cost_usd)} testId="genai-cost" />
        <Figure label="TTFT" value={formatDuration(genai.ttft_ms)} testId="genai-ttft" />
        <Figure label="Finish reason" value={genai.finish_reasons?.join(", ") || DASH} />
        {genai.agent_name && <Figure label="Agent" value={genai.agent_name} />}
        {genai.tool_name && <Figure label="Tool" value={genai.tool_name} />}
        {genai.conversation_id && <Figure label="Conversation" value={genai.conversation_id} />}
        {genai.user_id && <Figure label="User" value={genai.user_id} />}
        {genai.response_id && <Figure label="Response id" value={<span className="mono">{genai.response_id}</span>} />}
      </div>
      {messages.length > 0 && (
        <>
          <h2>Conversation</h2>
          <ChatMessages messages={messages} />
        </>
      )}
      {tool && (
        <>
          <h2>Tool call {tool.name && <code>{tool.name}</code>}</h2>
          <div className="tool-call" data-testid="tool-activity">
            <div className="muted">arguments</div>
            <pre>{tool.arguments ?? DASH}</pre>
            <div className="muted">result</div>
            <pre>{tool.result ?? DASH}</pre>
          </div>
        </>
      )}
      {span.evaluations.length > 0 && <Evaluations evaluations={span.evaluations} />}
    </div>
  );
}

function Evaluations({ evaluations }: { evaluations: SpanEvaluation[] }) {
  return (
    <>
      <h2>Evaluations</h2>
      <div className="kv" data-testid="evaluations">
        {evaluations.map((evaluation, index) => (
          <EvaluationPair key={index} evaluation={evaluation} />
        ))}
      </div>
    </>
  );
}

function EvaluationPair({ evaluation }: { evaluation: SpanEvaluation }) {
  return (
    <>
      <div>{evaluation.name}</div>
      <div>
        {formatScore(evaluation.score)}
        {evaluation.label ? ` (${evaluation.label})` : ""}
        {evaluation.explanation ? ` — ${evaluation.explanation}` : ""}
      </div>
    </>
  );
}
