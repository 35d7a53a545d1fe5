"""The records that flow from decode to storage."""

from __future__ import annotations

from typing import Any, NamedTuple

Attributes = dict[str, Any]


class Span(NamedTuple):
    """One decoded span; ids are lowercase hex, times unix nanoseconds, kind and status lower-case names."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    trace_state: str | None
    flags: int
    name: str
    kind: str
    start_time_unix_nano: int
    end_time_unix_nano: int
    status_code: str
    status_message: str | None
    service_name: str | None
    scope_name: str | None
    scope_version: str | None
    resource_attributes: Attributes
    attributes: Attributes
    events: list[dict[str, Any]]
    links: list[dict[str, Any]]
    dropped_attributes_count: int
    dropped_events_count: int
    dropped_links_count: int


class Rejection(NamedTuple):
    """Spans of one request that cannot be stored, and why (the first reason, for the client's message)."""

    count: int
    first_reason: str | None

    @property
    def message(self) -> str:
        if not self.count:
            return ""
        noun = "span" if self.count == 1 else "spans"
        return f"{self.count} {noun} rejected; first: {self.first_reason}"


NO_REJECTION = Rejection(0, None)
