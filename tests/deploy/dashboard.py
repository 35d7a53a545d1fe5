"""The Grafana dashboard's queries, as Grafana would send them to Prometheus."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from tests.deploy.helpers import DEPLOY

DASHBOARD = DEPLOY / "grafana" / "genai-collector.json"

# Grafana's built-in and the dashboard's own variables, at values a test Prometheus can answer.
VARIABLES = {"$__rate_interval": "1m", "$__range": "1m", "$__interval": "15s", "$service": ".*", "$model": ".*"}

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_MATCHERS_OR_RANGE = re.compile(r"\{[^}]*\}|\[[^\]]*\]")
_LABEL_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()")
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "and", "or", "unless"}
_GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
_LEGEND = re.compile(r"\{\{\s*(\w+)\s*\}\}")


def load() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel with queries, rows included and nested."""
    for panel in dashboard["panels"]:
        yield from (p for p in [panel, *panel.get("panels", [])] if p.get("targets"))


def expand(expr: str) -> str:
    for variable, value in VARIABLES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"unknown variable in {expr}"
    return expr


def metric_names(expr: str) -> set[str]:
    """The metric names of a PromQL expression: what is left once strings, label matchers, ranges,
    label lists and function calls are taken out."""
    for pattern in (_STRING, _MATCHERS_OR_RANGE, _LABEL_LIST):
        expr = pattern.sub(" ", expr)
    return set(_IDENTIFIER.findall(expr)) - _KEYWORDS


def grouping_labels(expr: str) -> set[str]:
    return {label.strip() for group in _GROUPING.findall(expr) for label in group.split(",") if label.strip()}


def legend_labels(legend: str) -> set[str]:
    return set(_LEGEND.findall(legend))
