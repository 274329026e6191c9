"""Settings read once from the environment, with the fixed variable names of docs/DESIGN.md."""

from __future__ import annotations

import dataclasses

import pytest

from agenttrader.settings import (
    DEFAULT_PROJECT,
    OFFICIAL_ALPACA_BASE_URLS,
    Settings,
    SyncSchedule,
)


def test_defaults_without_any_variable() -> None:
    settings = Settings.from_env({})

    assert settings == Settings(project=DEFAULT_PROJECT)
    assert settings.project == "demo-agenttrader"
    assert settings.pubsub_emulator_host is None
    assert settings.firestore_emulator_host is None
    assert settings.firebase_auth_emulator_host is None
    assert settings.extra_alpaca_base_urls == ()
    assert settings.allowed_alpaca_base_urls == OFFICIAL_ALPACA_BASE_URLS
    assert settings.vertex_ai_location == "us-central1"
    assert settings.vertex_ai_model == "gemini-2.5-flash"
    assert settings.vertex_ai_base_url is None
    assert settings.alpaca_timeout_seconds == 10.0
    assert settings.signal_daily_quota == 20
    assert settings.sync_schedule is SyncSchedule.ALWAYS
    assert settings.uses_emulators is False


def test_official_urls_are_the_two_alpaca_endpoints() -> None:
    assert set(OFFICIAL_ALPACA_BASE_URLS) == {
        "https://paper-api.alpaca.markets",
        "https://api.alpaca.markets",
    }


KEK_URI = "gcp-kms://projects/my-project/locations/us-central1/keyRings/agenttrader/cryptoKeys/credentials"

_VARIABLES: dict[str, tuple[str, str, object]] = {
    # field: (variable, raw value, parsed value); none of the values is the field's default.
    "project": ("GOOGLE_CLOUD_PROJECT", "my-project", "my-project"),
    "pubsub_emulator_host": ("PUBSUB_EMULATOR_HOST", "127.0.0.1:8085", "127.0.0.1:8085"),
    "firestore_emulator_host": ("FIRESTORE_EMULATOR_HOST", "127.0.0.1:8080", "127.0.0.1:8080"),
    "firebase_auth_emulator_host": (
        "FIREBASE_AUTH_EMULATOR_HOST",
        "127.0.0.1:9099",
        "127.0.0.1:9099",
    ),
    "extra_alpaca_base_urls": (
        "ALPACA_ALLOWED_BASE_URLS",
        "http://127.0.0.1:8765",
        ("http://127.0.0.1:8765",),
    ),
    "vertex_ai_location": ("VERTEX_AI_LOCATION", "europe-west4", "europe-west4"),
    "vertex_ai_model": ("VERTEX_AI_MODEL", "gemini-2.5-pro", "gemini-2.5-pro"),
    "vertex_ai_base_url": ("VERTEX_AI_BASE_URL", "http://127.0.0.1:9000", "http://127.0.0.1:9000"),
    "alpaca_timeout_seconds": ("ALPACA_TIMEOUT_SECONDS", "2.5", 2.5),
    "signal_daily_quota": ("SIGNAL_DAILY_QUOTA", "7", 7),
    "pulse_rollup_delay_seconds": ("PULSE_ROLLUP_DELAY_SECONDS", "0.25", 0.25),
    "fanout_messages_per_request": ("FANOUT_MESSAGES_PER_REQUEST", "20", 20),
    "sync_schedule": ("SYNC_SCHEDULE", "market-hours", SyncSchedule.MARKET_HOURS),
    "log_level": ("LOG_LEVEL", "debug", "DEBUG"),
    "tenant_sign_in_providers": (
        "TENANT_SIGN_IN_PROVIDERS",
        "password,google.com",
        ("password", "google.com"),
    ),
    "require_verified_email": ("REQUIRE_VERIFIED_EMAIL", "false", False),
    "credentials_kek_uri": ("CREDENTIALS_KEK_URI", KEK_URI, KEK_URI),
    "alpaca_oauth_client_id": ("ALPACA_OAUTH_CLIENT_ID", "app-client-1", "app-client-1"),
    "alpaca_oauth_client_secret": ("ALPACA_OAUTH_CLIENT_SECRET", "app-secret-1", "app-secret-1"),
    "alpaca_oauth_base_url": (
        "ALPACA_OAUTH_BASE_URL",
        "https://paper-api.alpaca.markets/v2",
        "https://paper-api.alpaca.markets",
    ),
    "keys_debounce_seconds": ("KEYS_DEBOUNCE_SECONDS", "2.5", 2.5),
    "reconcile_every_ticks": ("RECONCILE_EVERY_TICKS", "3", 3),
}

_EMULATOR_DEFAULTS = {"firestore_emulator_host", "firebase_auth_emulator_host"}
"""Fields whose variable also turns ``REQUIRE_VERIFIED_EMAIL``'s default off."""


def test_every_field_has_a_variable_listed_here() -> None:
    assert {f.name for f in dataclasses.fields(Settings)} == set(_VARIABLES), (
        "a Settings field was added or removed: list its variable in _VARIABLES"
    )


def test_every_variable_is_read() -> None:
    env = {variable: raw for variable, raw, _ in _VARIABLES.values()}

    settings = Settings.from_env(env)

    defaults = Settings(project=DEFAULT_PROJECT)
    for name, (variable, _, parsed) in _VARIABLES.items():
        assert getattr(settings, name) == parsed, variable
        assert getattr(defaults, name) != parsed, variable


@pytest.mark.parametrize(("name", "variable"), [(k, v[0]) for k, v in _VARIABLES.items()])
def test_each_variable_sets_only_its_field(name: str, variable: str) -> None:
    raw, parsed = _VARIABLES[name][1:]

    settings = Settings.from_env({variable: raw})

    expected = dataclasses.replace(Settings.from_env({}), **{name: parsed})
    if name in _EMULATOR_DEFAULTS:
        expected = dataclasses.replace(expected, require_verified_email=False)
    assert settings == expected


def test_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "from-environ")
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", "127.0.0.1:1")

    settings = Settings.from_env()

    assert settings.project == "from-environ"
    assert settings.uses_emulators is True


@pytest.mark.parametrize(
    ("raw", "extra"),
    [
        ("http://127.0.0.1:8765", ("http://127.0.0.1:8765",)),
        (" http://a.test , http://b.test:81 ", ("http://a.test", "http://b.test:81")),
        ("http://a.test,,, ,http://b.test,", ("http://a.test", "http://b.test")),
        ("", ()),
        (" , ", ()),
    ],
)
def test_allowed_base_urls_are_split_and_trimmed(raw: str, extra: tuple[str, ...]) -> None:
    settings = Settings.from_env({"ALPACA_ALLOWED_BASE_URLS": raw})

    assert settings.extra_alpaca_base_urls == extra
    assert settings.allowed_alpaca_base_urls == OFFICIAL_ALPACA_BASE_URLS + extra


def test_extra_urls_only_add_to_the_official_ones() -> None:
    settings = Settings.from_env({"ALPACA_ALLOWED_BASE_URLS": "http://127.0.0.1:8765"})

    for url in OFFICIAL_ALPACA_BASE_URLS:
        assert url in settings.allowed_alpaca_base_urls


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("ALPACA_TIMEOUT_SECONDS", "ten"),
        ("ALPACA_TIMEOUT_SECONDS", "0"),
        ("ALPACA_TIMEOUT_SECONDS", "-1"),
        ("ALPACA_TIMEOUT_SECONDS", "nan"),
        ("ALPACA_TIMEOUT_SECONDS", "inf"),
        ("ALPACA_TIMEOUT_SECONDS", "1s"),
        ("PULSE_ROLLUP_DELAY_SECONDS", "soon"),
        ("PULSE_ROLLUP_DELAY_SECONDS", "-5"),
        ("SIGNAL_DAILY_QUOTA", "many"),
        ("SIGNAL_DAILY_QUOTA", "1.5"),
        ("SIGNAL_DAILY_QUOTA", "-1"),
        ("SIGNAL_DAILY_QUOTA", "1e3"),
        ("FANOUT_MESSAGES_PER_REQUEST", "0"),
        ("FANOUT_MESSAGES_PER_REQUEST", "1001"),
        ("FANOUT_MESSAGES_PER_REQUEST", "ten"),
        ("KEYS_DEBOUNCE_SECONDS", "0"),
        ("KEYS_DEBOUNCE_SECONDS", "later"),
        ("RECONCILE_EVERY_TICKS", "0"),
        ("RECONCILE_EVERY_TICKS", "-2"),
        ("RECONCILE_EVERY_TICKS", "five"),
    ],
)
def test_bad_numbers_name_the_variable(name: str, raw: str) -> None:
    with pytest.raises(ValueError, match=name):
        Settings.from_env({name: raw})


@pytest.mark.parametrize(
    ("env", "timeout", "quota"),
    [
        ({"ALPACA_TIMEOUT_SECONDS": " 0.5 "}, 0.5, 20),
        ({"ALPACA_TIMEOUT_SECONDS": "   "}, 10.0, 20),
        ({"SIGNAL_DAILY_QUOTA": "0"}, 10.0, 0),
        ({"SIGNAL_DAILY_QUOTA": " 3 "}, 10.0, 3),
    ],
)
def test_numbers_are_trimmed_and_blank_means_default(
    env: dict[str, str], timeout: float, quota: int
) -> None:
    settings = Settings.from_env(env)

    assert settings.alpaca_timeout_seconds == timeout
    assert settings.signal_daily_quota == quota


@pytest.mark.parametrize(
    "name",
    [
        "GOOGLE_CLOUD_PROJECT",
        "VERTEX_AI_LOCATION",
        "VERTEX_AI_MODEL",
    ],
)
def test_blank_strings_fall_back_to_defaults(name: str) -> None:
    assert Settings.from_env({name: "  "}) == Settings.from_env({})


@pytest.mark.parametrize(
    ("env", "uses"),
    [
        ({"PUBSUB_EMULATOR_HOST": "127.0.0.1:1"}, True),
        ({"FIRESTORE_EMULATOR_HOST": "127.0.0.1:1"}, True),
        ({"FIREBASE_AUTH_EMULATOR_HOST": "127.0.0.1:1"}, False),
        ({"PUBSUB_EMULATOR_HOST": " "}, False),
    ],
)
def test_uses_emulators(env: dict[str, str], uses: bool) -> None:
    assert Settings.from_env(env).uses_emulators is uses


@pytest.mark.parametrize(
    ("raw", "schedule"),
    [
        ("always", SyncSchedule.ALWAYS),
        (" market-hours ", SyncSchedule.MARKET_HOURS),
        ("", SyncSchedule.ALWAYS),
        ("  ", SyncSchedule.ALWAYS),
    ],
)
def test_sync_schedule_values(raw: str, schedule: SyncSchedule) -> None:
    assert Settings.from_env({"SYNC_SCHEDULE": raw}).sync_schedule is schedule


@pytest.mark.parametrize("raw", ["market_hours", "Market-Hours", "cron", "never", "1"])
def test_unknown_sync_schedule_fails_naming_the_variable_and_the_choices(raw: str) -> None:
    with pytest.raises(ValueError, match=r"SYNC_SCHEDULE must be always or market-hours"):
        Settings.from_env({"SYNC_SCHEDULE": raw})


def test_settings_are_frozen() -> None:
    settings = Settings.from_env({})

    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.project = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("raw", "level"), [("", "INFO"), ("debug", "DEBUG"), (" WARNING ", "WARNING")]
)
def test_log_level_values(raw: str, level: str) -> None:
    assert Settings.from_env({"LOG_LEVEL": raw}).log_level == level


@pytest.mark.parametrize("raw", ["verbose", "10", "TRACE"])
def test_unknown_log_level_fails_naming_the_variable(raw: str) -> None:
    with pytest.raises(ValueError, match=r"LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR"):
        Settings.from_env({"LOG_LEVEL": raw})


@pytest.mark.parametrize(
    ("raw", "providers"),
    [
        ("", None),
        ("  ", None),
        ("password", ("password",)),
        (" password , google.com ,phone", ("password", "google.com", "phone")),
        ("anonymous,password,anonymous", ("anonymous", "password")),
        ("oidc.acme-sso,saml.Corp_1", ("oidc.acme-sso", "saml.Corp_1")),
    ],
)
def test_tenant_sign_in_providers(raw: str, providers: tuple[str, ...] | None) -> None:
    assert Settings.from_env({"TENANT_SIGN_IN_PROVIDERS": raw}).tenant_sign_in_providers == (
        providers
    )


@pytest.mark.parametrize(
    "raw", ["password,,phone", ",", "password,", "google com", "pass/word", "*", "-x"]
)
def test_malformed_providers_fail_naming_the_variable(raw: str) -> None:
    with pytest.raises(ValueError, match="TENANT_SIGN_IN_PROVIDERS"):
        Settings.from_env({"TENANT_SIGN_IN_PROVIDERS": raw})


@pytest.mark.parametrize(
    ("env", "required"),
    [
        ({}, True),
        ({"PUBSUB_EMULATOR_HOST": "127.0.0.1:1"}, True),
        ({"FIRESTORE_EMULATOR_HOST": "127.0.0.1:1"}, False),
        ({"FIREBASE_AUTH_EMULATOR_HOST": "127.0.0.1:1"}, False),
        ({"FIRESTORE_EMULATOR_HOST": " "}, True),
        ({"FIRESTORE_EMULATOR_HOST": "127.0.0.1:1", "REQUIRE_VERIFIED_EMAIL": "true"}, True),
        ({"REQUIRE_VERIFIED_EMAIL": " OFF "}, False),
        ({"REQUIRE_VERIFIED_EMAIL": "0"}, False),
        ({"REQUIRE_VERIFIED_EMAIL": "no"}, False),
        ({"FIREBASE_AUTH_EMULATOR_HOST": "h:1", "REQUIRE_VERIFIED_EMAIL": "Yes"}, True),
        ({"REQUIRE_VERIFIED_EMAIL": "1"}, True),
        ({"REQUIRE_VERIFIED_EMAIL": "  "}, True),
    ],
)
def test_require_verified_email_defaults_on_except_with_the_emulators(
    env: dict[str, str], required: bool
) -> None:
    assert Settings.from_env(env).require_verified_email is required


@pytest.mark.parametrize("raw", ["maybe", "2", "enabled", "t"])
def test_malformed_require_verified_email_fails_naming_the_variable(raw: str) -> None:
    with pytest.raises(ValueError, match="REQUIRE_VERIFIED_EMAIL must be true or false"):
        Settings.from_env({"REQUIRE_VERIFIED_EMAIL": raw})


# --- credentials: the KEK and the OAuth client ------------------------------------------------


@pytest.mark.parametrize(
    ("env", "kek"),
    [
        ({"CREDENTIALS_KEK_URI": KEK_URI}, KEK_URI),
        ({"CREDENTIALS_KEK_URI": KEK_URI, "FIRESTORE_EMULATOR_HOST": "127.0.0.1:1"}, KEK_URI),
        ({"FIRESTORE_EMULATOR_HOST": "127.0.0.1:1"}, None),  # the local development KEK
        ({"FIRESTORE_EMULATOR_HOST": "127.0.0.1:1", "PUBSUB_EMULATOR_HOST": "127.0.0.1:2"}, None),
    ],
)
def test_the_kek_is_the_uri_or_the_local_one_with_the_firestore_emulator(
    env: dict[str, str], kek: str | None
) -> None:
    assert Settings.from_env(env).credentials_kek() == kek


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"CREDENTIALS_KEK_URI": "  "},
        # Pub/Sub on the emulator but Firestore real: a local key must never seal real data.
        {"PUBSUB_EMULATOR_HOST": "127.0.0.1:1"},
        {"FIREBASE_AUTH_EMULATOR_HOST": "127.0.0.1:1"},
    ],
)
def test_no_kek_outside_the_emulators_fails_naming_the_variable(env: dict[str, str]) -> None:
    settings = Settings.from_env(env)  # functions that never seal start without it

    with pytest.raises(ValueError, match=r"^CREDENTIALS_KEK_URI is not set"):
        settings.credentials_kek()


@pytest.mark.parametrize(
    "raw",
    [
        "projects/p/locations/l/keyRings/r/cryptoKeys/k",
        "aws-kms://arn:aws:kms:us-east-1:1:key/k",
        "gcp-kms://projects/p/locations/l/keyRings/r",
        "gcp-kms://projects/p/locations/l/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1",
        "gcp-kms://projects/p/locations/l/keyRings/r/cryptoKeys/k?x=1",
        "gcp-kms://projects//locations/l/keyRings/r/cryptoKeys/k",
    ],
)
def test_malformed_kek_uri_fails_at_start_up_naming_the_variable(raw: str) -> None:
    with pytest.raises(ValueError, match="CREDENTIALS_KEK_URI must be gcp-kms://projects/"):
        Settings.from_env({"CREDENTIALS_KEK_URI": raw})


def test_oauth_defaults_to_alpaca_live_without_a_client() -> None:
    settings = Settings.from_env({})

    assert settings.alpaca_oauth_base_url == "https://api.alpaca.markets"
    assert settings.alpaca_oauth_client_id is None
    assert settings.alpaca_oauth_client_secret is None


@pytest.mark.parametrize(
    "raw",
    [
        "https://api.alpaca.markets.evil.example",
        "http://api.alpaca.markets",
        "https://user:pw@api.alpaca.markets",
        "http://127.0.0.1:8765",  # only once ALPACA_ALLOWED_BASE_URLS lists it
    ],
)
def test_oauth_base_url_must_pass_the_allowlist(raw: str) -> None:
    with pytest.raises(ValueError, match=r"^ALPACA_OAUTH_BASE_URL: "):
        Settings.from_env({"ALPACA_OAUTH_BASE_URL": raw})


def test_oauth_base_url_may_be_an_allowed_local_url() -> None:
    settings = Settings.from_env(
        {
            "ALPACA_ALLOWED_BASE_URLS": "http://127.0.0.1:8765",
            "ALPACA_OAUTH_BASE_URL": "http://127.0.0.1:8765/",
        }
    )

    assert settings.alpaca_oauth_base_url == "http://127.0.0.1:8765"


def test_oauth_client_secret_is_not_in_the_repr() -> None:
    settings = Settings.from_env(
        {"ALPACA_OAUTH_CLIENT_ID": "app-client-1", "ALPACA_OAUTH_CLIENT_SECRET": "s3cr3t-0f-app"}
    )

    assert "app-client-1" in repr(settings)
    assert "s3cr3t-0f-app" not in repr(settings) + str(settings)
