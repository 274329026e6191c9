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
    "sync_schedule": ("SYNC_SCHEDULE", "market-hours", SyncSchedule.MARKET_HOURS),
    "log_level": ("LOG_LEVEL", "debug", "DEBUG"),
    "keys_debounce_seconds": ("KEYS_DEBOUNCE_SECONDS", "2.5", 2.5),
}


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

    assert settings == dataclasses.replace(Settings.from_env({}), **{name: parsed})


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
        ("KEYS_DEBOUNCE_SECONDS", "0"),
        ("KEYS_DEBOUNCE_SECONDS", "later"),
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
