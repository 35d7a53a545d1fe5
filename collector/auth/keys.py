"""The configured API keys, held only as SHA-256 digests, and constant-time lookup of a presented key."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from typing import NamedTuple

from collector.config import MIN_KEY_LENGTH, ApiKey, Scope


class KeyFileError(Exception):
    """A ``key_file`` that cannot be read or holds no usable key; the message names the key and the file."""


class StoredKey(NamedTuple):
    name: str
    digest: bytes
    scopes: frozenset[Scope]


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def _read_key_file(name: str, path: Path) -> str:
    try:
        key = path.read_text(encoding="utf-8").strip()
    except OSError as error:
        raise KeyFileError(f"cannot read key_file {path} of api key {name!r}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise KeyFileError(f"key_file {path} of api key {name!r} is not UTF-8 text") from None
    if len(key) < MIN_KEY_LENGTH:
        raise KeyFileError(f"key_file {path} of api key {name!r} holds fewer than {MIN_KEY_LENGTH} characters")
    return key


def _stored(api_key: ApiKey) -> StoredKey:
    if api_key.key is not None:
        key_digest = digest(api_key.key.get_secret_value())
    elif api_key.key_sha256 is not None:
        key_digest = bytes.fromhex(api_key.key_sha256)
    else:
        assert api_key.key_file is not None
        key_digest = digest(_read_key_file(api_key.name, api_key.key_file))
    return StoredKey(api_key.name, key_digest, frozenset(api_key.scopes))


class KeyRing:
    """Every configured key; the plaintext of none of them is kept after start-up."""

    def __init__(self, api_keys: tuple[ApiKey, ...]) -> None:
        self._keys = tuple(_stored(api_key) for api_key in api_keys)

    def __bool__(self) -> bool:
        return bool(self._keys)

    def find(self, presented: str) -> StoredKey | None:
        """The key whose digest matches, comparing against every key so the time taken tells nothing."""
        presented_digest = digest(presented)
        found = None
        for key in self._keys:
            if hmac.compare_digest(key.digest, presented_digest):
                found = key
        return found
