"""``ingest``: how many processes receive, decode and transform OTLP requests."""

from __future__ import annotations

import os
from typing import Any

from pydantic import Field, field_validator

from collector.config.base import Section


class IngestSettings(Section):
    workers: int = Field(
        1,
        ge=0,
        description="Processes that receive, decode and transform OTLP requests on the shared ports and hand "
        "them to the one writer ('auto': one per CPU); 0 or 1 receives in the main process.",
    )

    @field_validator("workers", mode="before")
    @classmethod
    def _auto_is_the_cpu_count(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() == "auto":
            return os.cpu_count() or 1
        return value

    @property
    def processes(self) -> int:
        """Worker processes to start: none when the main process receives."""
        return self.workers if self.workers > 1 else 0
