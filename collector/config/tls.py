"""``tls``: certificates for every listener, overridable per listener."""

from __future__ import annotations

from pathlib import Path

from pydantic import (
    Field,
    model_validator,
)

from collector.config.auth import LISTENERS
from collector.config.base import Section


class TlsFiles(Section):
    cert_file: Path | None = Field(None, description="PEM certificate chain served to clients.")
    key_file: Path | None = Field(None, description="PEM private key of the certificate.")
    client_ca_file: Path | None = Field(
        None, description="PEM CA bundle; when set, clients must present a certificate it signed (mutual TLS)."
    )


class ListenerTls(TlsFiles):
    """One listener's TLS: any file given here replaces the top-level one; enabled: false serves plaintext."""

    enabled: bool = True


class TlsSettings(TlsFiles):
    """TLS for every listener (files reloaded when they change), overridable per listener."""

    otlp_grpc: ListenerTls = Field(default_factory=ListenerTls)
    otlp_http: ListenerTls = Field(default_factory=ListenerTls)
    admin: ListenerTls = Field(default_factory=ListenerTls)
    query: ListenerTls = Field(default_factory=ListenerTls)

    @model_validator(mode="after")
    def _pairs(self) -> TlsSettings:
        for listener in (*LISTENERS, "query"):
            files = self.for_listener(listener)
            if files is not None and (files.cert_file is None or files.key_file is None):
                raise ValueError(f"tls for {listener} needs both cert_file and key_file")
        return self

    def for_listener(self, listener: str) -> TlsFiles | None:
        """The files a listener serves TLS with, or None for plaintext."""
        override: ListenerTls = getattr(self, listener)
        if not override.enabled:
            return None
        files = {
            name: getattr(override, name) if getattr(override, name) is not None else getattr(self, name)
            for name in TlsFiles.model_fields
        }
        if files["cert_file"] is None and files["key_file"] is None and files["client_ca_file"] is None:
            return None
        return TlsFiles(**files)
