"""Stats endpoints, checked against figures computed here, independently, from the stored rows."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import httpx
import pytest

from collector.storage.latency_bins import RELATIVE_ERROR
from tests.conftest import RunningCollector
from tests.query.conftest import MS, Dataset

Seeded = tuple[RunningCollector, Dataset]
BUCKET_NS = 600_000 * MS  # 10 minutes
HOUR_NS = 3_600_000 * MS


def get(collector: RunningCollector, path: str, **params: Any) -> Any:
    response = httpx.get(collector.query_url + path, params=params, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def nearest_rank(values: list[float], percentile: int) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(percentile / 100 * len(ordered))) - 1]


def expected_percentiles(
    rows: list[tuple[Any, int, float]], bucket_ns: int = BUCKET_NS
) -> dict[Any, dict[int, dict[str, Any]]]:
    """{group: {bucket start: {count, p50_ms, p95_ms, p99_ms}}} from (group, time, value) rows."""
    grouped: dict[Any, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for group, time_ns, value in rows:
        grouped[group][time_ns // bucket_ns * bucket_ns].append(value)
    return {
        group: {
            bucket: {"count": len(values), **{f"p{p}_ms": nearest_rank(values, p) for p in (50, 95, 99)}}
            for bucket, values in buckets.items()
        }
        for group, buckets in grouped.items()
    }


def answered(stats: dict[str, Any]) -> dict[Any, dict[int, dict[str, Any]]]:
    return {
        series["group"]: {
            point["time_unix_nano"]: {key: point[key] for key in ("count", "p50_ms", "p95_ms", "p99_ms")}
            for point in series["points"]
        }
        for series in stats["series"]
    }


def window(data: Dataset) -> dict[str, Any]:
    return {"start": data.base_ns - 600_000 * MS, "end": data.base_ns + 3_000_000 * MS, "bucket": "10m"}


@pytest.mark.parametrize(
    ("of", "group_by", "sql"),
    [
        ("trace", "none", "SELECT NULL, start_time_unix_nano, duration_ns / 1e6 FROM traces"),
        ("trace", "service", "SELECT service_name, start_time_unix_nano, duration_ns / 1e6 FROM traces"),
        ("trace", "model", "SELECT m.value, start_time_unix_nano, duration_ns / 1e6 FROM traces, json_each(models) m"),
        ("span", "service", "SELECT service_name, start_time_unix_nano, duration_ns / 1e6 FROM spans"),
        ("span", "operation", "SELECT operation, start_time_unix_nano, duration_ns / 1e6 FROM spans"),
        (
            "llm",
            "model",
            (
                "SELECT coalesce(response_model, request_model), start_time_unix_nano, duration_ns / 1e6 "
                "FROM spans WHERE category = 'llm'"
            ),
        ),
        (
            "ttft",
            "model",
            (
                "SELECT coalesce(response_model, request_model), start_time_unix_nano, ttft_ms "
                "FROM spans WHERE ttft_ms IS NOT NULL"
            ),
        ),
        ("span", "agent", "SELECT agent_name, start_time_unix_nano, duration_ns / 1e6 FROM spans"),
    ],
)
def test_latency_percentiles_match_the_stored_durations(seeded: Seeded, of: str, group_by: str, sql: str) -> None:
    collector, data = seeded
    stats = get(collector, "/api/v1/stats/latency", of=of, group_by=group_by, **window(data))
    assert (stats["of"], stats["group_by"], stats["bucket_seconds"]) == (of, group_by, 600.0)
    expected = expected_percentiles(collector.query(sql))
    assert answered(stats) == _approx(expected)
    assert sum(point["count"] for series in stats["series"] for point in series["points"]) == sum(
        bucket["count"] for buckets in expected.values() for bucket in buckets.values()
    )


def _approx(expected: dict[Any, dict[int, dict[str, Any]]]) -> Any:
    """Counts exact, percentiles within the histograms' documented relative error (docs/query-api.md)."""
    return {
        group: {
            bucket: {
                key: value if key == "count" else pytest.approx(value, rel=RELATIVE_ERROR, abs=1e-9)
                for key, value in figures.items()
            }
            for bucket, figures in buckets.items()
        }
        for group, buckets in expected.items()
    }


@pytest.mark.parametrize(
    ("start_offset_ns", "end_offset_ns", "bucket"),
    [
        # from the data's hour: whole hours from the hour histograms, minutes either side from the minute
        # histograms, the partial minutes at both ends from the stored rows
        pytest.param(-HOUR_NS - 61_500 * MS, 2 * HOUR_NS + 7_250 * MS, "1h", id="hours-minutes-rows"),
        # from the data's first span (on a minute): the batch's traces start 2, 3 ... 41 s after it
        pytest.param(-598_500 * MS, 3_020_000 * MS, "2m", id="minutes-rows"),
        pytest.param(-60_000 * MS, 120_000 * MS, "30s", id="rows-only"),
        pytest.param(-120_000 * MS, 21_500 * MS, "1m", id="range-ends-inside-the-batch"),
    ],
)
@pytest.mark.parametrize(
    ("of", "group_by", "sql"),
    [
        ("trace", "service", "SELECT service_name, start_time_unix_nano, duration_ns / 1e6 FROM traces"),
        ("trace", "model", "SELECT m.value, start_time_unix_nano, duration_ns / 1e6 FROM traces, json_each(models) m"),
        ("span", "operation", "SELECT operation, start_time_unix_nano, duration_ns / 1e6 FROM spans"),
        (
            "llm",
            "model",
            (
                "SELECT coalesce(response_model, request_model), start_time_unix_nano, duration_ns / 1e6 "
                "FROM spans WHERE category = 'llm' AND duplicate_of IS NULL"
            ),
        ),
    ],
)
def test_histogram_percentiles_are_within_the_error_of_the_exact_ones_whatever_they_read(
    seeded: Seeded, start_offset_ns: int, end_offset_ns: int, bucket: str, of: str, group_by: str, sql: str
) -> None:
    """The exact nearest-rank percentiles of the stored values in the range against the API's, for ranges and
    buckets that make it read the hour histograms, the minute histograms and the stored rows."""
    collector, data = seeded
    anchor = data.base_ns // HOUR_NS * HOUR_NS if bucket == "1h" else data.base_ns
    start, end = anchor + start_offset_ns, anchor + end_offset_ns
    stats = get(collector, "/api/v1/stats/latency", of=of, group_by=group_by, start=start, end=end, bucket=bucket)
    bucket_ns = int(stats["bucket_seconds"] * 1e9)
    rows = [row for row in collector.query(sql) if start <= row[1] < end]
    expected = expected_percentiles(rows, bucket_ns)
    assert rows and answered(stats) == _approx(expected)


@pytest.mark.parametrize(
    ("group_by", "filters", "sql"),
    [
        (
            "agent",
            {"model": "gpt-4o"},
            (
                "SELECT a.value, start_time_unix_nano, duration_ns / 1e6 FROM traces, json_each(agents) a "
                "WHERE EXISTS (SELECT 1 FROM json_each(models) WHERE value = 'gpt-4o')"
            ),
        ),
        (
            "none",
            {"model": "gpt-4o-mini", "service": "batch-svc"},
            (
                "SELECT NULL, start_time_unix_nano, duration_ns / 1e6 FROM traces WHERE service_name = 'batch-svc' "
                "AND EXISTS (SELECT 1 FROM json_each(models) WHERE value = 'gpt-4o-mini')"
            ),
        ),
        (
            "model",
            {"service": "checkout-bot"},
            (
                "SELECT m.value, start_time_unix_nano, duration_ns / 1e6 FROM traces, json_each(models) m "
                "WHERE service_name = 'checkout-bot'"
            ),
        ),
    ],
)
def test_trace_percentiles_with_filters_count_each_trace_once(
    seeded: Seeded, group_by: str, filters: dict[str, str], sql: str
) -> None:
    """A trace with several models and agents is kept in a series per model and agent and one for any; a filter and
    a grouping read the series that hold each trace once, on every kind of source."""
    collector, data = seeded
    hour = data.base_ns // HOUR_NS * HOUR_NS
    start, end = hour - HOUR_NS - 61_500 * MS, hour + 2 * HOUR_NS + 7_250 * MS
    stats = get(
        collector, "/api/v1/stats/latency", of="trace", group_by=group_by, start=start, end=end, bucket="1h", **filters
    )
    expected = expected_percentiles([row for row in collector.query(sql) if start <= row[1] < end], HOUR_NS)
    assert expected and answered(stats) == _approx(expected)


def test_latency_of_the_batch_is_what_was_sent(seeded: Seeded) -> None:
    """40 traces of 5, 10 ... 200 ms: nearest-rank p50 is the 20th (100 ms), p95 the 38th, p99 the 40th."""
    collector, data = seeded
    stats = get(
        collector,
        "/api/v1/stats/latency",
        of="trace",
        service="batch-svc",
        start=data.base_ns,
        end=data.base_ns + 3_600_000 * MS,
        bucket="1h",
    )
    points = [point for series in stats["series"] for point in series["points"]]
    assert sum(point["count"] for point in points) == 40
    if len(points) == 1:  # the hour did not split the batch
        assert (points[0]["p50_ms"], points[0]["p95_ms"], points[0]["p99_ms"]) == pytest.approx(
            (100.0, 190.0, 200.0), rel=RELATIVE_ERROR
        )


def test_latency_filters_by_model(seeded: Seeded) -> None:
    collector, data = seeded
    stats = get(collector, "/api/v1/stats/latency", of="llm", model="gpt-4o", **window(data))
    assert [point["count"] for series in stats["series"] for point in series["points"]] == [1]
    assert stats["series"][0]["points"][0]["p99_ms"] == pytest.approx(60.0, rel=RELATIVE_ERROR)


def test_cost_by_model_and_per_thousand_requests(seeded: Seeded) -> None:
    collector, data = seeded
    stats = get(collector, "/api/v1/stats/cost", group_by="model", **window(data))
    rows = collector.query(
        "SELECT coalesce(response_model, request_model), sum(cost_usd), sum(input_tokens), sum(output_tokens), "
        "count(*) FROM spans WHERE category IN ('llm', 'embedding') GROUP BY 1"
    )
    by_model = {series["group"]: series["totals"] for series in stats["series"]}
    assert set(by_model) == {row[0] for row in rows}
    for model, cost, tokens_in, tokens_out, calls in rows:
        totals = by_model[model]
        assert (totals["input_tokens"], totals["output_tokens"], totals["llm_requests"]) == (
            tokens_in,
            tokens_out,
            calls,
        )
        assert totals["cost_usd"] == pytest.approx(cost)
        assert totals["cost_per_1k_llm_requests_usd"] == pytest.approx(1000 * cost / calls)
    total_cost = sum(row[1] for row in rows)
    assert stats["totals"]["cost_usd"] == pytest.approx(total_cost)
    assert stats["totals"]["llm_requests"] == 42
    assert stats["totals"]["cost_per_1k_llm_requests_usd"] == pytest.approx(1000 * total_cost / 42)
    points = [point for series in stats["series"] for point in series["points"]]
    assert sum(point["llm_requests"] for point in points) == 42


@pytest.mark.parametrize(
    ("group_by", "groups"),
    [
        ("provider", {"openai", "anthropic"}),
        ("service", {"checkout-bot", "search-svc", "batch-svc"}),
        ("user", {"user-1", None}),
        ("none", {None}),
    ],
)
def test_cost_groups(seeded: Seeded, group_by: str, groups: set[Any]) -> None:
    collector, data = seeded
    stats = get(collector, "/api/v1/stats/cost", group_by=group_by, **window(data))
    assert {series["group"] for series in stats["series"]} == groups


def test_cost_filters(seeded: Seeded) -> None:
    collector, data = seeded
    stats = get(collector, "/api/v1/stats/cost", provider="anthropic", **window(data))
    assert stats["totals"]["llm_requests"] == 1 and stats["totals"]["input_tokens"] == 100
    assert get(collector, "/api/v1/stats/cost", service="nobody", **window(data))["totals"]["cost_usd"] is None


def test_evaluation_stats_with_the_configured_threshold(seeded: Seeded) -> None:
    collector, data = seeded
    stats = get(collector, "/api/v1/stats/evaluations", **window(data))
    (series,) = stats["series"]
    assert (series["name"], series["threshold"]) == ("faithfulness", 0.85)
    (point,) = series["points"]
    assert (point["count"], point["mean"], point["p50"], point["share_below"]) == (1, 0.6, 0.6, 1.0)
    overridden = get(collector, "/api/v1/stats/evaluations", name="faithfulness", threshold=0.5, **window(data))
    assert overridden["series"][0]["threshold"] == 0.5 and overridden["series"][0]["points"][0]["share_below"] == 0.0
