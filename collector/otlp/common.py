"""What decoding protobuf and OTLP/JSON share: attribute values, enum names, event, link and resource records."""

from __future__ import annotations

import base64
import math
from collections.abc import Callable, Iterable
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from collector.model import Attributes

SPAN_KINDS = {0: "unspecified", 1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}
STATUS_CODES = {0: "unset", 1: "ok", 2: "error"}


# --- attributes ----------------------------------------------------------------------------


def _double(value: float) -> float | str:
    return value if math.isfinite(value) else str(value)


def _base64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


_VALUE_READERS: dict[str, Callable[[AnyValue], Any]] = {
    "string_value": lambda v: v.string_value,
    "int_value": lambda v: v.int_value,
    "bool_value": lambda v: v.bool_value,
    "double_value": lambda v: _double(v.double_value),
    "array_value": lambda v: [any_value(item) for item in v.array_value.values],
    "kvlist_value": lambda v: attributes(v.kvlist_value.values),
    "bytes_value": lambda v: _base64(v.bytes_value),
}


def any_value(value: AnyValue) -> Any:
    """An OTLP AnyValue as a JSON-ready Python value (bytes as base64, non-finite doubles as strings)."""
    kind = value.WhichOneof("value")
    return _VALUE_READERS[kind](value) if kind else None


def attributes(key_values: Iterable[KeyValue]) -> Attributes:
    result: Attributes = {}
    for key_value in key_values:
        value = key_value.value
        # Most attribute values are strings: a non-empty string_value can only be the one set (a oneof member
        # that is not set reads as its default), so it is read without asking which one is.
        text = value.string_value
        if text:
            result[key_value.key] = text
            continue
        kind = value.WhichOneof("value")
        if kind == "int_value":  # the next most common (token counts): read here, without a reader's call
            result[key_value.key] = value.int_value
        else:
            result[key_value.key] = "" if kind == "string_value" else _VALUE_READERS[kind](value) if kind else None
    return result


def _enum_name(names: dict[int, str], number: int) -> str:
    """A known enum value's name; an unknown one (a newer OTLP, a bad client) keeps its number."""
    return names.get(number) or str(number)


def _event(name: str, time_unix_nano: int, event_attributes: Attributes, dropped_attributes: int) -> dict[str, Any]:
    record: dict[str, Any] = {"name": name, "time_unix_nano": time_unix_nano, "attributes": event_attributes}
    if dropped_attributes:
        record["dropped_attributes_count"] = dropped_attributes
    return record


def _link(trace_id: bytes, span_id: bytes, link_attributes: Attributes, trace_state: str, flags: int) -> dict[str, Any]:
    record: dict[str, Any] = {"trace_id": trace_id.hex(), "span_id": span_id.hex(), "attributes": link_attributes}
    if trace_state:
        record["trace_state"] = trace_state
    if flags:
        record["flags"] = flags
    return record


def _with_service_name(resource_attributes: Attributes) -> tuple[Attributes, str | None]:
    service_name = resource_attributes.get("service.name")
    return resource_attributes, service_name if isinstance(service_name, str) else None


def _resource(resource: Any) -> tuple[Attributes, str | None]:
    """A resource's attributes and its ``service.name``."""
    return _with_service_name(attributes(resource.attributes))
