"""OpenTelemetry SDK exporters that store into the collector's SQLite file in-process, without a daemon.

``SQLiteSpanExporter`` (spans) and ``SQLiteLogRecordExporter`` (GenAI events, evaluations) store exactly
what the daemon stores: a batch is encoded into the OTLP request the SDK's OTLP exporters would send (with
the SDK's own encoder), then taken through the daemon's decode, transform (normalization, pricing,
redaction, limits) and writer: the same schema and migrations, rows and rollups, committed before
``export`` returns ``SUCCESS``. The span exporter settles quiet traces into ``metric_snapshots`` with the
daemon's settling code, every ``snapshots.interval`` and on ``force_flush`` and ``shutdown``.

The file may be open in a running daemon at the same time. SQLite lets one connection write at a time:
each writer waits up to ``busy_timeout`` for the other's transaction, so the two take turns, and an
export that cannot get the lock in time returns ``FAILURE`` (the SDK's processor then drops the batch).
A trace is settled once, by whichever writer finds it quiet first.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import apsw
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from collector.cli import read_config_file
from collector.config import ConfigError, Settings, load_settings, parse_duration
from collector.genai.transform import Transform
from collector.maintenance.settle import SETTLE_CHUNK, settle
from collector.model import Records
from collector.observability.logs import rate_limited
from collector.otlp import decode_log_records, decode_spans
from collector.storage.errors import StorageError
from collector.storage.sqlite.writer import SpanWriter

log = logging.getLogger(__name__)

DEFAULT_BUSY_TIMEOUT = "5s"


def exporter_settings(path: str | os.PathLike[str], config: str | os.PathLike[str] | None, **options: Any) -> Settings:
    """The daemon's ``Settings`` for an exporter: the config file's values, then ``options`` (an option
    given here replaces the file's, a section as a whole), then ``path`` as ``db``. Raises ``ConfigError``.

    The options that matter in-process are ``sqlite_synchronous``, ``redaction``, ``pricing``, ``limits``,
    ``logs`` and ``snapshots``; the rest are validated and ignored.
    """
    values = read_config_file(Path(config)) if config is not None else {}
    values.update(options)
    values["db"] = Path(path)
    return load_settings(values)


class _SQLiteExporter:
    """The write connection and the transform both exporters use.

    A lock serializes them: the SDK's processors export from their own threads (``SimpleSpanProcessor``
    from whichever thread ends a span) and the span exporter settles from its own.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        config: str | os.PathLike[str] | None = None,
        busy_timeout: float | str = DEFAULT_BUSY_TIMEOUT,
        **options: Any,
    ) -> None:
        self.settings = exporter_settings(path, config, **options)
        try:
            busy_timeout_ms = round(parse_duration(busy_timeout) * 1000)
        except ValueError as error:
            raise ConfigError(f"busy_timeout: {error}") from None
        self._transform = Transform(self.settings)
        self._lock = threading.Lock()
        self._shut_down = False
        db = self.settings.db
        if not isinstance(db, Path):
            raise ConfigError(f"db: the in-process exporter writes a SQLite file, not {db}")
        try:
            db.parent.mkdir(parents=True, exist_ok=True)
            self._writer = SpanWriter(db, synchronous=self.settings.sqlite_synchronous)
        except (OSError, apsw.Error) as error:
            raise ConfigError(f"db: cannot open {db} for writing: {error}") from None
        self._writer.connection.set_busy_timeout(busy_timeout_ms)

    def _store(self, transform: Callable[[Transform], Records], what: str) -> bool:
        """Transform and commit in one transaction; False (logged) when shut down or the database refuses."""
        with self._lock:
            if self._shut_down:
                rate_limited(log, logging.WARNING, "the %s exporter was used after shutdown: nothing stored", what)
                return False
            records = transform(self._transform)
            if not records.count:
                return True
            try:
                self._writer.write([records])
            except StorageError as error:
                rate_limited(log, logging.ERROR, "storing %ss in %s failed: %s", what, self.settings.db, error)
                return False
        return True

    def _close(self) -> bool:
        """Close the connection once; False when it was already closed."""
        with self._lock:
            if self._shut_down:
                return False
            self._shut_down = True
            self._writer.close()
            return True


class SQLiteSpanExporter(_SQLiteExporter, SpanExporter):
    """Stores the SDK's spans into a genai-collector database, as the daemon would.

    ``config`` is a YAML file of the daemon's options (``genai-collector serve --config``); keyword
    arguments are options too (``snapshots={"rules": [...]}``, ``redaction={"mode": "hash", ...}``) and
    win over the file. ``busy_timeout`` (``"5s"``, or seconds) is how long a write waits for another
    writer of the same file.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        config: str | os.PathLike[str] | None = None,
        busy_timeout: float | str = DEFAULT_BUSY_TIMEOUT,
        **options: Any,
    ) -> None:
        super().__init__(path, config=config, busy_timeout=busy_timeout, **options)
        self._stop = threading.Event()
        self._settler = threading.Thread(target=self._settle_periodically, name="sqlite-exporter-settle", daemon=True)
        self._settler.start()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """``SUCCESS`` once the spans are committed; ``FAILURE`` when the database refused them."""
        decoded, _ = decode_spans(encode_spans(spans))  # SDK spans always have valid ids: nothing is rejected
        stored = self._store(lambda transform: transform.spans(decoded)[0], "span")
        return SpanExportResult.SUCCESS if stored else SpanExportResult.FAILURE

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Every export is committed before it returns: settle the traces that are quiet by now."""
        return self._settle(timeout_millis / 1000)

    def shutdown(self) -> None:
        """Settle what is quiet, then close; later exports return ``FAILURE``. Safe to call twice.

        A trace still in its quiet period is left for the next exporter or daemon that opens the file.
        """
        self._stop.set()
        if self._settler is not threading.current_thread():
            self._settler.join()
        self._settle()
        self._close()

    def _settle_periodically(self) -> None:
        while not self._stop.wait(self.settings.snapshots.interval):
            self._settle()

    def _settle(self, timeout: float = -1) -> bool:
        """Settle the quiet traces; False when the lock or the database did not allow it (logged)."""
        if not self._lock.acquire(timeout=timeout):
            return False
        try:
            if self._shut_down:
                return True
            self._writer.flush()  # the latency histograms of the spans stored since the last time
            while len(settle(self._writer, self.settings.snapshots, limit=SETTLE_CHUNK)) == SETTLE_CHUNK:
                pass
            return True
        except StorageError as error:
            rate_limited(log, logging.ERROR, "settling traces in %s failed: %s", self.settings.db, error)
            return False
        finally:
            self._lock.release()


class SQLiteLogRecordExporter(_SQLiteExporter, LogRecordExporter):
    """Stores the SDK's log records that are GenAI events (and evaluations) as the daemon's ``/v1/logs``
    would; other records are dropped unless ``logs={"keep_other": True}``. Same arguments as
    ``SQLiteSpanExporter``."""

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        """``SUCCESS`` once the events are committed (or there were none to keep); ``FAILURE`` when the
        database refused them."""
        events, _ = decode_log_records(encode_logs(batch))
        stored = self._store(lambda transform: transform.log_events(events)[0], "log record")
        return LogRecordExportResult.SUCCESS if stored else LogRecordExportResult.FAILURE

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Every export is committed before it returns: nothing is pending."""
        return True

    def shutdown(self) -> None:
        """Close; later exports return ``FAILURE``. Safe to call twice."""
        self._close()
