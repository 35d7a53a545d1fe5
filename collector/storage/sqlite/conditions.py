"""SQL conditions on spans that the schema, the writer's rollups and histograms, and the reads share."""

from __future__ import annotations

from collector.model import CALL_CATEGORIES


def model_call(alias: str = "") -> str:
    """The SQL condition of a model call (``model.CALL_CATEGORIES``), of the spans aliased ``alias``."""
    categories = ", ".join(f"'{category}'" for category in CALL_CATEGORIES)
    return f"{alias}category IN ({categories})"


def genai_calls(alias: str = "") -> str:
    """The SQL condition of a model call counted once: what the token and cost figures sum. Written as the
    partial index ``spans_genai_calls`` is (migration 6), so that SQLite can answer from that index."""
    return f"{model_call(alias)} AND {alias}duplicate_of IS NULL"


MODEL_CALL = model_call()
GENAI_CALLS = genai_calls()
