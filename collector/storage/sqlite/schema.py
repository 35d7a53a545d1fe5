"""The schema, as numbered migrations on ``PRAGMA user_version``, each applied in one transaction.

The tables and column names are a public contract for people who query with SQL (see README).
Never edit a step that has shipped: append a new one.
"""

from __future__ import annotations

import apsw

from collector.storage.schema import RESOURCE_VIEWS, SPANS_GENAI_CALLS_INDEX, genai_columns, refuse_newer
from collector.storage.sqlite.connection import write_transaction
from collector.storage.sqlite.latency import MIGRATION as LATENCY_HISTOGRAMS
from collector.storage.sqlite.latency import PENDING_TABLE as LATENCY_PENDING
from collector.storage.sqlite.resources import register_functions

MIGRATIONS: tuple[str, ...] = (
    # 1: spans, per-trace rollups and the snapshot feed.
    f"""
CREATE TABLE spans (
    trace_id TEXT NOT NULL,
    span_id TEXT NOT NULL,
    parent_span_id TEXT,
    trace_state TEXT,
    flags INTEGER NOT NULL DEFAULT 0,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    start_time_unix_nano INTEGER NOT NULL,
    end_time_unix_nano INTEGER NOT NULL,
    duration_ns INTEGER NOT NULL,
    status_code TEXT NOT NULL,
    status_message TEXT,
    service_name TEXT,
    scope_name TEXT,
    scope_version TEXT,
    resource_attributes TEXT NOT NULL,
    attributes TEXT NOT NULL,
    events TEXT NOT NULL,
    links TEXT NOT NULL,
    dropped_attributes_count INTEGER NOT NULL DEFAULT 0,
    dropped_events_count INTEGER NOT NULL DEFAULT 0,
    dropped_links_count INTEGER NOT NULL DEFAULT 0,
    received_at_unix_nano INTEGER NOT NULL,
    {genai_columns()},
    PRIMARY KEY (trace_id, span_id)
);
CREATE INDEX spans_start ON spans (start_time_unix_nano);
CREATE INDEX spans_service_start ON spans (service_name, start_time_unix_nano);

CREATE TABLE traces (
    trace_id TEXT PRIMARY KEY,
    service_name TEXT,
    root_span_name TEXT,
    has_root INTEGER NOT NULL DEFAULT 0,
    start_time_unix_nano INTEGER,
    end_time_unix_nano INTEGER,
    duration_ns INTEGER,
    span_count INTEGER NOT NULL DEFAULT 0,
    error_count INTEGER NOT NULL DEFAULT 0,
    llm_calls INTEGER NOT NULL DEFAULT 0,
    input_tokens INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    total_tokens INTEGER NOT NULL DEFAULT 0,
    cache_read_tokens INTEGER NOT NULL DEFAULT 0,
    cache_write_tokens INTEGER NOT NULL DEFAULT 0,
    reasoning_tokens INTEGER NOT NULL DEFAULT 0,
    cost_usd REAL,
    models TEXT NOT NULL DEFAULT '[]',
    agents TEXT NOT NULL DEFAULT '[]',
    last_span_at_unix_nano INTEGER,
    settled_at_unix_nano INTEGER
);
CREATE INDEX traces_start ON traces (start_time_unix_nano);

CREATE TABLE metric_snapshots (
    id INTEGER PRIMARY KEY,
    trace_id TEXT NOT NULL,
    service_name TEXT,
    metric TEXT NOT NULL,
    value REAL,
    threshold REAL,
    breached INTEGER NOT NULL DEFAULT 0,
    rule TEXT,
    computed_at INTEGER NOT NULL,
    UNIQUE (trace_id, metric)
);
CREATE INDEX metric_snapshots_computed ON metric_snapshots (computed_at, breached);
""",
    # 2: GenAI events from OTLP logs, evaluation results, and spans found by their response id.
    """
CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    trace_id TEXT,
    span_id TEXT,
    time_unix_nano INTEGER NOT NULL,
    observed_time_unix_nano INTEGER,
    name TEXT,
    source TEXT NOT NULL,
    severity_number INTEGER,
    severity_text TEXT,
    body TEXT,
    attributes TEXT NOT NULL,
    service_name TEXT,
    scope_name TEXT,
    resource_attributes TEXT NOT NULL,
    received_at_unix_nano INTEGER NOT NULL,
    dedup_key TEXT NOT NULL UNIQUE
);
CREATE INDEX events_span ON events (trace_id, span_id);

CREATE TABLE evaluations (
    id INTEGER PRIMARY KEY,
    trace_id TEXT,
    span_id TEXT,
    response_id TEXT,
    name TEXT NOT NULL,
    score REAL,
    label TEXT,
    explanation TEXT,
    source TEXT NOT NULL,
    time_unix_nano INTEGER NOT NULL,
    received_at_unix_nano INTEGER NOT NULL,
    dedup_key TEXT NOT NULL UNIQUE
);
CREATE INDEX evaluations_trace ON evaluations (trace_id, name);
CREATE INDEX evaluations_response ON evaluations (response_id) WHERE trace_id IS NULL;

CREATE INDEX spans_response_id ON spans (response_id) WHERE response_id IS NOT NULL;
""",
    # 3: what settling needs: when a trace's first span arrived, and the traces not yet settled.
    """
ALTER TABLE traces ADD COLUMN first_span_at_unix_nano INTEGER;
UPDATE traces SET first_span_at_unix_nano = last_span_at_unix_nano;
CREATE INDEX traces_unsettled ON traces (last_span_at_unix_nano) WHERE settled_at_unix_nano IS NULL;
""",
    # 4: one model call described by two nested spans (an instrumentation library's around the client
    # SDK's own) is counted once; the other span names the one counted (collector/genai/calls.py).
    """
ALTER TABLE spans ADD COLUMN duplicate_of TEXT;
""",
    # 5: each resource (attributes + instrumentation scope) stored once and referenced by id; what
    # retention needs to find the oldest traces, and the rows that belong to no trace.
    # ``resource_key`` is the Python function of ``storage.sqlite.resources``, registered by ``migrate``.
    """
CREATE TABLE resources (
    id INTEGER PRIMARY KEY,
    hash BLOB NOT NULL UNIQUE,
    resource_attributes TEXT NOT NULL,
    scope_name TEXT,
    scope_version TEXT
);
INSERT INTO resources (hash, resource_attributes, scope_name, scope_version)
SELECT resource_key(resource_attributes, scope_name, scope_version), resource_attributes, scope_name, scope_version
FROM (
    SELECT resource_attributes, scope_name, scope_version FROM spans
    UNION SELECT resource_attributes, scope_name, NULL FROM events
)
WHERE true ON CONFLICT (hash) DO NOTHING;

ALTER TABLE spans ADD COLUMN resource_id INTEGER;
UPDATE spans SET resource_id = (
    SELECT id FROM resources WHERE hash = resource_key(spans.resource_attributes, spans.scope_name, spans.scope_version)
);
ALTER TABLE spans DROP COLUMN resource_attributes;
ALTER TABLE spans DROP COLUMN scope_name;
ALTER TABLE spans DROP COLUMN scope_version;

ALTER TABLE events ADD COLUMN resource_id INTEGER;
UPDATE events SET resource_id = (
    SELECT id FROM resources WHERE hash = resource_key(events.resource_attributes, events.scope_name, NULL)
);
ALTER TABLE events DROP COLUMN resource_attributes;
ALTER TABLE events DROP COLUMN scope_name;

ALTER TABLE evaluations ADD COLUMN resource_id INTEGER;

CREATE INDEX spans_resource ON spans (resource_id);
CREATE INDEX events_resource ON events (resource_id);
CREATE INDEX evaluations_resource ON evaluations (resource_id) WHERE resource_id IS NOT NULL;
CREATE INDEX traces_last_span ON traces (last_span_at_unix_nano);
CREATE INDEX events_received ON events (received_at_unix_nano);
CREATE INDEX evaluations_received ON evaluations (received_at_unix_nano);
"""
    + RESOURCE_VIEWS,
    # 6: what the query API's stats read of LLM and embedding calls (each counted once), covered by one partial
    # index, so that percentiles and cost over a day read the index and never the wide span rows (duplicate_of
    # is always NULL in it, and listed only so that the index covers the condition).
    SPANS_GENAI_CALLS_INDEX,
    # 7: latency histograms per minute and per hour, kept by triggers, so that percentiles over a day read a few
    # thousand rows instead of sorting every stored duration (collector/storage/sqlite/latency.py).
    LATENCY_HISTOGRAMS,
    # 8: the spans a writer has counted in memory and not yet added to the latency histograms, by rowid range, so
    # that readers add them and the next writer to open the file adds those of a writer that was killed.
    LATENCY_PENDING,
)

SCHEMA_VERSION = len(MIGRATIONS)


def migrate(connection: apsw.Connection) -> int:
    """Bring the database to ``SCHEMA_VERSION``; returns the version it was at."""
    found: int = connection.pragma("user_version")
    refuse_newer(found, SCHEMA_VERSION)
    register_functions(connection)
    for version in range(found + 1, SCHEMA_VERSION + 1):
        with write_transaction(connection):
            if connection.pragma("user_version") >= version:  # another connection (an exporter) took this step
                continue
            connection.execute(MIGRATIONS[version - 1])
            connection.pragma("user_version", version)
    return found
