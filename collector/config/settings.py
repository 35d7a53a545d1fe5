"""``Settings``: every section and top-level option in one frozen object, validated once at start-up."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ByteSize,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from collector.config.auth import AuthSettings, Scope
from collector.config.base import Duration, parsed
from collector.config.ingest import IngestSettings
from collector.config.limits import LimitsSettings
from collector.config.logs import LogsSettings
from collector.config.metrics import MetricsSettings
from collector.config.pricing import PricingSettings
from collector.config.query import QuerySettings
from collector.config.redaction import RedactionSettings
from collector.config.retention import RetentionSettings
from collector.config.server import Endpoint, Listener, ServerLimits, ServerSettings
from collector.config.snapshots import SnapshotSettings
from collector.config.tls import TlsSettings

_SERVER_URL = re.compile(r"^(?!sqlite:)[A-Za-z][A-Za-z0-9+.-]+://", re.IGNORECASE)
# sqlite:PATH or sqlite://PATH: the path as written, after the URL's empty authority (``//``)
_SQLITE_URL = re.compile(r"^sqlite:(?://)?", re.IGNORECASE)


class Settings(BaseModel):
    """Everything the daemon can be told. Field descriptions are the reference in the README."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    db: Path | str = Field(
        Path("data/genai-collector.db"),
        description=(
            "SQLite database file (its directory is created if missing), as a path or a sqlite: URL (sqlite:data/x.db "
            "and sqlite://./x.db are relative, sqlite:///var/lib/x.db absolute), or a PostgreSQL URL "
            "(postgresql://user@host/dbname?sslmode=require; libpq's PG* environment variables fill in the rest)."
        ),
    )

    @field_validator("db", mode="before")
    @classmethod
    def _database_url_kept_whole(cls, value: Any) -> Path | str:
        """A database server's URL stays a string (a path would fold its ``//``); a ``sqlite:`` URL is the path
        after its scheme and empty authority (``sqlite:///var/lib/x.db`` is absolute, ``sqlite://data/x.db``
        relative); anything else is a file path."""
        if isinstance(value, str) and _SERVER_URL.match(value):
            return value
        if isinstance(value, str) and (url := _SQLITE_URL.match(value)):
            if not value[url.end() :]:
                raise ValueError(f"{value!r} names no database file; write sqlite:PATH, e.g. sqlite:data/spans.db")
            return Path(value[url.end() :])
        return Path(value)

    grpc_endpoint: Endpoint = parsed(
        "127.0.0.1:4317", "OTLP/gRPC listen address (HOST:PORT, port 0 picks a free port)."
    )
    http_endpoint: Endpoint = parsed(
        "127.0.0.1:4318", "OTLP/HTTP listen address (POST /v1/traces, /v1/logs, /v1/metrics)."
    )
    admin_endpoint: Endpoint = parsed("127.0.0.1:8888", "Admin listen address: /metrics, /healthz, /readyz.")
    queue_capacity: int = Field(
        20_000,
        ge=1,
        description="Spans held in memory between acceptance and commit; past it requests get 503 / UNAVAILABLE.",
    )
    max_concurrent_requests: int = Field(
        64,
        ge=1,
        description="Export requests in progress at once; past it requests get 503 / UNAVAILABLE before being read.",
    )
    max_spans_per_request: int = Field(
        10_000,
        ge=1,
        description="Spans one export request may carry; more get 413 / RESOURCE_EXHAUSTED (not retried), "
        "which bounds the memory one request costs whatever its spans' size.",
    )
    body_read_timeout: Duration = parsed(
        "30s", "Time a client has to send an OTLP/HTTP request body; slower uploads get 408."
    )
    header_read_timeout: Duration = parsed(
        "10s",
        "Time a client has to send an OTLP/HTTP request's headers once it connects or starts "
        "a request; the connection is closed past it.",
    )
    batch_size: int = Field(2_000, ge=1, description="Spans per SQLite transaction at most.")
    batch_max_age: Duration = parsed(
        "10ms", "How long the oldest waiting span may wait for a fuller batch before a commit."
    )
    max_request_size: ByteSize = parsed(
        "20MiB", "OTLP/HTTP body limit, applied after decompression; larger bodies get 413."
    )
    grpc_max_receive_size: ByteSize = parsed(
        "16MiB", "OTLP/gRPC message limit; larger messages get RESOURCE_EXHAUSTED."
    )
    retry_after: Duration = parsed("1s", "Back-off hint sent with 503 (Retry-After) and UNAVAILABLE (RetryInfo).")
    shutdown_timeout: Duration = parsed("10s", "On SIGTERM/SIGINT, how long to drain the queue before exiting.")
    sqlite_synchronous: Literal["normal", "full"] = Field(
        "full",
        description="SQLite synchronous mode: full fsyncs every commit (survives power loss); "
        "normal survives a process crash but not a power cut.",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="Log level.")
    log_format: Literal["text", "json"] = Field("text", description="Log line format.")
    cors_origins: tuple[str, ...] = Field(
        (),
        description="Origins allowed to POST OTLP/HTTP from a browser (comma-separated in env and flags); "
        "empty turns CORS off.",
    )

    redaction: RedactionSettings = Field(default_factory=RedactionSettings, description="PII redaction.")
    pricing: PricingSettings = Field(default_factory=PricingSettings, description="Token prices.")
    limits: LimitsSettings = Field(default_factory=LimitsSettings, description="Per-span size limits.")
    logs: LogsSettings = Field(default_factory=LogsSettings, description="OTLP log records.")
    snapshots: SnapshotSettings = Field(default_factory=SnapshotSettings, description="Trace thresholds.")
    metrics: MetricsSettings = Field(default_factory=MetricsSettings, description="Prometheus GenAI metrics.")
    auth: AuthSettings = Field(default_factory=AuthSettings, description="API keys and their scopes.")
    tls: TlsSettings = Field(default_factory=TlsSettings, description="TLS on every listener.")
    retention: RetentionSettings = Field(
        default_factory=RetentionSettings, description="What the database keeps: by age and by size."
    )
    query: QuerySettings = Field(default_factory=QuerySettings, description="Query API server.")
    ingest: IngestSettings = Field(default_factory=IngestSettings, description="Ingest processes.")

    @model_validator(mode="after")
    def _check_combinations(self) -> Settings:
        if self.batch_size > self.queue_capacity:
            raise ValueError(f"batch_size ({self.batch_size}) cannot exceed queue_capacity ({self.queue_capacity})")
        if self.body_read_timeout <= 0 or self.header_read_timeout <= 0:
            raise ValueError("body_read_timeout and header_read_timeout must be more than 0")
        if self.max_request_size < 1024:
            raise ValueError("max_request_size must be at least 1KiB")
        if self.grpc_max_receive_size < 1024:
            raise ValueError("grpc_max_receive_size must be at least 1KiB")
        ports = [e.port for e in (self.grpc_endpoint, self.http_endpoint, self.admin_endpoint) if e.port]
        if len(ports) != len(set(ports)):
            raise ValueError("grpc_endpoint, http_endpoint and admin_endpoint must use different ports")
        if self.query.endpoint.port in ports:
            raise ValueError("query.endpoint must use a port of its own (not one of the other endpoints')")
        return self

    @property
    def servers(self) -> dict[Listener, ServerSettings]:
        """Every listener in the one shape they share, in the order the service starts them."""
        ingest: Scope | None = "ingest" if self.auth.scoped("ingest") else None
        reads_open = not self.auth.scoped("read") or self.auth.allow_unauthenticated_reads
        otlp_limits = {"max_concurrent_requests": self.max_concurrent_requests}
        return {
            "otlp_grpc": self._server(
                "otlp_grpc",
                "grpc_endpoint",
                self.grpc_endpoint,
                ServerLimits(max_request_size=self.grpc_max_receive_size, **otlp_limits),
                ingest,
            ),
            "otlp_http": self._server(
                "otlp_http",
                "http_endpoint",
                self.http_endpoint,
                ServerLimits(
                    max_request_size=self.max_request_size,
                    header_read_timeout=self.header_read_timeout,
                    body_read_timeout=self.body_read_timeout,
                    **otlp_limits,
                ),
                ingest,
            ),
            "admin": self._server(
                "admin",
                "admin_endpoint",
                self.admin_endpoint,
                ServerLimits(),
                "admin" if self.auth.protect_metrics else None,
            ),
            "query": self._server(
                "query", "query.endpoint", self.query.endpoint, ServerLimits(), None if reads_open else "read"
            ),
        }

    def _server(
        self, name: Listener, option: str, endpoint: Endpoint, limits: ServerLimits, auth: Scope | None
    ) -> ServerSettings:
        return ServerSettings(
            name=name, option=option, endpoint=endpoint, limits=limits, tls=self.tls.for_listener(name), auth=auth
        )


class ConfigError(Exception):
    """A configuration the daemon refuses to start with; the message says which option and why."""


def load_settings(values: dict[str, Any]) -> Settings:
    """Validate merged option values into ``Settings``, turning pydantic's errors into one clear message."""
    try:
        return Settings.model_validate(values)
    except ValidationError as error:
        problems = []
        for item in error.errors():
            where = ".".join(str(part) for part in item["loc"]) or "config"
            message = item["msg"].removeprefix("Value error, ")
            if item["type"] == "extra_forbidden":
                message = "unknown option (check the spelling; `genai-collector check-config` prints every option)"
            problems.append(f"{where}: {message}")
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None
