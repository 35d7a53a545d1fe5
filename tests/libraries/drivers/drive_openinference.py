"""OpenInference (Arize Phoenix) instrumentation of the OpenAI and Anthropic clients.

The Anthropic SDK's own span of each call nests under OpenInference's: one call, two spans.
"""

from _driver import ANTHROPIC_SCENARIOS, OPENAI_SCENARIOS, run, tracer_provider
from openinference.instrumentation.anthropic import AnthropicInstrumentor
from openinference.instrumentation.openai import OpenAIInstrumentor

provider = tracer_provider("openinference")
OpenAIInstrumentor().instrument(tracer_provider=provider)
AnthropicInstrumentor().instrument(tracer_provider=provider)
run({**OPENAI_SCENARIOS, **ANTHROPIC_SCENARIOS}, provider)
