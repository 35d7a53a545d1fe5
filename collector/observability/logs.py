"""Logging: one line per event, text or JSON, rate-limited lines for hot failure paths, and outages told once."""

from __future__ import annotations

import logging
import sys
import threading
import time

from pythonjsonlogger.json import JsonFormatter

RATE_LIMIT_SECONDS = 10.0
OUTAGE_REPEAT_SECONDS = 60.0  # how often an ``Outage`` says it still lasts

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


class Outage:
    """Something the collector keeps trying to reach while it is away (a database, from a pool or a listener), logged
    as an operator wants to read it: the first failure, then at most once every ``OUTAGE_REPEAT_SECONDS`` how long
    it has lasted, and once when it is back; not a line per attempt. Safe to call from several threads."""

    def __init__(self, logger: logging.Logger, what: str) -> None:
        self._logger = logger
        self.what = what
        self.failures = 0  # attempts failed since it went away
        self._since: float | None = None
        self._logged = 0.0
        self._lock = threading.Lock()

    def failed(self, error: object) -> None:
        now = time.monotonic()
        args: tuple[object, ...]
        with self._lock:
            self.failures += 1
            if self._since is None:
                self._since = self._logged = now
                template, args = "%s unreachable, trying again: %s", (self.what, error)
            elif now - self._logged >= OUTAGE_REPEAT_SECONDS:
                self._logged = now
                template, args = "%s still unreachable for %d s: %s", (self.what, now - self._since, error)
            else:
                return
        self._logger.warning(template, *args)

    def reached(self) -> None:
        with self._lock:
            if self._since is None:
                return
            lasted = time.monotonic() - self._since
            self._since = None
            self.failures = 0
        self._logger.info("%s reachable again after %d s", self.what, lasted)
