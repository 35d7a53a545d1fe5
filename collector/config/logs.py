"""``logs``: which OTLP log records are stored."""

from __future__ import annotations

from pydantic import (
    Field,
)

from collector.config.base import Section


class LogsSettings(Section):
    keep_other: bool = Field(
        False, description="Store log records that are not GenAI events too (otherwise counted and dropped)."
    )
