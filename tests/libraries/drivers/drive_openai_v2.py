"""OpenTelemetry's official openai-v2 instrumentation around the OpenAI client."""

import os

from _driver import OPENAI_SCENARIOS, run, tracer_provider
from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

os.environ.setdefault("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
provider = tracer_provider("openai-v2")
OpenAIInstrumentor().instrument(tracer_provider=provider)
run(OPENAI_SCENARIOS, provider)
