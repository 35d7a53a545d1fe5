"""``pricing``: token prices that extend or override the shipped table."""

from __future__ import annotations

from pydantic import (
    Field,
)

from collector.config.base import Section


class ModelPrice(Section):
    """USD per million tokens; cache prices default to the input price when not given."""

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cache_read: float | None = Field(None, ge=0)
    cache_write: float | None = Field(None, ge=0)


class PricingSettings(Section):
    models: dict[str, ModelPrice] = Field(
        default_factory=dict,
        description="Prices that extend or override the shipped table, keyed by model name "
        "(optionally provider/model).",
    )
