"""genai-collector: an OTLP collector daemon for LLM and agent telemetry."""

__version__ = "0.1.0"
