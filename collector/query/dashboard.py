"""The built dashboard (``dashboard/``, built by Vite into ``collector/query/ui/``) served at ``/``.

Mounted after the API routes. Hashed files under ``assets/`` are cached for a year; every other path that is
not a file gets ``index.html`` (the single-page app routes it), never cached. The app works under any path
prefix a reverse proxy adds: its asset URLs are relative (Vite ``base: "./"``), and the ``index.html`` served
for a deep path like ``/traces/<id>`` carries a ``<base href="../">`` that leads back to the app's root.
"""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.responses import HTMLResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

log = logging.getLogger(__name__)

BUNDLE = Path(__file__).resolve().parent / "ui"
IMMUTABLE = "public, max-age=31536000, immutable"
NO_CACHE = "no-cache"
NOT_BUILT = (
    "<!doctype html><title>genai-collector</title><p>The dashboard is not built. Run <code>make serve</code>, "
    "or <code>npm ci &amp;&amp; npm run build</code> in <code>dashboard/</code>. The API is at "
    '<a href="api/v1/docs">api/v1/docs</a>.</p>'
)


def with_base(index_html: str, path: str) -> str:
    """``index.html`` for ``path`` (relative to the app's root), with a ``<base>`` pointing at that root."""
    base = "../" * path.count("/") or "./"
    return index_html.replace("<head>", f'<head><base href="{base}">', 1)


class DashboardFiles(StaticFiles):
    """Static files with the single-page app's fallback and cache headers."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        if path == "api" or path.startswith("api/"):
            raise HTTPException(404, f"no such API path: /{path}")
        if path.startswith("assets/"):
            response = await super().get_response(path, scope)
            response.headers["Cache-Control"] = IMMUTABLE
            return response
        if path not in (".", "", "index.html") and "." in path.rsplit("/", 1)[-1]:
            try:
                response = await super().get_response(path, scope)
            except HTTPException:
                pass
            else:
                response.headers["Cache-Control"] = NO_CACHE
                return response
        index = Path(str(self.directory)) / "index.html"
        page = with_base(index.read_text(encoding="utf-8"), _route_path(scope))
        return HTMLResponse(page, headers={"Cache-Control": NO_CACHE})


def _route_path(scope: Scope) -> str:
    """The request's path below the app's root, trailing slash kept (``get_response``'s path is normalized)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return (path[len(root) :] if root and path.startswith(root) else path).lstrip("/")


def mount_dashboard(app: FastAPI, bundle: Path) -> bool:
    """Serve the bundle at ``/`` after every route already added; without a bundle, say so once."""
    if not (bundle / "index.html").is_file():
        log.warning(
            "dashboard not served: no build in %s (run `make serve`, or `npm ci && npm run build` in dashboard/); "
            "the query API works without it",
            bundle,
        )

        @app.get("/", include_in_schema=False)
        async def not_built() -> HTMLResponse:
            return HTMLResponse(NOT_BUILT, status_code=404, headers={"Cache-Control": NO_CACHE})

        return False
    app.mount("/", DashboardFiles(directory=bundle), name="dashboard")
    return True
