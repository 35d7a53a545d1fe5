"""docs/genai-conventions.md is the normalization table of the code, not a copy that drifts from it.

Its generated sections (between ``<!-- generated: NAME -->`` and ``<!-- end generated -->``) are
rendered here from ``collector.genai.normalize``'s tables and from the library matrix that
tests/libraries verifies; the test fails when the document differs. After changing a table, rewrite
the document with ``.venv/bin/python -m tests.genai.test_genai_conventions``.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from typing import Any

from collector.genai import calls, normalize
from collector.storage.schema import GENAI_COLUMNS
from tests.helpers import REPO
from tests.libraries.test_libraries import COLUMNS, LANGFUSE_OPENAI, LIBRARIES, MATRIX, Instrumentation

DOC = REPO / "docs" / "genai-conventions.md"
SECTION = re.compile(r"(<!-- generated: (?P<name>[a-z-]+) -->\n)(?P<body>.*?)(<!-- end generated -->)", re.S)

# How a coercion reads its key, where it does more than take the value as it is.
NOTES = {
    "_provider": (
        "lower-cased; `az.ai.*`→`azure.ai.*`, `mistralai`→`mistral_ai`, `xai`→`x_ai`, AI SDK `vendor.api`→`vendor`"
    ),
    "_seconds_as_ms": "seconds",
    "_reasons": "one value or a list; a JSON string list (`'[\"stop\"]'`) or quoted string is decoded",
    "_cost_details": "JSON object in USD: its `total`, else the sum of its parts",
}
UNITS = {"ttft_ms": "milliseconds", "client_cost_usd": "USD"}


def _note(coerce: Callable[[Any], Any]) -> str:
    return getattr(coerce, "note", None) or NOTES.get(coerce.__name__, "")


def _sources() -> str:
    by_field: dict[str, list[str]] = {}
    for field, coerce, keys in normalize._SOURCES:
        note = _note(coerce)
        listed = ", ".join(f"`{key}`" for key in keys)
        by_field.setdefault(field, []).append(listed + (f" ({note})" if note else ""))
    entity = normalize._TRACELOOP_ENTITY_NAME
    span_names = ", ".join(f"`{name}`→{operation}" for name, operation in normalize._AI_SDK_OPERATIONS.items())
    derived = {
        "operation": f"else from the span name: {span_names}",
        "total_tokens": "else input_tokens + output_tokens, when both are known",
        "finish_reasons": (
            "else `gen_ai.completion.N.finish_reason`, N = 0, 1, 2... up to the first choice that is missing"
        ),
        "ttft_ms": (
            "else the first chunk's time minus the span's start: "
            + ", ".join(f"`{key}` (ISO 8601, JSON-quoted or not)" for key in normalize.FIRST_CHUNK_TIME_KEYS)
            + ", then the earliest span event named "
            + ", ".join(f"`{name}`" for name in sorted(normalize.FIRST_CHUNK_EVENTS))
        ),
        "agent_name": f"else `{entity}` when `{normalize._TRACELOOP_KIND}` is agent",
        "tool_name": f"else `{entity}` when `{normalize._TRACELOOP_KIND}` is tool",
    }
    lines = ["| canonical column | sources, in order: the first valid, non-empty value wins |", "|---|---|"]
    for field in normalize.GenAI._fields:
        if field == "category":
            continue
        column = "cost_usd (client's)" if field == "client_cost_usd" else field
        unit = f" ({UNITS[field]})" if field in UNITS else ""
        sources = by_field.get(field, [])
        if field in derived:
            sources = [*sources, derived[field]]
        lines.append(f"| `{column}`{unit} | {'; then '.join(sources)} |")
    categories = ", ".join(f"{operation}→{category}" for operation, category in normalize._CATEGORIES.items())
    lines.append(
        f"| `category` | from the operation: {categories};"
        " else `llm` when a model or a token count is known; else `other` |"
    )
    return "\n".join(lines) + "\n"


def _usage_details() -> str:
    lines = ["| canonical column | keys in the JSON object, in order (a dotted key is a nested field) |", "|---|---|"]
    for field, keys in normalize._USAGE_DETAILS_KEYS:
        lines.append(f"| `{field}` | {', '.join(f'`{key}`' for key in keys)} |")
    beside = ", ".join(f"`{key}`" for key in sorted(normalize._USAGE_BESIDE_INPUT))
    lines.append("")
    lines.append(f"The cache counts under {beside} are reported beside the input count, not within it:")
    lines.append("they are added to `input_tokens`, which includes cached tokens.")
    return "\n".join(lines) + "\n"


def _events() -> str:
    names = ", ".join(f"`{name}`" for name in sorted(normalize.GENAI_EVENT_NAMES))
    fields = "; ".join(
        f"{field}: `{key}` or `evaluations.N.evaluation.{field}`" for field, key, _ in normalize._EVALUATION_SOURCES
    )
    return (
        "GenAI events (span events, or OTLP log records named by `event_name` or an `event.name` attribute):"
        f" {names}.\n\n"
        "Evaluations (`gen_ai.evaluation.result` events, or OpenInference span attributes, N = 0, 1, 2...):"
        f" {fields};"
        f" linked to a span by its parent span or by `{normalize._RESPONSE_ID}`.\n"
    )


def _call_rule() -> str:
    return (
        f"Model-call categories: {', '.join(f'`{c}`' for c in sorted(calls.CALL_CATEGORIES))}; spans looked"
        f" through on the way up: category `{calls.NOT_GENAI}` or none;"
        f" nesting followed at most {calls.MAX_DEPTH} deep.\n"
    )


def _cell(instrumentation: Instrumentation, column: str) -> str:
    filled = {name.partition(":")[0]: name.partition(":")[2] for name in instrumentation.columns}
    if column not in filled:
        return ""
    notes = [f"{filled[column]} only"] if filled[column] else []
    for kind, name, value in instrumentation.quirks:
        if name == column:
            notes.append(f"not on {kind}" if value is None else f"its own count on {kind}")
    if column in instrumentation.zero_is_absent:
        notes.append("not when 0")
    return "✓" + (f" ({', '.join(notes)})" if notes else "")


def _matrix() -> str:
    scopes = {scope: [lib.name for lib in LIBRARIES if scope in lib.scopes] for scope in MATRIX}
    shown = [column for column in COLUMNS if column not in ("agent_name", "tool_name")]
    lines = [
        "| instrumentation scope (library) | " + " | ".join(shown) + " |",
        "|---|" + "---|" * len(shown),
    ]
    rows = [(f"`{scope}` ({', '.join(libraries)})", MATRIX[scope]) for scope, libraries in scopes.items()]
    rows.insert(
        list(MATRIX).index("langfuse-sdk") + 1,
        ("`langfuse-sdk` via `langfuse.openai`", LANGFUSE_OPENAI),
    )
    for label, instrumentation in rows:
        lines.append(f"| {label} | " + " | ".join(_cell(instrumentation, column) for column in shown) + " |")
    return "\n".join(lines) + "\n"


RENDERERS: dict[str, Callable[[], str]] = {
    "sources": _sources,
    "usage-details": _usage_details,
    "events": _events,
    "call-rule": _call_rule,
    "matrix": _matrix,
}


def rendered(document: str) -> str:
    return SECTION.sub(lambda match: match.group(1) + RENDERERS[match.group("name")]() + match.group(4), document)


def test_the_document_has_every_generated_section() -> None:
    found = {match.group("name") for match in SECTION.finditer(DOC.read_text(encoding="utf-8"))}
    assert found == set(RENDERERS)


def test_the_document_is_the_code_table() -> None:
    document = DOC.read_text(encoding="utf-8")
    assert document == rendered(document), (
        "docs/genai-conventions.md differs from collector/genai/normalize.py's tables: "
        "run .venv/bin/python -m tests.genai.test_genai_conventions"
    )


def test_every_canonical_column_is_documented() -> None:
    document = DOC.read_text(encoding="utf-8")
    for name, _ in GENAI_COLUMNS:
        assert f"`{name}" in document, name


if __name__ == "__main__":
    DOC.write_text(rendered(DOC.read_text(encoding="utf-8")), encoding="utf-8")
    sys.exit(0)
