"""``genai-collector demo``: a simulated agent instrumented with the OpenTelemetry SDK (see ``runner``)."""
