"""The workers' counters as the main process shows them: shipments of gains, totals that outlive a worker,
histograms whole, client label values capped across workers. Real registries, read back as Prometheus would."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from collector.observability.metrics import CollectorMetrics
from collector.workers.metrics import CounterShipper, MergedRegistry, WorkerCounters
from tests.helpers import metric_value


def worker() -> tuple[CollectorMetrics, CounterShipper]:
    metrics = CollectorMetrics(CollectorRegistry())
    return metrics, CounterShipper(metrics.registry)


def test_a_shipment_carries_only_what_changed_since_the_last() -> None:
    metrics, shipper = worker()
    metrics.accepted_spans.labels("otlp", "http").inc(100)
    families, gains = shipper.shipment()
    assert [(key, gain) for key, gain in gains] == [
        (("genai_collector_receiver_accepted_spans", "genai_collector_receiver_accepted_spans_total",
          (("receiver", "otlp"), ("transport", "http"))), 100.0)
    ]  # fmt: skip
    assert families["genai_collector_receiver_accepted_spans"][0] == "counter"
    assert shipper.shipment() == ({}, [])
    metrics.accepted_spans.labels("otlp", "http").inc(5)
    assert [gain for _, gain in shipper.shipment()[1]] == [5.0]


def test_totals_from_several_workers_and_a_restarted_one_add_up_in_the_main_registry() -> None:
    main = CollectorMetrics(CollectorRegistry())
    counters = WorkerCounters(main.bounded_labels)
    exposed = MergedRegistry(main.registry, counters)
    first, first_shipper = worker()
    second, second_shipper = worker()
    first.accepted_spans.labels("otlp", "http").inc(30)
    second.accepted_spans.labels("otlp", "grpc").inc(7)
    first.request_duration.labels("http", "traces").observe(0.02)
    counters.add(first_shipper.shipment())
    counters.add(second_shipper.shipment())
    restarted, restarted_shipper = worker()  # the first worker died and came back with fresh counters
    restarted.accepted_spans.labels("otlp", "http").inc(4)
    restarted.request_duration.labels("http", "traces").observe(3.0)
    counters.add(restarted_shipper.shipment())

    exposition = generate_latest(exposed).decode()
    accepted = "genai_collector_receiver_accepted_spans_total"
    assert metric_value(exposition, accepted, transport="http") == 34
    assert metric_value(exposition, accepted, transport="grpc") == 7
    duration = "genai_collector_request_duration_seconds"
    assert metric_value(exposition, duration + "_count", transport="http") == 2
    assert metric_value(exposition, duration + "_bucket", transport="http", le="0.025") == 1
    assert metric_value(exposition, duration + "_bucket", transport="http", le="+Inf") == 2
    assert metric_value(exposition, duration + "_sum", transport="http") == 3.02
    assert exposition.count("# TYPE genai_collector_request_duration_seconds histogram") == 1
    assert metric_value(exposition, "genai_collector_queue_capacity") == 0  # the main's gauges are its own


def test_client_label_values_stay_capped_across_workers() -> None:
    main = CollectorMetrics(CollectorRegistry(), label_cap=3)
    counters = WorkerCounters(main.bounded_labels)
    for models in (["a", "b"], ["c", "d", "e"]):  # each worker under the cap, together over it
        metrics, shipper = worker()
        for model in models:
            metrics.unpriced_spans.labels(model).inc()
        counters.add(shipper.shipment())
    exposition = generate_latest(MergedRegistry(main.registry, counters)).decode()
    unpriced = {
        line.split('"')[1]: float(line.split()[-1])
        for line in exposition.splitlines()
        if line.startswith("genai_collector_unpriced_spans_total{")
    }
    assert unpriced == {"a": 1, "b": 1, "c": 1, "_other": 2}
    overflow = "genai_collector_label_overflow_total"
    assert metric_value(exposition, overflow, metric="unpriced_spans", label="model") == 2
