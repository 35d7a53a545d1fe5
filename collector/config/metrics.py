"""``metrics``: bounds and extra labels of the GenAI Prometheus metrics."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    Field,
)

from collector.config.base import Section

MetricDimension = Literal["service", "agent", "tool", "category"]


class MetricsSettings(Section):
    max_label_values: int = Field(
        200, ge=1, description="Distinct values per label; later values fold into _other (counted)."
    )
    dimensions: tuple[MetricDimension, ...] = Field(
        (), description="Extra labels on the GenAI histograms, from: service, agent, tool, category."
    )
