"""``retention``: what the database keeps, by age and by size."""

from __future__ import annotations

from typing import Any

from pydantic import (
    ByteSize,
    Field,
    field_validator,
)

from collector.config.base import Duration, Section, parsed


class RetentionSettings(Section):
    """How much the database keeps: whole traces by age and by size; snapshots by their own age."""

    max_age: Duration = parsed(
        "7d", "Traces whose last span arrived longer ago are deleted, whole; 0 keeps them forever."
    )
    max_size: ByteSize | None = Field(
        None,
        description="Bound on the database files (main + WAL): past it the oldest traces are deleted "
        "down to low_water_mark; unset (or 0) means no bound, and a full disk refuses spans until space returns.",
    )
    low_water_mark: float = Field(
        0.9, ge=0.5, lt=1.0, description="Share of max_size that deletion by size brings the database back to."
    )
    snapshots_max_age: Duration = parsed(
        "30d", "metric_snapshots rows computed longer ago are deleted; 0 keeps them forever."
    )
    interval: Duration = parsed("1s", "How often the writer checks the age and size bounds.")

    @field_validator("max_size", mode="before")
    @classmethod
    def _zero_is_unset(cls, max_size: Any) -> Any:
        """``0`` or an empty value (as an environment variable can only say) means no bound."""
        return None if max_size in (0, "0", "") else max_size

    @field_validator("max_size")
    @classmethod
    def _large_enough(cls, max_size: ByteSize | None) -> ByteSize | None:
        if max_size is not None and max_size < 1024 * 1024:
            raise ValueError("max_size must be at least 1MiB (or unset for no bound)")
        return max_size

    @field_validator("interval")
    @classmethod
    def _positive(cls, interval: float) -> float:
        if interval <= 0:
            raise ValueError("interval must be more than 0")
        return interval
