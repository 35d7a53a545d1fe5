"""The daemon watching itself: its own metrics, GenAI metrics, the admin endpoint, logging."""
