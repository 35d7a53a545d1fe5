"""Parameter parsing shared by the endpoints: pure functions, tables of cases."""

from __future__ import annotations

import pytest

from collector.query.params import (
    BadRequest,
    InvalidParameter,
    auto_bucket,
    decode_cursor,
    encode_cursor,
    parse_attribute,
    parse_go_duration,
    parse_time,
)

SECOND = 1_000_000_000


@pytest.mark.parametrize(
    ("text", "nanoseconds"),
    [
        ("1764435600000000000", 1_764_435_600 * SECOND),
        ("2025-11-29T17:00:00Z", 1_764_435_600 * SECOND),
        ("2025-11-29T17:00:00", 1_764_435_600 * SECOND),
        ("2025-11-29T18:00:00.5+01:00", 1_764_435_600 * SECOND + SECOND // 2),
        ("2025-11-29T17:00:00.000001z", 1_764_435_600 * SECOND + 1_000),
    ],
)
def test_times(text: str, nanoseconds: int) -> None:
    assert parse_time(text) == nanoseconds


@pytest.mark.parametrize("text", ["yesterday", "2025-13-01T00:00:00Z", "-5", ""])
def test_bad_times(text: str) -> None:
    with pytest.raises(InvalidParameter):
        parse_time(text)


@pytest.mark.parametrize(
    ("text", "nanoseconds"),
    [
        ("100ms", 100_000_000),
        ("1.5s", 1_500_000_000),
        ("1m30s", 90 * SECOND),
        ("500us", 500_000),
        ("500µs", 500_000),
        ("2h", 7200 * SECOND),
        ("1d", 86_400 * SECOND),
        ("250ns", 250),
    ],
)
def test_go_durations(text: str, nanoseconds: int) -> None:
    assert parse_go_duration(text) == nanoseconds


@pytest.mark.parametrize("text", ["", "fast", "100", "1.5", "10 parsecs", "1m 30s", "s"])
def test_bad_go_durations(text: str) -> None:
    with pytest.raises(InvalidParameter):
        parse_go_duration(text)


def test_cursors_round_trip_and_refuse_another_list() -> None:
    cursor = encode_cursor("traces:cost:desc", (0.25, "ab" * 16))
    assert decode_cursor("traces:cost:desc", cursor) == (0.25, "ab" * 16)
    with pytest.raises(BadRequest, match="another list"):
        decode_cursor("traces:cost:asc", cursor)
    with pytest.raises(BadRequest, match="next_cursor"):
        decode_cursor("traces:cost:desc", "!!")


@pytest.mark.parametrize(
    ("pair", "parsed"),
    [
        ("retry:3", ("retry", 3)),
        ("cached:true", ("cached", True)),
        ("score:0.5", ("score", 0.5)),
        ("model:gpt-4o", ("model", "gpt-4o")),
        ("url:http://x:1", ("url", "http://x:1")),
        ('name:"quoted"', ("name", "quoted")),
        ("list:[1,2]", ("list", "[1,2]")),
        ("empty:", ("empty", "")),
    ],
)
def test_attribute_pairs(pair: str, parsed: tuple[str, object]) -> None:
    assert parse_attribute(pair) == parsed


@pytest.mark.parametrize("pair", ["no-colon", ":value", 'a"b:c'])
def test_bad_attribute_pairs(pair: str) -> None:
    with pytest.raises(InvalidParameter):
        parse_attribute(pair)


def test_buckets() -> None:
    assert auto_bucket(0, 3600 * SECOND, None) == 60 * SECOND
    assert auto_bucket(0, 10 * SECOND, None) == SECOND
    assert auto_bucket(0, 3600 * SECOND, 300 * SECOND) == 300 * SECOND
    with pytest.raises(BadRequest, match="buckets"):
        auto_bucket(0, 86_400 * SECOND, SECOND)
    with pytest.raises(InvalidParameter):
        auto_bucket(0, 10 * SECOND, 1000)
