"""The admin endpoint: ``/metrics`` for Prometheus, ``/healthz`` (liveness) and ``/readyz`` (readiness)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


def admin_app(
    registry: CollectorRegistry,
    unready_reasons: Callable[[], list[str]],
    before_scrape: Callable[[], Awaitable[None]] | None = None,
) -> Starlette:
    """``unready_reasons`` lists why the collector should not get traffic now; empty means ready;
    ``before_scrape`` brings the metrics up to date (the ingest workers ship their counters)."""

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> JSONResponse:
        reasons = unready_reasons()
        if reasons:
            return JSONResponse({"status": "unready", "reasons": reasons}, status_code=503)
        return JSONResponse({"status": "ready"})

    async def metrics(request: Request) -> Response:
        """Prometheus text format, or OpenMetrics (with exemplars) when the scraper asks for it."""
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        if before_scrape is not None:
            await before_scrape()
        return Response(encoder(registry), headers={"Content-Type": content_type})

    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics),
        ]
    )
