"""Redaction of content attributes: detectors, modes, rules, JSON content and the attribute conventions."""

from __future__ import annotations

import hashlib
import hmac
import json
import platform
import random
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from collector.config import RedactionSettings
from collector.genai import redact
from collector.genai.redact import DROP, Redactor, is_content_key

JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwiaWF0IjoxNTE2MjM5MDIyfQ"
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
OPENAI_KEY = "sk-proj-Ab3dE5fG7hI9jK1lM3nO5pQ7rS9tU1vW3xY5z"
ANTHROPIC_KEY = "sk-ant-api03-Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0Fe-AbCdEf"


# Which strings skip the detectors: Hyperscan's triggers where its wheel exists, else the pure-Python
# prefilter. Every test here runs with each: the matches must not depend on which one is installed.
INSTALLED = redact._could_match
PREFILTERS: dict[str, Callable[[str], bool]] = {"python": redact._maybe}
if redact._NATIVE is not None:
    PREFILTERS["hyperscan"] = redact._NATIVE


@pytest.fixture(autouse=True, params=sorted(PREFILTERS))
def prefilter(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], bool]]:
    monkeypatch.setattr(redact, "_could_match", PREFILTERS[request.param])
    native = request.param == "hyperscan"
    monkeypatch.setattr(redact, "_hints", redact._native_hints if native else redact._Hints)
    monkeypatch.setattr(redact, "_dirty_hints", redact._native_dirty_hints if native else redact._python_dirty_hints)
    yield PREFILTERS[request.param]


def redactor(**settings: Any) -> Redactor:
    return Redactor(RedactionSettings(**settings))


def hmac16(key: str, text: str) -> str:
    return hmac.new(key.encode(), text.encode(), hashlib.sha256).hexdigest()[:16]


# --- which attributes are content ------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "gen_ai.input.messages",
        "gen_ai.output.messages",
        "gen_ai.system_instructions",
        "gen_ai.tool.call.arguments",
        "gen_ai.tool.call.result",
        "gen_ai.tool.definitions",
        "gen_ai.prompt",
        "gen_ai.completion",
        "gen_ai.prompt.0.content",
        "gen_ai.completion.1.content",
        "gen_ai.completion.0.tool_calls.0.arguments",
        "llm.input_messages.0.message.content",
        "llm.output_messages.0.message.content",
        "llm.input_messages.0.message.contents.0.message_content.text",
        "llm.output_messages.0.message.tool_calls.0.tool_call.function.arguments",
        "llm.prompts.0.prompt.text",
        "llm.prompts",
        "llm.choices.0.completion.text",
        "llm.tools.0.tool.json_schema",
        "input.value",
        "output.value",
        "llm.prompt_template.variables",
        "traceloop.entity.input",
        "traceloop.entity.output",
        "ai.prompt",
        "ai.prompt.messages",
        "ai.response.text",
        "ai.response.object",
        "ai.response.toolCalls",
        "ai.toolCall.args",
        "ai.toolCall.result",
        "retrieval.documents.0.document.content",
        "langfuse.observation.input",
    ],
)
def test_content_keys(key: str) -> None:
    assert is_content_key(key)


@pytest.mark.parametrize(
    "key",
    [
        "gen_ai.prompt.0.role",
        "gen_ai.completion.0.finish_reason",
        "gen_ai.completion.0.role",
        "gen_ai.completion.0.tool_calls.0.name",
        "gen_ai.completion.0.tool_calls.0.id",
        "llm.input_messages.0.message.role",
        "llm.output_messages.0.message.tool_calls.0.tool_call.function.name",
        "llm.input_messages.0.message.contents.0.message_content.type",
        "gen_ai.request.model",
        "gen_ai.usage.input_tokens",
        "gen_ai.response.finish_reasons",
        "gen_ai.prompt_template.name",
        "input.mime_type",
        "llm.model_name",
        "llm.token_count.prompt",
        "ai.prompt.format",
        "ai.response.finishReason",
        "ai.response.model",
        "ai.usage.promptTokens",
        "user.id",
        "session.id",
        "http.url",
    ],
)
def test_metadata_keys_are_not_content(key: str) -> None:
    assert not is_content_key(key)


# --- detectors -------------------------------------------------------------------------------

DETECTED = [
    ("email", "jane.doe@example.com"),
    ("email", "j.oneil+tag@mail.example.co.uk"),
    ("email", "jürgen.müller@beispiel.de"),
    ("phone", "+1 (415) 555-0132"),
    ("phone", "(415) 555-0132"),
    ("phone", "415-555-0132"),
    ("phone", "415.555.0132"),
    ("phone", "1-800-555-0199"),
    ("phone", "+44 20 7946 0958"),
    ("phone", "+14155550132"),
    ("phone", "+33 1 23 45 67 89"),
    ("phone", "020 7946 0958"),
    ("card", "4111 1111 1111 1111"),
    ("card", "4111-1111-1111-1111"),
    ("card", "4111111111111111"),
    ("card", "5555555555554444"),
    ("card", "378282246310005"),
    ("card", "3782 822463 10005"),
    ("card", "6011111111111117"),
    ("ipv4", "192.168.1.10"),
    ("ipv4", "10.0.0.1"),
    ("ipv4", "8.8.8.8"),
    ("ipv4", "255.255.255.255"),
    ("secret", OPENAI_KEY),
    ("secret", "sk-" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8s9T0u1V2w3X4"),
    ("secret", ANTHROPIC_KEY),
    ("secret", "AKIAIOSFODNN7EXAMPLE"),
    ("secret", "ASIAY34FZKBOKMUTVV7A"),
    ("secret", JWT),
    ("secret", "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"),
    ("secret", "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz"),
    ("secret", "xoxb-1234567890-0987654321-AbCdEfGhIjKl"),
    ("secret", "AIzaSyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q"),
    ("secret", "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7x3Lq9Vb2k4r\n-----END RSA PRIVATE KEY-----"),
    ("secret", "sk_live_4eC39HqLyjWDarjtT1zdp7dc"),
    ("secret", "rk_live_51H8a2bC3dE4fG5hI6jK7lM8n"),
    ("secret", "hf_AbCdEfGhIjKlMnOpQrStUvWxYz12345678"),
    ("secret", "xoxp-123456789012-abcdefghij"),
    ("ssn", "123-45-6789"),
    ("ssn", "078-05-1120"),
    ("iban", "DE89 3704 0044 0532 0130 00"),
    ("iban", "DE89370400440532013000"),
    ("iban", "GB82 WEST 1234 5698 7654 32"),
    ("iban", "FR1420041010050500013M02606"),
    ("iban", "NL91ABNA0417164300"),
    ("ipv6", "2001:db8:85a3::8a2e:370:7334"),
    ("ipv6", "2001:0db8:85a3:0000:0000:8a2e:0370:7334"),
    ("ipv6", "fe80::1ff:fe23:4567:890a"),
]

# (detector, text, what is left of it): the credential goes, what names it stays.
DETECTED_INSIDE = [
    ("secret", "https://bob:hunter2@db.example.com:5432/app", "https://[REDACTED:secret]@db.example.com:5432/app"),
    (
        "secret",
        "https://api.example.com/v1?api_key=abc123XYZ&page=2",
        "https://api.example.com/v1?api_key=[REDACTED:secret]&page=2",
    ),
    ("secret", "GET /cb?code=1&token=Zm9vYmFy&state=x", "GET /cb?code=1&token=[REDACTED:secret]&state=x"),
    ("secret", "connect host=db password=s3cr3t! user=app", "connect host=db password=[REDACTED:secret] user=app"),
    (
        "secret",
        "https://s3.amazonaws.com/b/k?X-Amz-Signature=fe5f80f77d5fa3beca038a248ff027d0",
        "https://s3.amazonaws.com/b/k?X-Amz-Signature=[REDACTED:secret]",
    ),
    ("secret", "AKIAIOSFODNN7EXAMPLE wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "[REDACTED:secret] [REDACTED:secret]"),
    (
        "secret",
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "aws_secret_access_key = [REDACTED:secret]",
    ),
]


@pytest.mark.parametrize(("rule", "text", "expected"), DETECTED_INSIDE)
def test_detector_masks_the_credential_only(rule: str, text: str, expected: str) -> None:
    r = redactor()
    assert r.value(text) == expected
    assert set(r.take_counts()) == {rule}


@pytest.mark.parametrize(("rule", "pii"), DETECTED)
def test_every_detected_value_passes_the_prefilter(rule: str, pii: str, prefilter: Callable[[str], bool]) -> None:
    """The prefilter lets a string skip the detectors: it must find something in every true positive."""
    assert prefilter(pii)
    assert prefilter(f"{'plain words ' * 100}{pii}{' plain words' * 100}")


def test_hyperscan_is_used_where_its_wheel_exists() -> None:
    """pyproject installs hyperscan on x86-64: there, a missing or broken install must not go unnoticed."""
    if platform.machine().lower() in ("x86_64", "amd64"):
        assert "hyperscan" in PREFILTERS
        assert INSTALLED.__module__ == "collector.genai.triggers"  # _Triggers.__call__, bound


@pytest.mark.parametrize(("rule", "pii"), DETECTED)
def test_detector_masks_match(rule: str, pii: str) -> None:
    text = f"Please note: {pii}, thanks."
    assert redactor().value(text) == f"Please note: [REDACTED:{rule}], thanks."


def test_bearer_token_keeps_the_scheme() -> None:
    text = "curl -H 'Authorization: Bearer 8f14e45fceea167a5a36dedd4bea2543' https://api.example.com"
    assert redactor().value(text) == ("curl -H 'Authorization: Bearer [REDACTED:secret]' https://api.example.com")


NOT_DETECTED = [
    "card 4111111111111112 fails the Luhn check",
    "order 1234567890123456 is not a card",
    "the timestamp 1700000000123 (ms) and 1700000000123456789 (ns)",
    "unix time 1700000000 at 2024-01-15T10:30:00Z, offset +05:30",
    "logged at 2024-01-15 10:30:45.123456",
    "used 4096 tokens of 128000 in 2024; cost 0.0123",
    "Python 3.11.7, version 1.2.3, release 10.0.0.0.1, v1.2.3.4, 1.2.3.4.5",
    "256.1.1.1 and 01.02.03.04 are not addresses",
    "SSN-shaped but never issued: 000-12-3456, 666-12-3456, 900-12-3456, 123-00-4567; ISBN 978-3-16-148410-0",
    "IBAN-shaped, bad check digits: DE00370400440532013000, GB99WEST12345698765432",
    "ids: 4bf92f3577b34da6a3ce929d0e0e4736, 00f067aa0ba902b7, 550e8400-e29b-41d4-a716-446655440000",
    (
        "git 9fceb02d0ae598e95dc970b74767f19372d61af8 and sha256 "
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    ),
    "models gpt-4o-2024-08-06, claude-3-5-sonnet-20241022, gemini-2.0-flash-001, o1-preview, text-embedding-3-large",
    "versions 1.38.0, v2.14.3-rc.1, 3.11.7+build.20240115, go1.22.3",
    "times 10:30:45, 2024-01-15T10:30:45.123456+00:00, 1700000000123456789, 12:34:56.789",
    "MAC 00:1a:2b:3c:4d:5e, std::vector<int>, a::b, fe80::1 and ::1",
    "max_tokens=1024 and temperature=0.2, x == y, key=value",
    "https://api.openai.com/v1/chat/completions?model=gpt-4o&stream=true",
    "/usr/local/lib/python3.11/site-packages/openai/_base_client.py",
    "the sk_test is short, hf_ alone, xoxb- alone",
    "a base64 blob without context: QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0MTIzNDU2Nzg5MA",
    "amounts: 1,234,567 and 12 345 678 and 4111 1111 1111",
    "the sk-learn-is-a-python-library is great",
    "the task-abcdefghijklmnopqrstuvwxyz1234 id",
    "Bearer authentication_is_required_here for this API",
    "icon@2x.png, @mention, user@localhost, a@b",
    "AKIA is a prefix; AKIAIOSFODNN7EXAMPL is too short",
    "",
]


@pytest.mark.parametrize("text", NOT_DETECTED)
def test_detectors_leave_lookalikes_alone(text: str) -> None:
    assert redactor().value(text) is text


def test_phone_stops_before_a_time_of_day() -> None:
    assert redactor().value("call +1 415 555 0132 at 10:30") == "call [REDACTED:phone] at 10:30"


@pytest.mark.parametrize(
    "text",
    [
        "1" * 65536,
        "1 " * 32768,
        "+1234567890123456789012345 " * 2400,
        "1." * 32768,
        "a" * 65536 + "@",
        "a@" * 32768,
        "a@" + "b." * 32768,
        "sk-" * 21000,
        "eyJ" + "a" * 65536,
        "-----BEGIN PRIVATE KEY-----\n" * 2300,
        "Bearer " * 9000,
        "4111 " * 13000,
        "(415) " * 11000,
    ],
)
def test_pathological_text_is_scanned_in_linear_time(text: str) -> None:
    """64 KB (the default attribute limit) of each shape that makes a careless pattern backtrack."""
    redactor().value(text)


def _seconds_to_redact(text: str) -> float:
    r = redactor()
    best = float("inf")
    for _ in range(3):  # CPU time of this process, the best of three: other processes count least
        started = time.process_time()
        r.value(text)
        best = min(best, time.process_time() - started)
    return best


def test_many_matches_cost_linear_time() -> None:
    """Issue 9: 40,000 addresses in a 280 KB prompt took 55 s (each match was checked against every
    earlier one). Four times the addresses must cost about four times as long, not sixteen."""
    addresses = [f"user{n}@example{n % 97}.com" for n in range(12_000)]
    small, large = " ".join(addresses[:3_000]), " ".join(addresses)
    small_seconds, large_seconds = _seconds_to_redact(small), _seconds_to_redact(large)
    assert large_seconds < 8 * small_seconds + 0.05, (small_seconds, large_seconds)
    assert large_seconds < 2.0


ADVERSARIAL_UNITS = [
    "u1@ex1.io ",
    "a@",
    "b.",
    "4111 1111 1111 1112 ",
    "+1 (415) 555-01",
    "sk-eyJAKIA",
    "a",
    "fe80:ab:",
    "::",
    "?token=&api_key=",
    "token=x",
    "://a:b",
    "DE89 ",
    "123-45-",
    "AKIA secret ",
    "Ab1/",
    '{"a":"b@c.de"},',
    "2001:db8::1 ",
    "Bearer ",
    "1.2.3.4.",
    "-----BEGIN PRIVATE KEY-----",
]


@pytest.mark.parametrize("unit", ADVERSARIAL_UNITS)
def test_adversarial_text_costs_linear_time(unit: str) -> None:
    """Bounded work per character whatever the content: four times the text, about four times the time."""

    def text(size: int) -> str:
        return (unit * (size // len(unit) + 1))[:size]

    small_seconds, large_seconds = _seconds_to_redact(text(8192)), _seconds_to_redact(text(32768))
    assert large_seconds < 8 * small_seconds + 0.02, (small_seconds, large_seconds)


def test_offsets_survive_non_ascii_text() -> None:
    text = "Привет 🎉, звоните (415) 555-0132, карта 4111 1111 1111 1111, сервер 10.0.0.1."
    assert redactor().value(text) == (
        "Привет 🎉, звоните [REDACTED:phone], карта [REDACTED:card], сервер [REDACTED:ipv4]."
    )


def test_secrets_claim_their_text_first() -> None:
    r = redactor()
    assert r.value(f"token {JWT} and Bearer {JWT}") == "token [REDACTED:secret] and Bearer [REDACTED:secret]"
    assert r.take_counts() == {"secret": 2}


def test_email_claims_digits_in_its_local_part() -> None:
    r = redactor()
    assert r.value("write 4155550132.192.168.1.1@example.com") == "write [REDACTED:email]"
    assert r.take_counts() == {"email": 1}


def test_many_matches_in_one_long_text() -> None:
    filler = "lorem ipsum dolor sit amet 2024 " * 40
    text = f"{filler}a@example.com {filler}415-555-0132 {filler}{OPENAI_KEY} {filler}"
    r = redactor()
    redacted = r.value(text)
    assert redacted == (f"{filler}[REDACTED:email] {filler}[REDACTED:phone] {filler}[REDACTED:secret] {filler}")
    assert r.take_counts() == {"email": 1, "phone": 1, "secret": 1}


def test_overlapping_triggers_in_one_string() -> None:
    """Several detectors' triggers on the same characters (a key inside URL credentials and a parameter,
    digits and colons of an address and port): each match is found once, in priority order."""
    text = f"https://jane:{OPENAI_KEY}@api.example.com/v1?api_key={OPENAI_KEY}&x=1 from 10.0.0.1:8080 jane@example.com"
    r = redactor()
    assert r.value(text) == (
        "https://[REDACTED:secret]@api.example.com/v1?api_key=[REDACTED:secret]&x=1 "
        "from [REDACTED:ipv4]:8080 [REDACTED:email]"
    )
    assert r.take_counts() == {"secret": 2, "ipv4": 1, "email": 1}


def test_lone_surrogates_and_wide_characters() -> None:
    """Lone surrogates (JSON's "\\ud800") and multi-byte characters around and between digits: the native
    prefilter reads UTF-8 bytes, the detectors characters; fullwidth digits and no-break spaces are no phone."""
    r = redactor()
    assert r.value("\ud800 mail a@example.com \udfff") == "\ud800 mail [REDACTED:email] \udfff"
    text = "phone \uff14\uff11\uff15 \uff15\uff15\uff15 \uff10\uff11\uff13\uff12, 415\u00a0555\u00a00132, 415 555 0132"
    assert r.value(text) == (
        "phone \uff14\uff11\uff15 \uff15\uff15\uff15 \uff10\uff11\uff13\uff12, 415\u00a0555\u00a00132, [REDACTED:phone]"
    )
    assert r.value("é" * 5000 + "sk-") == "é" * 5000 + "sk-"


def test_huge_strings() -> None:
    """4 MB of prose comes back as the same object; a match in its last bytes is still found."""
    prose = "the customer asked about order status and shipping " * 80_000
    r = redactor()
    assert r.value(prose) is prose
    assert r.value(prose + "jane@example.com") == prose + "[REDACTED:email]"
    assert r.value("AKIAIOSFODNN7EXAMPLE " + prose) == "[REDACTED:secret] " + prose


def test_threads_redact_at_once() -> None:
    """The ingest threads redact concurrently, and the native scan runs without the GIL: each thread has
    its own scratch space, and every thread gets the results one thread gets."""
    texts = [
        ("lorem ipsum dolor " * 20_000) + f" user{n}@example.com {OPENAI_KEY} " + "sit amet " * 20_000 for n in range(6)
    ]
    expected = [redactor().value(text) for text in texts]
    results: dict[int, list[str]] = {}

    def work(index: int) -> None:
        r = redactor()
        results[index] = [r.value(text) for text in texts for _ in range(3)][::3]

    threads = [threading.Thread(target=work, args=(index,)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [results[index] for index in range(4)] == [expected] * 4


# --- modes -----------------------------------------------------------------------------------


def test_hash_mode_is_keyed_and_stable() -> None:
    text = "mail jane.doe@example.com"
    first = redactor(mode="hash", hash_key="correlation-key-1").value(text)
    again = redactor(mode="hash", hash_key="correlation-key-1").value(text)
    other = redactor(mode="hash", hash_key="correlation-key-2").value(text)
    assert first == again == f"mail [HASH:email:{hmac16('correlation-key-1', 'jane.doe@example.com')}]"
    assert re.fullmatch(r"mail \[HASH:email:[0-9a-f]{16}\]", other)
    assert other != first


def test_hash_mode_correlates_the_same_value() -> None:
    redacted = redactor(mode="hash", hash_key="correlation-key-0").value("a@example.com, b@example.com, a@example.com")
    first, second, third = re.findall(r"\[HASH:email:[0-9a-f]{16}\]", redacted)
    assert first == third != second


def test_hash_of_bearer_covers_the_token_only() -> None:
    token = "8f14e45fceea167a5a36dedd4bea2543"
    redacted = redactor(mode="hash", hash_key="correlation-key-0").value(f"Bearer {token}")
    assert redacted == f"Bearer [HASH:secret:{hmac16('correlation-key-0', token)}]"


def test_drop_mode_removes_the_attribute() -> None:
    r = redactor(mode="drop")
    attributes = {
        "gen_ai.prompt.0.content": "call 415-555-0132",
        "gen_ai.prompt.0.role": "user",
        "gen_ai.prompt.1.content": "hello",
    }
    assert r.attributes(attributes) == {"gen_ai.prompt.0.role": "user", "gen_ai.prompt.1.content": "hello"}
    assert r.value("call 415-555-0132") is DROP
    assert r.take_counts() == {"phone": 2}


def test_per_detector_mode_overrides_the_default() -> None:
    r = redactor(mode="mask", detectors={"email": "hash", "ipv4": "drop"}, hash_key="correlation-key-0")
    assert r.value("a@example.com or 415-555-0132") == (
        f"[HASH:email:{hmac16('correlation-key-0', 'a@example.com')}] or [REDACTED:phone]"
    )
    assert r.value("host 10.0.0.1") is DROP


def test_detector_off() -> None:
    r = redactor(detectors={"email": "off"})
    assert r.value("a@example.com or 415-555-0132") == "a@example.com or [REDACTED:phone]"


def test_all_detectors_off_is_a_no_op() -> None:
    r = redactor(detectors=dict.fromkeys(("email", "phone", "card", "iban", "ssn", "ipv4", "ipv6", "secret"), "off"))
    attributes = {"input.value": "a@example.com"}
    assert r.attributes(attributes) is attributes


def test_hash_mode_without_a_key_is_refused() -> None:
    settings = RedactionSettings.model_construct(**{**RedactionSettings().__dict__, "mode": "hash"})
    with pytest.raises(ValueError, match="hash_key"):
        Redactor(settings)


# --- user rules ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("mask", "see [REDACTED:ticket] now"),
        ("hash", f"see [HASH:ticket:{hmac16('correlation-key-0', 'TICKET-123456')}] now"),
        ("drop", DROP),
    ],
)
def test_user_rule_modes(mode: str, expected: object) -> None:
    r = redactor(rules=[{"name": "ticket", "pattern": r"TICKET-\d{6}", "mode": mode}], hash_key="correlation-key-0")
    assert r.value("see TICKET-123456 now") == expected
    assert r.take_counts() == {"ticket": 1}


def test_user_rules_run_after_the_detectors() -> None:
    r = redactor(rules=[{"name": "digits", "pattern": r"\d+"}])
    assert r.value("call 415-555-0132 about order 42") == "call [REDACTED:phone] about order [REDACTED:digits]"


def test_user_rule_that_matches_empty_strings_is_harmless() -> None:
    r = redactor(rules=[{"name": "xs", "pattern": r"x*"}])
    assert r.value("a x b") == "a [REDACTED:xs] b"


def test_user_rules_apply_inside_json_leaves_only() -> None:
    r = redactor(rules=[{"name": "codename", "pattern": r"(?i)project \w+"}])
    value = json.dumps({"text": "about Project Falcon", "project x": 1})
    assert json.loads(r.value(value)) == {"text": "about [REDACTED:codename]", "project x": 1}


# --- enabled / capture_content ----------------------------------------------------------------


def test_disabled_returns_the_same_objects() -> None:
    r = redactor(enabled=False)
    attributes = {"input.value": "a@example.com"}
    assert r.attributes(attributes) is attributes
    assert r.attributes(attributes, all_content=True) is attributes
    assert r.value("a@example.com") == "a@example.com"


@pytest.mark.parametrize("enabled", [True, False])
def test_capture_content_off_drops_every_content_attribute(enabled: bool) -> None:
    r = redactor(capture_content=False, enabled=enabled)
    attributes = {
        "gen_ai.input.messages": "[]",
        "gen_ai.prompt.0.content": "hi",
        "gen_ai.prompt.0.role": "user",
        "gen_ai.completion.0.finish_reason": "stop",
        "gen_ai.request.model": "gpt-4o",
        "user.id": "u1",
    }
    assert r.attributes(attributes) == {
        "gen_ai.prompt.0.role": "user",
        "gen_ai.completion.0.finish_reason": "stop",
        "gen_ai.request.model": "gpt-4o",
        "user.id": "u1",
    }
    assert r.attributes({"content": "hi", "index": 0}, all_content=True) == {}
    assert r.value({"content": "hi"}) is DROP
    assert r.take_counts() == {"content_dropped": 5}


def test_content_scope_leaves_other_attributes_alone() -> None:
    attributes = {"gen_ai.request.model": "gpt-4o", "user.id": "jane@example.com", "server.address": "10.0.0.1"}
    assert redactor(scope="content").attributes(attributes) is attributes
    assert redactor(scope="content").text("mail jane@example.com") == "mail jane@example.com"


def test_every_attribute_is_scanned_by_default() -> None:
    attributes = {
        "gen_ai.request.model": "gpt-4o",
        "user.email": "jane@example.com",
        "server.address": "10.0.0.1",
        "http.url": "https://api.example.com/v1?api_key=abc123XYZ",
        "db.statement": "WHERE card = '4111111111111111'",
        "exception.message": f"invalid key {OPENAI_KEY}",
        "count": 3,
    }
    r = redactor()
    assert r.attributes(attributes) == {
        "gen_ai.request.model": "gpt-4o",
        "user.email": "[REDACTED:email]",
        "server.address": "[REDACTED:ipv4]",
        "http.url": "https://api.example.com/v1?api_key=[REDACTED:secret]",
        "db.statement": "WHERE card = '[REDACTED:card]'",
        "exception.message": "invalid key [REDACTED:secret]",
        "count": 3,
    }
    assert r.take_counts() == {"email": 1, "ipv4": 1, "secret": 2, "card": 1}


def test_allow_listed_keys_are_never_scanned() -> None:
    attributes = {
        "gen_ai.response.id": "chatcmpl-4111111111111111",
        "gen_ai.request.model": "ft:gpt-4o:acme:jane@example.com",
        "gen_ai.usage.input_tokens": 812,
        "myapp.ticket": "415-555-0132",
        "myapp.ids.customer": "jane@example.com",
    }
    assert redactor(allow_keys=["myapp.ticket", "myapp.ids.*"]).attributes(attributes) is attributes
    assert redactor().attributes(attributes)["myapp.ticket"] == "[REDACTED:phone]"


@pytest.mark.parametrize(
    "key",
    [
        "db.password",
        "http.request.header.authorization",
        "http.request.header.x-api-key",
        "aws.secret_access_key",
        "app.API_KEY",
        "token",
        "oauth.refresh_token",
        "http.request.header.cookie",
    ],
)
def test_keys_named_like_secrets_are_masked_whole(key: str) -> None:
    r = redactor()
    assert r.attributes({key: "plain words", "ok": "plain words"}) == {key: "[REDACTED:secret]", "ok": "plain words"}
    assert r.attributes({key: ["a", "b"]}) == {key: ["[REDACTED:secret]", "[REDACTED:secret]"]}


@pytest.mark.parametrize(
    "key",
    [
        "gen_ai.usage.input_tokens",
        "gen_ai.request.max_tokens",
        "llm.token_count.prompt",
        "gen_ai.token.type",
        "keyword",
        "tokenizer",
        "monkey",
    ],
)
def test_keys_that_only_contain_a_secret_word_are_not_secrets(key: str) -> None:
    assert redactor().attributes({key: "plain words"}) == {key: "plain words"}


def test_secret_keys_inside_maps() -> None:
    value = {"headers": {"Authorization": "opaque", "accept": "json"}, "password": "hunter2"}
    assert redactor().value(value) == {
        "headers": {"Authorization": "[REDACTED:secret]", "accept": "json"},
        "password": "[REDACTED:secret]",
    }


def test_text_masks_names_and_a_drop_rule_masks_the_whole_text() -> None:
    assert redactor().text("notify jane@example.com") == "notify [REDACTED:email]"
    assert redactor().text(None) is None
    assert redactor(detectors={"email": "drop"}).text("notify jane@example.com") == "[REDACTED:email]"
    name = "chat gpt-4o"
    assert redactor().text(name) is name


def test_changed_attributes_are_a_copy() -> None:
    attributes = {"input.value": "mail a@example.com", "output.value": "ok", "gen_ai.request.model": "gpt-4o"}
    original = dict(attributes)
    redacted = redactor().attributes(attributes)
    assert redacted == {"input.value": "mail [REDACTED:email]", "output.value": "ok", "gen_ai.request.model": "gpt-4o"}
    assert attributes == original


def test_non_string_values_pass_through() -> None:
    attributes = {"gen_ai.prompt.0.content": 4155550132, "output.value": None, "input.value": True}
    assert redactor().attributes(attributes) is attributes


# --- conventions -----------------------------------------------------------------------------


def test_semconv_messages_stay_valid_json() -> None:
    messages = [
        {"role": "system", "parts": [{"type": "text", "content": "Réponds en français."}]},
        {
            "role": "user",
            "parts": [
                {"type": "text", "content": "Mail jane@example.com, call +44 20 7946 0958"},
                {"type": "tool_call_response", "id": "call_1", "response": {"ip": "10.1.2.3", "n": 4111111111111111}},
            ],
        },
    ]
    r = redactor()
    redacted = r.attributes({"gen_ai.input.messages": json.dumps(messages)})["gen_ai.input.messages"]
    assert json.loads(redacted) == [
        {"role": "system", "parts": [{"type": "text", "content": "Réponds en français."}]},
        {
            "role": "user",
            "parts": [
                {"type": "text", "content": "Mail [REDACTED:email], call [REDACTED:phone]"},
                {
                    "type": "tool_call_response",
                    "id": "call_1",
                    "response": {"ip": "[REDACTED:ipv4]", "n": 4111111111111111},
                },
            ],
        },
    ]
    assert "Réponds" in redacted  # not \u-escaped
    assert r.take_counts() == {"email": 1, "phone": 1, "ipv4": 1}


def test_json_without_pii_is_left_byte_for_byte() -> None:
    value = '[{"role":"user","parts":[{"type":"text","content":"version 1.2.3 in 2024"}]}]'
    assert redactor().value(value) is value


def test_json_with_pii_only_across_structure_is_left_alone() -> None:
    value = '{"a": "415", "b": "555-0132"}'
    assert redactor().value(value) is value


def test_escaped_json_is_parsed_before_matching() -> None:
    value = json.dumps({"content": "mail jürgen@müller.de"})  # ensure_ascii: "j\u00fcrgen@m\u00fcller.de"
    assert json.loads(redactor().value(value)) == {"content": "mail [REDACTED:email]"}


def test_json_too_deep_to_parse_is_redacted_as_text() -> None:
    value = "[" * 5000 + '"a@example.com"' + "]" * 5000
    assert redactor().value(value) == "[" * 5000 + '"[REDACTED:email]"' + "]" * 5000


def test_text_that_only_looks_like_json() -> None:
    value = "{not json} mail a@example.com"
    assert redactor().value(value) == "{not json} mail [REDACTED:email]"


def test_drop_inside_json_drops_the_whole_attribute() -> None:
    r = redactor(detectors={"secret": "drop"})
    value = json.dumps([{"role": "user", "parts": [{"type": "text", "content": f"key {OPENAI_KEY}"}]}])
    assert r.attributes({"gen_ai.input.messages": value, "gen_ai.request.model": "m"}) == {"gen_ai.request.model": "m"}
    assert r.take_counts() == {"secret": 1}


def test_prompt_template_variables() -> None:
    value = json.dumps({"customer_email": "jane@example.com", "count": 3})
    redacted = redactor().attributes({"llm.prompt_template.variables": value})
    assert json.loads(redacted["llm.prompt_template.variables"]) == {"customer_email": "[REDACTED:email]", "count": 3}


def test_openinference_flattened_messages() -> None:
    attributes = {
        "llm.input_messages.0.message.role": "user",
        "llm.input_messages.0.message.content": "my card is 4111 1111 1111 1111",
        "llm.output_messages.0.message.tool_calls.0.tool_call.function.arguments": '{"email": "a@example.com"}',
        "llm.output_messages.0.message.tool_calls.0.tool_call.function.name": "send_mail",
    }
    assert redactor().attributes(attributes) == {
        "llm.input_messages.0.message.role": "user",
        "llm.input_messages.0.message.content": "my card is [REDACTED:card]",
        "llm.output_messages.0.message.tool_calls.0.tool_call.function.arguments": '{"email": "[REDACTED:email]"}',
        "llm.output_messages.0.message.tool_calls.0.tool_call.function.name": "send_mail",
    }


def test_traceloop_content_redacted_role_kept() -> None:
    attributes = {
        "gen_ai.prompt.0.role": "user",
        "gen_ai.prompt.0.content": "reach me at jane@example.com",
        "gen_ai.completion.0.role": "assistant",
        "gen_ai.completion.0.content": "Noted, jane@example.com.",
        "gen_ai.completion.0.finish_reason": "stop",
    }
    assert redactor().attributes(attributes) == {
        "gen_ai.prompt.0.role": "user",
        "gen_ai.prompt.0.content": "reach me at [REDACTED:email]",
        "gen_ai.completion.0.role": "assistant",
        "gen_ai.completion.0.content": "Noted, [REDACTED:email].",
        "gen_ai.completion.0.finish_reason": "stop",
    }


def test_array_values_are_walked() -> None:
    attributes = {"ai.values": ["hello", "mail a@example.com"], "llm.prompts": ["call 415-555-0132"]}
    assert redactor().attributes(attributes) == {
        "ai.values": ["hello", "mail [REDACTED:email]"],
        "llm.prompts": ["call [REDACTED:phone]"],
    }


# --- GenAI events and log records ------------------------------------------------------------


def test_event_body_dict() -> None:
    body = {
        "content": "mail a@example.com",
        "role": "user",
        "tool_calls": [{"id": "c1", "function": {"arguments": '{"ip": "10.0.0.1"}'}}],
        "index": 0,
    }
    redacted = redactor().value(body)
    assert redacted == {
        "content": "mail [REDACTED:email]",
        "role": "user",
        "tool_calls": [{"id": "c1", "function": {"arguments": '{"ip": "[REDACTED:ipv4]"}'}}],
        "index": 0,
    }
    assert body["content"] == "mail a@example.com"


def test_event_body_list_and_unchanged_body() -> None:
    r = redactor()
    assert r.value(["a@example.com", {"x": 1}]) == ["[REDACTED:email]", {"x": 1}]
    body = {"content": "hello", "parts": ["fine"]}
    assert r.value(body) is body


def test_event_body_dropped() -> None:
    assert redactor(detectors={"card": "drop"}).value({"content": "4111 1111 1111 1111"}) is DROP


def test_event_attributes_all_content() -> None:
    attributes = {
        "gen_ai.evaluation.explanation": "user a@example.com was rude",
        "gen_ai.evaluation.score.value": 0.2,
        "event.name": "gen_ai.evaluation.result",
    }
    assert redactor().attributes(attributes, all_content=True) == {
        "gen_ai.evaluation.explanation": "user [REDACTED:email] was rude",
        "gen_ai.evaluation.score.value": 0.2,
        "event.name": "gen_ai.evaluation.result",
    }


# --- counts ----------------------------------------------------------------------------------


def test_counts_by_rule_and_take_counts_resets() -> None:
    r = redactor(rules=[{"name": "ticket", "pattern": r"TICKET-\d+"}])
    r.attributes(
        {
            "input.value": f"a@example.com b@example.com 415-555-0132 {OPENAI_KEY} TICKET-9",
            "output.value": "4111 1111 1111 1111 from 10.0.0.1",
        }
    )
    assert r.take_counts() == {"email": 2, "phone": 1, "secret": 1, "ticket": 1, "card": 1, "ipv4": 1}
    assert r.take_counts() == {}


def test_email_matches_are_finditers() -> None:
    """The e-mail detector tries one start per '@' instead of every position: the matches must be finditer's, for
    any window, local parts up to and past 64 characters, '@' next to '@', Unicode, and a domain cut by the
    window's end. A seeded sample of mostly near-misses, and the edge cases written out."""
    email = redact._DETECTORS["email"][0]
    cases = [
        "a@b.co",
        "@a.com",
        "a@@b.com x@y.org",
        "x" * 64 + "@example.com",
        "x" * 65 + "@example.com",
        "-" + "x" * 63 + "@example.com y@z.io",
        "jürgen@beispiel.de.",
        "a@b.com@c.org d@e.net",
        "icon@2x.png, me@host.example.com",
        "mail a.b%c+d-e@sub-domain.example.co.uk.",
        "x@-bad.com y@good-.com z@ok.io",
    ]
    rng = random.Random(18)
    for _ in range(20_000):
        pieces = []
        for _ in range(rng.randint(1, 6)):
            roll = rng.random()
            if roll < 0.3:
                local = "".join(rng.choice("abü1._%+-") for _ in range(rng.randint(0, 70)))
                pieces.append(local + "@" + rng.choice(["example.com", "a.io", "b-c.de", "q.png", "-x.com", "e.c"]))
            else:
                pieces.append("".join(rng.choice("ab.@-_%+ x1ü\n:/") for _ in range(rng.randint(0, 12))))
        cases.append("".join(pieces))
    found = 0
    for text in cases:
        for pos, endpos in ((0, len(text)), *((rng.randint(0, len(text)), len(text)) for _ in range(2))):
            endpos = rng.randint(pos, len(text)) if rng.random() < 0.3 else endpos
            expected = [match.span() for match in email.regex.finditer(text, pos, endpos)]
            assert [match.span() for match in email.finditer(text, pos, endpos)] == expected, (text, pos, endpos)
            found += bool(expected)
    assert found > 1_000  # the sample reaches the matches, not only the misses
