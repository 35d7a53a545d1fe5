"""GenAI normalization: every convention of REFERENCE.md section 2 to the same canonical fields.

Spans are written as the instrumentations emit them (flattened attribute dicts, as decode produces),
and each expectation is a whole ``GenAI``, so every canonical field is checked.
"""

from __future__ import annotations

import typing
from types import MappingProxyType
from typing import Any

import pytest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue

from collector.genai.normalize import (
    GENAI_EVENT_NAMES,
    GENAI_TEXT_FIELDS,
    NOT_GENAI,
    Evaluation,
    GenAI,
    evaluation_from_event,
    evaluations_from_attributes,
    normalize,
)
from collector.otlp import attributes as decode_attributes
from collector.storage.schema import GENAI_COLUMNS
from tests.helpers import otlp_value


def genai(**fields: Any) -> GenAI:
    return NOT_GENAI._replace(**fields)


# One streamed chat call to OpenAI's o4-mini (812 prompt tokens, 512 of them cached; 245 completion
# tokens, 128 of them reasoning), as each convention reports it.
CALL = genai(
    category="llm",
    provider="openai",
    request_model="o4-mini",
    response_model="o4-mini-2025-04-16",
    operation="chat",
    input_tokens=812,
    output_tokens=245,
    total_tokens=1057,
    cache_read_tokens=512,
    reasoning_tokens=128,
    finish_reasons=("stop",),
    response_id="chatcmpl-BxQ8m2vK9",
    ttft_ms=250.0,
    conversation_id="conv-7f3a",
    user_id="user-42",
)

OTEL_CURRENT = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "o4-mini",
    "gen_ai.request.max_tokens": 1024,
    "gen_ai.request.temperature": 1.0,
    "gen_ai.request.stream": True,
    "server.address": "api.openai.com",
    "server.port": 443,
    "gen_ai.response.model": "o4-mini-2025-04-16",
    "gen_ai.response.id": "chatcmpl-BxQ8m2vK9",
    "gen_ai.response.finish_reasons": ["stop"],
    "gen_ai.response.time_to_first_chunk": 0.25,
    "gen_ai.usage.input_tokens": 812,
    "gen_ai.usage.output_tokens": 245,
    "gen_ai.usage.cache_read.input_tokens": 512,
    "gen_ai.usage.reasoning.output_tokens": 128,
    "gen_ai.conversation.id": "conv-7f3a",
    "user.id": "user-42",
    "gen_ai.input.messages": '[{"role":"user","parts":[{"type":"text","content":"Where is my order?"}]}]',
    "gen_ai.output.messages": '[{"role":"assistant","parts":[{"type":"text","content":"On its way."}],'
    '"finish_reason":"stop"}]',
}

# Semconv 1.26 to 1.36: gen_ai.system, and before 1.27 prompt/completion token names.
OTEL_DEPRECATED = {
    "gen_ai.operation.name": "chat",
    "gen_ai.system": "openai",
    "gen_ai.request.model": "o4-mini",
    "gen_ai.response.model": "o4-mini-2025-04-16",
    "gen_ai.response.id": "chatcmpl-BxQ8m2vK9",
    "gen_ai.response.finish_reasons": ["stop"],
    "gen_ai.usage.prompt_tokens": 812,
    "gen_ai.usage.completion_tokens": 245,
    "gen_ai.openai.response.service_tier": "default",
    "server.address": "api.openai.com",
}

# Phoenix's openinference-instrumentation-openai: the response's model in llm.model_name, the requested one
# only in the invocation parameters (JSON), no finish reason.
OPENINFERENCE = {
    "openinference.span.kind": "LLM",
    "llm.system": "openai",
    "llm.provider": "openai",
    "llm.model_name": "o4-mini-2025-04-16",
    "llm.invocation_parameters": '{"model": "o4-mini", "stream": true}',
    "input.value": '{"messages": [{"role": "user", "content": "Where is my order?"}], "model": "o4-mini"}',
    "input.mime_type": "application/json",
    "output.value": "On its way.",
    "output.mime_type": "text/plain",
    "llm.input_messages.0.message.role": "user",
    "llm.input_messages.0.message.content": "Where is my order?",
    "llm.output_messages.0.message.role": "assistant",
    "llm.output_messages.0.message.content": "On its way.",
    "llm.token_count.prompt": 812,
    "llm.token_count.completion": 245,
    "llm.token_count.total": 1057,
    "llm.token_count.prompt_details.cache_read": 512,
    "llm.token_count.completion_details.reasoning": 128,
    "session.id": "conv-7f3a",
    "user.id": "user-42",
}

# OpenLLMetry with semantic-conventions-ai 0.4: capitalised gen_ai.system, indexed prompts/completions.
OPENLLMETRY_LEGACY = {
    "llm.request.type": "chat",
    "gen_ai.system": "OpenAI",
    "gen_ai.request.model": "o4-mini",
    "gen_ai.response.model": "o4-mini-2025-04-16",
    "llm.is_streaming": True,
    "llm.headers": "None",
    "llm.user": "user-42",
    "gen_ai.openai.api_base": "https://api.openai.com/v1/",
    "gen_ai.prompt.0.role": "user",
    "gen_ai.prompt.0.content": "Where is my order?",
    "gen_ai.completion.0.role": "assistant",
    "gen_ai.completion.0.content": "On its way.",
    "gen_ai.completion.0.finish_reason": "stop",
    "gen_ai.usage.prompt_tokens": 812,
    "gen_ai.usage.completion_tokens": 245,
    "llm.usage.total_tokens": 1057,
    "gen_ai.usage.cache_read_input_tokens": 512,
    "traceloop.workflow.name": "support-bot",
    "traceloop.association.properties.session_id": "conv-7f3a",
}

# OpenLLMetry with semantic-conventions-ai 0.5: the upstream gen_ai.* names where they exist.
OPENLLMETRY_05 = {
    "llm.request.type": "chat",
    "gen_ai.system": "openai",
    "gen_ai.request.model": "o4-mini",
    "gen_ai.response.model": "o4-mini-2025-04-16",
    "gen_ai.response.id": "chatcmpl-BxQ8m2vK9",
    "llm.is_streaming": True,
    "gen_ai.prompt.0.role": "user",
    "gen_ai.prompt.0.content": "Where is my order?",
    "gen_ai.completion.0.role": "assistant",
    "gen_ai.completion.0.content": "On its way.",
    "gen_ai.completion.0.finish_reason": "stop",
    "gen_ai.usage.input_tokens": 812,
    "gen_ai.usage.output_tokens": 245,
    "llm.usage.total_tokens": 1057,
    "gen_ai.usage.cache_read_input_tokens": 512,
    "gen_ai.usage.reasoning_tokens": 128,
    "traceloop.workflow.name": "support-bot",
}

# Vercel AI SDK streamText: the provider call span, with its ai.* keys and the gen_ai.* copies.
# The SDK names providers "<vendor>.<api>"; "openai.responses" is OpenAI's Responses API.
VERCEL_DO_STREAM = {
    "operation.name": "ai.streamText.doStream support-bot",
    "ai.operationId": "ai.streamText.doStream",
    "ai.telemetry.functionId": "support-bot",
    "resource.name": "support-bot",
    "ai.model.id": "o4-mini",
    "ai.model.provider": "openai.responses",
    "ai.settings.maxRetries": 2,
    "ai.prompt.messages": '[{"role":"user","content":[{"type":"text","text":"Where is my order?"}]}]',
    "ai.response.text": "On its way.",
    "ai.response.finishReason": "stop",
    "ai.response.id": "chatcmpl-BxQ8m2vK9",
    "ai.response.model": "o4-mini-2025-04-16",
    "ai.response.timestamp": "2025-06-01T10:00:00.000Z",
    "ai.response.msToFirstChunk": 250.0,
    "ai.response.msToFinish": 2890.5,
    "ai.response.avgOutputTokensPerSecond": 84.8,
    "ai.usage.promptTokens": 812,
    "ai.usage.completionTokens": 245,
    "ai.usage.cachedInputTokens": 512,
    "ai.usage.reasoningTokens": 128,
    "gen_ai.system": "openai.responses",
    "gen_ai.request.model": "o4-mini",
    "gen_ai.response.finish_reasons": ["stop"],
    "gen_ai.response.id": "chatcmpl-BxQ8m2vK9",
    "gen_ai.response.model": "o4-mini-2025-04-16",
    "gen_ai.usage.input_tokens": 812,
    "gen_ai.usage.output_tokens": 245,
}

# An OTel instrumentation plus the session and user keys Langfuse's OTLP endpoint reads.
LANGFUSE = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "o4-mini",
    "gen_ai.response.model": "o4-mini-2025-04-16",
    "gen_ai.usage.input_tokens": 812,
    "gen_ai.usage.output_tokens": 245,
    "langfuse.session.id": "conv-7f3a",
    "langfuse.user.id": "user-42",
    "langfuse.trace.name": "support-bot",
    "langfuse.observation.type": "generation",
}

# The Langfuse SDK v3 (OTel based) recording a generation through its OpenAI integration: OpenAI's usage
# object as a JSON string, the first chunk's time, finish reason in metadata, trace-level user and session.
LANGFUSE_V3 = {
    "langfuse.observation.type": "generation",
    "langfuse.observation.model.name": "o4-mini",
    "langfuse.observation.model.parameters": '{"temperature": 1}',
    "langfuse.observation.usage_details": (
        '{"completion_tokens": 245, "prompt_tokens": 812, "total_tokens": 1057, "completion_tokens_details":'
        ' {"reasoning_tokens": 128}, "prompt_tokens_details": {"cached_tokens": 512}}'
    ),
    "langfuse.observation.completion_start_time": '"2025-06-01T10:00:00.250000Z"',
    "langfuse.observation.metadata.finish_reason": "stop",
    "langfuse.observation.input": '[{"role": "user", "content": "Where is my order?"}]',
    "langfuse.observation.output": "On its way.",
    "langfuse.trace.name": "support-bot",
    "session.id": "conv-7f3a",
    "user.id": "user-42",
}
LANGFUSE_V3_START = 1_748_772_000_000_000_000  # 2025-06-01T10:00:00Z

# (id, attributes, span name, expected, the canonical fields the convention carries for CALL)
CONVENTIONS: list[tuple[str, dict[str, Any], str, GenAI, tuple[str, ...]]] = [
    ("otel-current", OTEL_CURRENT, "chat o4-mini", CALL, GenAI._fields),
    (
        "otel-deprecated",
        OTEL_DEPRECATED,
        "chat o4-mini",
        CALL._replace(cache_read_tokens=None, reasoning_tokens=None, ttft_ms=None, conversation_id=None, user_id=None),
        (
            "category",
            "provider",
            "request_model",
            "response_model",
            "operation",
            "input_tokens",
            "output_tokens",
            "total_tokens",
            "finish_reasons",
            "response_id",
        ),
    ),
    (
        "openinference",
        OPENINFERENCE,
        "ChatCompletion",
        CALL._replace(finish_reasons=None, response_id=None, ttft_ms=None),
        (
            "category",
            "provider",
            "request_model",
            "response_model",
            "operation",
            "input_tokens",
            "output_tokens",
            "total_tokens",
            "cache_read_tokens",
            "reasoning_tokens",
            "conversation_id",
            "user_id",
        ),
    ),
    (
        "openllmetry-0.4",
        OPENLLMETRY_LEGACY,
        "openai.chat",
        CALL._replace(reasoning_tokens=None, response_id=None, ttft_ms=None, conversation_id=None),
        (
            "category",
            "provider",
            "request_model",
            "response_model",
            "operation",
            "input_tokens",
            "output_tokens",
            "total_tokens",
            "cache_read_tokens",
            "finish_reasons",
            "user_id",
        ),
    ),
    (
        "openllmetry-0.5",
        OPENLLMETRY_05,
        "openai.chat",
        CALL._replace(ttft_ms=None, conversation_id=None, user_id=None),
        (
            "category",
            "provider",
            "request_model",
            "response_model",
            "operation",
            "input_tokens",
            "output_tokens",
            "total_tokens",
            "cache_read_tokens",
            "reasoning_tokens",
            "finish_reasons",
            "response_id",
        ),
    ),
    (
        "vercel-ai-sdk",
        VERCEL_DO_STREAM,
        "ai.streamText.doStream",
        CALL._replace(conversation_id=None, user_id=None),
        tuple(field for field in GenAI._fields if field not in ("conversation_id", "user_id")),
    ),
    (
        "langfuse",
        LANGFUSE,
        "chat o4-mini",
        CALL._replace(
            cache_read_tokens=None, reasoning_tokens=None, finish_reasons=None, response_id=None, ttft_ms=None
        ),
        (
            "category",
            "provider",
            "request_model",
            "response_model",
            "operation",
            "input_tokens",
            "output_tokens",
            "total_tokens",
            "conversation_id",
            "user_id",
        ),
    ),
]


@pytest.mark.parametrize(
    ("attributes", "span_name", "expected"),
    [pytest.param(attributes, name, expected, id=id_) for id_, attributes, name, expected, _ in CONVENTIONS],
)
def test_one_chat_call_in_each_convention(attributes: dict[str, Any], span_name: str, expected: GenAI) -> None:
    assert normalize(attributes, span_name) == expected


def test_a_langfuse_v3_generation() -> None:
    """Provider and response model are not in what Langfuse sends; the rest is, TTFT from the first chunk's time."""
    expected = CALL._replace(provider=None, response_model=None, response_id=None)
    assert normalize(LANGFUSE_V3, "OpenAI-generation", LANGFUSE_V3_START) == expected


@pytest.mark.parametrize(
    ("attributes", "span_name", "carried"),
    [pytest.param(attributes, name, carried, id=id_) for id_, attributes, name, _, carried in CONVENTIONS],
)
def test_every_convention_gives_the_same_answer_for_what_it_carries(
    attributes: dict[str, Any], span_name: str, carried: tuple[str, ...]
) -> None:
    result = normalize(attributes, span_name)
    assert {field: getattr(result, field) for field in carried} == {field: getattr(CALL, field) for field in carried}


# --- other operations, per convention ------------------------------------------------------------

OPERATION_SPANS = [
    pytest.param(
        {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": "get_order_status",
            "gen_ai.tool.call.id": "call_Qx81",
            "gen_ai.tool.type": "function",
            "gen_ai.tool.call.arguments": '{"order_id": "A-1009"}',
        },
        "execute_tool get_order_status",
        genai(category="tool", operation="execute_tool", tool_name="get_order_status"),
        id="otel-tool",
    ),
    pytest.param(
        {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.provider.name": "openai",
            "gen_ai.agent.name": "Support",
            "gen_ai.agent.id": "asst_5j66UpCpwteGg4YSxUnt7lPY",
            "gen_ai.request.model": "o4-mini",
            "gen_ai.conversation.id": "conv-7f3a",
        },
        "invoke_agent Support",
        genai(
            category="agent",
            provider="openai",
            request_model="o4-mini",
            operation="invoke_agent",
            conversation_id="conv-7f3a",
            agent_name="Support",
        ),
        id="otel-agent",
    ),
    pytest.param(
        {
            "gen_ai.operation.name": "create_agent",
            "gen_ai.provider.name": "az.ai.agents",
            "gen_ai.agent.name": "Math Tutor",
            "gen_ai.request.model": "gpt-4o",
        },
        "create_agent Math Tutor",
        genai(
            category="agent",
            provider="azure.ai.agents",
            request_model="gpt-4o",
            operation="create_agent",
            agent_name="Math Tutor",
        ),
        id="otel-create-agent",
    ),
    pytest.param(
        {
            "gen_ai.operation.name": "embeddings",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "text-embedding-3-small",
            "gen_ai.response.model": "text-embedding-3-small",
            "gen_ai.usage.input_tokens": 8,
            "gen_ai.embeddings.dimension.count": 1536,
        },
        "embeddings text-embedding-3-small",
        genai(
            category="embedding",
            provider="openai",
            request_model="text-embedding-3-small",
            response_model="text-embedding-3-small",
            operation="embeddings",
            input_tokens=8,
        ),
        id="otel-embeddings",
    ),
    pytest.param(
        {
            "gen_ai.operation.name": "generate_content",
            "gen_ai.provider.name": "gcp.gemini",
            "gen_ai.request.model": "gemini-2.5-flash",
            "gen_ai.usage.input_tokens": 40,
            "gen_ai.usage.output_tokens": 12,
            "gen_ai.response.finish_reasons": ["STOP"],
        },
        "generate_content gemini-2.5-flash",
        genai(
            category="llm",
            provider="gcp.gemini",
            request_model="gemini-2.5-flash",
            operation="generate_content",
            input_tokens=40,
            output_tokens=12,
            total_tokens=52,
            finish_reasons=("STOP",),
        ),
        id="otel-generate-content",
    ),
    pytest.param(
        {
            "openinference.span.kind": "TOOL",
            "tool.name": "get_order_status",
            "tool.description": "Look up an order",
            "tool.parameters": '{"order_id": "A-1009"}',
            "input.value": '{"order_id": "A-1009"}',
            "output.value": "shipped",
        },
        "get_order_status",
        genai(category="tool", operation="execute_tool", tool_name="get_order_status"),
        id="openinference-tool",
    ),
    pytest.param(
        {"openinference.span.kind": "AGENT", "agent.name": "Support", "input.value": "Where is my order?"},
        "Support",
        genai(category="agent", operation="invoke_agent", agent_name="Support"),
        id="openinference-agent",
    ),
    pytest.param(
        {
            "openinference.span.kind": "RETRIEVER",
            "input.value": "refund policy",
            "retrieval.documents.0.document.id": "doc-3",
            "retrieval.documents.0.document.content": "Refunds within 30 days.",
            "retrieval.documents.0.document.score": 0.82,
        },
        "VectorStoreRetriever",
        genai(category="retrieval", operation="retrieval"),
        id="openinference-retriever",
    ),
    pytest.param(
        {
            "openinference.span.kind": "EMBEDDING",
            "embedding.model_name": "text-embedding-3-small",
            "embedding.embeddings.0.embedding.text": "refund policy",
            "llm.token_count.prompt": 3,
            "llm.token_count.total": 3,
        },
        "CreateEmbeddingResponse",
        genai(category="embedding", operation="embeddings", input_tokens=3, total_tokens=3),
        id="openinference-embedding",
    ),
    pytest.param(
        {"openinference.span.kind": "CHAIN", "input.value": "Where is my order?", "session.id": "conv-7f3a"},
        "RunnableSequence",
        genai(category="workflow", operation="invoke_workflow", conversation_id="conv-7f3a"),
        id="openinference-chain",
    ),
    pytest.param(
        {"openinference.span.kind": "RERANKER", "reranker.model_name": "cross-encoder/ms-marco-MiniLM-L-6-v2"},
        "rerank",
        NOT_GENAI,
        id="openinference-reranker-has-no-canonical-field",
    ),
    pytest.param(
        {
            "traceloop.span.kind": "agent",
            "traceloop.entity.name": "travel_planner",
            "traceloop.workflow.name": "trip",
            "traceloop.entity.input": '{"args": [], "kwargs": {}}',
        },
        "travel_planner.agent",
        genai(category="agent", operation="invoke_agent", agent_name="travel_planner"),
        id="openllmetry-agent",
    ),
    pytest.param(
        {"traceloop.span.kind": "tool", "traceloop.entity.name": "search_flights", "traceloop.workflow.name": "trip"},
        "search_flights.tool",
        genai(category="tool", operation="execute_tool", tool_name="search_flights"),
        id="openllmetry-tool",
    ),
    pytest.param(
        {"traceloop.span.kind": "workflow", "traceloop.entity.name": "trip", "traceloop.workflow.name": "trip"},
        "trip.workflow",
        genai(category="workflow", operation="invoke_workflow"),
        id="openllmetry-workflow-name-is-not-an-agent",
    ),
    pytest.param(
        {"traceloop.span.kind": "task", "traceloop.entity.name": "pick_hotel", "traceloop.workflow.name": "trip"},
        "pick_hotel.task",
        genai(category="workflow", operation="invoke_workflow"),
        id="openllmetry-task",
    ),
    pytest.param(
        {
            "llm.request.type": "embedding",
            "gen_ai.system": "OpenAI",
            "gen_ai.request.model": "text-embedding-3-small",
            "gen_ai.response.model": "text-embedding-3-small",
            "gen_ai.usage.prompt_tokens": 3,
            "llm.usage.total_tokens": 3,
            "gen_ai.prompt.0.content": "refund policy",
        },
        "openai.embeddings",
        genai(
            category="embedding",
            provider="openai",
            request_model="text-embedding-3-small",
            response_model="text-embedding-3-small",
            operation="embeddings",
            input_tokens=3,
            total_tokens=3,
        ),
        id="openllmetry-embedding",
    ),
    pytest.param(
        {
            "llm.request.type": "completion",
            "gen_ai.system": "Anthropic",
            "gen_ai.request.model": "claude-2.1",
            "gen_ai.completion.0.content": "Hello",
            "gen_ai.completion.0.finish_reason": "stop_sequence",
        },
        "anthropic.completion",
        genai(
            category="llm",
            provider="anthropic",
            request_model="claude-2.1",
            operation="text_completion",
            finish_reasons=("stop_sequence",),
        ),
        id="openllmetry-completion",
    ),
    pytest.param(
        {
            "operation.name": "ai.toolCall",
            "ai.operationId": "ai.toolCall",
            "ai.toolCall.name": "getOrderStatus",
            "ai.toolCall.id": "call_Qx81",
            "ai.toolCall.args": '{"orderId":"A-1009"}',
            "ai.toolCall.result": '{"status":"shipped"}',
        },
        "ai.toolCall",
        genai(category="tool", operation="execute_tool", tool_name="getOrderStatus"),
        id="vercel-tool-call",
    ),
    pytest.param(
        {
            "operation.name": "ai.embed.doEmbed",
            "ai.operationId": "ai.embed.doEmbed",
            "ai.model.provider": "openai.embedding",
            "ai.model.id": "text-embedding-3-small",
            "ai.values": ['"refund policy"'],
            "ai.usage.tokens": 3,
        },
        "ai.embed.doEmbed",
        genai(
            category="embedding",
            provider="openai",
            request_model="text-embedding-3-small",
            operation="embeddings",
            total_tokens=3,
        ),
        id="vercel-embed",
    ),
    pytest.param(
        # AI SDK 4 outer span: wraps the doGenerate calls and sums their usage.
        {
            "operation.name": "ai.generateText support-bot",
            "ai.operationId": "ai.generateText",
            "ai.model.provider": "anthropic.messages",
            "ai.model.id": "claude-sonnet-4-5",
            "ai.prompt": '{"prompt":"Where is my order?"}',
            "ai.response.finishReason": "stop",
            "ai.usage.promptTokens": 900,
            "ai.usage.completionTokens": 80,
        },
        "ai.generateText",
        genai(
            category="workflow",
            provider="anthropic",
            request_model="claude-sonnet-4-5",
            operation="invoke_workflow",
            input_tokens=900,
            output_tokens=80,
            total_tokens=980,
            finish_reasons=("stop",),  # the last step's
        ),
        id="vercel-outer-span",
    ),
    pytest.param(
        # AI SDK 5 outer span: the usage keys were renamed.
        {
            "ai.operationId": "ai.streamText",
            "ai.model.provider": "mistral.chat",
            "ai.model.id": "mistral-large-latest",
            "ai.usage.inputTokens": 900,
            "ai.usage.outputTokens": 80,
            "ai.usage.totalTokens": 980,
        },
        "ai.streamText",
        genai(
            category="workflow",
            provider="mistral_ai",
            request_model="mistral-large-latest",
            operation="invoke_workflow",
            input_tokens=900,
            output_tokens=80,
            total_tokens=980,
        ),
        id="vercel-5-outer-span",
    ),
    pytest.param(
        # Only ai.* keys (no gen_ai.* copies), operation from the span name.
        {
            "ai.model.provider": "openai.chat",
            "ai.model.id": "gpt-4o-mini",
            "ai.usage.promptTokens": 20,
            "ai.usage.completionTokens": 5,
            "ai.stream.msToFirstChunk": 310.5,
        },
        "ai.streamText.doStream",
        genai(
            category="llm",
            provider="openai",
            request_model="gpt-4o-mini",
            operation="chat",
            input_tokens=20,
            output_tokens=5,
            total_tokens=25,
            ttft_ms=310.5,
        ),
        id="vercel-ai-keys-only",
    ),
]


@pytest.mark.parametrize(("attributes", "span_name", "expected"), OPERATION_SPANS)
def test_operations_and_categories(attributes: dict[str, Any], span_name: str, expected: GenAI) -> None:
    assert normalize(attributes, span_name) == expected


# --- precedence ----------------------------------------------------------------------------------


def test_current_keys_win_over_deprecated_and_other_conventions_on_one_span() -> None:
    mixed = {
        "gen_ai.provider.name": "anthropic",
        "gen_ai.system": "openai",
        "llm.provider": "cohere",
        "gen_ai.request.model": "claude-sonnet-4-5",
        "llm.model_name": "claude-3-haiku",
        "ai.model.id": "gpt-4o",
        "gen_ai.operation.name": "chat",
        "llm.request.type": "completion",
        "openinference.span.kind": "EMBEDDING",
        "gen_ai.usage.input_tokens": 100,
        "gen_ai.usage.prompt_tokens": 999,
        "llm.token_count.prompt": 998,
        "gen_ai.usage.output_tokens": 20,
        "gen_ai.usage.completion_tokens": 888,
        "gen_ai.usage.cache_read.input_tokens": 60,
        "gen_ai.usage.cache_read_input_tokens": 61,
        "gen_ai.usage.cache_creation.input_tokens": 30,
        "gen_ai.usage.cache_creation_input_tokens": 31,
        "llm.token_count.prompt_details.cache_write": 32,
        "gen_ai.usage.reasoning.output_tokens": 5,
        "gen_ai.usage.reasoning_tokens": 6,
        "gen_ai.response.finish_reasons": ["end_turn"],
        "gen_ai.response.finish_reason": "length",
        "gen_ai.completion.0.finish_reason": "stop",
        "gen_ai.response.time_to_first_chunk": 0.5,
        "ai.response.msToFirstChunk": 900,
        "gen_ai.conversation.id": "conv-1",
        "session.id": "session-2",
        "langfuse.session.id": "session-3",
        "user.id": "user-1",
        "langfuse.user.id": "user-2",
        "gen_ai.user": "user-3",
        "gen_ai.agent.name": "Planner",
        "agent.name": "Other",
        "llm.cost.total": 0.25,
        "gen_ai.usage.cost": 0.75,
    }
    assert normalize(mixed) == genai(
        category="llm",
        provider="anthropic",
        request_model="claude-sonnet-4-5",
        response_model="claude-3-haiku",
        operation="chat",
        input_tokens=100,
        output_tokens=20,
        total_tokens=120,
        cache_read_tokens=60,
        cache_write_tokens=30,
        reasoning_tokens=5,
        finish_reasons=("end_turn",),
        ttft_ms=500.0,
        conversation_id="conv-1",
        user_id="user-1",
        agent_name="Planner",
        client_cost_usd=0.25,
    )


@pytest.mark.parametrize(
    ("attributes", "field", "expected"),
    [
        pytest.param({"gen_ai.provider.name": "", "gen_ai.system": "openai"}, "provider", "openai", id="empty"),
        pytest.param({"gen_ai.provider.name": "  ", "llm.system": "openai"}, "provider", "openai", id="blank"),
        pytest.param({"gen_ai.provider.name": None, "llm.provider": "openai"}, "provider", "openai", id="none"),
        pytest.param({"gen_ai.request.model": "", "ai.model.id": "gpt-4o"}, "request_model", "gpt-4o", id="model"),
        pytest.param(
            {"gen_ai.response.finish_reasons": [], "llm.finish_reason": "stop"},
            "finish_reasons",
            ("stop",),
            id="empty-list",
        ),
        pytest.param(
            {"gen_ai.response.finish_reasons": ["", ""], "gen_ai.response.finish_reason": "length"},
            "finish_reasons",
            ("length",),
            id="list-of-empty-strings",
        ),
        pytest.param(
            {"gen_ai.usage.input_tokens": "n/a", "llm.token_count.prompt": 7},
            "input_tokens",
            7,
            id="garbage",
        ),
        pytest.param(
            {"gen_ai.usage.input_tokens": -1, "gen_ai.usage.prompt_tokens": 7},
            "input_tokens",
            7,
            id="negative",
        ),
        pytest.param(
            {"gen_ai.response.time_to_first_chunk": -0.1, "ai.response.msToFirstChunk": 120},
            "ttft_ms",
            120.0,
            id="negative-ttft",
        ),
        pytest.param({"llm.cost.total": "free", "gen_ai.usage.cost": 0.01}, "client_cost_usd", 0.01, id="cost"),
        pytest.param(
            {"traceloop.span.kind": "agent", "traceloop.entity.name": "fallback", "agent.name": "Named"},
            "agent_name",
            "Named",
            id="agent-name-before-entity-name",
        ),
        pytest.param(
            {"gen_ai.operation.name": "", "llm.request.type": "unknown", "openinference.span.kind": "llm"},
            "operation",
            "chat",
            id="operation-unmapped-values-are-absent",
        ),
        pytest.param(
            {"openinference.span.kind": "Tool", "traceloop.span.kind": "agent"},
            "operation",
            "execute_tool",
            id="openinference-kind-is-case-insensitive",
        ),
    ],
)
def test_first_non_empty_valid_source_wins(attributes: dict[str, Any], field: str, expected: Any) -> None:
    assert getattr(normalize(attributes), field) == expected


# --- value mappings and coercions ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "provider"),
    [
        ("openai", "openai"),
        ("OpenAI", "openai"),
        ("Anthropic", "anthropic"),
        ("az.ai.inference", "azure.ai.inference"),
        ("az.ai.openai", "azure.ai.openai"),
        ("azure.ai.openai", "azure.ai.openai"),
        ("aws.bedrock", "aws.bedrock"),
        ("gcp.vertex_ai", "gcp.vertex_ai"),
        ("ibm.watsonx.ai", "ibm.watsonx.ai"),
        ("mistralai", "mistral_ai"),
        ("MistralAI", "mistral_ai"),
        ("mistral_ai", "mistral_ai"),
        ("xai", "x_ai"),
        ("x_ai", "x_ai"),
        # Vercel AI SDK "<vendor>.<api>" ids: the vendor, mapped like any other name.
        ("openai.chat", "openai"),
        ("openai.responses", "openai"),
        ("anthropic.messages", "anthropic"),
        ("azure.chat", "azure"),
        ("google.generative-ai", "google"),
        ("mistral.chat", "mistral_ai"),
        ("xai.chat", "x_ai"),
        ("amazon-bedrock", "aws.bedrock"),
    ],
)
def test_provider_names(raw: str, provider: str) -> None:
    assert normalize({"gen_ai.system": raw}).provider == provider
    assert normalize({"ai.model.provider": raw}).provider == provider


@pytest.mark.parametrize(
    ("raw", "tokens"),
    [
        (812, 812),
        (0, 0),
        ("812", 812),
        (" 812 ", 812),
        (812.0, 812),
        ("812.0", 812),
        (812.5, None),
        (-3, None),
        ("-3", None),
        ("n/a", None),
        ("", None),
        ("nan", None),
        ("inf", None),
        (True, None),
        ([812], None),
        ({"value": 812}, None),
    ],
)
def test_token_counts_are_coerced_or_ignored(raw: Any, tokens: int | None) -> None:
    result = normalize({"gen_ai.usage.input_tokens": raw, "gen_ai.usage.output_tokens": 10})
    assert result.input_tokens == tokens
    assert result.total_tokens == (tokens + 10 if tokens is not None else None)
    assert result.category == "llm"


@pytest.mark.parametrize(
    ("attributes", "ttft_ms"),
    [
        ({"gen_ai.response.time_to_first_chunk": 0.25}, 250.0),
        ({"gen_ai.response.time_to_first_chunk": "0.25"}, 250.0),
        ({"gen_ai.response.time_to_first_chunk": 2}, 2000.0),
        ({"ai.response.msToFirstChunk": 250}, 250.0),
        ({"ai.stream.msToFirstChunk": 87.5}, 87.5),
        ({"ai.response.msToFirstChunk": "slow"}, None),
        ({"gen_ai.response.time_to_first_chunk": "NaN"}, None),
    ],
)
def test_time_to_first_chunk_is_in_milliseconds(attributes: dict[str, Any], ttft_ms: float | None) -> None:
    assert normalize(attributes).ttft_ms == ttft_ms


START = 1_748_772_000_000_000_000  # 2025-06-01T10:00:00Z
LLM = {"gen_ai.operation.name": "chat"}


def event(name: str, after_ms: float) -> dict[str, Any]:
    return {"name": name, "time_unix_nano": START + int(after_ms * 1e6), "attributes": {}}


@pytest.mark.parametrize(
    ("attributes", "events", "ttft_ms"),
    [
        pytest.param(LLM, [event("First Token Stream Event", 180)], 180.0, id="openinference-event"),
        pytest.param(
            LLM,
            [event("gen_ai.content.completion.chunk", ms) for ms in (95, 97, 120)],
            95.0,
            id="openllmetry-first-chunk-event",
        ),
        pytest.param(LLM, [event("ai.stream.firstChunk", 40)], 40.0, id="vercel-event"),
        pytest.param(
            {**LLM, "langfuse.observation.completion_start_time": '"2025-06-01T10:00:00.250000Z"'},
            [],
            250.0,
            id="langfuse-completion-start-time",
        ),
        pytest.param(
            {**LLM, "langfuse.observation.completion_start_time": "2025-06-01T10:00:00.300000+00:00"},
            [],
            300.0,
            id="langfuse-unquoted",
        ),
        pytest.param(
            {**LLM, "gen_ai.response.time_to_first_chunk": 0.1},
            [event("First Token Stream Event", 180)],
            100.0,
            id="explicit-attribute-wins",
        ),
        pytest.param(
            {**LLM, "langfuse.observation.completion_start_time": '"2025-06-01T10:00:00.250000Z"'},
            [event("First Token Stream Event", 180)],
            250.0,
            id="time-attribute-before-events",
        ),
        pytest.param(
            {**LLM, "langfuse.observation.completion_start_time": "yesterday"},
            [event("First Token Stream Event", 180)],
            180.0,
            id="bad-time-falls-to-events",
        ),
        pytest.param(
            {**LLM, "langfuse.observation.completion_start_time": '"2025-06-01T10:00:00.250000"'},
            [],
            None,
            id="time-without-zone",
        ),
        pytest.param(LLM, [event("First Token Stream Event", -5)], None, id="before-the-span-started"),
        pytest.param(LLM, [event("gen_ai.choice", 50), event("exception", 60)], None, id="other-events"),
        pytest.param(
            LLM, [{"name": "First Token Stream Event", "time_unix_nano": "soon"}], None, id="event-time-not-a-number"
        ),
    ],
)
def test_time_to_first_chunk_derived_from_the_first_chunk(
    attributes: dict[str, Any], events: list[dict[str, Any]], ttft_ms: float | None
) -> None:
    assert normalize(attributes, "span", START, events).ttft_ms == pytest.approx(ttft_ms)


def test_no_derived_time_to_first_chunk_without_the_span_start() -> None:
    assert normalize(LLM, "span", None, [event("First Token Stream Event", 180)]).ttft_ms is None


@pytest.mark.parametrize(
    ("usage_details", "expected"),
    [
        pytest.param(
            '{"input": 150, "output": 90, "cache_read_input_tokens": 1024, "cache_creation_input_tokens": 2048}',
            {"input_tokens": 3222, "output_tokens": 90, "cache_read_tokens": 1024, "cache_write_tokens": 2048},
            id="langfuse-keys-cache-beside-input",
        ),
        pytest.param(
            '{"input": 176, "input_cached_tokens": 1024, "output": 85, "output_reasoning_tokens": 10, "total": 1285}',
            {
                "input_tokens": 1200,
                "output_tokens": 85,
                "total_tokens": 1285,
                "cache_read_tokens": 1024,
                "reasoning_tokens": 10,
            },
            id="langfuse-openai-keys",
        ),
        pytest.param(
            '{"prompt_tokens": 1200, "completion_tokens": 85, "total_tokens": 1285,'
            ' "prompt_tokens_details": {"cached_tokens": 1024}, "completion_tokens_details": {"reasoning_tokens": 0}}',
            {
                "input_tokens": 1200,
                "output_tokens": 85,
                "total_tokens": 1285,
                "cache_read_tokens": 1024,
                "reasoning_tokens": 0,
            },
            id="openai-usage-object-cache-within-input",
        ),
        pytest.param(
            '{"input_tokens": 60, "cache_read_input_tokens": 1500, "cache_creation_input_tokens": 0, '
            '"output_tokens": 15}',
            {"input_tokens": 1560, "output_tokens": 15, "cache_read_tokens": 1500, "cache_write_tokens": 0},
            id="anthropic-usage-object",
        ),
        pytest.param(
            '{"input_tokens": 1200, "input_tokens_details": {"cached_tokens": 1024}, "output_tokens": 85}',
            {"input_tokens": 1200, "output_tokens": 85, "cache_read_tokens": 1024},
            id="openai-responses-usage",
        ),
        pytest.param('{"input": "many", "output": -3}', {}, id="garbage-counts"),
        pytest.param("[1, 2]", {}, id="not-an-object"),
        pytest.param("{not json", {}, id="not-json"),
    ],
)
def test_langfuse_usage_details(usage_details: str, expected: dict[str, int]) -> None:
    result = normalize({"langfuse.observation.type": "generation", "langfuse.observation.usage_details": usage_details})
    fields = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens")
    assert {field: getattr(result, field) for field in fields if getattr(result, field) is not None} == {
        field: value for field, value in expected.items() if field in fields
    }
    if "total_tokens" in expected:
        assert result.total_tokens == expected["total_tokens"]
    assert result.category == "llm" and result.operation == "chat"


def test_usage_details_come_after_the_attribute_keys() -> None:
    result = normalize(
        {"gen_ai.usage.input_tokens": 7, "langfuse.observation.usage_details": '{"input": 100, "output": 5}'}
    )
    assert (result.input_tokens, result.output_tokens) == (7, 5)


@pytest.mark.parametrize(
    ("cost_details", "cost"),
    [
        ('{"input": 0.001, "output": 0.002, "total": 0.0035}', 0.0035),
        ('{"input": 0.001, "output": 0.002}', 0.003),
        ('{"input": "free"}', None),
        ("0.5", None),
        ("{}", None),
    ],
)
def test_langfuse_cost_details(cost_details: str, cost: float | None) -> None:
    result = normalize({"langfuse.observation.type": "generation", "langfuse.observation.cost_details": cost_details})
    assert result.client_cost_usd == pytest.approx(cost)


@pytest.mark.parametrize(
    ("attributes", "model"),
    [
        ({"llm.model_name": "gpt-4o-2024-08-06", "llm.invocation_parameters": '{"model": "gpt-4o"}'}, "gpt-4o"),
        (
            {"llm.model_name": "gpt-4o-2024-08-06", "llm.invocation_parameters": '{"temperature": 0}'},
            "gpt-4o-2024-08-06",
        ),
        ({"llm.model_name": "gpt-4o-2024-08-06", "llm.invocation_parameters": "{broken"}, "gpt-4o-2024-08-06"),
        ({"llm.model_name": "gpt-4o-2024-08-06", "llm.invocation_parameters": '{"model": null}'}, "gpt-4o-2024-08-06"),
        (
            {"llm.request.model_name": "claude-sonnet-4-5", "llm.invocation_parameters": '{"model": "x"}'},
            "claude-sonnet-4-5",
        ),
        ({"gen_ai.request.model": "o4-mini", "llm.invocation_parameters": '{"model": "x"}'}, "o4-mini"),
        ({"langfuse.observation.model.name": "claude-sonnet-4-5"}, "claude-sonnet-4-5"),
    ],
)
def test_request_model_sources(attributes: dict[str, Any], model: str) -> None:
    assert normalize(attributes).request_model == model


@pytest.mark.parametrize(
    ("attributes", "cache_read", "cache_write"),
    [
        ({"gen_ai.usage.cache_write.input_tokens": 2048, "gen_ai.usage.cache_read.input_tokens": 1024}, 1024, 2048),
        ({"gen_ai.usage.cache_creation.input_tokens": 5, "gen_ai.usage.cache_write.input_tokens": 9}, None, 5),
        (
            {"ai.usage.inputTokenDetails.cacheWriteTokens": 1500, "ai.usage.inputTokenDetails.cacheReadTokens": 300},
            300,
            1500,
        ),
        ({"ai.usage.inputTokenDetails.cacheReadTokens": 300, "ai.usage.cachedInputTokens": 200}, 300, None),
    ],
)
def test_cache_token_sources(attributes: dict[str, Any], cache_read: int | None, cache_write: int | None) -> None:
    result = normalize({"gen_ai.usage.input_tokens": 4000, **attributes})
    assert (result.cache_read_tokens, result.cache_write_tokens) == (cache_read, cache_write)


@pytest.mark.parametrize(
    ("observation_type", "operation", "category"),
    [
        ("generation", "chat", "llm"),
        ("embedding", "embeddings", "embedding"),
        ("agent", "invoke_agent", "agent"),
        ("tool", "execute_tool", "tool"),
        ("chain", "invoke_workflow", "workflow"),
        ("retriever", "retrieval", "retrieval"),
        ("span", None, "other"),
        ("event", None, "other"),
    ],
)
def test_langfuse_observation_types(observation_type: str, operation: str | None, category: str) -> None:
    result = normalize({"langfuse.observation.type": observation_type, "user.id": "u-1"})
    assert (result.operation, result.category) == (operation, category)


@pytest.mark.parametrize(
    ("attributes", "reasons"),
    [
        ({"gen_ai.response.finish_reasons": ["stop", "length"]}, ("stop", "length")),
        ({"gen_ai.response.finish_reasons": "stop"}, ("stop",)),
        ({"gen_ai.response.finish_reason": "length"}, ("length",)),
        ({"llm.response.finish_reason": "tool_calls"}, ("tool_calls",)),
        ({"llm.finish_reason": "end_turn"}, ("end_turn",)),
        (
            {
                "gen_ai.completion.0.role": "assistant",
                "gen_ai.completion.0.finish_reason": "stop",
                "gen_ai.completion.1.role": "assistant",
                "gen_ai.completion.1.finish_reason": "length",
                "gen_ai.completion.2.role": "assistant",
                "gen_ai.completion.2.content": "no reason recorded",
                "gen_ai.completion.3.finish_reason": "content_filter",
            },
            ("stop", "length", "content_filter"),
        ),
        ({"gen_ai.completion.0.finish_reason": ""}, None),
        ({"gen_ai.response.finish_reasons": 3}, None),
        # lists sent as JSON strings are decoded; a string that only looks like JSON stays one reason
        ({"gen_ai.response.finish_reasons": '["stop"]'}, ("stop",)),
        ({"gen_ai.response.finish_reasons": '["tool_calls", "stop"]'}, ("tool_calls", "stop")),
        ({"gen_ai.response.finish_reasons": "[]", "llm.finish_reason": "stop"}, ("stop",)),
        ({"gen_ai.response.finish_reasons": "[stop"}, ("[stop",)),
        ({"gen_ai.response.finish_reasons": '{"reason": "stop"}', "llm.finish_reason": "length"}, ("length",)),
        ({"anthropic.message.stop_reason": "tool_use"}, ("tool_use",)),
        ({"ai.response.finishReason": "tool-calls"}, ("tool-calls",)),
        ({"langfuse.observation.metadata.finish_reason": "stop"}, ("stop",)),
        ({"langfuse.observation.metadata.finish_reason": '"stop"'}, ("stop",)),  # Langfuse v5 JSON-encodes
        ({"gen_ai.response.finish_reasons": ["stop"], "anthropic.message.stop_reason": "end_turn"}, ("stop",)),
    ],
)
def test_finish_reasons(attributes: dict[str, Any], reasons: tuple[str, ...] | None) -> None:
    assert normalize(attributes).finish_reasons == reasons


def test_ids_sent_as_numbers_become_text_and_other_types_are_ignored() -> None:
    result = normalize({"user.id": 42, "gen_ai.conversation.id": True, "session.id": "s-1", "gen_ai.response.id": 1.5})
    assert (result.user_id, result.conversation_id, result.response_id) == ("42", "s-1", None)


def test_an_unknown_operation_is_kept_and_a_model_makes_it_an_llm_call() -> None:
    assert normalize({"gen_ai.operation.name": "Rerank", "gen_ai.request.model": "rerank-v3.5"}) == genai(
        category="llm", operation="rerank", request_model="rerank-v3.5"
    )
    assert normalize({"gen_ai.operation.name": "rerank"}) == genai(category="other", operation="rerank")


def test_a_model_or_token_count_without_an_operation_is_an_llm_call() -> None:
    assert normalize({"llm.model_name": "gpt-4o"}).category == "llm"
    assert normalize({"llm.token_count.total": 12}).category == "llm"
    assert normalize({"gen_ai.usage.cache_read.input_tokens": 12}).category == "llm"
    assert normalize({"user.id": "user-1"}) == genai(user_id="user-1")


def test_total_tokens_is_derived_only_when_both_sides_are_known() -> None:
    assert normalize({"gen_ai.usage.input_tokens": 5}).total_tokens is None
    assert normalize({"gen_ai.usage.output_tokens": 5}).total_tokens is None
    assert normalize({"gen_ai.usage.input_tokens": 5, "gen_ai.usage.output_tokens": 0}).total_tokens == 5
    assert (
        normalize(
            {"gen_ai.usage.input_tokens": 5, "gen_ai.usage.output_tokens": 1, "llm.usage.total_tokens": 9}
        ).total_tokens
        == 9
    )


# --- spans that are not GenAI --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attributes", "span_name"),
    [
        pytest.param({}, "", id="empty"),
        pytest.param(
            {"http.request.method": "GET", "url.path": "/health", "http.response.status_code": 200},
            "GET /health",
            id="http",
        ),
        pytest.param({"db.system.name": "postgresql", "db.query.text": "SELECT 1"}, "SELECT", id="db"),
        pytest.param({"gen_ai.request.model": "", "gen_ai.usage.input_tokens": "n/a"}, "chat", id="all-empty"),
        pytest.param({"traceloop.entity.name": "helper"}, "helper.task", id="entity-name-without-kind"),
    ],
)
def test_spans_without_genai_fields_are_not_genai(attributes: dict[str, Any], span_name: str) -> None:
    assert normalize(attributes, span_name) is NOT_GENAI


def test_not_genai_has_every_field_empty_and_category_other() -> None:
    assert NOT_GENAI.category == "other"
    assert all(value is None for value in NOT_GENAI[1:])


@pytest.mark.parametrize(
    ("attributes", "span_name", "expected"),
    [pytest.param(attributes, name, expected, id=id_) for id_, attributes, name, expected, _ in CONVENTIONS],
)
def test_attributes_as_decoded_from_otlp(attributes: dict[str, Any], span_name: str, expected: GenAI) -> None:
    key_values = [KeyValue(key=key, value=otlp_value(value)) for key, value in attributes.items()]
    assert normalize(decode_attributes(key_values), span_name) == expected


def test_any_mapping_is_accepted() -> None:
    assert normalize(MappingProxyType(OTEL_CURRENT), "chat o4-mini") == CALL


def test_the_fields_are_the_storage_columns() -> None:
    columns = {name for name, _ in GENAI_COLUMNS} - {"cost_usd"}  # cost_usd: client cost, else priced
    assert set(GenAI._fields) - {"client_cost_usd"} == columns


def test_text_fields_are_the_fields_typed_as_text() -> None:
    """The limits cut only these (transform reads no other field for a long string)."""
    hints = typing.get_type_hints(GenAI)
    assert GENAI_TEXT_FIELDS == tuple(name for name in GenAI._fields if hints[name] in (str, str | None))


# --- evaluations ---------------------------------------------------------------------------------


def test_evaluations_from_openinference_attributes() -> None:
    span = {
        "openinference.span.kind": "LLM",
        "gen_ai.response.id": "chatcmpl-BxQ8m2vK9",
        "evaluations.0.evaluation.name": "correctness",
        "evaluations.0.evaluation.score": 0.9,
        "evaluations.0.evaluation.label": "correct",
        "evaluations.0.evaluation.explanation": "Matches the order record.",
        "evaluations.1.evaluation.name": "toxicity",
        "evaluations.1.evaluation.score": "0",
        "evaluations.1.evaluation.label": "non-toxic",
        "evaluations.2.evaluation.score": 0.1,  # no name: skipped, and the walk goes on
        "evaluations.3.evaluation.name": "tone",
        "evaluations.3.evaluation.score": "friendly",  # not a number
        "evaluations.5.evaluation.name": "after a gap: not read",
    }
    assert evaluations_from_attributes(span) == [
        Evaluation("correctness", 0.9, "correct", "Matches the order record.", "chatcmpl-BxQ8m2vK9"),
        Evaluation("toxicity", 0.0, "non-toxic", None, "chatcmpl-BxQ8m2vK9"),
        Evaluation("tone", None, None, None, "chatcmpl-BxQ8m2vK9"),
    ]


def test_a_span_without_evaluations_has_none() -> None:
    assert evaluations_from_attributes(OPENINFERENCE) == []
    assert evaluations_from_attributes({}) == []


def test_evaluation_from_a_gen_ai_evaluation_result_event() -> None:
    event = {
        "event.name": "gen_ai.evaluation.result",
        "gen_ai.evaluation.name": "Relevance",
        "gen_ai.evaluation.score.value": 4,
        "gen_ai.evaluation.score.label": "relevant",
        "gen_ai.evaluation.explanation": "Answers the question asked.",
        "gen_ai.response.id": "chatcmpl-BxQ8m2vK9",
    }
    assert evaluation_from_event(event) == Evaluation(
        "Relevance", 4.0, "relevant", "Answers the question asked.", "chatcmpl-BxQ8m2vK9"
    )
    assert evaluation_from_event({"gen_ai.evaluation.name": "Fluency", "gen_ai.evaluation.score.label": "fluent"}) == (
        Evaluation("Fluency", None, "fluent", None, None)
    )


@pytest.mark.parametrize(
    "attributes",
    [{}, {"gen_ai.evaluation.score.value": 1.0}, {"gen_ai.evaluation.name": "", "gen_ai.evaluation.score.value": 1}],
)
def test_an_evaluation_event_without_a_name_is_none(attributes: dict[str, Any]) -> None:
    assert evaluation_from_event(attributes) is None


def test_genai_event_names() -> None:
    assert GENAI_EVENT_NAMES == {
        "gen_ai.client.inference.operation.details",
        "gen_ai.system.message",
        "gen_ai.user.message",
        "gen_ai.assistant.message",
        "gen_ai.tool.message",
        "gen_ai.choice",
        "gen_ai.evaluation.result",
    }
