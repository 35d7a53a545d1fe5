"""``genai-collector demo``: simulated agents instrumented with the OpenTelemetry SDK.

``scenario`` plans their traces (pure, seeded); ``runner`` emits them through the SDK. This module stays
light: the command line reads its default without importing the SDK.
"""

DEFAULT_ENDPOINT = "http://127.0.0.1:4318"  # the collector's OTLP/HTTP listener, as in OTEL_EXPORTER_OTLP_ENDPOINT
