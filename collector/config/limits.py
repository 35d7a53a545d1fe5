"""``limits``: per-span size limits (attribute length, attributes, events)."""

from __future__ import annotations

from pydantic import (
    Field,
)

from collector.config.base import Section


class LimitsSettings(Section):
    max_attribute_length: int = Field(
        65_536, ge=64, description="Longer string values are truncated, with a visible marker."
    )
    max_attributes: int = Field(256, ge=1, description="Attributes kept per span, event or log record.")
    max_events: int = Field(256, ge=0, description="Events kept per span.")
