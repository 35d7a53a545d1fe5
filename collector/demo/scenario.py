"""The demo's simulated agents: seeded plans of traces, with times as offsets. Pure: no I/O, no OpenTelemetry.

Two agents answer users. Each plans with a small model, calls tools (which call HTTP APIs, a database, an
embedding model), feeds the results back, and streams an answer from a larger model, which is then scored
for relevance. The simulated model's latency grows with the prompt and the answer (time to first chunk,
then tokens per second); the context grows with every step and its repeated prefix is read from the
prompt cache. Across every block of ``len(_SCENARIOS)`` traces each scenario appears a fixed number of
times: plain answers, a rate-limited call retried after a back-off, a tool that times out, an agent stuck
in a loop (slow and costly), and an answer that fails. Users write their e-mail address into their
questions, which the collector redacts.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

NS = 1_000_000_000


@dataclass
class SpanPlan:
    """A span to emit; ``start`` and ``end`` are nanoseconds from the start of its trace."""

    name: str
    kind: str  # "internal" or "client"
    start: int
    attributes: dict[str, Any]
    end: int = 0
    error: str | None = None  # the status description of a failed span
    events: list[tuple[str, int, dict[str, Any]]] = field(default_factory=list)
    children: list[SpanPlan] = field(default_factory=list)

    def walk(self) -> Iterator[SpanPlan]:
        yield self
        for child in self.children:
            yield from child.walk()


@dataclass(frozen=True)
class EvaluationPlan:
    """A ``gen_ai.evaluation.result`` event about the answer of ``span``, at ``time`` from the trace's start."""

    span: SpanPlan
    time: int
    attributes: dict[str, Any]


@dataclass(frozen=True)
class TracePlan:
    service: str
    root: SpanPlan
    evaluations: tuple[EvaluationPlan, ...]


@dataclass(frozen=True)
class Model:
    provider: str
    name: str  # as requested
    version: str  # as the response names it
    seconds_to_first_chunk: float
    tokens_per_second: float
    finish_tool: str  # the provider's finish reason for a tool call
    finish_stop: str


@dataclass(frozen=True)
class Tool:
    name: str
    seconds: float  # median latency
    call: str  # the nested span: "GET <url>", "SELECT <table>" or "embeddings"
    arguments: tuple[str, ...]


@dataclass(frozen=True)
class Agent:
    name: str
    service: str
    planner: Model
    answerer: Model
    server: str
    tools: tuple[Tool, ...]
    questions: tuple[str, ...]


CLAUDE_SONNET = Model(
    "anthropic", "claude-sonnet-4-5", "claude-sonnet-4-5-20250929", 0.55, 65.0, "tool_use", "end_turn"
)
CLAUDE_HAIKU = Model("anthropic", "claude-haiku-4-5", "claude-haiku-4-5-20251001", 0.3, 150.0, "tool_use", "end_turn")
GPT_4O = Model("openai", "gpt-4o", "gpt-4o-2024-08-06", 0.45, 85.0, "tool_calls", "stop")
GPT_4O_MINI = Model("openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18", 0.3, 130.0, "tool_calls", "stop")
EMBEDDING_MODEL = "text-embedding-3-small"

AGENTS = (
    Agent(
        name="trip-planner",
        service="travel-assistant",
        planner=CLAUDE_HAIKU,
        answerer=CLAUDE_SONNET,
        server="api.anthropic.com",
        tools=(
            Tool("search_flights", 1.4, "GET https://flights.example.com/v2/search", ("origin", "destination", "date")),
            Tool("search_hotels", 0.9, "GET https://hotels.example.com/api/availability", ("city", "nights")),
            Tool("get_weather", 0.25, "GET https://weather.example.com/forecast", ("city",)),
        ),
        questions=(
            (
                "Hi, I'm Maria Lopez (maria.lopez@example.com). Find me a flight from {a} to {b} next Friday and a "
                "hotel for two nights."
            ),
            "Can you plan a weekend in {b}? I'm flying from {a}. Send the itinerary to jonas.weber@example.org.",
            "What's the cheapest way to get from {a} to {b} in March, and will it rain? Reply to priya.n@example.net",
        ),
    ),
    Agent(
        name="support-bot",
        service="support-desk",
        planner=GPT_4O_MINI,
        answerer=GPT_4O,
        server="api.openai.com",
        tools=(
            Tool("lookup_order", 0.15, "SELECT orders", ("order_id",)),
            Tool("search_help_center", 0.35, "embeddings", ("query",)),
            Tool("refund_order", 0.6, "POST https://payments.example.com/v1/refunds", ("order_id", "reason")),
        ),
        questions=(
            "My order {order} never arrived. My account is sam.taylor@example.com, can you check?",
            "I was charged twice for order {order}. Please refund one to li.wei@example.org.",
            "How do I change the delivery address of order {order}? I'm at robin@example.com.",
        ),
    ),
)
CITIES = ("Lisbon", "Berlin", "Tokyo", "Montreal", "Nairobi", "Lima", "Oslo", "Seoul")

# One block of traces: every scenario, a fixed number of times, in a seeded order.
_SCENARIOS = ("answer",) * 13 + ("rate_limited",) * 2 + ("tool_timeout",) * 2 + ("loop", "failure", "slow_start")
SYSTEM_PROMPT_TOKENS = 1_400
TOOL_DEFINITION_TOKENS = 350
TOOL_TIMEOUT_SECONDS = 8.0
_DATABASE_CALL = {"db.system.name": "postgresql", "db.operation.name": "SELECT"}


def _messages(*messages: dict[str, Any]) -> str:
    return json.dumps(list(messages))


def _text(role: str, content: str) -> dict[str, Any]:
    return {"role": role, "parts": [{"type": "text", "content": content}]}


class _Trace:
    """Builds one trace's spans on a simulated clock that advances as the agent works."""

    def __init__(self, rng: random.Random, agent: Agent, conversation: str) -> None:
        self.rng = rng
        self.agent = agent
        self.conversation = conversation
        self.now = 0
        self._open: list[SpanPlan] = []
        self.root: SpanPlan | None = None
        self.evaluations: list[EvaluationPlan] = []
        self.context_tokens = SYSTEM_PROMPT_TOKENS + TOOL_DEFINITION_TOKENS * len(agent.tools)
        self.cached_tokens: dict[str, int] = {}  # by model: the prefix its provider's prompt cache holds

    def wait(self, seconds: float) -> None:
        self.now += max(1, round(seconds * NS))

    def jitter(self, median: float, spread: float = 0.35) -> float:
        """A latency around ``median``: log-normal, so a few are much slower."""
        return median * self.rng.lognormvariate(0, spread)

    @contextmanager
    def span(self, name: str, kind: str = "internal", attributes: dict[str, Any] | None = None) -> Iterator[SpanPlan]:
        span = SpanPlan(name, kind, self.now, dict(attributes or {}))
        if self._open:
            self._open[-1].children.append(span)
        else:
            self.root = span
        self._open.append(span)
        try:
            yield span
        finally:
            self._open.pop()
            span.end = self.now

    def chat(
        self,
        model: Model,
        messages: str,
        output: str,
        output_tokens: int,
        *,
        tool_call: bool,
        slow_start: bool = False,
        fail: str | None = None,
    ) -> SpanPlan:
        """One LLM call: the whole context as input (its cached prefix read from the cache), streamed output."""
        rng = self.rng
        input_tokens = self.context_tokens
        cache_read = min(self.cached_tokens.get(model.name, 0), input_tokens)
        cache_write = input_tokens - cache_read if model.provider == "anthropic" and not cache_read else 0
        response_id = ("msg_" if model.provider == "anthropic" else "chatcmpl-") + f"{rng.getrandbits(96):024x}"
        attributes = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": model.provider,
            "gen_ai.request.model": model.name,
            "gen_ai.request.max_tokens": 4096,
            "gen_ai.request.temperature": 0.2,
            "gen_ai.conversation.id": self.conversation,
            "server.address": self.agent.server,
            "server.port": 443,
            "gen_ai.input.messages": messages,
        }
        with self.span(f"chat {model.name}", "client", attributes) as span:
            first_chunk = self.jitter(model.seconds_to_first_chunk + input_tokens / 40_000, 0.3)
            if slow_start:  # an overloaded provider: the first chunk takes seconds
                first_chunk += rng.uniform(3.5, 6.0)
            if fail is not None:
                self.wait(first_chunk * rng.uniform(0.3, 0.8))
                status, kind, reason = (
                    (429, "RateLimitError", "rate limit reached for requests")
                    if fail == "rate_limited"
                    else (500, "InternalServerError", "server error")
                )
                message = f"Error code: {status} - {reason}"
                span.error = message
                span.attributes.update({"error.type": kind, "http.response.status_code": status})
                span.events.append(("exception", self.now, {"exception.type": kind, "exception.message": message}))
                return span
            self.wait(first_chunk)
            self.wait(output_tokens / (model.tokens_per_second * rng.uniform(0.8, 1.2)))
            finish = model.finish_tool if tool_call else model.finish_stop
            span.attributes.update(
                {
                    "gen_ai.response.model": model.version,
                    "gen_ai.response.id": response_id,
                    "gen_ai.response.finish_reasons": [finish],
                    "gen_ai.response.time_to_first_chunk": round(first_chunk, 3),
                    "gen_ai.usage.input_tokens": input_tokens,
                    "gen_ai.usage.output_tokens": output_tokens,
                    "gen_ai.usage.cache_read.input_tokens": cache_read,
                    "gen_ai.output.messages": output,
                }
            )
            if cache_write:
                span.attributes["gen_ai.usage.cache_creation.input_tokens"] = cache_write
        self.cached_tokens[model.name] = input_tokens
        self.context_tokens += output_tokens
        return span

    def tool(self, tool: Tool, call_id: str, arguments: dict[str, Any], *, timeout: bool, result_tokens: int) -> str:
        """Run a tool and its nested call; returns its result, which adds ``result_tokens`` to the context."""
        with self.span(
            f"execute_tool {tool.name}",
            attributes={
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": tool.name,
                "gen_ai.tool.type": "function",
                "gen_ai.tool.call.id": call_id,
                "gen_ai.tool.call.arguments": json.dumps(arguments),
            },
        ) as span:
            self.wait(self.jitter(0.004))
            result = self._nested_call(tool, timeout=timeout)
            if timeout:
                span.error = f"{tool.name} timed out after {TOOL_TIMEOUT_SECONDS:g}s"
                span.attributes["error.type"] = "TimeoutError"
            else:
                span.attributes["gen_ai.tool.call.result"] = result
            self.wait(self.jitter(0.003))
        self.context_tokens += result_tokens
        return result

    def _nested_call(self, tool: Tool, *, timeout: bool) -> str:
        rng = self.rng
        method, _, target = tool.call.partition(" ")
        if method == "embeddings":
            with self.span(
                f"embeddings {EMBEDDING_MODEL}",
                "client",
                {
                    "gen_ai.operation.name": "embeddings",
                    "gen_ai.provider.name": "openai",
                    "gen_ai.request.model": EMBEDDING_MODEL,
                    "gen_ai.usage.input_tokens": rng.randint(8, 40),
                    "gen_ai.embeddings.dimension.count": 1536,
                    "server.address": "api.openai.com",
                },
            ):
                self.wait(self.jitter(0.12))
            with self.span("SELECT help_articles", "client", _DATABASE_CALL):
                self.wait(self.jitter(tool.seconds * 0.5))
            return json.dumps({"articles": ["Changing a delivery address", "Tracking a parcel"]})
        if method == "SELECT":
            with self.span(tool.call, "client", _DATABASE_CALL):
                self.wait(self.jitter(tool.seconds))
            return json.dumps({"status": rng.choice(["shipped", "delayed", "delivered"]), "carrier": "DHL"})
        host = target.split("/")[2]
        with self.span(
            f"{method} {host}",
            "client",
            {"http.request.method": method, "url.full": target, "server.address": host},
        ) as call:
            if timeout:
                self.wait(TOOL_TIMEOUT_SECONDS)
                call.error = "read timeout"
                call.attributes["error.type"] = "TimeoutError"
                return "error: the service did not answer in time"
            self.wait(self.jitter(tool.seconds))
            call.attributes["http.response.status_code"] = 200
        return json.dumps({"results": rng.randint(3, 40), "best": {"price_eur": rng.randint(60, 900)}})


def _question(rng: random.Random, agent: Agent) -> tuple[str, dict[str, Any]]:
    """A user's question, and the facts in it the agent passes to its tools as arguments."""
    a, b = rng.sample(CITIES, 2)
    order = f"A{rng.randint(10_000, 99_999)}"
    facts = {
        "origin": a,
        "destination": b,
        "date": f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        "city": b,
        "nights": rng.randint(1, 5),
        "order_id": order,
        "reason": "duplicate charge",
        "query": "change delivery address",
    }
    return rng.choice(agent.questions).format(a=a, b=b, order=order), facts


def plan_trace(seed: int, index: int) -> TracePlan:
    """Trace ``index`` of the run seeded ``seed``: the same arguments always give the same plan."""
    rng = random.Random(f"{seed}:{index}")
    block = list(_SCENARIOS)
    random.Random(f"{seed}:block:{index // len(block)}").shuffle(block)
    scenario = block[index % len(block)]
    agent = AGENTS[rng.randrange(len(AGENTS))]
    trace = _Trace(rng, agent, conversation=f"conv-{rng.getrandbits(48):012x}")
    question, facts = _question(rng, agent)
    user = _text("user", question)
    with trace.span(
        f"invoke_agent {agent.name}",
        attributes={
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": agent.name,
            "gen_ai.agent.id": f"agent-{agent.name}-v3",
            "gen_ai.provider.name": agent.answerer.provider,
            "gen_ai.request.model": agent.answerer.name,
            "gen_ai.conversation.id": trace.conversation,
            "gen_ai.input.messages": _messages(user),
        },
    ) as root:
        trace.wait(trace.jitter(0.01))
        steps = rng.randint(8, 12) if scenario == "loop" else rng.randint(1, 3)
        failed_tool = rng.randrange(steps) if scenario == "tool_timeout" else None
        rate_limited_step = rng.randrange(steps) if scenario == "rate_limited" else None
        timed_out = False
        # Stuck in a loop, the agent reasons over ever longer tool output with its large model.
        planner = agent.answerer if scenario == "loop" else agent.planner
        with trace.span("plan"):
            history = [user]
            for step in range(steps):
                tool = agent.tools[(step + rng.randrange(2)) % len(agent.tools)]
                call_id = f"call_{rng.getrandbits(64):016x}"
                arguments = {name: facts[name] for name in tool.arguments}
                decision = {
                    "role": "assistant",
                    "parts": [{"type": "tool_call", "id": call_id, "name": tool.name, "arguments": arguments}],
                    "finish_reason": planner.finish_tool,
                }
                if step == rate_limited_step:
                    trace.chat(planner, _messages(*history), "", 0, tool_call=True, fail="rate_limited")
                    trace.wait(trace.jitter(1.5, 0.2))  # the client's back-off before it retries
                trace.chat(planner, _messages(*history), _messages(decision), rng.randint(40, 160), tool_call=True)
                result_tokens = rng.randint(2_500, 5_000) if scenario == "loop" else rng.randint(250, 1_800)
                result = trace.tool(tool, call_id, arguments, timeout=step == failed_tool, result_tokens=result_tokens)
                timed_out = timed_out or step == failed_tool
                response = {"type": "tool_call_response", "id": call_id, "response": result}
                history += [decision, {"role": "tool", "parts": [response]}]
        answer = (
            "Sorry, one of the services I rely on did not answer in time; here is what I could find so far."
            if timed_out
            else f"Here is what I found for you: {rng.choice(['three options', 'the best match', 'a summary'])}, "
            "with prices and times below."
        )
        reply = {
            "role": "assistant",
            "parts": [{"type": "text", "content": answer}],
            "finish_reason": agent.answerer.finish_stop,
        }
        final = trace.chat(
            agent.answerer,
            _messages(*history),
            _messages(reply),
            rng.randint(180, 700),
            tool_call=False,
            slow_start=scenario == "slow_start",
            fail="server_error" if scenario == "failure" else None,
        )
        if final.error:
            root.error = "the model failed to answer"
            root.attributes["error.type"] = "InternalServerError"
        else:
            root.attributes["gen_ai.output.messages"] = _messages(reply)
        trace.wait(trace.jitter(0.02))
    if not final.error:
        score = rng.uniform(0.3, 0.6) if timed_out or scenario == "loop" else rng.uniform(0.78, 0.99)
        trace.evaluations.append(
            EvaluationPlan(
                final,
                final.end + round(trace.jitter(0.8) * NS),
                {
                    "gen_ai.evaluation.name": "relevance",
                    "gen_ai.evaluation.score.value": round(score, 3),
                    "gen_ai.evaluation.score.label": "relevant" if score >= 0.7 else "irrelevant",
                    "gen_ai.evaluation.explanation": "The answer addresses the question with concrete options."
                    if score >= 0.7
                    else "The answer does not give the user what they asked for.",
                    "gen_ai.response.id": final.attributes["gen_ai.response.id"],
                },
            )
        )
    assert trace.root is not None
    return TracePlan(agent.service, trace.root, tuple(trace.evaluations))
