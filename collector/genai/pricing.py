"""Token prices: the shipped table plus user overrides, model-name matching, and the cost rule.

Model names arrive in many spellings of one model: dated snapshots (``gpt-4o-2024-08-06``),
host prefixes (``openai/gpt-4o``, ``models/gemini-1.5-pro``), cloud ids
(``us.anthropic.claude-3-5-sonnet-20241022-v2:0``, Vertex ``claude-3-5-sonnet-v2@20241022``).
A name is normalized (lower case; ``.``, ``:``, ``@``, ``_`` and spaces become ``-``; path and
dotted vendor/region prefixes dropped) and matched against the table keys normalized the same way.
A key matches when it is the whole name, or a prefix ending at a ``-`` followed only by version
parts: dates, build numbers (3 digits or more), ``latest``, ``preview``/``exp``, ``v2``/``v1-0``.
The longest matching key wins, so ``gpt-4o-mini-2024-07-18`` is gpt-4o-mini and never gpt-4o,
``gpt-4`` never matches ``gpt-4o``, and an unknown variant (``o3-pro`` without its own key,
``claude-opus-4-5``) is unpriced rather than priced as its base model.

Loading reads the YAML once; lookups do no I/O and are cached per (model, provider).
"""

from __future__ import annotations

import datetime
import functools
import re
from collections.abc import Mapping
from importlib import resources
from typing import Any, NamedTuple

import yaml
from pydantic import ValidationError

from collector.config import ModelPrice, PricingSettings

SHIPPED_PRICES = "data/prices.yaml"
LOOKUP_CACHE_SIZE = 4096

_HOST_PREFIX = re.compile(r"(?:[a-z]+\.)+(?=[a-z])")  # anthropic. / us.anthropic. / mistral.
_SEPARATORS = re.compile(r"[\s._:@]+")
_VERSION_SUFFIX = re.compile(
    r"(?:-(?:\d{4}-\d{2}-\d{2}|\d{3,8}|0|latest|(?:preview|exp)(?:-\d{2}){0,2}|v\d+(?:-\d+)?))*"
)


class Price(NamedTuple):
    """USD per million tokens; a cache price the table leaves out is already the input price."""

    input: float
    output: float
    cache_read: float
    cache_write: float

    @classmethod
    def of(cls, price: ModelPrice) -> Price:
        return cls(
            input=price.input,
            output=price.output,
            cache_read=price.input if price.cache_read is None else price.cache_read,
            cache_write=price.input if price.cache_write is None else price.cache_write,
        )


def _split_name(name: str) -> tuple[str, str]:
    """``(normalized model, path prefix's last segment)``: ``openai/GPT-4o`` -> ``(gpt-4o, openai)``."""
    path, _, model = name.strip().lower().rpartition("/")
    host = _HOST_PREFIX.match(model)
    if host:
        model = model[host.end() :]
    return _SEPARATORS.sub("-", model).strip("-"), path.rpartition("/")[2]


_Index = dict[tuple[str | None, str], tuple[str, Price]]


def _index(prices: Mapping[str, Price], source: str) -> _Index:
    """Key by (provider scope or None, normalized model); a ``provider/model`` key is scoped."""
    index: _Index = {}
    for key, price in prices.items():
        provider, scoped, model = key.partition("/")
        scope = provider.strip().lower() if scoped else None
        normalized = _split_name(model if scoped else key)[0]
        if not normalized or scope == "":
            raise ValueError(f"{source}: {key!r} is not a model name (write model or provider/model)")
        if (scope, normalized) in index:
            other = index[scope, normalized][0]
            raise ValueError(f"{source}: {other!r} and {key!r} name the same model; keep one of them")
        index[scope, normalized] = (key, price)
    return index


class PriceTable:
    """Shipped prices extended and overridden by the user's; ``lookup`` maps a span's model to one."""

    def __init__(
        self, shipped: Mapping[str, Price], overrides: Mapping[str, Price] | None = None, *, taken: str
    ) -> None:
        self.taken = taken
        self._index = _index(shipped, "shipped prices") | _index(overrides or {}, "pricing.models")
        self._match_cached = functools.lru_cache(maxsize=LOOKUP_CACHE_SIZE)(self._match)

    @classmethod
    def load(cls, overrides: PricingSettings | None = None) -> PriceTable:
        text = resources.files("collector").joinpath(SHIPPED_PRICES).read_text(encoding="utf-8")
        taken, shipped = _parse_shipped(yaml.safe_load(text))
        user = {key: Price.of(price) for key, price in overrides.models.items()} if overrides else None
        return cls(shipped, user, taken=taken)

    def lookup(self, model: str | None, provider: str | None = None) -> tuple[str, Price] | None:
        """``(table key as written, price)`` for a span's model, or None when it has no price.

        A ``provider/model`` override applies when ``provider`` (the span's, e.g. ``gen_ai.provider.name``)
        is that provider; without one, a path prefix of the name (``openai/gpt-4o``) stands in for it.
        """
        if not model:
            return None
        return self._match_cached(model, provider)

    def _match(self, model: str, provider: str | None) -> tuple[str, Price] | None:
        name, path_prefix = _split_name(model)
        scope = provider.strip().lower() if provider else path_prefix
        end = len(name)
        while end > 0:
            if _VERSION_SUFFIX.fullmatch(name, end):
                key = name[:end]
                found = (scope and self._index.get((scope, key))) or self._index.get((None, key))
                if found:
                    return found
            end = name.rfind("-", 0, end)
        return None


def _parse_shipped(document: Any) -> tuple[str, dict[str, Price]]:
    where = f"collector/{SHIPPED_PRICES}"
    if not isinstance(document, dict) or not isinstance(document.get("models"), dict):
        raise ValueError(f"{where}: expected top-level keys taken, source and models")
    taken = document.get("taken")
    if isinstance(taken, datetime.date):
        taken = taken.isoformat()
    try:
        datetime.date.fromisoformat(str(taken))
    except ValueError:
        raise ValueError(f"{where}: taken must be an ISO date, not {taken!r}") from None
    shipped = {}
    for key, entry in document["models"].items():
        fields = {name: value for name, value in (entry or {}).items() if name != "provider"}
        try:
            shipped[str(key)] = Price.of(ModelPrice.model_validate(fields))
        except ValidationError as error:
            raise ValueError(f"{where}: model {key!r}: {error}") from None
    return str(taken), shipped


def cost_usd(
    price: Price,
    *,
    input_tokens: int | None,
    output_tokens: int | None,
    cache_read_tokens: int | None,
    cache_write_tokens: int | None,
) -> float | None:
    """USD for one call, or None when it reports neither input nor output tokens.

    ``input_tokens`` includes the cached tokens (OpenTelemetry's definition), so cached tokens are
    taken out of it and priced once, at their cache rate; ``output_tokens`` includes reasoning tokens.
    """
    if input_tokens is None and output_tokens is None:
        return None
    cache_read = max(cache_read_tokens or 0, 0)
    cache_write = max(cache_write_tokens or 0, 0)
    uncached = max((input_tokens or 0) - cache_read - cache_write, 0)
    output = max(output_tokens or 0, 0)
    return (
        uncached * price.input + cache_read * price.cache_read + cache_write * price.cache_write + output * price.output
    ) / 1_000_000
