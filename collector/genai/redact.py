"""Redaction: find PII and secrets in every string the collector stores, then mask, hash or drop them.

Pure, no I/O. With ``scope: all`` (the default) every attribute value of spans, span events, links, log
records and resources is scanned, and so are span and event names, status messages and log bodies,
except the values of allow-listed keys (ids, model names, enums, token counts: ``ALLOWED_KEYS``).
Attributes named like a secret (``password``, ``api_key``, ``authorization``...) are masked whole.
``scope: content`` scans only prompt and completion content (``is_content_key``), as before.

Built-in detectors run in the order of ``_DETECTORS`` (a secret claims its text before the card or IP
detector can nibble at the digits inside it), then the user's rules; a match overlapping an earlier one
is left alone. The cost is linear in the text: every pattern starts on a literal or a narrow character
class and its quantifiers are bounded or cannot backtrack, the overlap check reads a mask of claimed
characters (checking each match against every earlier one made 40,000 addresses cost 55 s), and the
text is rebuilt once.

Most stored strings hold nothing: one native pass (``_TRIGGERS``, Hyperscan: what every detector's match
must contain, such as an '@', a credential parameter's name and '=', a cluster of digits, a secret's
prefix, '::') returns them untouched, and short clean values are remembered; where Hyperscan has no wheel,
``_Hints.maybe`` (one ``bytes.translate`` and a few substring searches) asks the same in Python. The
others run only the detectors whose trigger they hold (Hyperscan says which), each behind a cheap filter
before its regex: a ``'@'`` for e-mail, a run of 16 token characters for secrets, clusters of digits
(found on a translated byte copy of the text) for cards, IBANs, SSNs, phones and IPv4 addresses, whose
regexes then run only on the characters around each cluster, and '::' or ':h:' for IPv6. Rules that look
in the same windows are skipped together when a text gives none.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import itertools
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final, overload

from collector.config import DETECTORS, RedactionMode, RedactionSettings
from collector.genai.triggers import native_triggers


class _DropSentinel:
    __slots__ = ()

    def __repr__(self) -> str:
        return "DROP"


DROP: Final[Any] = _DropSentinel()
"""Returned by ``Redactor.value`` when the whole value must go (drop mode, or content capture off)."""

CONTENT_DROPPED = "content_dropped"

# --- which attributes are content ----------------------------------------------------------

CONTENT_KEYS: Final = frozenset(
    {
        # OpenTelemetry GenAI (current, and the deprecated event attributes)
        "gen_ai.input.messages",
        "gen_ai.output.messages",
        "gen_ai.system_instructions",
        "gen_ai.tool.call.arguments",
        "gen_ai.tool.call.result",
        "gen_ai.tool.definitions",
        "gen_ai.prompt",
        "gen_ai.completion",
        # OpenInference (the flattened forms are prefixes below)
        "input.value",
        "output.value",
        "llm.prompt_template.variables",
        "llm.input_messages",
        "llm.output_messages",
        "llm.prompts",
        "llm.choices",
        # OpenLLMetry / Traceloop
        "traceloop.entity.input",
        "traceloop.entity.output",
        # Vercel AI SDK: prompt, generated text/object/reasoning, tool calls and their results, embedded values
        "ai.prompt",
        "ai.prompt.messages",
        "ai.prompt.tools",
        "ai.response.text",
        "ai.response.object",
        "ai.response.toolCalls",
        "ai.response.reasoning",
        "ai.toolCall.args",
        "ai.toolCall.result",
        "ai.value",
        "ai.values",
        # Langfuse explicit keys
        "langfuse.observation.input",
        "langfuse.observation.output",
        "langfuse.trace.input",
        "langfuse.trace.output",
    }
)

# Flattened message lists (Traceloop ``gen_ai.prompt.0.content``, OpenInference
# ``llm.input_messages.0.message.content``...): content, except the metadata leaves below.
_CONTENT_PREFIXES: Final = (
    "gen_ai.prompt.",
    "gen_ai.completion.",
    "llm.input_messages.",
    "llm.output_messages.",
    "llm.prompts.",
    "llm.choices.",
    "llm.tools.",
    "retrieval.documents.",
    "embedding.embeddings.",
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


# Keys whose values are never scanned: ids, model and provider names, enums, token counts. Normalization
# reads most of them; a detector could only ever corrupt them (a model name is not PII).
ALLOWED_KEYS: Final = frozenset(
    {
        # ids
        "trace_id",
        "span_id",
        "parent_span_id",
        "trace.id",
        "span.id",
        "gen_ai.response.id",
        "gen_ai.conversation.id",
        "gen_ai.tool.call.id",
        "gen_ai.agent.id",
        "gen_ai.data_source.id",
        "langfuse.observation.id",
        "langfuse.trace.id",
        "ai.response.id",
        # models and providers
        "gen_ai.request.model",
        "gen_ai.response.model",
        "gen_ai.system",
        "gen_ai.provider.name",
        "llm.model_name",
        "llm.provider",
        "llm.system",
        "ai.model.id",
        "ai.model.provider",
        "ai.response.model",
        "langfuse.observation.model.name",
        # enums
        "gen_ai.operation.name",
        "gen_ai.output.type",
        "gen_ai.response.finish_reasons",
        "gen_ai.token.type",
        "gen_ai.request.encoding_formats",
        "llm.request.type",
        "openinference.span.kind",
        "traceloop.span.kind",
        "langfuse.observation.type",
        "operation.name",
        "ai.operationId",
        "ai.response.finishReason",
        "input.mime_type",
        "output.mime_type",
        "error.type",
        "exception.type",
        "otel.status_code",
        "span.kind",
        "http.method",
        "http.request.method",
        "http.status_code",
        "http.response.status_code",
        "http.scheme",
        "http.flavor",
        "network.protocol.name",
        "network.protocol.version",
        "network.transport",
        "rpc.system",
        "rpc.grpc.status_code",
        "db.system",
        "db.system.name",
        "messaging.system",
        "telemetry.sdk.name",
        "telemetry.sdk.language",
        "telemetry.sdk.version",
        "service.version",
        "deployment.environment",
        "deployment.environment.name",
        "process.runtime.name",
        "process.runtime.version",
        "os.type",
        "host.arch",
        "cloud.provider",
        "cloud.platform",
        "cloud.region",
    }
)
# Prefixes of allow-listed keys: token counts and request parameters (numbers, and enums).
ALLOWED_PREFIXES: Final = ("gen_ai.usage.", "llm.token_count.", "llm.usage.", "ai.usage.", "gen_ai.request.")

# The last segment of a key that names a secret (lower case, '-' read as '_'): the whole value is masked.
SECRET_KEY_NAMES: Final = frozenset(
    {
        "password",
        "passwd",
        "pwd",
        "secret",
        "client_secret",
        "api_key",
        "apikey",
        "x_api_key",
        "access_token",
        "refresh_token",
        "id_token",
        "auth_token",
        "session_token",
        "token",
        "bearer_token",
        "authorization",
        "proxy_authorization",
        "cookie",
        "set_cookie",
        "private_key",
        "secret_access_key",
        "aws_secret_access_key",
        "secret_key",
    }
)


def is_secret_key(key: str) -> bool:
    """``db.password``, ``http.request.header.x-api-key``, ``aws.secret_access_key``: masked whole."""
    return key.rpartition(".")[2].lower().replace("-", "_") in SECRET_KEY_NAMES


def allow_list(extra: tuple[str, ...]) -> tuple[frozenset[str], tuple[str, ...]]:
    """The built-in allow-list extended by the user's keys; a key ending in ``*`` is a prefix."""
    keys = ALLOWED_KEYS | {key for key in extra if not key.endswith("*")}
    prefixes = ALLOWED_PREFIXES + tuple(key[:-1] for key in extra if key.endswith("*"))
    return keys, prefixes


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


def _iban(text: str) -> bool:
    """ISO 13616: letters count as 10-35, the country and check digits move to the end, mod 97 is 1."""
    compact = text.replace(" ", "")
    if not 15 <= len(compact) <= 34:
        return False
    rotated = compact[4:] + compact[:4]
    return int("".join(str(int(char, 36)) for char in rotated)) % 97 == 1


def _ipv6(text: str) -> bool:
    """A real address of at least three groups (``::1`` and ``fe80::1`` carry no one's identity)."""
    if sum(1 for group in text.split(":") if group) < 3:
        return False
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _mixed_case_and_digits(text: str) -> bool:
    """A random base64 key has all three; a hex digest or a word run does not."""
    return not text.isupper() and not text.islower() and any(char.isdigit() for char in text)


# Where a detector's regex is worth running: "token" (the text holds a long token-like run),
# "at" (near an '@'), "digits" (near a cluster of at least ``min_digits`` digits),
# "colons" (near a '::' or ':h:'), "aws" (near an AWS key id or the word "secret"), "has_at" (an '@'),
# "parameter" (everywhere, when the native prefilter found a credential parameter's name and '=') and
# None (a user's rule: everywhere). "parameter" and None regexes start with a literal that re finds with
# a fast substring search.
@dataclass(frozen=True, slots=True)
class _Pattern:
    regex: re.Pattern[str]
    hint: str | None = None
    min_digits: int = 0
    valid: Callable[[str], bool] | None = None
    group: int | str = 0  # the part of the match that is replaced
    reach: int = 0  # "digits": how far beyond a cluster a match may start or end
    # ``regex.finditer(text, pos, endpos)``'s matches found another way (the same ones, faster), or None
    matches: Callable[[re.Pattern[str], str, int, int], Iterator[re.Match[str]]] | None = None

    def finditer(self, text: str, pos: int, endpos: int) -> Iterator[re.Match[str]]:
        if self.matches is None:
            return self.regex.finditer(text, pos, endpos)
        return self.matches(self.regex, text, pos, endpos)


def _compile(pattern: str, flags: int = 0) -> re.Pattern[str]:
    return re.compile(pattern, re.ASCII | flags)


# The e-mail regex's local part and its '@' alone, ending where the search ends (``\Z`` matches at endpos).
_EMAIL_LOCAL: Final = re.compile(r"(?<![\w.%+-])[\w.%+-]{1,64}@\Z")


def _email_matches(regex: re.Pattern[str], text: str, pos: int, endpos: int) -> Iterator[re.Match[str]]:
    """``regex.finditer(text, pos, endpos)`` for the e-mail regex: the same matches, tried only where one can
    start. A match holds one '@' and its local part is all of the run of local-part characters before it (the
    lookbehind), at most 64 of them: so for each '@' one start is possible, found by ``_EMAIL_LOCAL`` within
    the 64 characters before it. finditer tries every position of the window, most of them in the 255
    characters a domain may take after an '@', at ~50 ns each; like finditer, this goes on after each match."""
    searched = pos  # finditer's next position: the window's start, then the end of the last match
    at = text.find("@", pos, endpos)
    while at != -1:
        local = _EMAIL_LOCAL.search(text, max(searched, at - 64), at + 1)
        if local is not None:
            match = regex.match(text, local.start(), endpos)
            if match is not None:
                yield match
                searched = match.end()
        at = text.find("@", max(at + 1, searched), endpos)


_AT: Final = _Pattern(re.compile("@"), "at")  # asks _Hints for the windows around each '@'
_IBAN_REACH = 34  # the letters of an IBAN (GB82 WEST ...) may stand that far from its digits

# Query parameters and key=value pairs whose value is a credential. Each name is checked by a
# fixed-width lookbehind after the '=', so the regex starts on a literal and re skips ahead to it.
_SECRET_PARAMETERS: Final = (
    "api_key",
    "api-key",
    "apikey",
    "access_token",
    "refresh_token",
    "id_token",
    "auth_token",
    "token",
    "password",
    "passwd",
    "pwd",
    "secret",
    "client_secret",
    "x-amz-signature",
    "x-amz-security-token",
    "x-amz-credential",
    "x-goog-signature",
    "x-goog-credential",
    "signature",
    "sig",
)
_SECRET_PARAMETER = (
    "=(?:"
    + "|".join(f"(?<={re.escape(name)}=)(?<![\\w-]{re.escape(name)}=)" for name in _SECRET_PARAMETERS)
    + r")(?P<token>[^\s&#;,'\"<>]+)"
)

# Secret regexes start with a literal (re then skips ahead with a fast substring search); the
# "not preceded by a token character" check comes right after the literal, as a lookbehind.
_DETECTORS: Final[dict[str, tuple[_Pattern, ...]]] = {
    "secret": (
        # user:password in a URL (the user too: it is often an e-mail address or a key)
        _Pattern(_compile(r"://(?P<token>[^\s/?#@:'\"<>]{1,256}:[^\s/?#@'\"<>]{1,256})@"), "has_at", group="token"),
        _Pattern(_compile(_SECRET_PARAMETER, re.IGNORECASE), "parameter", group="token"),
        _Pattern(
            _compile(  # PEM private keys; the body cannot hold "-----", so a lone header costs little
                r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----"
                r"(?:(?!-----)[\s\S]){0,8192}"
                r"-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----"
            ),
            "token",
        ),
        _Pattern(
            _compile(r"earer(?<=[Bb]earer)[ \t]+(?P<token>[A-Za-z0-9._~+/-]{16,}=*)"),
            "token",
            valid=_has_digit,
            group="token",
        ),
        _Pattern(_compile(r"sk-(?<![\w-]sk-)[\w-]{20,}"), "token", valid=_has_digit),  # OpenAI, Anthropic
        _Pattern(_compile(r"eyJ(?<![\w-]eyJ)[\w-]{5,}\.[\w-]{5,}\.[\w-]*"), "token"),  # JWT
        _Pattern(_compile(r"AKIA(?<!\wAKIA)[A-Z0-9]{16}(?!\w)"), "token"),  # AWS access key ids
        _Pattern(_compile(r"ASIA(?<!\wASIA)[A-Z0-9]{16}(?!\w)"), "token"),
        _Pattern(_compile(r"gh(?<!\wgh)[pousr]_[A-Za-z0-9]{36,}"), "token"),  # GitHub
        _Pattern(_compile(r"github_pat_(?<!\wgithub_pat_)\w{22,}"), "token"),
        _Pattern(_compile(r"xox(?<!\wxox)[abposr]-[A-Za-z0-9-]{11,}"), "token"),  # Slack
        _Pattern(_compile(r"AIza(?<!\wAIza)[\w-]{35}(?![\w-])"), "token"),  # Google API keys
        _Pattern(_compile(r"[rs]k_(?<![\w-][rs]k_)(?:live|test)_[A-Za-z0-9]{16,}"), "token"),  # Stripe
        _Pattern(_compile(r"hf_(?<![\w-]hf_)[A-Za-z0-9]{30,}"), "token"),  # Hugging Face
        # AWS secret access keys: 40 characters of base64 near a key id or the word "secret"
        _Pattern(
            _compile(r"(?<![A-Za-z0-9/+])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])"), "aws", valid=_mixed_case_and_digits
        ),
    ),
    # Country, check digits, then 11 to 30 letters and digits, plain or in groups of 4; mod-97 checked.
    "iban": (
        _Pattern(
            _compile(
                r"[A-Z][A-Z](?<![A-Za-z0-9][A-Z]{2})\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?![A-Za-z0-9])"
            ),
            "digits",
            4,
            _iban,
            reach=_IBAN_REACH,
        ),
    ),
    # 13-19 digits, plain or in groups of 4 (Amex 4-6-5), from a network's range (2-6: not a
    # millisecond or nanosecond timestamp), and Luhn-valid.
    "card": (
        _Pattern(
            _compile(
                r"(?<![\d.-])(?<!\d[ -])"
                r"(?:[2-6]\d{12,18}"
                r"|[2-6]\d{3}(?P<sep>[ -])\d{4}(?P=sep)\d{4}(?P=sep)\d{1,4}(?:(?P=sep)\d{1,3})?"
                r"|3\d{3}(?P<amex>[ -])\d{6}(?P=amex)\d{4,5})"
                r"(?![ -]?\d)"
            ),
            "digits",
            13,
            _luhn_card,
        ),
    ),
    # US social security numbers, dashed, without the numbers never issued (000, 666, 9xx; 00; 0000).
    "ssn": (
        _Pattern(_compile(r"(?<![\w.-])(?!000|666|9)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\w-]|[.:]\d)"), "digits", 9),
    ),
    # Unicode-aware (jürgen@beispiel.de): an ASCII-only local part would leave "jü" in front of the marker.
    "email": (
        _Pattern(
            re.compile(r"(?<![\w.%+-])[\w.%+-]{1,64}@(?:[^\W_](?:[\w-]{0,61}[^\W_])?\.)+[^\W\d_]{2,24}(?![\w-])"),
            "at",
            valid=_not_a_file_name,
            matches=_email_matches,
        ),
    ),
    # International (+CC ...), North American ((415) 555-0132, 415-555-0132, 1-800-555-0199) and
    # trunk-prefixed national (020 7946 0958) forms; separators are required outside the +CC form,
    # so a plain run of digits (a timestamp, a count) is never a phone number.
    "phone": (
        _Pattern(
            _compile(
                r"(?<![\w+])\+[1-9]\d{0,2}(?:[ .-]?\(?\d{1,4}+\)?){2,6}(?![\w]|[.:-]\d)"
                r"|(?<![\w.+-])(?:1[ .-])?(?:\(\d{3}\)[ .-]?|\d{3}(?P<sep>[ .-]))\d{3}(?(sep)(?P=sep)|[ .-])\d{4}"
                r"(?![\w]|[.:-]\d)"
                r"|(?<![\w.+-])(?:\(0\d{1,4}\)|0\d{1,4})[ -]\d{3,4}[ -]?\d{3,4}(?![\w]|[.:-]\d)"
            ),
            "digits",
            8,
            _phone_digits,
        ),
    ),
    # Four octets 0-255 without leading zeros, not part of a longer dotted run (1.2.3.4.5, v1.2.3.4).
    "ipv4": (
        _Pattern(
            _compile(
                r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?![\w]|\.\d)"
            ),
            "digits",
            4,
        ),
    ),
    # Eight groups, or fewer around one '::'; checked by ``ipaddress``.
    "ipv6": (
        _Pattern(
            _compile(
                r"(?<![\w:.])(?:(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}"
                r"|(?:[0-9A-Fa-f]{1,4}:){1,7}:(?:[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4}){0,6})?"
                r"|::[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4}){0,6})(?![\w:]|\.\d)"
            ),
            "colons",
            valid=_ipv6,
        ),
    ),
}
assert tuple(sorted(_DETECTORS)) == tuple(sorted(DETECTORS)), "config.DETECTORS and redact._DETECTORS differ"

# Byte tables over the text encoded as ASCII with '?' for anything else (one byte per character,
# so offsets are the text's): digits, the separators of numbers, and token characters.
_DIGIT_CLASSES: Final = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 if b in b" .-()+/" else 0x78 for b in range(256))
_TOKEN_CLASSES: Final = bytes(0x61 if b < 128 and (chr(b).isalnum() or b in b"_-") else 0x20 for b in range(256))
# Digit runs at most 3 separators apart, at least 7 characters long (the lookahead, placed after the
# literal so that re can still skip ahead to the next digit, rejects most short numbers in C).
_DIGIT_CLUSTER: Final = re.compile(rb"0(?=[0 ]{6})0*(?: {1,3}00*)*")
_LONG_TOKEN: Final = b"a" * 16
_HEX_CLASSES: Final = bytes(
    0x68 if chr(b) in "0123456789abcdefABCDEF" else 0x3A if b == 0x3A else 0x20 for b in range(256)
)
_HEX_COLON: Final = re.compile(rb":(?::|h{1,4}:)")  # starts with a literal: re skips ahead in C
_IPV6_REACH = 40  # the longest address is 39 characters
_SHORTEST_CLUSTER = 7  # 1.2.3.4 is the shortest thing a digit detector finds
_WINDOW_MARGIN = 2  # characters around a digit cluster: a leading '+' or '(' and lookarounds
_EMAIL_LOCAL_MAX, _EMAIL_DOMAIN_MAX = 64, 255
_AWS_CONTEXT: Final = ("AKIA", "ASIA", "secret", "Secret", "SECRET")
_AWS_CONTEXT_REACH = 120  # characters around a key id or "secret" where a secret key is looked for

# What every built-in detector's match contains, found with one ``bytes.translate`` and a few
# substring searches (re's scan for a character class costs ~9 ns a character, these under 1): most
# stored strings hold none of it and skip the detectors. '@' (e-mail, URL credentials), '=' (credential
# parameters), a cluster of digits (cards, phones, IPs, IBANs, SSNs), '::' or ':h:' (IPv6), and for
# every secret a run of 16 token characters. The detector tests run every true positive through it.
_TRIGGER_CLASSES: Final = bytes(
    b if b in b"@=:" else 0x30 if 0x30 <= b <= 0x39 else 0x61 if b < 128 and (chr(b).isalpha() or b in b"_-") else 0x20
    for b in range(256)
)


def _maybe(text: str) -> bool:
    """Whether any built-in detector could match the text (a superset: false means none can)."""
    return _Hints(text).maybe()


# The same question asked natively (``triggers.py``: Hyperscan, one pass over the UTF-8 bytes, ~5 times
# cheaper than ``_maybe`` on prose): what each built-in detector's match must contain. Every secret regex
# starts with its literal (and the AWS secret key is only looked for near a key id or "secret"); a
# credential parameter is its name right before the '='; the digit detectors need a cluster (a digit and
# 6 more digits or separators: ``_DIGIT_CLUSTER``'s start); IPv6 a '::' or ':h:' (``_HEX_COLON``); e-mail
# and URL credentials an '@'. A string that holds none goes untouched; one that holds some takes the path
# of before (``_Hints``' windows) for the detectors whose trigger it holds (the third column: the hints
# that trigger stands for), so the matches are the same with either prefilter.
_TRIGGERS: Final[tuple[tuple[bytes, bool, tuple[str, ...]], ...]] = (
    (rb"@", False, ("at", "has_at")),
    (b"(?:" + b"|".join(re.escape(name).encode() for name in _SECRET_PARAMETERS) + b")=", True, ("parameter",)),
    (rb"[0-9][0-9 .\-()+/]{6}", False, ("digits",)),
    (rb":(?::|[0-9A-Fa-f]{1,4}:)", False, ("colons",)),
    (rb"-----BEGIN ", False, ("token",)),
    (rb"[Bb]earer", False, ("token",)),
    (rb"sk-|eyJ|AKIA|ASIA|gh[pousr]_|github_pat_|xox[abposr]-|AIza|[rs]k_(?:live|test)_|hf_", False, ("token",)),
    (b"|".join(word.encode() for word in _AWS_CONTEXT), False, ("aws",)),
)
_NATIVE = native_triggers([(pattern, caseless) for pattern, caseless, _ in _TRIGGERS])


def _native_hints(text: str) -> _Hints:
    assert _NATIVE is not None
    return _Hints(text, frozenset(hint for index in _NATIVE.found(text) for hint in _TRIGGERS[index][2]))


class _Hints:
    """Where each kind of detector should look in one string; computed lazily, at most once."""

    __slots__ = ("_ascii", "_at", "_aws", "_clusters", "_colons", "_long_token", "_present", "_text", "_whole")

    def __init__(self, text: str, present: frozenset[str] | None = None) -> None:
        """``present``: the hints whose trigger the native prefilter found (None: not known, look everywhere)."""
        self._text = text
        self._present = present
        self._ascii: bytes | None = None
        self._at: list[tuple[int, int]] | None = None
        self._long_token: bool | None = None
        self._clusters: list[tuple[int, int, int]] | None = None
        self._whole = ((0, len(text)),)
        self._colons: list[tuple[int, int]] | None = None
        self._aws: list[tuple[int, int]] | None = None

    def _bytes(self) -> bytes:
        if self._ascii is None:
            self._ascii = self._text.encode("ascii", "replace")
        return self._ascii

    def windows(self, pattern: _Pattern) -> list[tuple[int, int]] | tuple[tuple[int, int], ...]:
        if self._present is not None and pattern.hint is not None and pattern.hint not in self._present:
            return ()  # its trigger is missing: no match (user rules, hint None, look everywhere)
        text = self._text
        if pattern.hint == "digits":
            if self._clusters is None:
                self._clusters = self._find_clusters()
            near = [(s, e) for s, e, digits in self._clusters if digits >= pattern.min_digits]
            return _merged_windows(near, pattern.reach, pattern.reach, len(text)) if pattern.reach else near
        if pattern.hint == "at":
            if self._at is None:
                self._at = self._find_at()
            return self._at
        if pattern.hint == "token":
            return self._whole if self.long_token() else ()
        if pattern.hint == "has_at":
            return self._whole if self.windows(_AT) else ()
        if pattern.hint == "colons":
            return self._ipv6_windows()
        if pattern.hint == "aws":
            if self._aws is None and not self.long_token():  # a key id or secret key is a long token
                self._aws = []
            if self._aws is None:
                near = sorted((at, at + len(word)) for word in _AWS_CONTEXT for at in _find_all(text, word))
                self._aws = _merged_windows(near, _AWS_CONTEXT_REACH, _AWS_CONTEXT_REACH, len(text))
            return self._aws
        return self._whole

    def long_token(self) -> bool:
        """Whether the text holds a run of 16 token characters (every secret but URL credentials does)."""
        if self._long_token is None:
            self._long_token = _LONG_TOKEN in self._bytes().translate(_TOKEN_CLASSES)
        return self._long_token

    def _ipv6_windows(self) -> list[tuple[int, int]]:
        """Around each '::' or ':h:' (one to four hex digits between colons): every IPv6 address of at
        least three groups has one; JSON's '"key": value' and times (10:30:45 has ':30:'...) rarely."""
        if self._colons is None:
            self._colons = []
            if ":" in self._text:
                classes = self._bytes().translate(_HEX_CLASSES)
                self._colons = _merged_windows(
                    (match.span() for match in _HEX_COLON.finditer(classes)), _IPV6_REACH, _IPV6_REACH, len(classes)
                )
        return self._colons

    def maybe(self) -> bool:
        """Whether any built-in detector could match (a superset; see ``_TRIGGER_CLASSES``)."""
        triggers = self._bytes().translate(_TRIGGER_CLASSES)
        if b"@" in triggers or b"=" in triggers:
            return True
        if b"0" in triggers:
            if self._clusters is None:
                self._clusters = self._find_clusters()
            if self._clusters or self.long_token():
                return True
        else:  # without digits, a run of token characters is a run of letters
            self._long_token = _LONG_TOKEN in triggers
            if self._long_token:
                return True
        return b":" in triggers and bool(self._ipv6_windows())

    def _find_at(self) -> list[tuple[int, int]]:
        text = self._text
        return _merged_windows(
            ((at, at + 1) for at in _find_all(text, "@")), _EMAIL_LOCAL_MAX, _EMAIL_DOMAIN_MAX, len(text)
        )

    def _find_clusters(self) -> list[tuple[int, int, int]]:
        classes = self._bytes().translate(_DIGIT_CLASSES)
        if b"0" not in classes:
            return []
        size, clusters = len(classes), []
        for match in _DIGIT_CLUSTER.finditer(classes):
            start, end = match.span()
            if end - start >= _SHORTEST_CLUSTER:
                clusters.append(
                    (
                        max(0, start - _WINDOW_MARGIN),
                        min(size, end + _WINDOW_MARGIN),
                        classes.count(b"0", start, end),
                    )
                )
        return clusters


def _find_all(text: str, needle: str) -> Iterator[int]:
    at = text.find(needle)
    while at != -1:
        yield at
        at = text.find(needle, at + 1)


def _merged_windows(spans: Iterable[tuple[int, int]], before: int, after: int, size: int) -> list[tuple[int, int]]:
    """``(start - before, end + after)`` around each span (in order), overlapping windows merged."""
    windows: list[tuple[int, int]] = []
    for start, end in spans:
        start, end = max(0, start - before), min(size, end + after)
        if windows and start <= windows[-1][1]:
            windows[-1] = (windows[-1][0], end)
        else:
            windows.append((start, end))
    return windows


def _native_dirty_hints(text: str) -> _Hints | None:
    assert _NATIVE is not None
    found = _NATIVE.found(text)
    return _Hints(text, frozenset(hint for index in found for hint in _TRIGGERS[index][2])) if found else None


def _python_dirty_hints(text: str) -> _Hints | None:
    return _Hints(text) if _maybe(text) else None


# The prefilter and the hints redaction uses: Hyperscan's where its wheel exists. ``_dirty_hints`` asks both
# questions at once, in one pass: the hints of a text some detector could match, None when none can.
_could_match: Callable[[str], bool] = _NATIVE.__call__ if _NATIVE else _maybe  # bound: cheaper to call than _NATIVE
_hints: Callable[[str], _Hints] = _native_hints if _NATIVE else _Hints
_dirty_hints: Callable[[str], _Hints | None] = _native_dirty_hints if _NATIVE else _python_dirty_hints


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


# ``json.dumps(document, ensure_ascii=False)`` without building the encoder each time (it keeps no state).
_json_text: Final = json.JSONEncoder(ensure_ascii=False).encode

_SHORT = 256  # a string this short is first checked on its own (most attribute values: no detector applies)
_CLEAN_REMEMBERED = 8192
_SCALARS: Final = frozenset({int, float, bool})  # values no detector reads (a secret-named key's number is kept)


class _Kind(Enum):
    """What redaction does with the value of an attribute key."""

    ALLOWED = "allowed"  # never scanned
    CONTENT = "content"  # prompt or completion content: scanned, or dropped when content capture is off
    SECRET = "secret"  # named like a secret: masked whole
    OTHER = "other"  # scanned when the scope is every string


# The members as module constants: on Python 3.11 reading a member from its class (``_Kind.CONTENT``) costs
# as much as scanning a short string, and ``Redactor.attributes`` compares two or three per attribute.
_CONTENT, _ALLOWED, _SECRET, _OTHER = _Kind.CONTENT, _Kind.ALLOWED, _Kind.SECRET, _Kind.OTHER


class Redactor:
    """Applies ``RedactionSettings``; built once, then called per record from one thread.

    ``counts`` holds the redactions performed since the last ``take_counts()``, by rule name
    (``email``, ``secret``..., a user rule's name, or ``content_dropped``).
    """

    def __init__(self, settings: RedactionSettings) -> None:
        self.counts: Counter[str] = Counter()
        self._kinds: dict[str, _Kind] = {}  # the kind of each key seen, up to _KEYS_REMEMBERED
        self._clean_strings: set[str] = set()  # short strings no trigger was found in (see ``_clean``)
        self._capture = settings.capture_content
        self._allowed_keys, self._allowed_prefixes = allow_list(settings.allow_keys)
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
        # Consecutive rules that look in the same windows: when a text gives none, all of them are skipped.
        self._groups = tuple(
            (group[0].pattern, group)
            for group in (
                tuple(same)
                for _, same in itertools.groupby(
                    rules, key=lambda rule: (rule.pattern.hint, rule.pattern.min_digits, rule.pattern.reach)
                )
            )
        )
        self._has_user_rules = settings.enabled and bool(settings.rules)
        self._every_string = bool(rules) and settings.scope == "all"
        self._secret_rule = next((rule for rule in rules if rule.name == "secret"), None)
        self._unchanged = self._capture and not rules
        self._hmac: hmac.HMAC | None = None
        if any(rule.mode == "hash" for rule in rules):
            if settings.hash_key is None:
                raise ValueError("hash mode needs redaction.hash_key")
            self._hmac = hmac.new(settings.hash_key.get_secret_value().encode(), digestmod=hashlib.sha256)

    @property
    def unchanged(self) -> bool:
        """Whether every value comes back as it went in (redaction off, content capture on)."""
        return self._unchanged

    def take_counts(self) -> dict[str, int]:
        """The counts since the last call, and a fresh start."""
        counts, self.counts = self.counts, Counter()
        return dict(counts)

    def _kind(self, key: str) -> _Kind:
        kind = self._kinds.get(key)
        if kind is None:
            if is_content_key(key):
                kind = _CONTENT
            elif key in self._allowed_keys or key.startswith(self._allowed_prefixes):
                kind = _ALLOWED
            elif is_secret_key(key):
                kind = _SECRET
            else:
                kind = _OTHER
            if len(self._kinds) < _KEYS_REMEMBERED:
                self._kinds[key] = kind
        return kind

    def attributes(self, attributes: dict[str, Any], *, all_content: bool = False) -> dict[str, Any]:
        """The attributes redacted: the same dict when nothing changed, else a copy.

        ``all_content`` treats every attribute as content (the attributes of a GenAI event or log record).
        """
        if self._unchanged:
            return attributes
        result: dict[str, Any] | None = None
        every_string = self._every_string
        kinds = self._kinds
        clean = self._clean_strings  # ``_clean``'s memory, read here first: most values are in it
        for key, value in attributes.items():
            kind = _CONTENT if all_content else kinds.get(key) or self._kind(key)
            if kind is _CONTENT:
                if value.__class__ is str and self._capture and self._clean(value):
                    continue  # most prompts and completions: nothing any detector could match
                redacted = self.value(value)
            elif not every_string or kind is _ALLOWED or value is None or value.__class__ in _SCALARS:
                continue
            elif kind is _SECRET:
                redacted = self._secret_value(value)
            elif value.__class__ is str and (value in clean or self._clean(value)):
                continue  # most values: short, and nothing any detector could match
            else:
                redacted = self._redact(value)
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
        return self._redact(value)

    def other(self, value: Any) -> Any:
        """A value that is not content (a log record's body): redacted when the scope is every string."""
        return self._redact(value) if self._every_string else value

    @overload
    def text(self, text: str) -> str: ...
    @overload
    def text(self, text: None) -> None: ...
    @overload
    def text(self, text: str | None) -> str | None: ...
    def text(self, text: str | None) -> str | None:
        """A string that cannot be removed (a span name, a status message): a drop rule masks it whole."""
        if not text or text in self._clean_strings or not self._every_string or self._clean(text):
            return text  # most names are in ``_clean``'s memory: found there without calling it
        hits: list[str] = []
        try:
            redacted = self._string(text, hits)
        except _Dropped as dropped:
            self.counts[dropped.rule] += 1
            return f"[REDACTED:{dropped.rule}]"
        if hits:
            self.counts.update(hits)
        return redacted

    def _clean(self, text: str) -> bool:
        """A string no detector could match. Short values repeat (hosts, names, enums): the last few
        thousand are remembered, so most attribute values cost one set lookup."""
        if self._has_user_rules:
            return False
        if len(text) > _SHORT:
            return not _could_match(text)
        clean = self._clean_strings
        if text in clean:
            return True
        if _could_match(text):
            return False
        if len(clean) >= _CLEAN_REMEMBERED:
            clean.clear()
        clean.add(text)
        return True

    def _redact(self, value: Any) -> Any:
        hits: list[str] = []
        try:
            redacted = self._walk(value, hits)
        except _Dropped as dropped:
            self.counts[dropped.rule] += 1
            return DROP
        if hits:
            self.counts.update(hits)
        return redacted

    def _secret_value(self, value: Any) -> Any:
        """The value of a key named like a secret, replaced whole (a string, or each string of a list)."""
        rule = self._secret_rule
        if rule is None or value is None or value == "" or isinstance(value, bool):
            return value
        if rule.mode == "drop":
            self.counts[rule.name] += 1
            return DROP
        if isinstance(value, list):
            return [self._secret_value(item) for item in value]
        self.counts[rule.name] += 1
        return self._replacement(rule, value if isinstance(value, str) else json.dumps(value))

    # --- walking values ----------------------------------------------------------------------

    def _walk(self, value: Any, hits: list[str]) -> Any:
        if isinstance(value, str):
            return self._string(value, hits)
        if isinstance(value, list):
            items = [self._walk(item, hits) for item in value]
            return value if all(new is old for new, old in zip(items, value, strict=True)) else items
        if isinstance(value, dict):
            changed = {key: new for key, old in value.items() if (new := self._walk_item(key, old, hits)) is not old}
            return {**value, **changed} if changed else value
        return value

    def _walk_item(self, key: Any, value: Any, hits: list[str]) -> Any:
        """A value inside a JSON document or map: ``{"api_key": "..."}`` is masked whole like an attribute."""
        if self._every_string and isinstance(key, str) and value and is_secret_key(key):
            rule = self._secret_rule
            if rule is not None and isinstance(value, str | int | float) and not isinstance(value, bool):
                if rule.mode == "drop":
                    raise _Dropped(rule.name)
                hits.append(rule.name)
                return self._replacement(rule, str(value))
        return self._walk(value, hits)

    def _string(self, text: str, hits: list[str]) -> str:
        """A JSON document keeps its shape (its string leaves are redacted); anything else is text."""
        if self._has_user_rules:
            hints = _hints(text)
        elif len(text) <= _SHORT:
            if self._clean(text):
                return text  # most strings inside JSON documents: "user", "text"... found in ``_clean``'s memory
            hints = _hints(text)
        else:
            dirty = _dirty_hints(text)
            if dirty is None:
                return text
            hints = dirty
        if _looks_like_json(text):
            if not self._worth_parsing(text, hints):
                return text
            try:
                document = json.loads(text)
                if isinstance(document, dict | list):
                    redacted = self._walk(document, hits)
                    return text if redacted is document else _json_text(redacted)
            except (ValueError, RecursionError):
                pass
        return self._text(text, hits, hints)

    def _worth_parsing(self, text: str, hints: _Hints) -> bool:
        """Could a string inside this JSON text hold a match? Most JSON content holds none, and a scan
        of the raw text is cheaper than parsing it. Escapes (``\\u00fc``) can hide characters from that
        scan, so user rules always parse, and so does any '@' (an address with a non-ASCII domain).
        """
        return self._has_user_rules or "@" in text or bool(self._scan(text, hints, probe=True))

    def _text(self, text: str, hits: list[str], hints: _Hints) -> str:
        found = self._scan(text, hints)
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

    def _scan(self, text: str, hints: _Hints, probe: bool = False) -> list[tuple[int, int, _Rule]]:
        """Matches in priority order, none overlapping an earlier one; raises ``_Dropped`` on a drop rule.

        ``probe`` stops at the first match and never raises: a cheap "anything here?" for JSON text.
        """
        found: list[tuple[int, int, _Rule]] = []
        taken: bytearray | None = None  # 1 for each character an earlier match claimed
        for where, rules in self._groups:
            windows = hints.windows(where)
            if not windows:
                continue
            for rule in rules:
                pattern = rule.pattern
                for pos, endpos in windows:
                    for match in pattern.finditer(text, pos, endpos):
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
