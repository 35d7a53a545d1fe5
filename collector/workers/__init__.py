"""Ingest on every core: worker processes receive, decode and transform OTLP requests on the shared ports
and hand the records to the one writer in the main process, which acknowledges each request after its commit.

``pool`` runs in the main process (binds, starts, restarts and stops the workers, serves their submissions),
``worker`` is a worker process, ``remote`` its side of the queue, ``link`` the channel between the two,
``balance`` how the workers share the OTLP/HTTP connections, and ``metrics`` how the workers' counters reach the
main process's ``/metrics``.
"""
