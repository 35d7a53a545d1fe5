"""The OTLP transports (gRPC and HTTP) and what they share once a request is parsed."""
