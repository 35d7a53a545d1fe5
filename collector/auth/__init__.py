"""API keys and TLS for every listener.

``keys`` holds the configured keys (hashed), ``authenticator`` decides one request (the one decision the
HTTP middleware and the gRPC interceptor share), ``http`` and ``grpc`` adapt it to each transport,
``sessions`` logs the dashboard in, ``tls`` builds reloading server contexts, and ``listeners`` says which
scope each listener needs and warns about (or refuses) an open listener on a non-loopback address.
"""
