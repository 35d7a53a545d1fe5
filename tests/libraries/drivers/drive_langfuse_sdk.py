"""The Langfuse SDK (v3 and later, built on OpenTelemetry), exporting to the collector instead of Langfuse.

OpenAI through Langfuse's drop-in client (``langfuse.openai``); Anthropic through a generation the
application records with Langfuse's API, usage in Langfuse's own keys, around the Anthropic SDK's call
(whose own span nests under the generation: one call, two spans). Trace-level user and session ids
are propagated to every span.
"""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import _driver
from _driver import ANTHROPIC_MODEL, QUESTION, run

collector = os.environ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"].removesuffix("/v1/traces")
os.environ["LANGFUSE_OTEL_TRACES_EXPORT_PATH"] = "v1/traces"

from langfuse import Langfuse, propagate_attributes  # noqa: E402 (after the export path is set)
from langfuse.openai import OpenAI  # noqa: E402

langfuse = Langfuse(public_key="pk-lf-test", secret_key="sk-lf-test", host=collector, flush_at=1)
USER_ID = "user-langfuse-1"
SESSION_ID = "session-langfuse-1"


@contextmanager
def root(name: str) -> Iterator[None]:
    with (
        langfuse.start_as_current_observation(as_type="span", name=f"scenario {name}"),
        propagate_attributes(user_id=USER_ID, session_id=SESSION_ID),
    ):
        yield


def client() -> Any:
    return OpenAI(base_url=_driver.FAKE_LLM_URL + "/v1", api_key=_driver.API_KEY, max_retries=0)


def anthropic_generation(call: Any, *, stream: bool = False) -> None:
    """A Langfuse generation around one Anthropic call, with usage in Langfuse's keys."""
    with langfuse.start_as_current_observation(
        as_type="generation", name="anthropic.messages", model=ANTHROPIC_MODEL, input=QUESTION
    ) as generation:
        message, first_chunk_at = call()
        usage = message.usage
        generation.update(
            output=message.model_dump(mode="json")["content"],
            usage_details={
                "input": usage.input_tokens,
                "output": usage.output_tokens,
                "cache_read_input_tokens": usage.cache_read_input_tokens,
                "cache_creation_input_tokens": usage.cache_creation_input_tokens,
            },
            completion_start_time=first_chunk_at,
            metadata={"finish_reason": message.stop_reason},  # where Langfuse's OpenAI integration puts it
        )


def anthropic_chat() -> None:
    anthropic = _driver.anthropic_client()
    anthropic_generation(
        lambda: (
            anthropic.messages.create(
                model=ANTHROPIC_MODEL, max_tokens=256, messages=[{"role": "user", "content": QUESTION}]
            ),
            None,
        )
    )


def anthropic_stream() -> None:
    anthropic = _driver.anthropic_client()

    def call() -> Any:
        first_chunk_at = None
        with anthropic.messages.stream(
            model=ANTHROPIC_MODEL, max_tokens=256, messages=[{"role": "user", "content": QUESTION}]
        ) as stream:
            for event in stream:
                if first_chunk_at is None and event.type == "content_block_delta":
                    first_chunk_at = datetime.now(UTC)
            return stream.get_final_message(), first_chunk_at

    anthropic_generation(call)


def anthropic_tool() -> None:
    anthropic = _driver.anthropic_client()
    messages: list[dict[str, Any]] = [{"role": "user", "content": _driver.WEATHER_QUESTION}]
    replies = []

    def call() -> Any:
        reply = anthropic.messages.create(
            model=ANTHROPIC_MODEL, max_tokens=256, messages=messages, tools=_driver.ANTHROPIC_TOOLS
        )
        replies.append(reply)
        return reply, None

    anthropic_generation(call)
    use = next(block for block in replies[0].content if block.type == "tool_use")
    content = [block.model_dump(exclude_none=True) for block in replies[0].content]
    messages.append({"role": "assistant", "content": content})
    messages.append({"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny"}]})
    anthropic_generation(call)
    assert replies[1].content[0].text


run(
    {
        "openai.chat": lambda: _driver.openai_chat(client()),
        "openai.stream": lambda: _driver.openai_stream(client()),
        "openai.tool": lambda: _driver.openai_tool(client()),
        "anthropic.chat": anthropic_chat,
        "anthropic.stream": anthropic_stream,
        "anthropic.tool": anthropic_tool,
    },
    root=root,
)
langfuse.flush()
langfuse.shutdown()
