"""The auth and tls sections: the three ways to give a key, and the combinations refused at start-up."""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path
from typing import Any

import pytest

from collector.auth.keys import KeyFileError, KeyRing
from collector.cli import merge_sources
from collector.config import ConfigError, load_settings

KEY = "checkout-key-0123456789abcdef"


def settings_from_file(tmp_path: Path, text: str, environ: dict[str, str]) -> Any:
    path = tmp_path / "collector.yaml"
    path.write_text(text)
    return load_settings(merge_sources(argparse.Namespace(config=path), environ))


def test_a_key_in_the_file_can_come_from_an_environment_variable(tmp_path: Path) -> None:
    settings = settings_from_file(
        tmp_path,
        "auth:\n  api_keys:\n    - {name: checkout-app, key: '${CHECKOUT_KEY}', scopes: [ingest]}\n"
        "redaction:\n  rules: [{name: price, pattern: 'costs $${AMOUNT}'}]\n",
        {"CHECKOUT_KEY": KEY},
    )
    assert settings.auth.api_keys[0].key.get_secret_value() == KEY
    assert settings.redaction.rules[0].pattern == "costs ${AMOUNT}"
    assert KEY not in repr(settings)
    with pytest.raises(ConfigError, match=r"refers to \$\{CHECKOUT_KEY\}, which is not set"):
        settings_from_file(tmp_path, "auth: {api_keys: [{name: a, key: '${env:CHECKOUT_KEY}', scopes: [read]}]}", {})


def test_the_whole_key_list_can_come_from_the_environment(tmp_path: Path) -> None:
    environ = {"GENAI_COLLECTOR_AUTH__API_KEYS": f'[{{"name": "app", "key": "{KEY}", "scopes": ["ingest"]}}]'}
    settings = load_settings(merge_sources(argparse.Namespace(config=None), environ))
    assert [key.name for key in settings.auth.api_keys] == ["app"]


def test_keys_are_held_as_digests_from_each_form(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")  # a Secret's file often ends with a newline
    settings = load_settings(
        {
            "auth": {
                "api_keys": [
                    {"name": "plain", "key": KEY, "scopes": ["ingest"]},
                    {
                        "name": "digest",
                        "key_sha256": hashlib.sha256(b"another-key-0123456789").hexdigest(),
                        "scopes": ["read"],
                    },
                    {"name": "file", "key_file": str(key_file), "scopes": ["admin"]},
                ]
            }
        }
    )
    ring = KeyRing(settings.auth.api_keys)
    assert ring.find(KEY).name == "file"  # the same key twice: the last one wins, every key is compared
    assert ring.find("another-key-0123456789").scopes == {"read"}
    assert ring.find("nothing-like-any-key") is None
    assert KEY.encode() not in repr(ring._keys).encode()
    key_file.unlink()
    with pytest.raises(KeyFileError, match=r"cannot read key_file .*key of api key 'file'"):
        KeyRing(settings.auth.api_keys)


@pytest.mark.parametrize(
    "auth, message",
    [
        ({"api_keys": [{"name": "a", "key": "short", "scopes": ["ingest"]}]}, "at least 16 characters"),
        ({"api_keys": [{"name": "a", "key": KEY, "key_sha256": "0" * 64, "scopes": ["ingest"]}]}, "exactly one of"),
        ({"api_keys": [{"name": "a", "scopes": ["ingest"]}]}, "exactly one of"),
        ({"api_keys": [{"name": "a", "key_sha256": "abc", "scopes": ["ingest"]}]}, "64 hex digits"),
        ({"api_keys": [{"name": "a", "key": KEY, "scopes": ["write"]}]}, "scopes"),
        ({"api_keys": [{"name": "a", "key": KEY, "scopes": []}]}, "scopes"),
        ({"api_keys": [{"name": "a", "key": KEY, "scopes": ["read"]}] * 2}, "used twice"),
        ({"protect_metrics": True}, "protect_metrics needs an api key with the admin scope"),
    ],
)
def test_bad_auth_settings_are_refused(auth: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings({"auth": auth})


def test_tls_files_per_listener(tmp_path: Path) -> None:
    settings = load_settings(
        {
            "tls": {
                "cert_file": "/tls/tls.crt",
                "key_file": "/tls/tls.key",
                "client_ca_file": "/tls/ca.crt",
                "admin": {"client_ca_file": "/tls/other-ca.crt"},
                "query": {"enabled": False},
            }
        }
    )
    assert settings.tls.for_listener("otlp_grpc").client_ca_file == Path("/tls/ca.crt")
    assert settings.tls.for_listener("admin").client_ca_file == Path("/tls/other-ca.crt")
    assert settings.tls.for_listener("admin").cert_file == Path("/tls/tls.crt")
    assert settings.tls.for_listener("query") is None
    assert load_settings({}).tls.for_listener("otlp_http") is None
    only_admin = load_settings({"tls": {"admin": {"cert_file": "/a.crt", "key_file": "/a.key"}}}).tls
    assert only_admin.for_listener("otlp_http") is None and only_admin.for_listener("admin") is not None
    with pytest.raises(ConfigError, match="tls for otlp_grpc needs both cert_file and key_file"):
        load_settings({"tls": {"cert_file": "/tls/tls.crt"}})
