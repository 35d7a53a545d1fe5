"""The daemon's settings: one frozen, validated object built once at start-up, one model per section.

Every option exists under one name in three places: a key of the YAML config file,
an environment variable ``GENAI_COLLECTOR_<NAME>`` and a flag ``--<name>`` (see ``cli.py``).
A bad value stops the daemon before it binds a port, with a message naming the option.
"""

from collector.config.auth import LISTENERS, MIN_KEY_LENGTH, ApiKey, AuthSettings, Scope
from collector.config.base import Duration, Section, parse_duration
from collector.config.ingest import IngestSettings
from collector.config.limits import LimitsSettings
from collector.config.logs import LogsSettings
from collector.config.metrics import MetricDimension, MetricsSettings
from collector.config.pricing import ModelPrice, PricingSettings
from collector.config.query import QuerySettings
from collector.config.redaction import DETECTORS, RedactionMode, RedactionRule, RedactionScope, RedactionSettings
from collector.config.retention import RetentionSettings
from collector.config.server import Endpoint, Listener, ServerLimits, ServerSettings
from collector.config.settings import ConfigError, Settings, load_settings
from collector.config.snapshots import EVAL_PREFIX, SNAPSHOT_METRICS, SnapshotRule, SnapshotSettings
from collector.config.tls import ListenerTls, TlsFiles, TlsSettings

__all__ = [
    "DETECTORS",
    "EVAL_PREFIX",
    "LISTENERS",
    "MIN_KEY_LENGTH",
    "SNAPSHOT_METRICS",
    "ApiKey",
    "AuthSettings",
    "ConfigError",
    "Duration",
    "Endpoint",
    "IngestSettings",
    "LimitsSettings",
    "Listener",
    "ListenerTls",
    "LogsSettings",
    "MetricDimension",
    "MetricsSettings",
    "ModelPrice",
    "PricingSettings",
    "QuerySettings",
    "RedactionMode",
    "RedactionRule",
    "RedactionScope",
    "RedactionSettings",
    "RetentionSettings",
    "Scope",
    "Section",
    "ServerLimits",
    "ServerSettings",
    "Settings",
    "SnapshotRule",
    "SnapshotSettings",
    "TlsFiles",
    "TlsSettings",
    "load_settings",
    "parse_duration",
]
