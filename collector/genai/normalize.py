"""Span attributes to canonical GenAI fields, whatever convention the instrumentation speaks.

Pure functions, no I/O. The rules are data: ``_SOURCES`` lists, per canonical field, the attribute
keys to read in order (first non-empty, valid value wins) and how to coerce them; value mappings are
dicts beside it (REFERENCE.md section 2). A value that cannot be coerced (a token count of "n/a", a
negative cost) counts as absent, so the next source gets its turn; nothing here raises on bad data.

Runs for every span: a span that carries none of the known keys costs one set check.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from itertools import count
from operator import itemgetter
from typing import Any, NamedTuple


class GenAI(NamedTuple):
    """The canonical GenAI columns of one span (``storage.schema.GENAI_COLUMNS``); None where unknown."""

    category: str  # llm, embedding, tool, agent, retrieval, workflow, other
    provider: str | None
    request_model: str | None
    response_model: str | None
    operation: str | None
    input_tokens: int | None  # includes cached tokens (OTel definition)
    output_tokens: int | None  # includes reasoning tokens
    total_tokens: int | None  # from the source, else input + output when both are known
    cache_read_tokens: int | None
    cache_write_tokens: int | None
    reasoning_tokens: int | None
    finish_reasons: tuple[str, ...] | None
    response_id: str | None
    ttft_ms: float | None  # time to first chunk, milliseconds
    conversation_id: str | None
    user_id: str | None
    agent_name: str | None
    tool_name: str | None
    client_cost_usd: float | None  # as reported by the client; pricing fills the rest elsewhere


# The fields that hold text; the others hold counts, amounts (int, float) and the finish reasons' tuple.
GENAI_TEXT_FIELDS: tuple[str, ...] = (
    "category",
    "provider",
    "request_model",
    "response_model",
    "operation",
    "response_id",
    "conversation_id",
    "user_id",
    "agent_name",
    "tool_name",
)
NOT_GENAI = GenAI("other", *([None] * (len(GenAI._fields) - 1)))
_new_genai = tuple.__new__


class Evaluation(NamedTuple):
    """One evaluation result (LLM-as-judge, heuristic, human) of a GenAI response."""

    name: str
    score: float | None
    label: str | None
    explanation: str | None
    response_id: str | None


GENAI_EVENT_NAMES: frozenset[str] = frozenset(
    {
        "gen_ai.client.inference.operation.details",
        "gen_ai.system.message",
        "gen_ai.user.message",
        "gen_ai.assistant.message",
        "gen_ai.tool.message",
        "gen_ai.choice",
        "gen_ai.evaluation.result",
    }
)

Coerce = Callable[[Any], Any]


# --- coercions: an attribute value to the field's type, or None when empty or unusable -------


def _text(value: Any) -> str | None:
    if type(value) is str:
        value = value.strip()
        return value or None
    if type(value) is int:  # an id sent as a number; ``type`` so that bools stay out
        return str(value)
    return None


def _lower_text(value: Any) -> str | None:
    text = _text(value)
    return text.lower() if text else None


def _number(value: Any) -> float | None:
    kind = type(value)
    if kind is float or kind is int:
        number = float(value)
    elif kind is str:
        try:
            number = float(value)
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def _amount(value: Any) -> float | None:
    number = _number(value)
    return number if number is not None and number >= 0 else None


def _seconds_as_ms(value: Any) -> float | None:
    seconds = _amount(value)
    return seconds * 1000.0 if seconds is not None else None


def _count(value: Any) -> int | None:
    """A token count: a non-negative whole number, also when sent as "812" or 812.0."""
    if type(value) is str:
        try:
            value = int(value)
        except ValueError:
            value = _number(value)
    if type(value) is int:
        return value if value >= 0 else None
    if type(value) is float and value >= 0 and value.is_integer():
        return int(value)
    return None


def _json_text(value: Any) -> Any:
    """A JSON document sent as a string attribute (a list, an object, a quoted string), decoded; else as it came."""
    if type(value) is str and value[:1] in _JSON_OPENERS:
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


_JSON_OPENERS = frozenset('["{')
# Coercions that decode or map a string remember this many of them: the values are a handful of provider
# names, finish reasons and invocation parameters, met again on most spans (the results are immutable).
_TEXTS_REMEMBERED = 256
_TEXT_REMEMBERED_LENGTH = 1024  # longer ones are decoded each time: the memory stays small whatever comes


def _reasons(value: Any) -> tuple[str, ...] | None:
    """One finish reason or a list of them, as a tuple of non-empty strings.

    Some SDKs send the list as a JSON string (``'["stop"]'``), Langfuse v5 its metadata as JSON
    (``'"stop"'``): both are decoded.
    """
    if type(value) is str:
        return _reasons_of_text(value) if len(value) <= _TEXT_REMEMBERED_LENGTH else _reasons_of_text.__wrapped__(value)
    if type(value) is not list and type(value) is not tuple:
        return None
    return _reason_tuple(value)


def _reason_tuple(values: Sequence[Any]) -> tuple[str, ...] | None:
    reasons = []
    for reason in values:
        if type(reason) is str:
            reason = reason.strip()
            if reason:
                reasons.append(reason)
    return tuple(reasons) or None


@lru_cache(maxsize=_TEXTS_REMEMBERED)
def _reasons_of_text(text: str) -> tuple[str, ...] | None:
    """The reasons of a string (a few values repeat: "stop", '["stop"]'), decoded once."""
    value = _json_text(text)
    if type(value) is str:
        return _reason_tuple((value,))
    return _reason_tuple(value) if type(value) is list else None


def _json_field(field: str, coerce: Coerce) -> Coerce:
    """One field of a JSON object sent as a string (OpenInference's ``llm.invocation_parameters``)."""

    @lru_cache(maxsize=_TEXTS_REMEMBERED)  # the same parameters come again and again: decoded once
    def from_text(text: str) -> Any:
        document = _json_text(text)
        return coerce(document.get(field)) if type(document) is dict else None

    def read(value: Any) -> Any:
        if type(value) is str:
            return from_text(value) if len(value) <= _TEXT_REMEMBERED_LENGTH else from_text.__wrapped__(value)
        return coerce(value.get(field)) if type(value) is dict else None

    read.note = f"JSON object, its field `{field}`"  # type: ignore[attr-defined]
    return read


def _timestamp_ns(value: Any) -> int | None:
    """An ISO 8601 time (Langfuse sends it JSON-quoted: ``'"2025-01-01T00:00:00.123Z"'``) in unix nanoseconds."""
    text = _json_text(value)
    if type(text) is not str:
        return None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1_000


def _mapped(mapping: Mapping[str, str]) -> Coerce:
    """A closed vocabulary translated to ours; a value outside it counts as absent."""

    def coerce(value: Any) -> str | None:
        text = _lower_text(value)
        return mapping.get(text) if text else None

    coerce.note = ", ".join(f"{key}→{value}" for key, value in mapping.items())  # type: ignore[attr-defined]
    return coerce


# --- value mappings ------------------------------------------------------------------------

_PROVIDER_NAMES = {
    "mistralai": "mistral_ai",
    "xai": "x_ai",
    # Vercel AI SDK vendor ids, once the API kind is cut off (see _AI_SDK_MODEL_KINDS).
    "mistral": "mistral_ai",
    "amazon-bedrock": "aws.bedrock",
}
_PROVIDER_PREFIXES = (("az.ai.", "azure.ai."),)

# The Vercel AI SDK names providers "<vendor>.<api>" ("openai.chat", "anthropic.messages",
# "azure.responses", "google.generative-ai") in ai.model.provider and repeats it in gen_ai.system.
# We keep the vendor, the part before the first dot. Recognised by the last segment, because OTel
# names have dots too ("aws.bedrock", "azure.ai.openai") and none of them ends in one of these.
_AI_SDK_MODEL_KINDS = frozenset(
    {
        "chat",
        "completion",
        "responses",
        "messages",
        "embedding",
        "embeddings",
        "image",
        "transcription",
        "speech",
        "generative-ai",
    }
)


def _provider(value: Any) -> str | None:
    return (
        _provider_of_text(value)
        if type(value) is str and len(value) <= _TEXT_REMEMBERED_LENGTH
        else _provider_name(value)
    )


def _provider_name(value: Any) -> str | None:
    name = _lower_text(value)
    if name is None:
        return None
    if name.rpartition(".")[2] in _AI_SDK_MODEL_KINDS:
        name = name.partition(".")[0]
    name = _PROVIDER_NAMES.get(name, name)
    for old, new in _PROVIDER_PREFIXES:
        if name.startswith(old):
            name = new + name[len(old) :]
    return name


_provider_of_text = lru_cache(maxsize=_TEXTS_REMEMBERED)(_provider_name)  # a few names, on most spans


# OpenLLMetry's LLMRequestTypeValues ("rerank" and "unknown" have no OTel operation).
_LLM_REQUEST_TYPES = {"chat": "chat", "completion": "text_completion", "embedding": "embeddings"}

# OpenInference span kinds, case-insensitive (RERANKER, GUARDRAIL, EVALUATOR... have no OTel operation).
_OPENINFERENCE_KINDS = {
    "llm": "chat",
    "embedding": "embeddings",
    "tool": "execute_tool",
    "agent": "invoke_agent",
    "retriever": "retrieval",
    "chain": "invoke_workflow",
}

# OpenLLMetry's TraceloopSpanKindValues: a task is a step of a workflow, so it is one too.
_TRACELOOP_KINDS = {
    "workflow": "invoke_workflow",
    "task": "invoke_workflow",
    "agent": "invoke_agent",
    "tool": "execute_tool",
}

# Vercel AI SDK ai.operationId, which is also the span's name: the do* spans are the provider
# calls; the outer spans wrap one or more of them (and tool calls), so they are workflows.
_AI_SDK_OPERATIONS = {
    "ai.generateText.doGenerate": "chat",
    "ai.streamText.doStream": "chat",
    "ai.generateObject.doGenerate": "chat",
    "ai.streamObject.doStream": "chat",
    "ai.embed.doEmbed": "embeddings",
    "ai.embedMany.doEmbed": "embeddings",
    "ai.toolCall": "execute_tool",
    "ai.generateText": "invoke_workflow",
    "ai.streamText": "invoke_workflow",
    "ai.generateObject": "invoke_workflow",
    "ai.streamObject": "invoke_workflow",
    "ai.embed": "invoke_workflow",
    "ai.embedMany": "invoke_workflow",
}

# Langfuse's observation types (v3 and later): a generation is a model call; span and event are not GenAI.
_LANGFUSE_OBSERVATION_TYPES = {
    "generation": "chat",
    "embedding": "embeddings",
    "agent": "invoke_agent",
    "tool": "execute_tool",
    "chain": "invoke_workflow",
    "retriever": "retrieval",
}

_AI_SDK_OPERATIONS_LOWER = {operation_id.lower(): name for operation_id, name in _AI_SDK_OPERATIONS.items()}

_CATEGORIES = {
    "chat": "llm",
    "text_completion": "llm",
    "generate_content": "llm",
    "embeddings": "embedding",
    "execute_tool": "tool",
    "invoke_agent": "agent",
    "create_agent": "agent",
    "retrieval": "retrieval",
    "invoke_workflow": "workflow",
}


# --- token counts inside a JSON document ----------------------------------------------------

# Langfuse's ``langfuse.observation.usage_details`` is a JSON object of token counts, in Langfuse's own
# keys ("input", "output", "cache_read_input_tokens", ...) or as the provider's usage object (its OpenAI
# integration stores OpenAI's, with the nested prompt_tokens_details). A dotted key is a nested field.
# (canonical field, keys in order; the first present, valid count wins)
_USAGE_DETAILS_KEYS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("input_tokens", ("input", "prompt_tokens", "input_tokens")),
    ("output_tokens", ("output", "completion_tokens", "output_tokens")),
    ("total_tokens", ("total", "total_tokens")),
    (
        "cache_read_tokens",
        (
            "cache_read_input_tokens",
            "input_cached_tokens",
            "input_cache_read",
            "prompt_tokens_details.cached_tokens",
            "input_tokens_details.cached_tokens",
        ),
    ),
    ("cache_write_tokens", ("cache_creation_input_tokens", "input_cache_creation", "input_cache_write")),
    (
        "reasoning_tokens",
        (
            "output_reasoning_tokens",
            "completion_tokens_details.reasoning_tokens",
            "output_tokens_details.reasoning_tokens",
        ),
    ),
)
# Cache counts that Langfuse's and Anthropic's keys report beside the input count, not within it (OpenAI's
# nested cached_tokens is within): they are added to it, since our input_tokens includes cached tokens.
_USAGE_BESIDE_INPUT = frozenset(
    {
        "cache_read_input_tokens",
        "input_cached_tokens",
        "input_cache_read",
        "cache_creation_input_tokens",
        "input_cache_creation",
        "input_cache_write",
    }
)


@lru_cache(maxsize=1)  # one document feeds six fields, read one after the other
def _usage_document(text: str) -> Mapping[str, int]:
    document = _json_text(text)
    if type(document) is not dict:
        return {}
    flat: dict[str, Any] = {}
    for key, value in document.items():
        if type(value) is dict:
            flat.update((f"{key}.{inner}", count_) for inner, count_ in value.items())
        else:
            flat[key] = value
    counts: dict[str, int] = {}
    beside = 0
    for field, keys in _USAGE_DETAILS_KEYS:
        for key in keys:
            tokens = _count(flat.get(key))
            if tokens is not None:
                counts[field] = tokens
                if key in _USAGE_BESIDE_INPUT:
                    beside += tokens
                break
    if beside and "input_tokens" in counts:
        counts["input_tokens"] += beside
    return counts


def _usage_details(field: str) -> Coerce:
    def read(value: Any) -> int | None:
        return _usage_document(value).get(field) if type(value) is str else None

    read.note = "JSON object of token counts, see below"  # type: ignore[attr-defined]
    return read


def _cost_details(value: Any) -> float | None:
    """Langfuse's ``cost_details`` JSON: its "total", else the sum of its parts (USD)."""
    document = _json_text(value)
    if type(document) is not dict:
        return None
    total = _amount(document.get("total"))
    if total is not None:
        return total
    parts = [_amount(part) for part in document.values()]
    return sum(part for part in parts if part is not None) if any(part is not None for part in parts) else None


# --- the table -----------------------------------------------------------------------------

# (canonical field, coercion, source keys in order). Rows for the same field are tried in order.
# REFERENCE.md section 2, plus what real libraries send that it leaves out (docs/genai-conventions.md
# has the whole table, checked against this one): ai.operationId and AI SDK 5's
# ai.usage.{input,output,total}Tokens and inputTokenDetails; the Anthropic SDK's cache_write key and
# stop reason; OpenInference's requested model (in its invocation parameters, before llm.model_name,
# which is the model that answered); Langfuse v3+ observations (langfuse.observation.*).
_USAGE = "langfuse.observation.usage_details"
_SOURCES: tuple[tuple[str, Coerce, tuple[str, ...]], ...] = (
    (
        "provider",
        _provider,
        (
            "gen_ai.provider.name",
            "gen_ai.system",
            "llm.provider",
            "llm.system",
            "ai.model.provider",
        ),
    ),
    ("request_model", _text, ("gen_ai.request.model", "llm.request.model_name")),
    ("request_model", _json_field("model", _text), ("llm.invocation_parameters",)),
    ("request_model", _text, ("llm.model_name", "ai.model.id", "langfuse.observation.model.name")),
    ("response_model", _text, ("gen_ai.response.model", "llm.response.model_name", "llm.model_name")),
    ("operation", _lower_text, ("gen_ai.operation.name",)),
    ("operation", _mapped(_LLM_REQUEST_TYPES), ("llm.request.type",)),
    ("operation", _mapped(_OPENINFERENCE_KINDS), ("openinference.span.kind",)),
    ("operation", _mapped(_TRACELOOP_KINDS), ("traceloop.span.kind",)),
    ("operation", _mapped(_AI_SDK_OPERATIONS_LOWER), ("ai.operationId",)),
    ("operation", _mapped(_LANGFUSE_OBSERVATION_TYPES), ("langfuse.observation.type",)),
    (
        "input_tokens",
        _count,
        (
            "gen_ai.usage.input_tokens",
            "gen_ai.usage.prompt_tokens",
            "llm.token_count.prompt",
            "ai.usage.promptTokens",
            "ai.usage.inputTokens",
        ),
    ),
    ("input_tokens", _usage_details("input_tokens"), (_USAGE,)),
    (
        "output_tokens",
        _count,
        (
            "gen_ai.usage.output_tokens",
            "gen_ai.usage.completion_tokens",
            "llm.token_count.completion",
            "ai.usage.completionTokens",
            "ai.usage.outputTokens",
        ),
    ),
    ("output_tokens", _usage_details("output_tokens"), (_USAGE,)),
    (
        "total_tokens",
        _count,
        (
            "gen_ai.usage.total_tokens",
            "llm.usage.total_tokens",
            "llm.token_count.total",
            "ai.usage.tokens",
            "ai.usage.totalTokens",
        ),
    ),
    ("total_tokens", _usage_details("total_tokens"), (_USAGE,)),
    (
        "cache_read_tokens",
        _count,
        (
            "gen_ai.usage.cache_read.input_tokens",
            "gen_ai.usage.cache_read_input_tokens",
            "llm.token_count.prompt_details.cache_read",
            "ai.usage.inputTokenDetails.cacheReadTokens",
            "ai.usage.cachedInputTokens",
        ),
    ),
    ("cache_read_tokens", _usage_details("cache_read_tokens"), (_USAGE,)),
    (
        "cache_write_tokens",
        _count,
        (
            "gen_ai.usage.cache_creation.input_tokens",
            "gen_ai.usage.cache_write.input_tokens",
            "gen_ai.usage.cache_creation_input_tokens",
            "llm.token_count.prompt_details.cache_write",
            "ai.usage.inputTokenDetails.cacheWriteTokens",
        ),
    ),
    ("cache_write_tokens", _usage_details("cache_write_tokens"), (_USAGE,)),
    (
        "reasoning_tokens",
        _count,
        (
            "gen_ai.usage.reasoning.output_tokens",
            "gen_ai.usage.reasoning_tokens",
            "llm.usage.reasoning_tokens",
            "llm.token_count.completion_details.reasoning",
            "ai.usage.outputTokenDetails.reasoningTokens",
            "ai.usage.reasoningTokens",
        ),
    ),
    ("reasoning_tokens", _usage_details("reasoning_tokens"), (_USAGE,)),
    (
        "finish_reasons",
        _reasons,
        (
            "gen_ai.response.finish_reasons",
            "gen_ai.response.finish_reason",
            "llm.response.finish_reason",
            "llm.finish_reason",
            "anthropic.message.stop_reason",
            "ai.response.finishReason",
            "langfuse.observation.metadata.finish_reason",
        ),
    ),
    ("response_id", _text, ("gen_ai.response.id",)),
    ("ttft_ms", _seconds_as_ms, ("gen_ai.response.time_to_first_chunk",)),
    ("ttft_ms", _amount, ("ai.response.msToFirstChunk", "ai.stream.msToFirstChunk")),
    ("conversation_id", _text, ("gen_ai.conversation.id", "session.id", "langfuse.session.id")),
    ("user_id", _text, ("user.id", "langfuse.user.id", "gen_ai.user", "llm.user")),
    ("agent_name", _text, ("gen_ai.agent.name", "agent.name")),
    ("tool_name", _text, ("gen_ai.tool.name", "tool.name", "ai.toolCall.name")),
    ("client_cost_usd", _amount, ("llm.cost.total", "gen_ai.usage.cost")),
    ("client_cost_usd", _cost_details, ("langfuse.observation.cost_details",)),
)

# Time to first chunk that a span carries implicitly, after the explicit keys above: the time of the
# first chunk, as an attribute or as the first of the span's events of these names, minus the span's start.
FIRST_CHUNK_TIME_KEYS: tuple[str, ...] = ("langfuse.observation.completion_start_time",)
_FIRST_CHUNK_TIME_KEY_SET = frozenset(FIRST_CHUNK_TIME_KEYS)
FIRST_CHUNK_EVENTS: frozenset[str] = frozenset(
    {
        "First Token Stream Event",  # OpenInference (openai)
        "gen_ai.content.completion.chunk",  # OpenLLMetry (openai): one per chunk, the first counts
        "ai.stream.firstChunk",  # Vercel AI SDK
    }
)

# OpenLLMetry names a decorated span in traceloop.entity.name; what it names depends on the kind.
_TRACELOOP_KIND = "traceloop.span.kind"
_TRACELOOP_ENTITY_NAME = "traceloop.entity.name"
_ENTITY_NAME_FIELDS = {"agent": "agent_name", "tool": "tool_name"}


@lru_cache(maxsize=64)  # read for each span that has choices, one index after the other
def _completion_keys(index: int) -> tuple[str, ...]:
    """OpenLLMetry's keys of choice N, finish reason first; any of them means the choice exists."""
    return tuple(f"gen_ai.completion.{index}.{name}" for name in ("finish_reason", "role", "content"))


_FIRST_COMPLETION_KEYS = _completion_keys(0)

# A span carrying none of these (and not named like an AI SDK span) is not GenAI.
_KNOWN_KEYS = frozenset({key for _, _, keys in _SOURCES for key in keys} | {_FIRST_COMPLETION_KEYS[0]})

_FIELD = {name: index for index, name in enumerate(GenAI._fields)}
_FIELD_COUNT = len(GenAI._fields)
_CATEGORY, _OPERATION, _FINISH_REASONS = _FIELD["category"], _FIELD["operation"], _FIELD["finish_reasons"]
_INPUT, _OUTPUT, _TOTAL = _FIELD["input_tokens"], _FIELD["output_tokens"], _FIELD["total_tokens"]
_TTFT = _FIELD["ttft_ms"]
# Without a known operation, a span that names a model or counts tokens is an LLM call.
_MAKES_LLM = tuple(_FIELD[name] for name in GenAI._fields if name.endswith(("_model", "_tokens")))


def _sources_by_key() -> dict[str, tuple[tuple[int, int, Coerce], ...]]:
    """Each key's (priority, field index, coercion) entries; a key may feed two fields (llm.model_name)."""
    by_key: dict[str, list[tuple[int, int, Coerce]]] = {}
    priority = count()
    for field, coerce, keys in _SOURCES:
        for key in keys:
            by_key.setdefault(key, []).append((next(priority), _FIELD[field], coerce))
    return {key: tuple(entries) for key, entries in by_key.items()}


_SOURCES_BY_KEY = _sources_by_key()
_NO_SOURCE = sum(len(keys) for _, _, keys in _SOURCES)  # a priority below every source's


# --- normalization -------------------------------------------------------------------------


def normalize(
    attributes: Mapping[str, Any],
    span_name: str = "",
    start_time_unix_nano: int | None = None,
    events: Sequence[Mapping[str, Any]] = (),
) -> GenAI:
    """The canonical GenAI fields of a span; ``NOT_GENAI`` when it carries none of them.

    The span's start and events are needed only for a time to first chunk the span carries implicitly.
    """
    if _KNOWN_KEYS.isdisjoint(attributes) and span_name not in _AI_SDK_OPERATIONS:
        return NOT_GENAI
    values: list[Any] = [None] * _FIELD_COUNT
    # Only the keys present are looked at; per field, the valid value of the highest-priority key stays.
    winners = [_NO_SOURCE] * _FIELD_COUNT
    sources = _SOURCES_BY_KEY
    for key, raw in attributes.items():  # one pass; which key comes first does not matter, priorities do
        entries = sources.get(key)
        if entries is None:
            continue
        for priority, index, coerce in entries:
            if priority < winners[index]:
                value = coerce(raw)
                if value is not None:
                    values[index] = value
                    winners[index] = priority

    if values[_OPERATION] is None:
        values[_OPERATION] = _AI_SDK_OPERATIONS.get(span_name)
    traceloop_kind = attributes.get(_TRACELOOP_KIND)
    if traceloop_kind is not None:
        entity_field = _ENTITY_NAME_FIELDS.get(_lower_text(traceloop_kind) or "")
        if entity_field is not None and values[_FIELD[entity_field]] is None:
            values[_FIELD[entity_field]] = _text(attributes.get(_TRACELOOP_ENTITY_NAME))
    if values[_FINISH_REASONS] is None and not attributes.keys().isdisjoint(_FIRST_COMPLETION_KEYS):
        values[_FINISH_REASONS] = _completion_finish_reasons(attributes)
    if (
        values[_TTFT] is None
        and start_time_unix_nano is not None
        and (events or not _FIRST_CHUNK_TIME_KEY_SET.isdisjoint(attributes))
    ):
        values[_TTFT] = _implicit_ttft_ms(attributes, start_time_unix_nano, events)
    if values[_TOTAL] is None and values[_INPUT] is not None and values[_OUTPUT] is not None:
        values[_TOTAL] = values[_INPUT] + values[_OUTPUT]

    if values.count(None) == _FIELD_COUNT:
        return NOT_GENAI
    category = _CATEGORIES.get(values[_OPERATION] or "")
    if category is None:
        category = "llm" if any(values[index] is not None for index in _MAKES_LLM) else "other"
    values[_CATEGORY] = category
    return _new_genai(GenAI, values)  # ``GenAI._make`` without its Python-level call


def _implicit_ttft_ms(
    attributes: Mapping[str, Any], start_time_unix_nano: int, events: Sequence[Mapping[str, Any]]
) -> float | None:
    """Milliseconds from the span's start to its first chunk: ``FIRST_CHUNK_TIME_KEYS``, then ``FIRST_CHUNK_EVENTS``."""
    first_chunk: int | None = None
    for key in FIRST_CHUNK_TIME_KEYS:
        if key in attributes:
            first_chunk = _timestamp_ns(attributes[key])
            if first_chunk is not None:
                break
    if first_chunk is None:
        times = [event.get("time_unix_nano") for event in events if event.get("name") in FIRST_CHUNK_EVENTS]
        first_chunk = min((time for time in times if type(time) is int), default=None)
    if first_chunk is None or first_chunk < start_time_unix_nano:
        return None
    return (first_chunk - start_time_unix_nano) / 1e6


def _completion_finish_reasons(attributes: Mapping[str, Any]) -> tuple[str, ...] | None:
    """gen_ai.completion.N.finish_reason for N = 0, 1, 2... up to the first choice that does not exist."""
    keys = _FIRST_COMPLETION_KEYS
    reasons: list[str] = []
    for index in count(1):
        if attributes.keys().isdisjoint(keys):
            break
        reasons.extend(_reasons(attributes.get(keys[0])) or ())
        keys = _completion_keys(index)
    return tuple(reasons) or None


# --- evaluations ---------------------------------------------------------------------------

# In the order of Evaluation's fields: (field, its gen_ai.evaluation.result key, coercion).
# OpenInference spells the same field evaluations.N.evaluation.<field>.
_EVALUATION_SOURCES: tuple[tuple[str, str, Coerce], ...] = (
    ("name", "gen_ai.evaluation.name", _text),
    ("score", "gen_ai.evaluation.score.value", _number),
    ("label", "gen_ai.evaluation.score.label", _text),
    ("explanation", "gen_ai.evaluation.explanation", _text),
)
_RESPONSE_ID = "gen_ai.response.id"


def _evaluation_keys(index: int) -> tuple[str, ...]:
    return tuple(f"evaluations.{index}.evaluation.{field}" for field, _, _ in _EVALUATION_SOURCES)


_FIRST_EVALUATION_KEYS = _evaluation_keys(0)


def _evaluation(raw: Iterable[Any], response_id: Any) -> Evaluation | None:
    name, score, label, explanation = (
        coerce(value) for (_, _, coerce), value in zip(_EVALUATION_SOURCES, raw, strict=True)
    )
    if name is None:
        return None
    return Evaluation(name, score, label, explanation, _text(response_id))


def evaluations_from_attributes(attributes: Mapping[str, Any]) -> list[Evaluation]:
    """OpenInference evaluations.N.evaluation.{name,score,label,explanation}, N = 0, 1, 2... up to a gap.

    An evaluation without a name is skipped; the span's gen_ai.response.id, if any, links them.
    """
    evaluations = []
    keys = _FIRST_EVALUATION_KEYS
    for index in count(1):
        if attributes.keys().isdisjoint(keys):
            break
        evaluation = _evaluation([attributes.get(key) for key in keys], attributes.get(_RESPONSE_ID))
        if evaluation is not None:
            evaluations.append(evaluation)
        keys = _evaluation_keys(index)
    return evaluations


def evaluation_from_event(attributes: Mapping[str, Any]) -> Evaluation | None:
    """The attributes of a gen_ai.evaluation.result event or log record; None without a name."""
    raw = [attributes.get(key) for _, key, _ in _EVALUATION_SOURCES]
    return _evaluation(raw, attributes.get(_RESPONSE_ID))


# --- range checks: what a canonical column, a rollup's sum and a metric can hold -----------
#
# Kept apart from the table above: a value can be valid OTLP (any int64) and still be no token count.
# Such a value stays in the span's attributes as sent; only its canonical column is left empty.

MAX_TOKENS = 10**12  # above any real call; a thousand of them still sum inside SQLite's int64
MAX_COST_USD = 1e6
_TOKEN_FIELDS = tuple(index for index, name in enumerate(GenAI._fields) if name.endswith("_tokens"))
_COST = _FIELD["client_cost_usd"]
_token_counts = itemgetter(*_TOKEN_FIELDS)


def out_of_range(genai: GenAI) -> tuple[GenAI, tuple[str, ...]]:
    """``genai`` without the token counts above ``MAX_TOKENS`` and a client cost above ``MAX_COST_USD``,
    and the names of the fields left out."""
    if genai is NOT_GENAI:
        return genai, ()
    for tokens in _token_counts(genai):  # a loop, no list: nearly every span has every count in range
        if tokens is not None and tokens > MAX_TOKENS:
            break
    else:
        if (genai.client_cost_usd or 0.0) <= MAX_COST_USD:
            return genai, ()
    bad = [
        index for index, tokens in zip(_TOKEN_FIELDS, _token_counts(genai), strict=True) if (tokens or 0) > MAX_TOKENS
    ]
    if (genai.client_cost_usd or 0.0) > MAX_COST_USD:
        bad.append(_COST)
    if not bad:
        return genai, ()
    values = list(genai)
    for index in bad:
        values[index] = None
    return GenAI._make(values), tuple(GenAI._fields[index] for index in bad)
