"""Server TLS that follows its files: a certificate rotated on disk (cert-manager, a Secret update) is
served to the next connection, without a restart and without touching the connections already open.

uvicorn: one ``ssl.SSLContext`` whose SNI callback, called in every handshake (with or without a server
name), hands the connection a freshly loaded context when the files changed. gRPC: dynamic credentials
whose fetcher gRPC calls for each new connection. Either way a file caught half-written (a key that does
not match its certificate yet) keeps the previous certificate and is tried again at the next connection.
TLS 1.2 is the minimum; with a client CA, a client certificate it signed is required (mutual TLS).
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
from pathlib import Path

import grpc

from collector.config import TlsFiles
from collector.observability.logs import rate_limited

log = logging.getLogger(__name__)


class TlsError(Exception):
    """Certificate files that cannot be used; the message names the listener and the file."""


def _stamp(paths: list[Path]) -> tuple[tuple[int, int, int], ...]:
    """What changes when a file is replaced, rewritten or its Secret's symlink is swapped."""
    stamps = []
    for path in paths:
        try:
            stat = os.stat(path)
            stamps.append((stat.st_mtime_ns, stat.st_size, stat.st_ino))
        except OSError:
            stamps.append((0, 0, 0))
    return tuple(stamps)


class WatchedTls:
    """The files of one listener, loaded into a context again whenever their stamp changes."""

    def __init__(self, listener: str, files: TlsFiles) -> None:
        assert files.cert_file is not None and files.key_file is not None
        self.listener = listener
        self.cert_file, self.key_file, self.client_ca_file = files.cert_file, files.key_file, files.client_ca_file
        self._paths = [path for path in (self.cert_file, self.key_file, self.client_ca_file) if path is not None]
        self._lock = threading.Lock()
        self._stamp = _stamp(self._paths)
        try:
            for path in self._paths:
                path.read_bytes()  # a missing or unreadable file named before ssl's anonymous error
            self.context = self._load()
        except (OSError, ssl.SSLError) as error:
            raise TlsError(f"cannot serve TLS on {listener}: {_describe(error)}") from None
        self.context.sni_callback = self._on_client_hello
        self._current = self.context

    @property
    def mutual(self) -> bool:
        return self.client_ca_file is not None

    def _load(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert_file, self.key_file)
        if self.client_ca_file is not None:
            context.load_verify_locations(cafile=self.client_ca_file)
            context.verify_mode = ssl.CERT_REQUIRED
        return context

    def refreshed(self) -> ssl.SSLContext | None:
        """A newly loaded context when the files changed and load cleanly; None otherwise."""
        stamp = _stamp(self._paths)
        if stamp == self._stamp:
            return None
        with self._lock:
            if stamp == self._stamp:
                return None
            try:
                context = self._load()
            except (OSError, ssl.SSLError) as error:
                rate_limited(
                    log,
                    logging.WARNING,
                    "%s: new TLS files not loaded, still serving the previous ones: %s",
                    self.listener,
                    _describe(error),
                )
                return None
            self._stamp = stamp
            log.info("%s: TLS certificate reloaded from %s", self.listener, self.cert_file)
            return context

    def _on_client_hello(self, connection: ssl.SSLObject, server_name: str | None, context: ssl.SSLContext) -> None:
        fresh = self.refreshed()
        if fresh is not None:
            self._current = fresh
        if self._current is not self.context:
            connection.context = self._current

    def grpc_credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(
            self._grpc_configuration(),
            self._grpc_fetch,  # type: ignore[arg-type]  # None means "no change" (grpc's docs; not in grpc-stubs)
            require_client_authentication=self.mutual,
        )

    def _grpc_configuration(self) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration(
            [(self.key_file.read_bytes(), self.cert_file.read_bytes())],
            root_certificates=self.client_ca_file.read_bytes() if self.client_ca_file else None,
        )

    def _grpc_fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """Called by gRPC for each new connection: None keeps the certificate it has."""
        if self.refreshed() is None:
            return None
        try:
            return self._grpc_configuration()
        except OSError as error:
            rate_limited(log, logging.WARNING, "%s: cannot read new TLS files: %s", self.listener, _describe(error))
            return None


def _describe(error: Exception) -> str:
    if isinstance(error, ssl.SSLError):
        return f"{error.reason or error} (is the key the certificate's, and are both PEM?)"
    if isinstance(error, OSError) and error.filename:
        return f"{error.filename}: {(error.strerror or str(error)).lower()}"
    return str(error)
