"""OpenLLMetry (Traceloop) instrumentation of the OpenAI and Anthropic clients.

The Anthropic SDK's own span of each call nests under OpenLLMetry's: one call, two spans.
"""

import os

from _driver import ANTHROPIC_SCENARIOS, OPENAI_SCENARIOS, run, tracer_provider
from opentelemetry.instrumentation.anthropic import AnthropicInstrumentor
from opentelemetry.instrumentation.openai import OpenAIInstrumentor

os.environ.setdefault("TRACELOOP_TRACE_CONTENT", "true")
provider = tracer_provider("openllmetry")
OpenAIInstrumentor().instrument(tracer_provider=provider)
AnthropicInstrumentor().instrument(tracer_provider=provider)
run({**OPENAI_SCENARIOS, **ANTHROPIC_SCENARIOS}, provider)
