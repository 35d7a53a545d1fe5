"""The daemon's settings: one frozen, validated object built once at start-up.

Every option exists under one name in three places: a key of the YAML config file,
an environment variable ``GENAI_COLLECTOR_<NAME>`` and a flag ``--<name>`` (see ``cli.py``).
A bad value stops the daemon before it binds a port, with a message naming the option.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ByteSize,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: Any) -> float:
    """Seconds from ``250ms``, ``10s``, ``5m``, ``1h``, ``7d`` or a bare number of seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 250ms, 10s or 5m")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"{value!r} is not a duration; write it as 250ms, 10s, 5m, 1h or 7d")
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


RedactionMode = Literal["mask", "hash", "drop"]
DETECTORS = ("email", "phone", "card", "iban", "ssn", "ipv4", "ipv6", "secret")
RedactionScope = Literal["all", "content"]


class Section(BaseModel):
    """A nested group of options (a mapping in the file; GENAI_COLLECTOR_<SECTION>__<OPTION> in the environment)."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)


class RedactionRule(Section):
    """A user-defined pattern: every match in content is masked, hashed, or the attribute is dropped."""

    name: str = Field(pattern=r"^[a-z0-9_]+$", description="Rule name, used in markers and metrics.")
    pattern: str = Field(description="Python regular expression.")
    mode: RedactionMode = "mask"

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, pattern: str) -> str:
        try:
            re.compile(pattern)
        except re.error as error:
            raise ValueError(f"not a valid regular expression: {error}") from None
        return pattern


class RedactionSettings(Section):
    enabled: bool = Field(True, description="Redact PII and secrets before storing anything.")
    scope: RedactionScope = Field(
        "all",
        description="all: every stored string (attributes of spans, events, links, logs and resources, span "
        "names, status messages, log bodies); content: prompt and completion content only.",
    )
    allow_keys: tuple[str, ...] = Field(
        (),
        description="Attribute keys never scanned, added to the built-in list of ids, model names, enums and "
        "token counts; a trailing * makes a prefix (myapp.ids.*).",
    )
    capture_content: bool = Field(
        True, description="Keep prompt and completion content at all; false drops every content attribute."
    )
    mode: RedactionMode = Field("mask", description="Mode of the built-in detectors.")
    detectors: dict[str, RedactionMode | Literal["off"]] = Field(
        default_factory=dict,
        description="Per-detector mode (email, phone, card, iban, ssn, ipv4, ipv6, secret) or off.",
    )
    rules: tuple[RedactionRule, ...] = Field((), description="User-defined rules, applied after the detectors.")
    hash_key: SecretStr | None = Field(
        None, description="Key of the keyed hash (hash mode); required when any detector or rule hashes."
    )

    @field_validator("allow_keys", mode="before")
    @classmethod
    def _comma_separated(cls, keys: Any) -> Any:
        """From the environment (GENAI_COLLECTOR_REDACTION__ALLOW_KEYS) the keys come comma-separated."""
        if isinstance(keys, str):
            return tuple(key.strip() for key in keys.split(",") if key.strip())
        return keys

    @field_validator("detectors", mode="before")
    @classmethod
    def _yaml_off(cls, detectors: Any) -> Any:
        """YAML 1.1 reads an unquoted ``off`` as false: take it as the word the user wrote."""
        if isinstance(detectors, dict):
            return {name: "off" if mode is False else mode for name, mode in detectors.items()}
        return detectors

    @field_validator("detectors")
    @classmethod
    def _known_detectors(cls, detectors: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(detectors) - set(DETECTORS))
        if unknown:
            raise ValueError(f"unknown detector {', '.join(unknown)}; known: {', '.join(DETECTORS)}")
        return detectors

    @field_validator("hash_key")
    @classmethod
    def _long_enough(cls, key: SecretStr | None) -> SecretStr | None:
        if key is not None and len(key.get_secret_value()) < 16:
            raise ValueError("hash_key must be at least 16 characters, or hashed phone numbers can be guessed back")
        return key

    @field_validator("rules")
    @classmethod
    def _distinct_rule_names(cls, rules: tuple[RedactionRule, ...]) -> tuple[RedactionRule, ...]:
        names = [rule.name for rule in rules]
        taken = set(DETECTORS) | {"content_dropped"}
        for name in names:
            if name in taken or names.count(name) > 1:
                raise ValueError(f"rule name {name!r} is used twice or by a built-in detector; names must be unique")
        return rules

    @model_validator(mode="after")
    def _hash_needs_key(self) -> RedactionSettings:
        modes = {self.mode, *self.detectors.values(), *(rule.mode for rule in self.rules)}
        if self.enabled and "hash" in modes and self.hash_key is None:
            raise ValueError("hash mode needs redaction.hash_key (or GENAI_COLLECTOR_REDACTION__HASH_KEY)")
        return self


class ModelPrice(Section):
    """USD per million tokens; cache prices default to the input price when not given."""

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cache_read: float | None = Field(None, ge=0)
    cache_write: float | None = Field(None, ge=0)


class PricingSettings(Section):
    models: dict[str, ModelPrice] = Field(
        default_factory=dict,
        description="Prices that extend or override the shipped table, keyed by model name "
        "(optionally provider/model).",
    )


class LimitsSettings(Section):
    max_attribute_length: int = Field(
        65_536, ge=64, description="Longer string values are truncated, with a visible marker."
    )
    max_attributes: int = Field(256, ge=1, description="Attributes kept per span, event or log record.")
    max_events: int = Field(256, ge=0, description="Events kept per span.")


class LogsSettings(Section):
    keep_other: bool = Field(
        False, description="Store log records that are not GenAI events too (otherwise counted and dropped)."
    )


SNAPSHOT_METRICS = ("latency_ms", "cost_usd", "total_tokens", "error_count", "llm_calls", "ttft_ms")
EVAL_PREFIX = "eval:"


class SnapshotRule(Section):
    """A threshold on one trace metric, optionally scoped to a service, model or agent."""

    metric: str = Field(
        description="latency_ms, cost_usd, total_tokens, error_count, llm_calls, ttft_ms or eval:<name>"
    )
    above: float | None = Field(None, description="Breached when the value is greater than this.")
    below: float | None = Field(None, description="Breached when the value is less than this.")
    service: str | None = None
    model: str | None = None
    agent: str | None = None

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, metric: str) -> str:
        if metric in SNAPSHOT_METRICS or (metric.startswith(EVAL_PREFIX) and len(metric) > len(EVAL_PREFIX)):
            return metric
        raise ValueError(f"unknown metric {metric!r}; use one of {', '.join(SNAPSHOT_METRICS)} or eval:<name>")

    @model_validator(mode="after")
    def _one_comparison(self) -> SnapshotRule:
        if (self.above is None) == (self.below is None):
            raise ValueError(f"rule for {self.metric} needs exactly one of above or below")
        return self

    @property
    def scope(self) -> dict[str, str]:
        return {key: value for key in ("service", "model", "agent") if (value := getattr(self, key)) is not None}

    def describe(self) -> str:
        comparison = f"> {self.above:g}" if self.above is not None else f"< {self.below:g}"
        scope = ",".join(f"{key}={value}" for key, value in self.scope.items())
        return f"{self.metric} {comparison}" + (f" [{scope}]" if scope else "")


class SnapshotSettings(Section):
    settle_after: Duration = Field("10s", description="Quiet period after the root span before a trace settles.")
    max_wait: Duration = Field("5m", description="A trace without a root settles this long after its first span.")
    interval: Duration = Field("1s", description="How often the snapshot worker looks for settled traces.")
    rules: tuple[SnapshotRule, ...] = Field((), description="Thresholds; the most specific rule for a metric wins.")


MetricDimension = Literal["service", "agent", "tool", "category"]


class MetricsSettings(Section):
    max_label_values: int = Field(
        200, ge=1, description="Distinct values per label; later values fold into _other (counted)."
    )
    dimensions: tuple[MetricDimension, ...] = Field(
        (), description="Extra labels on the GenAI histograms, from: service, agent, tool, category."
    )


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
    session_ttl: Duration = Field("12h", description="How long a dashboard login lasts.")

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


class RetentionSettings(Section):
    """How much the database keeps: whole traces by age and by size; snapshots by their own age."""

    max_age: Duration = Field(
        "7d", description="Traces whose last span arrived longer ago are deleted, whole; 0 keeps them forever."
    )
    max_size: ByteSize | None = Field(
        None,
        description="Bound on the database files (main + WAL): past it the oldest traces are deleted "
        "down to low_water_mark; unset (or 0) means no bound, and a full disk refuses spans until space returns.",
    )
    low_water_mark: float = Field(
        0.9, ge=0.5, lt=1.0, description="Share of max_size that deletion by size brings the database back to."
    )
    snapshots_max_age: Duration = Field(
        "30d", description="metric_snapshots rows computed longer ago are deleted; 0 keeps them forever."
    )
    interval: Duration = Field("1s", description="How often the writer checks the age and size bounds.")

    @field_validator("max_size", mode="before")
    @classmethod
    def _zero_is_unset(cls, max_size: Any) -> Any:
        """``0`` or an empty value (as an environment variable can only say) means no bound."""
        return None if max_size in (0, "0", "") else max_size

    @field_validator("max_size")
    @classmethod
    def _large_enough(cls, max_size: ByteSize | None) -> ByteSize | None:
        if max_size is not None and max_size < 1024 * 1024:
            raise ValueError("max_size must be at least 1MiB (or unset for no bound)")
        return max_size

    @field_validator("interval")
    @classmethod
    def _positive(cls, interval: float) -> float:
        if interval <= 0:
            raise ValueError("interval must be more than 0")
        return interval


class QuerySettings(Section):
    """The query server: REST API, live feed and Jaeger-compatible API (docs/query-api.md)."""

    endpoint: Endpoint = Field(
        "127.0.0.1:16686",
        description="Query API listen address; any other than loopback needs a key with the read scope "
        "(or auth.allow_unauthenticated_reads).",
    )
    read_connections: int = Field(4, ge=1, le=32, description="Read-only database connections (queries at once).")
    statement_timeout: Duration = Field(
        "5s", description="A query running longer is stopped and refused as too broad (400)."
    )
    live_queue_limit: int = Field(
        256, ge=1, description="Live-feed messages held per client; past it the oldest are dropped."
    )
    live_send_timeout: Duration = Field(
        "10s", description="A live-feed client whose send takes longer is disconnected."
    )
    live_heartbeat: Duration = Field("15s", description="Interval of the live feed's heartbeat message.")
    dashboard: Path | None = Field(
        None, description="Directory of a built dashboard to serve at /; default: the one shipped in the package."
    )


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
    admin_endpoint: Endpoint = Field("127.0.0.1:8888", description="Admin listen address: /metrics, /healthz, /readyz.")
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
    body_read_timeout: Duration = Field(
        "30s", description="Time a client has to send an OTLP/HTTP request body; slower uploads get 408."
    )
    header_read_timeout: Duration = Field(
        "10s",
        description="Time a client has to send an OTLP/HTTP request's headers once it connects or starts "
        "a request; the connection is closed past it.",
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
