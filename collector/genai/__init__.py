"""The GenAI steps between decoding and the queue: normalize, price, redact, transform, count calls.

Pure functions beside data tables.
"""
