"""The listen address and the shape every listener is configured by."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    model_serializer,
    model_validator,
)

from collector.config.auth import Scope
from collector.config.base import Section
from collector.config.tls import TlsFiles


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


Listener = Literal["otlp_grpc", "otlp_http", "admin", "query"]


class ServerLimits(Section):
    """What one client may cost a listener; None where the listener has no such bound."""

    max_request_size: int | None = Field(None, description="Bytes of one request (after decompression) or message.")
    max_concurrent_requests: int | None = Field(None, description="Requests in progress at once.")
    header_read_timeout: float | None = Field(None, description="Seconds a client has to send a request's headers.")
    body_read_timeout: float | None = Field(None, description="Seconds a client has to send a request's body.")


class ServerSettings(Section):
    """One listener, in the shape every listener shares: where it listens, what a request may cost, the TLS
    files it serves (None: plaintext) and the scope a key needs on its guarded paths (None: open).

    Built by ``Settings.servers`` from the options users write (``grpc_endpoint``, ``tls.otlp_grpc``...),
    which stay where they are."""

    name: Listener
    option: str = Field(description="The option that sets the endpoint, as error messages name it.")
    endpoint: Endpoint
    limits: ServerLimits = Field(default_factory=ServerLimits)
    tls: TlsFiles | None = None
    auth: Scope | None = None
