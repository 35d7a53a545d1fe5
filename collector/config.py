"""The daemon's settings: one frozen, validated object built once at start-up.

Every option exists under one name in three places: a key of the YAML config file,
an environment variable ``GENAI_COLLECTOR_<NAME>`` and a flag ``--<name>`` (see ``cli.py``).
A bad value stops the daemon before it binds a port, with a message naming the option.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ByteSize,
    ConfigDict,
    Field,
    ValidationError,
    model_serializer,
    model_validator,
)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(value: Any) -> float:
    """Seconds from ``250ms``, ``10s``, ``5m``, ``1h`` or a bare number of seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 250ms, 10s or 5m")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"{value!r} is not a duration; write it as 250ms, 10s, 5m or 1h")
        seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]


class Endpoint(BaseModel):
    """A ``HOST:PORT`` listen address; port 0 asks the kernel for a free port."""

    model_config = ConfigDict(frozen=True)

    host: str
    port: int = Field(ge=0, le=65535)

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        host, sep, port = value.strip().rpartition(":")
        if not sep or not port.isdigit():
            raise ValueError(f"{value!r} is not HOST:PORT (for example 127.0.0.1:4318 or [::]:4318)")
        host = host.strip("[]")
        if not host:
            raise ValueError(f"{value!r} has no host; use 0.0.0.0 to listen on every interface")
        return {"host": host, "port": int(port)}

    @model_serializer
    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


class Settings(BaseModel):
    """Everything the daemon can be told. Field descriptions are the reference in the README."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    db: Path = Field(
        Path("data/genai-collector.db"),
        description="SQLite database file; its directory is created if missing.",
    )
    grpc_endpoint: Endpoint = Field(
        "127.0.0.1:4317", description="OTLP/gRPC listen address (HOST:PORT, port 0 picks a free port)."
    )
    http_endpoint: Endpoint = Field(
        "127.0.0.1:4318", description="OTLP/HTTP listen address (POST /v1/traces, /v1/logs, /v1/metrics)."
    )
    admin_endpoint: Endpoint = Field(
        "127.0.0.1:8888", description="Admin listen address: /metrics, /healthz, /readyz."
    )
    queue_capacity: int = Field(
        20_000,
        ge=1,
        description="Spans held in memory between acceptance and commit; past it requests get 503 / UNAVAILABLE.",
    )
    batch_size: int = Field(2_000, ge=1, description="Spans per SQLite transaction at most.")
    batch_max_age: Duration = Field(
        "10ms", description="How long the oldest waiting span may wait for a fuller batch before a commit."
    )
    max_request_size: ByteSize = Field(
        "20MiB", description="OTLP/HTTP body limit, applied after decompression; larger bodies get 413."
    )
    grpc_max_receive_size: ByteSize = Field(
        "16MiB", description="OTLP/gRPC message limit; larger messages get RESOURCE_EXHAUSTED."
    )
    retry_after: Duration = Field(
        "1s", description="Back-off hint sent with 503 (Retry-After) and UNAVAILABLE (RetryInfo)."
    )
    shutdown_timeout: Duration = Field(
        "10s", description="On SIGTERM/SIGINT, how long to drain the queue before exiting."
    )
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

    @model_validator(mode="after")
    def _check_combinations(self) -> Settings:
        if self.batch_size > self.queue_capacity:
            raise ValueError(
                f"batch_size ({self.batch_size}) cannot exceed queue_capacity ({self.queue_capacity})"
            )
        if self.max_request_size < 1024:
            raise ValueError("max_request_size must be at least 1KiB")
        if self.grpc_max_receive_size < 1024:
            raise ValueError("grpc_max_receive_size must be at least 1KiB")
        ports = [e.port for e in (self.grpc_endpoint, self.http_endpoint, self.admin_endpoint) if e.port]
        if len(ports) != len(set(ports)):
            raise ValueError("grpc_endpoint, http_endpoint and admin_endpoint must use different ports")
        return self


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
            problems.append(f"{where}: {message}")
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None
