"""Logging: one line per event, text or JSON, and rate-limited lines for hot failure paths."""

from __future__ import annotations

import logging
import sys
import threading
import time

from pythonjsonlogger.json import JsonFormatter

RATE_LIMIT_SECONDS = 10.0

_last_logged: dict[tuple[str, str], float] = {}
_suppressed: dict[tuple[str, str], int] = {}
_lock = threading.Lock()


def configure(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(
            JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s", rename_fields={"levelname": "level"})
        )
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("uvicorn.error", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def rate_limited(logger: logging.Logger, level: int, template: str, *args: object) -> None:
    """Log at most once per ``RATE_LIMIT_SECONDS`` per (logger, template); say how many were held back."""
    key = (logger.name, template)
    now = time.monotonic()
    with _lock:
        if now - _last_logged.get(key, -RATE_LIMIT_SECONDS) < RATE_LIMIT_SECONDS:
            _suppressed[key] = _suppressed.get(key, 0) + 1
            return
        _last_logged[key] = now
        held_back = _suppressed.pop(key, 0)
    if held_back:
        template += f" ({held_back} similar messages suppressed)"
    logger.log(level, template, *args)
