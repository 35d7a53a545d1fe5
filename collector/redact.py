"""Content redaction: find PII and secrets in prompt and completion content, then mask, hash or drop them.

Pure, no I/O. Only content attributes are touched (``is_content_key``; every attribute of a GenAI
event or log record when the caller says so). Built-in detectors run first, in the order of
``_DETECTORS`` (a secret claims its text before the card or IP detector can nibble at the digits
inside it), then the user's rules; a match overlapping an earlier one is left alone.

This runs per span, so each string goes through cheap filters before any detector's regex:
a ``'@'`` for e-mail, a run of 16 token characters for secrets, and clusters of digits (found on a
translated byte copy of the text) for cards, phones and IPv4 addresses, whose regexes then run only
on the few characters around each cluster.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from collector.config import DETECTORS, RedactionMode, RedactionSettings


class _DropSentinel:
    __slots__ = ()

    def __repr__(self) -> str:
        return "DROP"


DROP: Final[Any] = _DropSentinel()
"""Returned by ``Redactor.value`` when the whole value must go (drop mode, or content capture off)."""

CONTENT_DROPPED = "content_dropped"

# --- which attributes are content ----------------------------------------------------------

CONTENT_KEYS: Final = frozenset({
    # OpenTelemetry GenAI (current, and the deprecated event attributes)
    "gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.system_instructions",
    "gen_ai.tool.call.arguments", "gen_ai.tool.call.result", "gen_ai.tool.definitions",
    "gen_ai.prompt", "gen_ai.completion",
    # OpenInference (the flattened forms are prefixes below)
    "input.value", "output.value", "llm.prompt_template.variables",
    "llm.input_messages", "llm.output_messages", "llm.prompts", "llm.choices",
    # OpenLLMetry / Traceloop
    "traceloop.entity.input", "traceloop.entity.output",
    # Vercel AI SDK: prompt, generated text/object/reasoning, tool calls and their results, embedded values
    "ai.prompt", "ai.prompt.messages", "ai.prompt.tools",
    "ai.response.text", "ai.response.object", "ai.response.toolCalls", "ai.response.reasoning",
    "ai.toolCall.args", "ai.toolCall.result", "ai.value", "ai.values",
    # Langfuse explicit keys
    "langfuse.observation.input", "langfuse.observation.output", "langfuse.trace.input", "langfuse.trace.output",
})

# Flattened message lists (Traceloop ``gen_ai.prompt.0.content``, OpenInference
# ``llm.input_messages.0.message.content``...): content, except the metadata leaves below.
_CONTENT_PREFIXES: Final = (
    "gen_ai.prompt.", "gen_ai.completion.",
    "llm.input_messages.", "llm.output_messages.", "llm.prompts.", "llm.choices.", "llm.tools.",
    "retrieval.documents.", "embedding.embeddings.",
)
_METADATA_LEAVES: Final = frozenset({"role", "finish_reason", "id", "tool_call_id", "type", "name"})


def is_content_key(key: str) -> bool:
    """Whether a span attribute carries prompt, completion or tool content (a redaction target).

    ``gen_ai.prompt.0.content`` is content, ``gen_ai.prompt.0.role`` and
    ``gen_ai.completion.0.finish_reason`` are not: normalization reads them and they hold no user text.
    """
    if key in CONTENT_KEYS:
        return True
    return key.startswith(_CONTENT_PREFIXES) and key.rpartition(".")[2] not in _METADATA_LEAVES


# --- detectors -----------------------------------------------------------------------------

def _has_digit(text: str) -> bool:
    return any(char.isdigit() for char in text)


_LUHN_DOUBLED = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)


def _luhn_card(text: str) -> bool:
    digits = text.replace(" ", "").replace("-", "")
    if not 13 <= len(digits) <= 19:
        return False
    total = sum(int(d) for d in digits[-1::-2]) + sum(_LUHN_DOUBLED[int(d)] for d in digits[-2::-2])
    return total % 10 == 0


def _phone_digits(text: str) -> bool:
    return 8 <= sum(char.isdigit() for char in text) <= 15


_FILE_SUFFIXES = frozenset({"png", "jpg", "jpeg", "gif", "svg", "webp", "ico"})


def _not_a_file_name(text: str) -> bool:
    """``icon@2x.png`` has the shape of an e-mail address but is an image name."""
    return text.rpartition(".")[2].lower() not in _FILE_SUFFIXES


# Where a detector's regex is worth running: "token" (the text holds a long token-like run),
# "at" (near an '@'), "digits" (near a cluster of at least ``min_digits`` digits), None (everywhere).
@dataclass(frozen=True, slots=True)
class _Pattern:
    regex: re.Pattern[str]
    hint: str | None = None
    min_digits: int = 0
    valid: Callable[[str], bool] | None = None
    group: int | str = 0  # the part of the match that is replaced


def _compile(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.ASCII)


# Secret regexes start with a literal (re then skips ahead with a fast substring search); the
# "not preceded by a token character" check comes right after the literal, as a lookbehind.
_DETECTORS: Final[dict[str, tuple[_Pattern, ...]]] = {
    "secret": (
        _Pattern(_compile(  # PEM private keys; the body cannot hold "-----", so a lone header costs little
            r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----(?:(?!-----)[\s\S]){0,8192}-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----"
        ), "token"),
        _Pattern(_compile(r"earer(?<=[Bb]earer)[ \t]+(?P<token>[A-Za-z0-9._~+/-]{16,}=*)"), "token",
                 valid=_has_digit, group="token"),
        _Pattern(_compile(r"sk-(?<![\w-]sk-)[\w-]{20,}"), "token", valid=_has_digit),  # OpenAI, Anthropic
        _Pattern(_compile(r"eyJ(?<![\w-]eyJ)[\w-]{5,}\.[\w-]{5,}\.[\w-]*"), "token"),  # JWT
        _Pattern(_compile(r"AKIA(?<!\wAKIA)[A-Z0-9]{16}(?!\w)"), "token"),  # AWS access key ids
        _Pattern(_compile(r"ASIA(?<!\wASIA)[A-Z0-9]{16}(?!\w)"), "token"),
        _Pattern(_compile(r"gh(?<!\wgh)[pousr]_[A-Za-z0-9]{36,}"), "token"),  # GitHub
        _Pattern(_compile(r"github_pat_(?<!\wgithub_pat_)\w{22,}"), "token"),
        _Pattern(_compile(r"xox(?<!\wxox)[abposr]-[A-Za-z0-9-]{10,}"), "token"),  # Slack
        _Pattern(_compile(r"AIza(?<!\wAIza)[\w-]{35}(?![\w-])"), "token"),  # Google API keys
    ),
    # 13-19 digits, plain or in groups of 4 (Amex 4-6-5), from a network's range (2-6: not a
    # millisecond or nanosecond timestamp), and Luhn-valid.
    "card": (
        _Pattern(_compile(
            r"(?<![\d.-])(?<!\d[ -])"
            r"(?:[2-6]\d{12,18}"
            r"|[2-6]\d{3}(?P<sep>[ -])\d{4}(?P=sep)\d{4}(?P=sep)\d{1,4}(?:(?P=sep)\d{1,3})?"
            r"|3\d{3}(?P<amex>[ -])\d{6}(?P=amex)\d{4,5})"
            r"(?![ -]?\d)"
        ), "digits", 13, _luhn_card),
    ),
    # Unicode-aware (jürgen@beispiel.de): an ASCII-only local part would leave "jü" in front of the marker.
    "email": (
        _Pattern(re.compile(
            r"(?<![\w.%+-])[\w.%+-]{1,64}@(?:[^\W_](?:[\w-]{0,61}[^\W_])?\.)+[^\W\d_]{2,24}(?![\w-])"
        ), "at", valid=_not_a_file_name),
    ),
    # International (+CC ...), North American ((415) 555-0132, 415-555-0132, 1-800-555-0199) and
    # trunk-prefixed national (020 7946 0958) forms; separators are required outside the +CC form,
    # so a plain run of digits (a timestamp, a count) is never a phone number.
    "phone": (
        _Pattern(_compile(
            r"(?<![\w+])\+[1-9]\d{0,2}(?:[ .-]?\(?\d{1,4}+\)?){2,6}(?![\w]|[.:-]\d)"
            r"|(?<![\w.+-])(?:1[ .-])?(?:\(\d{3}\)[ .-]?|\d{3}(?P<sep>[ .-]))\d{3}(?(sep)(?P=sep)|[ .-])\d{4}"
            r"(?![\w]|[.:-]\d)"
            r"|(?<![\w.+-])(?:\(0\d{1,4}\)|0\d{1,4})[ -]\d{3,4}[ -]?\d{3,4}(?![\w]|[.:-]\d)"
        ), "digits", 8, _phone_digits),
    ),
    # Four octets 0-255 without leading zeros, not part of a longer dotted run (1.2.3.4.5, v1.2.3.4).
    "ipv4": (
        _Pattern(_compile(
            r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?![\w]|\.\d)"
        ), "digits", 4),
    ),
}
assert tuple(sorted(_DETECTORS)) == tuple(sorted(DETECTORS)), "config.DETECTORS and redact._DETECTORS differ"

# Byte tables over the text encoded as ASCII with '?' for anything else (one byte per character,
# so offsets are the text's): digits, the separators of numbers, and token characters.
_DIGIT_CLASSES: Final = bytes(
    0x30 if 0x30 <= b <= 0x39 else 0x20 if b in b" .-()+/" else 0x78 for b in range(256)
)
_TOKEN_CLASSES: Final = bytes(0x61 if b < 128 and (chr(b).isalnum() or b in b"_-") else 0x20 for b in range(256))
# Digit runs at most 3 separators apart, at least 7 characters long (the lookahead, placed after the
# literal so that re can still skip ahead to the next digit, rejects most short numbers in C).
_DIGIT_CLUSTER: Final = re.compile(rb"0(?=[0 ]{6})0*(?: {1,3}00*)*")
_LONG_TOKEN: Final = b"a" * 16
_SHORTEST_CLUSTER = 7  # 1.2.3.4 is the shortest thing a digit detector finds
_WINDOW_MARGIN = 2  # characters around a digit cluster: a leading '+' or '(' and lookarounds
_EMAIL_LOCAL_MAX, _EMAIL_DOMAIN_MAX = 64, 255


class _Hints:
    """Where each kind of detector should look in one string; computed lazily, at most once."""

    __slots__ = ("_text", "_ascii", "_at", "_token", "_clusters")

    def __init__(self, text: str) -> None:
        self._text = text
        self._ascii: bytes | None = None
        self._at: list[tuple[int, int]] | None = None
        self._token: tuple[tuple[int, int], ...] | None = None
        self._clusters: list[tuple[int, int, int]] | None = None

    def _bytes(self) -> bytes:
        if self._ascii is None:
            self._ascii = self._text.encode("ascii", "replace")
        return self._ascii

    def windows(self, pattern: _Pattern) -> list[tuple[int, int]] | tuple[tuple[int, int], ...]:
        text = self._text
        if pattern.hint == "digits":
            if self._clusters is None:
                self._clusters = self._find_clusters()
            return [(s, e) for s, e, digits in self._clusters if digits >= pattern.min_digits]
        if pattern.hint == "at":
            if self._at is None:
                self._at = self._find_at()
            return self._at
        if pattern.hint == "token":
            if self._token is None:
                long_run = _LONG_TOKEN in self._bytes().translate(_TOKEN_CLASSES)
                self._token = ((0, len(text)),) if long_run else ()
            return self._token
        return ((0, len(text)),)

    def _find_at(self) -> list[tuple[int, int]]:
        text, windows = self._text, []
        at = text.find("@")
        while at != -1:
            start, end = max(0, at - _EMAIL_LOCAL_MAX), min(len(text), at + 1 + _EMAIL_DOMAIN_MAX)
            if windows and start <= windows[-1][1]:
                windows[-1] = (windows[-1][0], end)
            else:
                windows.append((start, end))
            at = text.find("@", at + 1)
        return windows

    def _find_clusters(self) -> list[tuple[int, int, int]]:
        if not any(digit in self._text for digit in "0123456789"):
            return []
        classes = self._bytes().translate(_DIGIT_CLASSES)
        size, clusters = len(classes), []
        for match in _DIGIT_CLUSTER.finditer(classes):
            start, end = match.span()
            if end - start >= _SHORTEST_CLUSTER:
                clusters.append((
                    max(0, start - _WINDOW_MARGIN),
                    min(size, end + _WINDOW_MARGIN),
                    classes.count(b"0", start, end),
                ))
        return clusters


# --- the redactor ----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _Rule:
    name: str
    mode: RedactionMode
    pattern: _Pattern
    mask: str


_KEYS_REMEMBERED = 4096


class _Dropped(Exception):
    def __init__(self, rule: str) -> None:
        self.rule = rule


def _looks_like_json(text: str) -> bool:
    head = text[:1]
    if head in ("{", "["):
        return True
    return head.isspace() and text.lstrip()[:1] in ("{", "[")


class Redactor:
    """Applies ``RedactionSettings`` to content; built once, then called per span from one thread.

    ``counts`` holds the redactions performed since the last ``take_counts()``, by rule name
    (``email``, ``secret``..., a user rule's name, or ``content_dropped``).
    """

    def __init__(self, settings: RedactionSettings) -> None:
        self.counts: Counter[str] = Counter()
        self._content_keys: dict[str, bool] = {}  # is_content_key, remembered per key seen
        self._capture = settings.capture_content
        rules: list[_Rule] = []
        if settings.enabled:
            for name, patterns in _DETECTORS.items():
                mode = settings.detectors.get(name, settings.mode)
                if mode != "off":
                    rules.extend(_Rule(name, mode, pattern, f"[REDACTED:{name}]") for pattern in patterns)
            for rule in settings.rules:
                pattern = _Pattern(re.compile(rule.pattern))
                rules.append(_Rule(rule.name, rule.mode, pattern, f"[REDACTED:{rule.name}]"))
        self._rules = tuple(rules)
        self._has_user_rules = settings.enabled and bool(settings.rules)
        self._unchanged = self._capture and not rules
        self._hmac: hmac.HMAC | None = None
        if any(rule.mode == "hash" for rule in rules):
            if settings.hash_key is None:
                raise ValueError("hash mode needs redaction.hash_key")
            self._hmac = hmac.new(settings.hash_key.get_secret_value().encode(), digestmod=hashlib.sha256)

    def take_counts(self) -> dict[str, int]:
        """The counts since the last call, and a fresh start."""
        counts, self.counts = self.counts, Counter()
        return dict(counts)

    def attributes(self, attributes: dict[str, Any], *, all_content: bool = False) -> dict[str, Any]:
        """The attributes with their content redacted: the same dict when nothing changed, else a copy.

        ``all_content`` treats every attribute as content (the attributes of a GenAI event or log record).
        """
        if self._unchanged:
            return attributes
        result: dict[str, Any] | None = None
        content_keys = self._content_keys
        for key, value in attributes.items():
            if not all_content:
                content = content_keys.get(key)
                if content is None:
                    content = is_content_key(key)
                    if len(content_keys) < _KEYS_REMEMBERED:
                        content_keys[key] = content
                if not content:
                    continue
            redacted = self.value(value)
            if redacted is value:
                continue
            if result is None:
                result = dict(attributes)
            if redacted is DROP:
                del result[key]
            else:
                result[key] = redacted
        return attributes if result is None else result

    def value(self, value: Any) -> Any:
        """One content value redacted (the same object when unchanged), or ``DROP``."""
        if self._unchanged:
            return value
        if not self._capture:
            self.counts[CONTENT_DROPPED] += 1
            return DROP
        hits: list[str] = []
        try:
            redacted = self._walk(value, hits)
        except _Dropped as dropped:
            self.counts[dropped.rule] += 1
            return DROP
        if hits:
            self.counts.update(hits)
        return redacted

    # --- walking values ----------------------------------------------------------------------

    def _walk(self, value: Any, hits: list[str]) -> Any:
        if isinstance(value, str):
            return self._string(value, hits)
        if isinstance(value, list):
            items = [self._walk(item, hits) for item in value]
            return value if all(new is old for new, old in zip(items, value)) else items
        if isinstance(value, dict):
            changed = {key: new for key, old in value.items() if (new := self._walk(old, hits)) is not old}
            return {**value, **changed} if changed else value
        return value

    def _string(self, text: str, hits: list[str]) -> str:
        """A JSON document keeps its shape (its string leaves are redacted); anything else is text."""
        if _looks_like_json(text):
            if not self._worth_parsing(text):
                return text
            try:
                document = json.loads(text)
                if isinstance(document, dict | list):
                    redacted = self._walk(document, hits)
                    return text if redacted is document else json.dumps(redacted, ensure_ascii=False)
            except (ValueError, RecursionError):
                pass
        return self._text(text, hits)

    def _worth_parsing(self, text: str) -> bool:
        """Could a string inside this JSON text hold a match? Most JSON content holds none, and a scan
        of the raw text is cheaper than parsing it. Escapes (``\\u00fc``) can hide characters from that
        scan, so user rules always parse, and so does any '@' (an address with a non-ASCII domain).
        """
        return self._has_user_rules or "@" in text or bool(self._scan(text, probe=True))

    def _text(self, text: str, hits: list[str]) -> str:
        found = self._scan(text)
        if not found:
            return text
        found.sort(key=lambda match: match[0])
        parts, last = [], 0
        for start, end, rule in found:
            parts.append(text[last:start])
            parts.append(self._replacement(rule, text[start:end]))
            hits.append(rule.name)
            last = end
        parts.append(text[last:])
        return "".join(parts)

    def _scan(self, text: str, probe: bool = False) -> list[tuple[int, int, _Rule]]:
        """Matches in priority order, none overlapping an earlier one; raises ``_Dropped`` on a drop rule.

        ``probe`` stops at the first match and never raises: a cheap "anything here?" for JSON text.
        """
        found: list[tuple[int, int, _Rule]] = []
        taken: bytearray | None = None  # 1 for each character an earlier match claimed
        hints = _Hints(text)
        for rule in self._rules:
            pattern = rule.pattern
            for pos, endpos in hints.windows(pattern):
                for match in pattern.regex.finditer(text, pos, endpos):
                    start, end = match.span(pattern.group)
                    if start == end or (pattern.valid is not None and not pattern.valid(text[start:end])):
                        continue
                    if taken is not None and taken.find(1, start, end) != -1:
                        continue
                    if probe:
                        return [(start, end, rule)]
                    if rule.mode == "drop":
                        raise _Dropped(rule.name)
                    found.append((start, end, rule))
                    if taken is None:
                        taken = bytearray(len(text))
                    taken[start:end] = b"\x01" * (end - start)
        return found

    def _replacement(self, rule: _Rule, matched: str) -> str:
        if rule.mode == "hash":
            assert self._hmac is not None
            digest = self._hmac.copy()
            digest.update(matched.encode("utf-8", "surrogatepass"))
            return f"[HASH:{rule.name}:{digest.hexdigest()[:16]}]"
        return rule.mask
