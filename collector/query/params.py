"""Parsing the query parameters every endpoint shares: times, durations, cursors, ``key:value`` pairs. Pure."""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime
from typing import Any

NS_PER_SECOND = 1_000_000_000


class BadRequest(Exception):
    """A parameter that is well typed but unusable (400); ``code`` is ``bad_request`` or ``query_too_broad``."""

    def __init__(self, message: str, code: str = "bad_request") -> None:
        super().__init__(message)
        self.code = code


class InvalidParameter(ValueError):
    """A parameter of the wrong shape (422), raised inside pydantic validation or by hand."""


def parse_time(value: str | int) -> int:
    """Unix nanoseconds from an integer of unix nanoseconds or an RFC 3339 timestamp (UTC when no offset)."""
    if isinstance(value, int):
        return value
    text = value.strip()
    if re.fullmatch(r"\d+", text):
        return int(text)
    try:
        moment = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise InvalidParameter(
            f"{value!r} is not a time: use RFC 3339 (2026-11-29T17:00:00Z) or unix nanoseconds"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * NS_PER_SECOND + delta.microseconds * 1_000


_GO_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h|d)")
_GO_UNITS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "μs": 1_000,
    "ms": 1_000_000,
    "s": NS_PER_SECOND,
    "m": 60 * NS_PER_SECOND,
    "h": 3_600 * NS_PER_SECOND,
    "d": 86_400 * NS_PER_SECOND,
}


def parse_go_duration(value: str) -> int:
    """Nanoseconds from a Go duration string (``1.2s``, ``100ms``, ``1m30s``, ``500us``); ``1d`` is accepted too."""
    text = value.strip()
    if not text:
        raise InvalidParameter("empty duration")
    position, total = 0, 0.0
    for match in _GO_DURATION.finditer(text):
        if match.start() != position:
            break
        total += float(match.group(1)) * _GO_UNITS[match.group(2)]
        position = match.end()
    if position != len(text) or position == 0:
        if re.fullmatch(r"\d+", text):  # a bare number: Jaeger reads it as microseconds? No: refuse ambiguity
            raise InvalidParameter(f"{value!r} has no unit; write a duration such as 100ms, 1.5s or 2m")
        raise InvalidParameter(f"{value!r} is not a duration; write it as 100ms, 1.5s, 1m30s or 500us")
    return int(total)


def encode_cursor(kind: str, position: tuple[Any, Any]) -> str:
    """An opaque cursor: which list and order it belongs to, and the keyset position after the page."""
    raw = json.dumps([kind, *position], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(kind: str, cursor: str) -> tuple[Any, Any]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        found, key, ident = json.loads(raw)
    except (ValueError, TypeError):
        raise BadRequest("cursor is not one this API gave; pass next_cursor back unchanged") from None
    if found != kind:
        raise BadRequest("cursor belongs to another list, sort or order; keep the parameters of the first page")
    return key, ident


def parse_attribute(pair: str) -> tuple[str, Any]:
    """``key:value``, the value JSON-parsed when it parses to a scalar (``3``, ``true``), else the text."""
    key, separator, text = pair.partition(":")
    if not separator or not key:
        raise InvalidParameter(f"{pair!r} is not key:value")
    if '"' in key:
        raise InvalidParameter(f"attribute key {key!r} may not contain a double quote")
    try:
        value = json.loads(text)
    except ValueError:
        return key, text
    if isinstance(value, bool | int | float | str):
        return key, value
    return key, text


def auto_bucket(start_ns: int, end_ns: int, bucket_ns: int | None, *, max_buckets: int = 1440) -> int:
    """The bucket width: as asked (at least 1 s), else about 60 buckets in the range; refuses too many."""
    span = end_ns - start_ns
    if bucket_ns is None:
        bucket_ns = max(NS_PER_SECOND, -(-span // 60 // NS_PER_SECOND) * NS_PER_SECOND)
    if bucket_ns < NS_PER_SECOND:
        raise InvalidParameter("bucket must be at least 1s")
    if span / bucket_ns > max_buckets:
        raise BadRequest(
            f"{span / bucket_ns:.0f} buckets asked, at most {max_buckets}: widen bucket or narrow the range",
            "query_too_broad",
        )
    return bucket_ns
