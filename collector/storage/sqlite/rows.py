"""Span rows encoded for the SQLite writer ahead of the write, on the thread (or process) that decoded them.

Pure, no connection: ``span_rows`` turns a request's spans into the JSON document ``writer.INSERT_SPANS``
reads, so that the writer thread, the one thread the whole collector's writes go through, only binds it. The
two columns only the writer knows are left out: ``received_at_unix_nano`` (one per transaction) is a
statement parameter, and each row names its resource by an index into ``SpanRows.resources`` (the resource's
attributes as stored JSON text and its scope), which the writer maps to ``resources`` row ids in its
transaction. Every value picklable: the rows can cross a process boundary as they are.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import partial
from operator import attrgetter
from typing import Any, NamedTuple

import orjson

from collector.genai.normalize import GenAI
from collector.model import Span

to_json = partial(json.dumps, ensure_ascii=False, separators=(",", ":"))

# The ``spans`` columns, from the record types: every field of ``Span`` but those stored once in ``resources``
# (referenced by ``resource_id``) and the two below, then the canonical GenAI fields (``GenAI`` but for the
# client's cost: the row has the span's ``cost_usd``), then what the writer adds. ``duplicate_of`` is set
# later, by ``rollups.mark_repeated_calls``. tests/storage/sqlite/test_writer.py holds this to the schema.
_IN_RESOURCES = ("resource_attributes", "scope_name", "scope_version")
_SPAN_FIELDS = tuple(name for name in Span._fields if name not in (*_IN_RESOURCES, "genai", "cost_usd"))
_GENAI_FIELDS = tuple(name for name in GenAI._fields if name != "client_cost_usd")
_ENCODED_COLUMNS = ("cost_usd", "duration_ns")  # computed here
_WRITER_COLUMNS = ("resource_id", "received_at_unix_nano")  # the writer's: an index into the resources, and ?3
SPAN_COLUMNS = (*_SPAN_FIELDS, *_GENAI_FIELDS, *_ENCODED_COLUMNS, *_WRITER_COLUMNS)
RESOURCE_INDEX = len(SPAN_COLUMNS) - 2  # where a row holds its resource's index

_span_values = attrgetter(*_SPAN_FIELDS)
_genai_values = attrgetter(*_GENAI_FIELDS)
_NO_GENAI = (None,) * len(_GENAI_FIELDS)

# A resource as the ``resources`` table stores it: attributes as JSON text, scope name, scope version.
Resource = tuple[str, str | None, str | None]


class SpanRows(NamedTuple):
    """A request's spans as ``INSERT_SPANS`` takes them."""

    document: str  # a JSON array with one array per span, in ``SPAN_COLUMNS`` order up to the resource's index
    resources: list[Resource]  # what each resource index stands for


def rows_json(rows: Any) -> str:
    """Rows as the JSON text ``jsonb_each`` reads: orjson, several times faster than ``to_json`` on a batch
    and the same JSON (floats may be spelt differently, ``2.5e-5`` for ``2.5e-05``, the same number once
    SQLite reads them); what orjson refuses (an integer beyond 64 bits, a key that is not a string, a lone
    surrogate) goes through ``to_json`` as before. Decoding never lets a NaN or an infinity through, the
    one value orjson would write differently (null)."""
    try:
        return orjson.dumps(rows).decode()
    except TypeError:
        return to_json(rows)


def span_rows(spans: Sequence[Span]) -> SpanRows:
    """The spans' rows. Spans of one resource share its attributes dict (decode and transform keep it
    shared), so each resource is encoded once, found again by the dict's identity."""
    rows = []
    resources: list[Resource] = []
    indexes: dict[tuple[int, str | None, str | None], int] = {}
    for span in spans:
        key = (id(span.resource_attributes), span.scope_name, span.scope_version)
        index = indexes.get(key)
        if index is None:
            index = indexes[key] = len(resources)
            resources.append((to_json(span.resource_attributes or {}), span.scope_name, span.scope_version))
        genai = span.genai
        rows.append(
            (
                *_span_values(span),
                *(_NO_GENAI if genai is None else _genai_values(genai)),
                span.cost_usd,
                span.end_time_unix_nano - span.start_time_unix_nano,
                index,
            )
        )
    return SpanRows(rows_json(rows), resources)
