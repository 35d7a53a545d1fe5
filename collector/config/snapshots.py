"""``snapshots``: when a trace settles, and the thresholds its figures are checked against."""

from __future__ import annotations

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from collector.config.base import Duration, Section, parsed

SNAPSHOT_METRICS = ("latency_ms", "cost_usd", "total_tokens", "error_count", "llm_calls", "ttft_ms")
EVAL_PREFIX = "eval:"


class SnapshotRule(Section):
    """A threshold on one trace metric, optionally scoped to a service, model or agent."""

    metric: str = Field(
        description="latency_ms, cost_usd, total_tokens, error_count, llm_calls, ttft_ms or eval:<name>"
    )
    above: float | None = Field(None, description="Breached when the value is greater than this.")
    below: float | None = Field(None, description="Breached when the value is less than this.")
    service: str | None = None
    model: str | None = None
    agent: str | None = None

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, metric: str) -> str:
        if metric in SNAPSHOT_METRICS or (metric.startswith(EVAL_PREFIX) and len(metric) > len(EVAL_PREFIX)):
            return metric
        raise ValueError(f"unknown metric {metric!r}; use one of {', '.join(SNAPSHOT_METRICS)} or eval:<name>")

    @model_validator(mode="after")
    def _one_comparison(self) -> SnapshotRule:
        if (self.above is None) == (self.below is None):
            raise ValueError(f"rule for {self.metric} needs exactly one of above or below")
        return self

    @property
    def scope(self) -> dict[str, str]:
        return {key: value for key in ("service", "model", "agent") if (value := getattr(self, key)) is not None}

    def describe(self) -> str:
        comparison = f"> {self.above:g}" if self.above is not None else f"< {self.below:g}"
        scope = ",".join(f"{key}={value}" for key, value in self.scope.items())
        return f"{self.metric} {comparison}" + (f" [{scope}]" if scope else "")


class SnapshotSettings(Section):
    settle_after: Duration = parsed("10s", "Quiet period after the root span before a trace settles.")
    max_wait: Duration = parsed("5m", "A trace without a root settles this long after its first span.")
    interval: Duration = parsed("1s", "How often the snapshot worker looks for settled traces.")
    rules: tuple[SnapshotRule, ...] = Field((), description="Thresholds; the most specific rule for a metric wins.")
