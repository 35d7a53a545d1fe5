"""Safe defaults: a listener anyone on the network can use is named in a warning at start."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tests.auth.test_otlp_auth import API_KEYS

EVERY_INTERFACE = "0.0.0.0:0"


def warnings_of(caplog: pytest.LogCaptureFixture) -> str:
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and r.name.startswith("collector.auth")]
    return "\n".join(record.getMessage() for record in warnings)


def test_open_listeners_on_every_interface_are_named(start_collector: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    start_collector(grpc_endpoint=EVERY_INTERFACE, admin_endpoint=EVERY_INTERFACE)
    logged = warnings_of(caplog)
    assert "otlp_grpc listens on 0.0.0.0:0 with no API key" in logged
    assert "admin listens on 0.0.0.0:0 with no API key" in logged
    assert "otlp_http" not in logged  # on loopback


def test_guarded_listeners_are_not_named(start_collector: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    start_collector(
        grpc_endpoint=EVERY_INTERFACE,
        http_endpoint=EVERY_INTERFACE,
        admin_endpoint=EVERY_INTERFACE,
        auth={"api_keys": API_KEYS},
    )
    assert warnings_of(caplog) == ""
