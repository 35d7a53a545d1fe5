"""A fake LLM server speaking the OpenAI chat completions and Anthropic messages APIs, on a real socket.

Real client SDKs call it; the instrumentation libraries around them report what it answered. Each
reply kind has its own usage (``REPLIES``), so a test can tell which answer a span describes and
compute its cost from the shipped price table.

- OpenAI ``POST /v1/chat/completions``: a chat answer, a streamed answer (SSE, with a final usage
  chunk when ``stream_options.include_usage`` asks for it, as the real API does), a tool call when
  the request offers tools and has no tool result yet, and the answer after a tool result.
- Anthropic ``POST /v1/messages``: the same four, with cache read and cache write tokens; streamed
  as ``message_start`` ... ``message_stop`` events.

A streamed reply waits ``FIRST_CHUNK_DELAY`` before its first event, so a time to first chunk is
at least that long.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FIRST_CHUNK_DELAY = 0.05  # seconds

OPENAI_REQUEST_MODEL = "gpt-4o-mini"
OPENAI_RESPONSE_MODEL = "gpt-4o-mini-2024-07-18"
ANTHROPIC_REQUEST_MODEL = "claude-sonnet-4-5"
ANTHROPIC_RESPONSE_MODEL = "claude-sonnet-4-5-20250929"
TOOL_NAME = "get_weather"
TOOL_ARGUMENTS = {"city": "Paris"}


@dataclass(frozen=True)
class Usage:
    """What one answer reports, in canonical terms: input includes cache reads and writes."""

    uncached_input: int
    cache_read: int
    cache_write: int
    output: int
    reasoning: int = 0

    @property
    def input(self) -> int:
        return self.uncached_input + self.cache_read + self.cache_write


@dataclass(frozen=True)
class Reply:
    text: str | None
    usage: Usage
    tool_call: bool = False


# By (API, reply kind). OpenAI reports no cache writes; Anthropic reports both cache kinds.
REPLIES: dict[tuple[str, str], Reply] = {
    # An answer with a customer's e-mail address in it, for the redaction tests (tests/genai/test_instrumentations.py).
    ("openai", "chat"): Reply(
        "Sorry about that! I have refunded it and written to jane.doe@example.com.", Usage(176, 1024, 0, 85, 0)
    ),
    ("openai", "stream"): Reply("Paris is the capital of France.", Usage(210, 512, 0, 40, 0)),
    ("openai", "tool_call"): Reply(None, Usage(300, 0, 0, 22, 0), tool_call=True),
    ("openai", "tool_answer"): Reply("It is sunny in Paris.", Usage(340, 256, 0, 12, 0)),
    ("anthropic", "chat"): Reply("The capital of France is Paris.", Usage(150, 1024, 2048, 90)),
    ("anthropic", "stream"): Reply("Paris is the capital of France.", Usage(120, 3000, 0, 44)),
    ("anthropic", "tool_call"): Reply(None, Usage(400, 0, 1500, 30), tool_call=True),
    ("anthropic", "tool_answer"): Reply("It is sunny in Paris.", Usage(60, 1500, 0, 15)),
}

OPENAI_FINISH = {"chat": "stop", "stream": "stop", "tool_call": "tool_calls", "tool_answer": "stop"}
ANTHROPIC_STOP = {"chat": "end_turn", "stream": "end_turn", "tool_call": "tool_use", "tool_answer": "end_turn"}


def response_id(api: str, kind: str) -> str:
    return f"chatcmpl-fake-{kind}" if api == "openai" else f"msg_fake_{kind}"


def _openai_kind(request: dict[str, Any]) -> str:
    if any(message.get("role") == "tool" for message in request.get("messages", [])):
        return "tool_answer"
    if request.get("tools"):
        return "tool_call"
    return "stream" if request.get("stream") else "chat"


def _anthropic_kind(request: dict[str, Any]) -> str:
    for message in request.get("messages", []):
        content = message.get("content")
        if isinstance(content, list) and any(block.get("type") == "tool_result" for block in content):
            return "tool_answer"
    if request.get("tools"):
        return "tool_call"
    return "stream" if request.get("stream") else "chat"


def _openai_usage(usage: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.input,
        "completion_tokens": usage.output,
        "total_tokens": usage.input + usage.output,
        "prompt_tokens_details": {"cached_tokens": usage.cache_read, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning, "audio_tokens": 0},
    }


def _anthropic_usage(usage: Usage) -> dict[str, Any]:
    return {
        "input_tokens": usage.uncached_input,
        "cache_creation_input_tokens": usage.cache_write,
        "cache_read_input_tokens": usage.cache_read,
        "output_tokens": usage.output,
    }


def _openai_tool_call() -> dict[str, Any]:
    return {
        "id": "call_fake_0001",
        "type": "function",
        "function": {"name": TOOL_NAME, "arguments": json.dumps(TOOL_ARGUMENTS)},
    }


def openai_completion(kind: str) -> dict[str, Any]:
    reply = REPLIES["openai", kind]
    message: dict[str, Any] = {"role": "assistant", "content": reply.text, "refusal": None}
    if reply.tool_call:
        message["tool_calls"] = [_openai_tool_call()]
    return {
        "id": response_id("openai", kind),
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": OPENAI_RESPONSE_MODEL,
        "choices": [{"index": 0, "message": message, "finish_reason": OPENAI_FINISH[kind], "logprobs": None}],
        "usage": _openai_usage(reply.usage),
        "system_fingerprint": "fp_fake",
    }


def openai_chunks(kind: str, include_usage: bool) -> Iterator[dict[str, Any]]:
    reply = REPLIES["openai", kind]
    base = {
        "id": response_id("openai", kind),
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": OPENAI_RESPONSE_MODEL,
        "system_fingerprint": "fp_fake",
    }

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}

    yield chunk({"role": "assistant", "content": ""})
    if reply.tool_call:
        call = _openai_tool_call()
        yield chunk({"tool_calls": [{"index": 0, **call, "function": {"name": TOOL_NAME, "arguments": ""}}]})
        yield chunk({"tool_calls": [{"index": 0, "function": {"arguments": call["function"]["arguments"]}}]})
    else:
        words = (reply.text or "").split(" ")
        for index, word in enumerate(words):
            yield chunk({"content": word if index == 0 else " " + word})
    yield chunk({}, OPENAI_FINISH[kind])
    if include_usage:
        yield {**base, "choices": [], "usage": _openai_usage(reply.usage)}


def _anthropic_content(kind: str) -> list[dict[str, Any]]:
    reply = REPLIES["anthropic", kind]
    if reply.tool_call:
        return [{"type": "tool_use", "id": "toolu_fake_0001", "name": TOOL_NAME, "input": TOOL_ARGUMENTS}]
    return [{"type": "text", "text": reply.text}]


def anthropic_message(kind: str) -> dict[str, Any]:
    return {
        "id": response_id("anthropic", kind),
        "type": "message",
        "role": "assistant",
        "model": ANTHROPIC_RESPONSE_MODEL,
        "content": _anthropic_content(kind),
        "stop_reason": ANTHROPIC_STOP[kind],
        "stop_sequence": None,
        "usage": _anthropic_usage(REPLIES["anthropic", kind].usage),
    }


def anthropic_events(kind: str) -> Iterator[dict[str, Any]]:
    message = anthropic_message(kind)
    usage = message["usage"]
    start = {**message, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
    yield {"type": "message_start", "message": start}
    for index, block in enumerate(message["content"]):
        if block["type"] == "text":
            yield {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}
            words = block["text"].split(" ")
            for position, word in enumerate(words):
                text = word if position == 0 else " " + word
                yield {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": text}}
        else:
            yield {"type": "content_block_start", "index": index, "content_block": {**block, "input": {}}}
            partial = json.dumps(block["input"])
            yield {
                "type": "content_block_delta",
                "index": index,
                "delta": {"type": "input_json_delta", "partial_json": partial},
            }
        yield {"type": "content_block_stop", "index": index}
    yield {
        "type": "message_delta",
        "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
        "usage": {"output_tokens": usage["output_tokens"]},
    }
    yield {"type": "message_stop"}


class FakeLLMHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"{}")
        self.server.requests.append((self.path, request))  # type: ignore[attr-defined]
        if self.path.endswith("/chat/completions"):
            kind = _openai_kind(request)
            if request.get("stream"):
                include_usage = bool((request.get("stream_options") or {}).get("include_usage"))
                self._stream((("", chunk) for chunk in openai_chunks(kind, include_usage)), done=True)
            else:
                self._json(openai_completion(kind))
        elif self.path.endswith("/messages"):
            kind = _anthropic_kind(request)
            if request.get("stream"):
                self._stream(((event["type"], event) for event in anthropic_events(kind)), done=False)
            else:
                self._json(anthropic_message(kind))
        else:
            self._json({"error": {"message": f"no fake for {self.path}"}}, status=404)

    def _json(self, document: dict[str, Any], status: int = 200) -> None:
        body = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.send_header("request-id", "req_fake")
        self.end_headers()
        self.wfile.write(body)

    def _stream(self, events: Iterator[tuple[str, dict[str, Any]]], *, done: bool) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("connection", "close")
        self.end_headers()
        self.wfile.flush()
        time.sleep(FIRST_CHUNK_DELAY)
        for name, event in events:
            prefix = f"event: {name}\n" if name else ""
            self.wfile.write(f"{prefix}data: {json.dumps(event)}\n\n".encode())
            self.wfile.flush()
        if done:
            self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def fake_llm_server() -> Iterator[tuple[str, list[tuple[str, dict[str, Any]]]]]:
    """Serve on 127.0.0.1, port 0; yields the base URL and the list of (path, request body) it received."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeLLMHandler)
    server.daemon_threads = True
    server.requests = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, name="fake-llm", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server.requests  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()
