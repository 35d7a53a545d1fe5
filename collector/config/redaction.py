"""``redaction``: PII and secrets masked, hashed or dropped before anything is stored."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import (
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from collector.config.base import Section

RedactionMode = Literal["mask", "hash", "drop"]
DETECTORS = ("email", "phone", "card", "iban", "ssn", "ipv4", "ipv6", "secret")
RedactionScope = Literal["all", "content"]


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
