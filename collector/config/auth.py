"""``auth``: API keys, their scopes, and how failures and dashboard sessions are bounded."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from collector.config.base import Duration, Section, parsed

Scope = Literal["ingest", "read", "admin"]
MIN_KEY_LENGTH = 16
LISTENERS = ("otlp_grpc", "otlp_http", "admin")  # the query server adds "query"


class ApiKey(Section):
    """One API key: a name for logs and metrics, the secret in one of three forms, and what it may do."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="Shown in logs and metrics, never the key.")
    key: SecretStr | None = Field(None, description="The key itself (at least 16 characters).")
    key_sha256: str | None = Field(None, description="The key's SHA-256 digest in hex, so the file holds no secret.")
    key_file: Path | None = Field(
        None, description="A file holding the key (a mounted Kubernetes Secret), read at start."
    )
    scopes: tuple[Scope, ...] = Field(min_length=1, description="ingest (OTLP), read (query API), admin (/metrics).")

    @field_validator("key")
    @classmethod
    def _long_enough(cls, key: SecretStr | None) -> SecretStr | None:
        if key is not None and len(key.get_secret_value()) < MIN_KEY_LENGTH:
            raise ValueError(f"a key must be at least {MIN_KEY_LENGTH} characters (try `openssl rand -hex 24`)")
        return key

    @field_validator("key_sha256")
    @classmethod
    def _hex_digest(cls, digest: str | None) -> str | None:
        if digest is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", digest.strip()):
            raise ValueError("key_sha256 must be 64 hex digits (`printf %s KEY | sha256sum`)")
        return digest.strip().lower() if digest is not None else None

    @model_validator(mode="after")
    def _one_secret(self) -> ApiKey:
        given = [form for form in ("key", "key_sha256", "key_file") if getattr(self, form) is not None]
        if len(given) != 1:
            raise ValueError(f"api key {self.name!r} needs exactly one of key, key_sha256 or key_file")
        return self


class AuthSettings(Section):
    api_keys: tuple[ApiKey, ...] = Field(
        (), description="API keys; a scope is enforced on its listeners as soon as one key carries it."
    )
    protect_metrics: bool = Field(False, description="Require a key with the admin scope on /metrics.")
    allow_unauthenticated_reads: bool = Field(
        False, description="Serve the query API without a key, even on a non-loopback address."
    )
    max_failures_per_minute: int = Field(
        30, ge=0, description="Requests with a wrong key one address may send per minute; then 429 (0: no limit)."
    )
    session_ttl: Duration = parsed("12h", "How long a dashboard login lasts.")

    @field_validator("api_keys", mode="before")
    @classmethod
    def _yaml_text(cls, keys: Any) -> Any:
        """From the environment (GENAI_COLLECTOR_AUTH__API_KEYS) the list arrives as YAML or JSON text."""
        if isinstance(keys, str):
            try:
                return yaml.safe_load(keys) or ()
            except yaml.YAMLError:
                raise ValueError("not a YAML or JSON list of keys") from None
        return keys

    @field_validator("api_keys")
    @classmethod
    def _distinct_names(cls, keys: tuple[ApiKey, ...]) -> tuple[ApiKey, ...]:
        names = [key.name for key in keys]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"api key name {name!r} is used twice; names must be unique")
        return keys

    @model_validator(mode="after")
    def _metrics_need_admin(self) -> AuthSettings:
        if self.protect_metrics and not self.scoped("admin"):
            raise ValueError("protect_metrics needs an api key with the admin scope, or nobody could scrape /metrics")
        return self

    def scoped(self, scope: Scope) -> bool:
        return any(scope in key.scopes for key in self.api_keys)
