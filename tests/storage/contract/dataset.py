"""A small known set of traces for the read side, written and settled through the store's protocols.

- ``agent`` (checkout-bot, 120 ms): an agent's root, an OpenAI call (1,000 + 100 tokens, 20 ms to first chunk,
  conversation, user and a ``tenant`` attribute, judged 0.6 faithful), a failing tool span that calls
  inventory-svc; it breaches checkout-bot's 50 ms rule and the faithfulness rule.
- ``search`` (search-svc, 30 ms): one Anthropic call (2,000 + 300 tokens), judged 0.95 faithful.
- ``batch`` (batch-svc): five traces of 10 ... 50 ms, each with an OpenAI call of 100 ... 500 + 10 tokens.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from collector.config import SnapshotSettings
from collector.maintenance.settle import settle
from collector.model import EvaluationRecord, Records
from tests.helpers import trace_request
from tests.storage.contract.conftest import Backend

MS = 1_000_000
HOUR = 3_600 * 10**9
BASE = 472_223 * HOUR  # on the hour, in 2023

RULES = SnapshotSettings.model_validate(
    {
        "settle_after": "0s",
        "rules": [
            {"metric": "latency_ms", "above": 50, "service": "checkout-bot"},
            {"metric": "eval:faithfulness", "below": 0.85},
        ],
    }
)

# gpt-4o-mini: $0.15 and $0.60 per million input and output tokens; claude-3-5-sonnet: $3 and $15.
AGENT_COST = (1_000 * 0.15 + 100 * 0.60) / 1e6
SEARCH_COST = (2_000 * 3.0 + 300 * 15.0) / 1e6
BATCH_COSTS = [(100 * (i + 1) * 0.15 + 10 * 0.60) / 1e6 for i in range(5)]


def chat(model: str, provider: str, input_tokens: int, output_tokens: int, **extra: Any) -> dict[str, Any]:
    return {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": model,
        "gen_ai.provider.name": provider,
        "gen_ai.usage.input_tokens": input_tokens,
        "gen_ai.usage.output_tokens": output_tokens,
        **extra,
    }


@dataclass
class Dataset:
    agent: str = ""
    search: str = ""
    batch: list[str] = field(default_factory=list)
    spans: dict[str, str] = field(default_factory=dict)  # agent's and search's spans by name

    def name(self, trace_id: str) -> str:
        if trace_id == self.agent:
            return "agent"
        if trace_id == self.search:
            return "search"
        return f"batch{self.batch.index(trace_id)}"


def write_dataset(backend: Backend) -> Dataset:
    ids = {name: os.urandom(8) for name in ("root", "llm", "tool", "stock", "search", "claude")}
    data = Dataset(spans={name: span_id.hex() for name, span_id in ids.items()})
    agent, search = os.urandom(16), os.urandom(16)
    data.agent, data.search = agent.hex(), search.hex()
    agent_spans = [
        {
            "span_id": ids["root"],
            "name": "invoke_agent support",
            "start": BASE,
            "end": BASE + 120 * MS,
            "attributes": {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "support"},
        },
        {
            "span_id": ids["llm"],
            "parent": ids["root"],
            "name": "chat gpt-4o-mini",
            "start": BASE + 10 * MS,
            "end": BASE + 60 * MS,
            "attributes": chat(
                "gpt-4o-mini",
                "openai",
                1_000,
                100,
                **{
                    "gen_ai.response.time_to_first_chunk": 0.02,
                    "gen_ai.conversation.id": "conv-1",
                    "user.id": "user-1",
                    "gen_ai.response.id": "resp-agent",
                    "tenant": "acme",
                },
            ),
        },
        {
            "span_id": ids["tool"],
            "parent": ids["root"],
            "name": "execute_tool lookup",
            "start": BASE + 70 * MS,
            "end": BASE + 100 * MS,
            "error": True,
            "attributes": {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "lookup"},
        },
    ]
    stock = [
        {
            "span_id": ids["stock"],
            "parent": ids["tool"],
            "name": "GET /stock",
            "start": BASE + 75 * MS,
            "end": BASE + 95 * MS,
        }
    ]
    search_spans = [
        {"span_id": ids["search"], "name": "search", "start": BASE + 1_000 * MS, "end": BASE + 1_030 * MS},
        {
            "span_id": ids["claude"],
            "parent": ids["search"],
            "name": "chat claude",
            "start": BASE + 1_005 * MS,
            "end": BASE + 1_025 * MS,
            "attributes": chat("claude-3-5-sonnet-20241022", "anthropic", 2_000, 300),
        },
    ]
    batch: list[Records] = []
    for index in range(5):
        trace_id, root = os.urandom(16), os.urandom(8)
        data.batch.append(trace_id.hex())
        start = BASE + 2_000 * MS + index * 100 * MS
        spans = [
            {"span_id": root, "name": "job", "start": start, "end": start + (index + 1) * 10 * MS},
            {
                "span_id": os.urandom(8),
                "parent": root,
                "name": "chat gpt-4o-mini",
                "start": start,
                "end": start + (index + 1) * 5 * MS,
                "attributes": chat("gpt-4o-mini", "openai", 100 * (index + 1), 10),
            },
        ]
        batch.append(backend.records(trace_request(trace_id, spans, service="batch-svc")))
    evaluations = Records(
        evaluations=[
            EvaluationRecord(
                data.agent, data.spans["llm"], None, "faithfulness", 0.6, "unfaithful", None, "log", BASE + 110 * MS
            ),
            EvaluationRecord(
                data.search, data.spans["claude"], None, "faithfulness", 0.95, None, None, "log", BASE + 1_040 * MS
            ),
        ]
    )
    backend.store.write(
        [
            backend.records(trace_request(agent, agent_spans, service="checkout-bot")),
            backend.records(trace_request(agent, stock, service="inventory-svc")),
            backend.records(trace_request(search, search_spans, service="search-svc")),
            *batch,
            evaluations,
        ]
    )
    assert len(settle(backend.store, RULES)) == 7
    return data
