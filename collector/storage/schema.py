"""What the two engines' schemas share (``sqlite/schema.py``, ``postgres/schema.py``): the GenAI columns of
``spans``, the statements both spell alike, and the refusal of a database a newer collector migrated.

The statements are parts of shipped migration steps on both engines: never edit them, append a step instead.
"""

from __future__ import annotations

from collections.abc import Mapping

# Canonical GenAI columns of ``spans``, filled by normalization; NULL where no source gives a value. Types are
# SQLite's; PostgreSQL maps them (``genai_columns``).
GENAI_COLUMNS = (
    ("category", "TEXT"),
    ("provider", "TEXT"),
    ("request_model", "TEXT"),
    ("response_model", "TEXT"),
    ("operation", "TEXT"),
    ("input_tokens", "INTEGER"),
    ("output_tokens", "INTEGER"),
    ("total_tokens", "INTEGER"),
    ("cache_read_tokens", "INTEGER"),
    ("cache_write_tokens", "INTEGER"),
    ("reasoning_tokens", "INTEGER"),
    ("finish_reasons", "TEXT"),
    ("response_id", "TEXT"),
    ("ttft_ms", "REAL"),
    ("conversation_id", "TEXT"),
    ("user_id", "TEXT"),
    ("agent_name", "TEXT"),
    ("tool_name", "TEXT"),
    ("cost_usd", "REAL"),
)


def genai_columns(types: Mapping[str, str] | None = None) -> str:
    """The ``GENAI_COLUMNS`` as column definitions of a ``CREATE TABLE``, their types mapped by ``types``."""
    return ",\n    ".join(f"{name} {types[sql_type] if types else sql_type}" for name, sql_type in GENAI_COLUMNS)


# What the query API's stats read of LLM and embedding calls (each counted once), covered by one partial index
# (``storage.sql.genai_calls`` is written as its condition).
SPANS_GENAI_CALLS_INDEX = """
CREATE INDEX spans_genai_calls ON spans (
    start_time_unix_nano, category, duration_ns, ttft_ms, request_model, response_model, provider, service_name,
    operation, agent_name, user_id, cost_usd, input_tokens, output_tokens, total_tokens, cache_read_tokens,
    reasoning_tokens, duplicate_of
) WHERE category IN ('llm', 'embedding') AND duplicate_of IS NULL;
"""

# Spans and events with the resource each references (stored once in ``resources``), for SQL users.
RESOURCE_VIEWS = """
CREATE VIEW spans_with_resource AS
SELECT spans.*, resources.resource_attributes, resources.scope_name, resources.scope_version
FROM spans LEFT JOIN resources ON resources.id = spans.resource_id;

CREATE VIEW events_with_resource AS
SELECT events.*, resources.resource_attributes, resources.scope_name
FROM events LEFT JOIN resources ON resources.id = events.resource_id;
"""


def refuse_newer(found: int, known: int) -> None:
    """Stop when the database's schema version ``found`` is past the ``known`` one (a newer collector's)."""
    if found > known:
        raise RuntimeError(
            f"database schema version {found} is newer than this genai-collector understands ({known}); "
            "upgrade genai-collector"
        )
