"""The GenAI steps between decoding and the queue: normalize, price, redact, transform, count calls (pure, data tables)."""
