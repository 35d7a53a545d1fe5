"""The read side served over HTTP: REST, the live feed and the Jaeger-compatible API."""
