"""The shipped price table, model-name matching, user overrides and the cost rule."""

from __future__ import annotations

import datetime
import inspect
from importlib import resources

import pytest
import yaml

from collector.config import ModelPrice, PricingSettings
from collector.genai.pricing import Price, PriceTable, cost_usd

SHIPPED = PriceTable.load()

# Published list prices, written out so the cost cases do not move when the shipped table does.
CLAUDE_3_5_SONNET = Price(input=3.00, output=15.00, cache_read=0.30, cache_write=3.75)
GPT_4O = Price(input=2.50, output=10.00, cache_read=1.25, cache_write=2.50)
O3 = Price(input=2.00, output=8.00, cache_read=0.50, cache_write=2.00)


def _shipped_document() -> dict:
    return yaml.safe_load(resources.files("collector").joinpath("data/prices.yaml").read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    ("model", "key"),
    [
        # plain and dated
        ("gpt-4o", "gpt-4o"),
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("gpt-4.1-2025-04-14", "gpt-4.1"),
        ("gpt-4.1-nano-2025-04-14", "gpt-4.1-nano"),
        ("gpt-4-0613", "gpt-4"),
        ("gpt-4-turbo-2024-04-09", "gpt-4-turbo"),
        ("gpt-4-turbo-preview", "gpt-4-turbo"),
        ("gpt-3.5-turbo-0125", "gpt-3.5-turbo"),
        ("o1-preview-2024-09-12", "o1"),
        ("o1-mini-2024-09-12", "o1-mini"),
        ("o3-mini-2025-01-31", "o3-mini"),
        ("o4-mini-2025-04-16", "o4-mini"),
        ("gpt-5-mini-2025-08-07", "gpt-5-mini"),
        ("claude-3-haiku-20240307", "claude-3-haiku"),
        ("claude-3-5-sonnet-20241022", "claude-3-5-sonnet"),
        ("claude-3-5-sonnet-latest", "claude-3-5-sonnet"),
        ("claude-sonnet-4-20250514", "claude-sonnet-4"),
        ("claude-sonnet-4-0", "claude-sonnet-4"),
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("claude-opus-4-1-20250805", "claude-opus-4-1"),
        ("claude-haiku-4-5-20251001", "claude-haiku-4-5"),
        ("gemini-1.5-pro-002", "gemini-1.5-pro"),
        ("gemini-2.0-flash-001", "gemini-2.0-flash"),
        ("gemini-2.5-pro-preview-05-06", "gemini-2.5-pro"),
        ("gemini-2.5-flash-preview-09-2025", "gemini-2.5-flash"),
        ("mistral-large-2411", "mistral-large"),
        ("mistral-small-latest", "mistral-small"),
        ("text-embedding-3-small", "text-embedding-3-small"),
        # provider- and path-prefixed
        ("openai/gpt-4o", "gpt-4o"),
        ("anthropic/claude-3.5-sonnet", "claude-3-5-sonnet"),
        ("models/gemini-1.5-pro", "gemini-1.5-pro"),
        ("projects/p/locations/us-central1/publishers/google/models/gemini-2.5-flash", "gemini-2.5-flash"),
        # Bedrock ids, cross-region profiles and ARNs
        ("anthropic.claude-3-haiku-20240307-v1:0", "claude-3-haiku"),
        ("us.anthropic.claude-3-5-sonnet-20241022-v2:0", "claude-3-5-sonnet"),
        ("global.anthropic.claude-sonnet-4-5-20250929-v1:0", "claude-sonnet-4-5"),
        (
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-7-sonnet-20250219-v1:0",
            "claude-3-7-sonnet",
        ),
        ("mistral.mistral-large-2407-v1:0", "mistral-large"),
        # Vertex ids
        ("claude-3-5-sonnet-v2@20241022", "claude-3-5-sonnet"),
        ("claude-3-haiku@20240307", "claude-3-haiku"),
        ("claude-opus-4@20250514", "claude-opus-4"),
        # case and stray whitespace
        ("GPT-4o", "gpt-4o"),
        ("  Claude-3-Haiku-20240307 ", "claude-3-haiku"),
        ("OpenAI/GPT-4O-MINI", "gpt-4o-mini"),
    ],
)
def test_model_name_spellings(model: str, key: str) -> None:
    match = SHIPPED.lookup(model)
    assert match is not None, model
    assert match[0] == key


@pytest.mark.parametrize(
    ("model", "key"),
    [
        ("gpt-4o-mini", "gpt-4o-mini"),  # never gpt-4o
        ("gpt-4o-2024-05-13", "gpt-4o-2024-05-13"),  # the one gpt-4o snapshot with its own price
        ("gpt-4-1106-preview", "gpt-4-1106-preview"),  # a GPT-4 Turbo, not GPT-4
        ("gpt-4-32k-0613", "gpt-4-32k"),
        ("gpt-3.5-turbo-16k-0613", "gpt-3.5-turbo-16k"),
        ("o3-pro-2025-06-10", "o3-pro"),
        ("claude-3-5-haiku-20241022", "claude-3-5-haiku"),
        ("gemini-1.5-flash-8b-001", "gemini-1.5-flash-8b"),
        ("gemini-2.5-flash-lite-preview-06-17", "gemini-2.5-flash-lite"),
    ],
)
def test_most_specific_key_wins(model: str, key: str) -> None:
    assert SHIPPED.lookup(model)[0] == key


@pytest.mark.parametrize(
    "model",
    [
        None,
        "",
        "llama-3.1-70b-instruct",
        "my-company-model",
        "gpt-4.5-preview",  # not GPT-4
        "claude-opus-4-5-20251101",  # newer than the table: not priced as Opus 4
        "gpt-4o-realtime-preview",  # another product, another price
        "gpt-4o-transcribe",
        "ft:gpt-4o-mini-2024-07-18:acme::abc123",  # fine-tunes cost more than the base
        "anthropic.claude-3-haiku-20240307-v1:0:48k",  # provisioned throughput
    ],
)
def test_unknown_model_has_no_price(model: str | None) -> None:
    assert SHIPPED.lookup(model) is None


@pytest.mark.parametrize(
    ("model", "key"),
    [
        ("gpt-4", "gpt-4"),
        ("gpt-4-0613", "gpt-4"),
        ("gpt-4o", None),
        ("gpt-4o-mini", None),
        ("gpt-40", None),
        ("gpt-4-vision-preview", None),
        ("o1", "o1"),
        ("o1x", None),
        ("xo1", None),
    ],
)
def test_key_matches_only_on_a_name_boundary(model: str, key: str | None) -> None:
    table = PriceTable({"gpt-4": Price(30, 60, 30, 30), "o1": Price(15, 60, 7.5, 15)}, taken="2025-01-01")
    match = table.lookup(model)
    assert (match and match[0]) == key


def test_lookup_is_cached_per_name() -> None:
    table = PriceTable.load()
    first = table.lookup("us.anthropic.claude-3-5-sonnet-20241022-v2:0", "aws.bedrock")
    assert table.lookup("us.anthropic.claude-3-5-sonnet-20241022-v2:0", "aws.bedrock") is first


# --- user overrides ---------------------------------------------------------------------------------


def _with(**models: ModelPrice) -> PriceTable:
    return PriceTable.load(PricingSettings(models=models))


def test_override_replaces_a_shipped_price() -> None:
    table = _with(**{"GPT-4o": ModelPrice(input=1.0, output=4.0)})
    assert table.lookup("gpt-4o-2024-08-06") == ("GPT-4o", Price(1.0, 4.0, 1.0, 1.0))
    assert table.lookup("gpt-4o-mini") == SHIPPED.lookup("gpt-4o-mini")


def test_override_extends_the_table() -> None:
    table = _with(**{"acme-chat": ModelPrice(input=0.5, output=1.5, cache_read=0.05)})
    assert table.lookup("acme-chat-2025-06-01") == ("acme-chat", Price(0.5, 1.5, 0.05, 0.5))
    assert table.lookup("gpt-4o") == SHIPPED.lookup("gpt-4o")


@pytest.mark.parametrize(
    ("model", "provider", "key"),
    [
        ("gpt-4o", "azure.ai.openai", "azure.ai.openai/gpt-4o"),
        ("gpt-4o-2024-11-20", "Azure.AI.OpenAI", "azure.ai.openai/gpt-4o"),
        ("gpt-4o", "openai", "gpt-4o"),
        ("gpt-4o", None, "gpt-4o"),
        ("gpt-4o-mini", "azure.ai.openai", "gpt-4o-mini"),
        ("llama-3.1-8b-instant", "groq", "groq/llama-3.1-8b-instant"),
        ("llama-3.1-8b-instant", "together", None),
        ("groq/llama-3.1-8b-instant", None, "groq/llama-3.1-8b-instant"),  # the name's prefix stands in
        ("groq/llama-3.1-8b-instant", "openrouter", None),  # the span's provider wins over it
    ],
)
def test_provider_scoped_override(model: str, provider: str | None, key: str | None) -> None:
    table = _with(
        **{
            "azure.ai.openai/gpt-4o": ModelPrice(input=2.75, output=11.0),
            "groq/llama-3.1-8b-instant": ModelPrice(input=0.05, output=0.08),
        }
    )
    match = table.lookup(model, provider)
    assert (match and match[0]) == key


def test_override_naming_one_model_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="name the same model"):
        _with(**{"gpt-4o": ModelPrice(input=1, output=1), "GPT-4o": ModelPrice(input=2, output=2)})


# --- the shipped file -------------------------------------------------------------------------------


def test_shipped_file_loads_with_a_taken_date() -> None:
    document = _shipped_document()
    assert SHIPPED.taken == str(document["taken"])
    assert datetime.date.fromisoformat(SHIPPED.taken) <= datetime.date.today()
    assert document["source"].strip()


def test_every_shipped_entry_has_input_and_output() -> None:
    models = _shipped_document()["models"]
    assert len(models) >= 40
    for key, entry in models.items():
        assert set(entry) <= {"provider", "input", "output", "cache_read", "cache_write"}, key
        assert isinstance(entry["input"], int | float) and entry["input"] >= 0, key
        assert isinstance(entry["output"], int | float) and entry["output"] >= 0, key


def test_every_shipped_key_finds_itself() -> None:
    for key in _shipped_document()["models"]:
        assert SHIPPED.lookup(key)[0] == key


def test_shipped_anthropic_cache_prices_follow_the_published_multipliers() -> None:
    """Cache write 1.25x input, cache read 0.1x, except Claude 3 Haiku's page rounds them to $0.30 and $0.03."""
    for key, entry in _shipped_document()["models"].items():
        if entry.get("provider") == "anthropic" and key != "claude-3-haiku":
            assert entry["cache_write"] == pytest.approx(entry["input"] * 1.25), key
            assert entry["cache_read"] == pytest.approx(entry["input"] * 0.1), key
    haiku_3 = _shipped_document()["models"]["claude-3-haiku"]
    assert (haiku_3["cache_write"], haiku_3["cache_read"]) == (0.30, 0.03)


def test_shipped_claude_3_5_sonnet_is_the_list_price() -> None:
    assert SHIPPED.lookup("claude-3-5-sonnet-20241022")[1] == CLAUDE_3_5_SONNET


# --- cost -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("price", "tokens", "expected"),
    [
        pytest.param(
            CLAUDE_3_5_SONNET,
            {"input_tokens": 10_000, "cache_read_tokens": 8_000, "cache_write_tokens": 1_000, "output_tokens": 500},
            # uncached 1,000 x $3 + read 8,000 x $0.30 + write 1,000 x $3.75 + output 500 x $15, per million
            # = $0.003 + $0.0024 + $0.00375 + $0.0075 = $0.01665
            # (every input token at $3 plus the cache on top, Phoenix#10036, would be $0.06015)
            0.01665,
            id="anthropic-cache-read-and-write",
        ),
        pytest.param(
            GPT_4O,
            {"input_tokens": 2_000, "cache_read_tokens": 1_500, "cache_write_tokens": None, "output_tokens": 100},
            # 500 x $2.50 + 1,500 x $1.25 + 100 x $10 = $0.00125 + $0.001875 + $0.001 = $0.004125
            0.004125,
            id="openai-cached-input",
        ),
        pytest.param(
            O3,
            # 5,000 output tokens of which 4,000 are reasoning: output already holds them
            {"input_tokens": 1_000, "cache_read_tokens": 0, "cache_write_tokens": 0, "output_tokens": 5_000},
            # 1,000 x $2 + 5,000 x $8 = $0.002 + $0.040 = $0.042
            0.042,
            id="reasoning-inside-output",
        ),
        pytest.param(
            Price.of(ModelPrice(input=1.0, output=2.0)),
            {"input_tokens": 1_000, "cache_read_tokens": 600, "cache_write_tokens": 100, "output_tokens": 0},
            # no cache prices: 300 + 600 + 100 tokens, all at $1 = $0.001
            0.001,
            id="missing-cache-price-is-the-input-price",
        ),
        pytest.param(
            CLAUDE_3_5_SONNET,
            {"input_tokens": 100, "cache_read_tokens": 300, "cache_write_tokens": None, "output_tokens": None},
            # cache larger than input (a client counting Anthropic-style): 0 uncached, 300 x $0.30 = $0.00009
            0.00009,
            id="cache-beyond-input-never-negative",
        ),
        pytest.param(
            GPT_4O,
            {"input_tokens": None, "cache_read_tokens": None, "cache_write_tokens": None, "output_tokens": 1_000},
            0.01,
            id="output-only",
        ),
        pytest.param(
            GPT_4O,
            {"input_tokens": 0, "cache_read_tokens": None, "cache_write_tokens": None, "output_tokens": 0},
            0.0,
            id="zero-tokens-cost-zero",
        ),
        pytest.param(
            GPT_4O,
            {"input_tokens": None, "cache_read_tokens": 100, "cache_write_tokens": None, "output_tokens": None},
            None,
            id="no-input-no-output",
        ),
    ],
)
def test_cost(price: Price, tokens: dict[str, int | None], expected: float | None) -> None:
    cost = cost_usd(price, **tokens)
    if expected is None:
        assert cost is None
    else:
        assert cost == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_cached_tokens_are_priced_once() -> None:
    """Counting the cache again on top of input (langfuse#12306) would raise the cost; it must not."""
    with_cache = cost_usd(
        CLAUDE_3_5_SONNET, input_tokens=10_000, output_tokens=0, cache_read_tokens=8_000, cache_write_tokens=0
    )
    without_cache = cost_usd(
        CLAUDE_3_5_SONNET, input_tokens=10_000, output_tokens=0, cache_read_tokens=0, cache_write_tokens=0
    )
    assert with_cache == pytest.approx(2_000 * 3.00 / 1e6 + 8_000 * 0.30 / 1e6)
    assert with_cache < without_cache == pytest.approx(0.03)


def test_reasoning_tokens_are_not_a_separate_charge() -> None:
    assert "reasoning_tokens" not in inspect.signature(cost_usd).parameters
