"""The base-URL allowlist: only exact allowed origins pass; a refusal names the rule, never
the URL or its host."""

from __future__ import annotations

import pytest

from agenttrader.errors import DisallowedBaseUrl, PermanentError
from agenttrader.settings import OFFICIAL_ALPACA_BASE_URLS
from agenttrader.urls import MAX_URL_LENGTH, allowed_host, check_base_url, origin_of

PAPER = "https://paper-api.alpaca.markets"
LIVE = "https://api.alpaca.markets"
LOCAL = "http://127.0.0.1:8765"
ALLOWED = (*OFFICIAL_ALPACA_BASE_URLS, LOCAL)


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        (PAPER, PAPER),
        (PAPER + "/", PAPER),
        (PAPER + "/v2", PAPER),
        (PAPER + "/v2/", PAPER),
        (LIVE, LIVE),
        (LIVE + "/", LIVE),
        (LIVE + "/v2", LIVE),
        (LIVE + "/v2/", LIVE),
        ("https://PAPER-API.Alpaca.Markets", PAPER),
        ("HTTPS://API.ALPACA.MARKETS/v2", LIVE),
        (PAPER + ":443", PAPER),
        (LOCAL, LOCAL),
        (LOCAL + "/", LOCAL),
        (LOCAL + "/v2", LOCAL),
    ],
)
def test_allowed_urls_are_reduced_to_their_origin(url: str, origin: str) -> None:
    assert check_base_url(url, ALLOWED) == origin


def test_official_urls_are_allowed_without_extras() -> None:
    assert check_base_url(PAPER + "/v2", OFFICIAL_ALPACA_BASE_URLS) == PAPER
    assert check_base_url(LIVE, OFFICIAL_ALPACA_BASE_URLS) == LIVE


def test_extra_url_is_refused_unless_allowed() -> None:
    with pytest.raises(DisallowedBaseUrl):
        check_base_url(LOCAL, OFFICIAL_ALPACA_BASE_URLS)


def test_allowlist_entries_are_normalised_too() -> None:
    assert check_base_url(PAPER, ["HTTPS://Paper-Api.Alpaca.Markets/v2/"]) == PAPER


@pytest.mark.parametrize(
    "url",
    [
        "https://paper-api.alpaca.markets.evil.example",
        "https://evil.example/paper-api.alpaca.markets",
        "https://evil.example/?u=https://paper-api.alpaca.markets",
        "https://paper-api.alpaca.markets@evil.example",
        "https://user:pass@paper-api.alpaca.markets",
        "https://user@paper-api.alpaca.markets",
        "https://paper-api.alpaca.markets:443@evil.example",
        "http://paper-api.alpaca.markets",
        "http://api.alpaca.markets/v2",
        "https://paper-api.alpaca.markets:8443",
        "https://paper-api.alpaca.markets:80",
        "https://paper-api.alpaca.markets:0",
        "https://paper-api.alpaca.markets:99999",
        "https://paper-api.alpaca.markets:abc",
        "https://paper-api.alpaca.markets?x=1",
        "https://paper-api.alpaca.markets/v2?x=1",
        "https://paper-api.alpaca.markets?",
        "https://paper-api.alpaca.markets#frag",
        "https://paper-api.alpaca.markets#",
        "https://paper-api.alpaca.markets/v3",
        "https://paper-api.alpaca.markets/v2/account",
        "https://paper-api.alpaca.markets/../v2",
        "https://paper-api.alpaca.markets/%2e%2e/v2",
        "https://evil.example\\@paper-api.alpaca.markets",
        "https://evil.example\\.paper-api.alpaca.markets",
        "https:\\\\paper-api.alpaca.markets",
        " https://paper-api.alpaca.markets",
        "https://paper-api.alpaca.markets ",
        "https://paper-api.alpaca.markets\n",
        "https://paper-api.alpaca.markets\nHost: evil.example",
        "https://paper-api.alpaca.markets\r\n",
        "https://paper-api.alpaca.markets\t",
        "https://paper-api.alpaca.markets\x00.evil.example",
        "https://paper-api.alpaca.markets.",
        "https://paper-api%2ealpaca.markets",
        "https://p\u0430per-api.alpaca.markets",  # Cyrillic 'а'
        "https://paper-api.alpaca.markets;evil.example",
        "https:paper-api.alpaca.markets",
        "https:/paper-api.alpaca.markets",
        "//paper-api.alpaca.markets",
        "paper-api.alpaca.markets",
        "javascript:alert(1)",
        "file:///etc/passwd",
        "ftp://paper-api.alpaca.markets",
        "wss://paper-api.alpaca.markets",
        "gopher://paper-api.alpaca.markets",
        "http://169.254.169.254",
        "http://169.254.169.254/computeMetadata/v1/",
        "http://metadata.google.internal",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://localhost:8765",
        "http://127.0.0.1:8766",
        "http://127.0.0.1",
        "https://127.0.0.1:8765",
        "http://0.0.0.0:8765",
        "http://127.1:8765",
        "http://2130706433:8765",
        "http://[::1]:8765",
        "http://[::1]",
        "http://[::ffff:127.0.0.1]:8765",
        "http://[::1",
        "https://",
        "https:///v2",
    ],
)
def test_look_alikes_and_tricks_are_refused(url: str) -> None:
    with pytest.raises(DisallowedBaseUrl):
        check_base_url(url, ALLOWED)


@pytest.mark.parametrize(
    "value",
    [None, "", 42, b"https://paper-api.alpaca.markets", ["https://paper-api.alpaca.markets"]],
)
def test_non_strings_and_empty_are_refused(value: object) -> None:
    with pytest.raises(DisallowedBaseUrl, match="non-empty string"):
        check_base_url(value, ALLOWED)


def test_overlong_urls_are_refused() -> None:
    url = PAPER + "/v2" + "/" * 3000
    assert len(url) > MAX_URL_LENGTH

    with pytest.raises(DisallowedBaseUrl, match="too long"):
        check_base_url(url, ALLOWED)


def test_disallowed_base_url_is_a_permanent_failure() -> None:
    assert issubclass(DisallowedBaseUrl, PermanentError)


@pytest.mark.parametrize(
    "url",
    [
        "https://PKSECRET:SECRETVALUE@evil.example",
        "https://PKSECRET:SECRETVALUE@paper-api.alpaca.markets",
        "https://SECRETVALUE@paper-api.alpaca.markets/v2",
        "http://PKSECRET:SECRETVALUE@127.0.0.1:8765",
        "https://evil.example/SECRETVALUE",
        "https://evil.example?key=SECRETVALUE",
        "https://evil.example#SECRETVALUE",
        "https://evil.example\\SECRETVALUE@paper-api.alpaca.markets",
        "https://SECRETVALUE.evil.example\n",
        "ftp://PKSECRET:SECRETVALUE@evil.example",
        "https://PKSECRET:SECRETVALUE@[::1",
        "https://PKSECRET:SECRETVALUE@evil.example:notaport",
        "https://PKSECRET:SECRETVALUE@" + "a" * 3000,
    ],
)
def test_error_message_never_echoes_secrets(url: str) -> None:
    with pytest.raises(DisallowedBaseUrl) as info:
        check_base_url(url, ALLOWED)

    text = str(info.value) + repr(info.value) + str(info.value.args)
    assert "SECRETVALUE" not in text
    assert "PKSECRET" not in text
    # The refusal does not chain an exception that would print the URL in a traceback.
    assert info.value.__cause__ is None


SECRET = "Jk3ZGLb9R4h0i9g4ZrTl5b3aWqnMbqNCxzqJFrTa"
KEY_ID = "PKQ7ZD4NKT2XW8YB3M6P"


@pytest.mark.parametrize(
    ("url", "rule"),
    [
        (None, "must be a non-empty string"),
        ("https://evil.example/v2", "host is not on the allowlist"),
        (f"https://{SECRET}.evil.example", "host is not on the allowlist"),
        (f"https://{SECRET.upper()}.example", "host is not on the allowlist"),
        (f"https://{KEY_ID}.evil.example/v2", "host is not on the allowlist"),
        (f"https://{KEY_ID.lower()}-{SECRET}.example:8443", "host is not on the allowlist"),
        (f"http://{SECRET}.example", "host is not on the allowlist"),
        (f"ftp://{SECRET}.example", "scheme must be https (http only for an allowed local URL)"),
        (f"https://{KEY_ID}:{SECRET}@paper-api.alpaca.markets", "userinfo not allowed"),
        (f"https://{SECRET}.example?{KEY_ID}", "query or fragment not allowed"),
        (f"https://{SECRET}.example/{KEY_ID}", "path must be empty, / or /v2"),
        (f"https://{SECRET}_{KEY_ID}.example", "host is not a valid host name"),
        (f"https://{SECRET}.example:{KEY_ID}", "not a valid URL"),
        (f"https://{SECRET}.example\n", "whitespace, control characters or too long"),
    ],
)
def test_a_refusal_names_the_rule_never_the_url_or_its_host(url: object, rule: str) -> None:
    """A key pasted into the host (any case: the host is lower-cased on the way) is not echoed
    in any form, so no log line, record or dead letter can carry it."""
    with pytest.raises(DisallowedBaseUrl) as info:
        check_base_url(url, ALLOWED)

    text = str(info.value)
    assert text.startswith(f"base URL refused: {rule}")
    for secret in (SECRET, KEY_ID):
        for form in (secret, secret.lower(), secret.upper()):
            assert form not in text
    assert "example" not in text and "://" not in text


@pytest.mark.parametrize(
    ("url", "host"),
    [
        (PAPER + "/v2", "paper-api.alpaca.markets"),
        ("HTTPS://API.ALPACA.MARKETS", "api.alpaca.markets"),
        (LOCAL, "127.0.0.1"),
        (f"https://{SECRET}.evil.example", None),
        (f"https://{KEY_ID}:{SECRET}@paper-api.alpaca.markets", None),
        ("https://paper-api.alpaca.markets.evil.example", None),
        (None, None),
    ],
)
def test_allowed_host_only_ever_names_an_allowlisted_host(url: object, host: str | None) -> None:
    assert allowed_host(url, ALLOWED) == host


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("https://Example.COM:443/", "https://example.com"),
        ("http://example.com:80", "http://example.com"),
        ("http://example.com:8080/v2", "http://example.com:8080"),
        ("https://example.com:80", "https://example.com:80"),
        ("http://[::1]:8080", "http://[::1]:8080"),
        ("http://[::1]", "http://[::1]"),
    ],
)
def test_origin_of_normalises_scheme_host_and_default_port(url: str, origin: str) -> None:
    assert origin_of(url) == origin
