"""Span rows built for the SQLite writer ahead of the write, on the thread (or process) that decoded them.

Pure, no connection: ``span_rows`` turns a request's spans into the SQL values ``writer.insert_rows`` binds, so
that the writer thread, the one thread the whole collector's writes go through, only binds them (in C, many rows
to a statement). The attributes, events, links and finish reasons, which the table stores as JSON text, are
encoded here. The two columns only the writer knows are left as placeholders: ``received_at_unix_nano`` (one
per transaction) and ``resource_id``, for which each row holds an index into ``SpanRows.resources`` (the
resource's attributes as stored JSON text and its scope), which the writer maps to ``resources`` row ids in its
transaction. Every value picklable: the rows can cross a process boundary as they are.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import partial
from operator import attrgetter
from typing import Any, NamedTuple, cast

import orjson

from collector.genai.normalize import GenAI
from collector.model import Span
from collector.storage.sqlite.latency import Observed, span_observed

to_json = partial(json.dumps, ensure_ascii=False, separators=(",", ":"))

# The ``spans`` columns, from the record types: every field of ``Span`` but those stored once in ``resources``
# (referenced by ``resource_id``) and the two below, then the canonical GenAI fields (``GenAI`` but for the
# client's cost: the row has the span's ``cost_usd``), then what the writer adds. ``duplicate_of`` is set
# later, by ``rollups.mark_repeated_calls``. tests/storage/sqlite/test_writer.py holds this to the schema.
_IN_RESOURCES = ("resource_attributes", "scope_name", "scope_version")
_SPAN_FIELDS = tuple(name for name in Span._fields if name not in (*_IN_RESOURCES, "genai", "cost_usd"))
_GENAI_FIELDS = tuple(name for name in GenAI._fields if name != "client_cost_usd")
_ENCODED_COLUMNS = ("cost_usd", "duration_ns")  # computed here
_WRITER_COLUMNS = ("resource_id", "received_at_unix_nano")  # the writer's: an index into the resources, then None
SPAN_COLUMNS = (*_SPAN_FIELDS, *_GENAI_FIELDS, *_ENCODED_COLUMNS, *_WRITER_COLUMNS)
WIDTH = len(SPAN_COLUMNS)  # values per row
RESOURCE_INDEX = WIDTH - 2  # where a row holds its resource's index
RECEIVED_AT_INDEX = WIDTH - 1  # where the writer puts the transaction's receipt time

# A row is built from runs of fields read as they are and the fields stored as JSON text between them: the span's
# attributes, events and links (one after the other in ``Span``), and the GenAI finish reasons.
_JSON_SPAN_FIELDS = ("attributes", "events", "links")
_JSON_AT = _SPAN_FIELDS.index("attributes")
if _SPAN_FIELDS[_JSON_AT : _JSON_AT + 3] != _JSON_SPAN_FIELDS:
    raise RuntimeError(f"Span's JSON fields are no longer {_JSON_SPAN_FIELDS} one after the other: see span_rows")
_span_head = attrgetter(*_SPAN_FIELDS[:_JSON_AT])
_span_tail = attrgetter(*_SPAN_FIELDS[_JSON_AT + 3 :])
_REASONS_AT = _GENAI_FIELDS.index("finish_reasons")
_genai_head = attrgetter(*_GENAI_FIELDS[:_REASONS_AT])
_genai_tail = attrgetter(*_GENAI_FIELDS[_REASONS_AT + 1 :])
_NO_GENAI = (None,) * len(_GENAI_FIELDS)

_EMPTY_LIST = "[]"  # json_text([])

# A resource as the ``resources`` table stores it: attributes as JSON text, scope name, scope version.
Resource = tuple[str, str | None, str | None]


class SpanRows(NamedTuple):
    """A request's spans as ``writer.insert_rows`` takes them."""

    values: list[Any]  # the rows' values one after the other, ``WIDTH`` a row, in ``SPAN_COLUMNS`` order
    resources: list[Resource]  # what each resource index stands for
    # What each row observes in the latency histograms once stored (``latency.span_observed``), so that the writer
    # counts them without reading the rows back; None when a span's cannot be known ahead.
    observed: list[Observed] | None = None


def json_text(value: Any) -> str:
    """``value`` as the JSON text a column stores: orjson, several times faster than ``to_json`` and the same
    JSON (floats may be spelt differently, ``2.5e-5`` for ``2.5e-05``, the same number once read back); what
    orjson refuses (an integer beyond 64 bits, a key that is not a string, a lone surrogate) goes through
    ``to_json``. Decoding never lets a NaN or an infinity through, the one value orjson would write differently
    (null)."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return to_json(value)


def span_rows(spans: Sequence[Span]) -> SpanRows:
    """The spans' rows, and what each observes in the latency histograms. Spans of one resource share its
    attributes dict (decode and transform keep it shared), so each resource is encoded once, found again by
    the dict's identity."""
    values: list[Any] = []
    resources: list[Resource] = []
    indexes: dict[tuple[int, str | None, str | None], int] = {}
    observed: list[Observed | None] = []
    for span in spans:
        observed.append(span_observed(span))
        key = (id(span.resource_attributes), span.scope_name, span.scope_version)
        index = indexes.get(key)
        if index is None:
            index = indexes[key] = len(resources)
            resources.append((to_json(span.resource_attributes or {}), span.scope_name, span.scope_version))
        values += _span_head(span)
        events, links = span.events, span.links  # most spans have none: the text of an empty list, as is
        values += (
            json_text(span.attributes),
            json_text(events) if events else _EMPTY_LIST,
            json_text(links) if links else _EMPTY_LIST,
        )
        values += _span_tail(span)
        genai = span.genai
        if genai is None:
            values += _NO_GENAI
        else:
            reasons = genai.finish_reasons
            values += _genai_head(genai)
            values.append(None if reasons is None else json_text(reasons))
            values += _genai_tail(genai)
        values += (span.cost_usd, span.end_time_unix_nano - span.start_time_unix_nano, index, None)
    return SpanRows(values, resources, None if None in observed else cast("list[Observed]", observed))
