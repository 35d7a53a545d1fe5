"""The Anthropic SDK's own OpenTelemetry spans, with no instrumentation library: the global tracer provider."""

from _driver import ANTHROPIC_SCENARIOS, run, tracer_provider

provider = tracer_provider("anthropic-sdk")
run(ANTHROPIC_SCENARIOS, provider)
