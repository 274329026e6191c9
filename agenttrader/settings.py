"""Runtime settings, read once from the environment (names fixed by docs/DESIGN.md)."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

OFFICIAL_ALPACA_BASE_URLS: tuple[str, ...] = (
    "https://paper-api.alpaca.markets",
    "https://api.alpaca.markets",
)
"""Always allowed; ``ALPACA_ALLOWED_BASE_URLS`` can only add to these."""

DEFAULT_PROJECT = "demo-agenttrader"
"""The ``demo-`` prefix marks an emulator-only project, as the Firebase tools do."""


class SyncSchedule(StrEnum):
    """When ``publish_user_syncs`` publishes (``SYNC_SCHEDULE``)."""

    ALWAYS = "always"
    """Every tick, around the clock (the default; ``make run`` and the tests)."""
    MARKET_HOURS = "market-hours"
    """Only while Alpaca's ``/v2/clock`` says the market is open (see ``market_clock``)."""


def _schedule(env: Mapping[str, str]) -> SyncSchedule:
    raw = env.get("SYNC_SCHEDULE", "").strip()
    if not raw:
        return SyncSchedule.ALWAYS
    try:
        return SyncSchedule(raw)
    except ValueError:
        allowed = " or ".join(s.value for s in SyncSchedule)
        raise ValueError(f"SYNC_SCHEDULE must be {allowed}, got {raw[:40]!r}") from None


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _log_level(env: Mapping[str, str]) -> str:
    raw = env.get("LOG_LEVEL", "").strip().upper()
    if not raw:
        return "INFO"
    if raw not in LOG_LEVELS:
        raise ValueError(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {raw[:40]!r}")
    return raw


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError as err:
        raise ValueError(f"{name} must be a number, got {raw!r}") from err
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {raw!r}")
    return value


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError as err:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from err
    if value < 0:
        raise ValueError(f"{name} must not be negative, got {raw!r}")
    return value


def _check_allowlist(urls: tuple[str, ...]) -> None:
    """A malformed allowlist entry fails at start-up, not as every tenant's permanent error."""
    from agenttrader.errors import DisallowedBaseUrl
    from agenttrader.urls import origin_of

    for url in urls:
        try:
            origin_of(url)
        except DisallowedBaseUrl as err:
            raise ValueError(f"ALPACA_ALLOWED_BASE_URLS entry {url[:80]!r}: {err}") from None


def _optional(env: Mapping[str, str], name: str) -> str | None:
    return env.get(name, "").strip() or None


@dataclass(frozen=True)
class Settings:
    """Everything the functions read from their environment."""

    project: str
    """``GOOGLE_CLOUD_PROJECT``."""
    pubsub_emulator_host: str | None = None
    firestore_emulator_host: str | None = None
    firebase_auth_emulator_host: str | None = None
    extra_alpaca_base_urls: tuple[str, ...] = ()
    """``ALPACA_ALLOWED_BASE_URLS``, in addition to :data:`OFFICIAL_ALPACA_BASE_URLS`."""
    vertex_ai_location: str = "us-central1"
    vertex_ai_model: str = "gemini-2.5-flash"
    vertex_ai_base_url: str | None = None
    alpaca_timeout_seconds: float = 10.0
    """Connect and read timeout of one Alpaca request (``ALPACA_TIMEOUT_SECONDS``)."""
    signal_daily_quota: int = 20
    """Trading signals one user may generate per UTC day (``SIGNAL_DAILY_QUOTA``)."""
    pulse_rollup_delay_seconds: float = 5.0
    """How long a worker instance gathers results before it refreshes ``ops/last_pulse``
    (``PULSE_ROLLUP_DELAY_SECONDS``): at most one refresh per instance per delay."""
    sync_schedule: SyncSchedule = SyncSchedule.ALWAYS
    """When ticks publish (``SYNC_SCHEDULE``): ``always`` or ``market-hours``."""
    log_level: str = "INFO"
    """``LOG_LEVEL``: at ``INFO`` (the default) a successful sync logs nothing — at a line per
    tenant a minute that is most of the Cloud Logging bill; ``DEBUG`` logs it too."""
    keys_debounce_seconds: float = 10.0
    """``KEYS_DEBOUNCE_SECONDS``: the secrets trigger handles at most one new version of a
    tenant's credentials per this many seconds; a write inside the window is handled when
    Eventarc redelivers its event, reading the credentials as they are by then."""

    @property
    def allowed_alpaca_base_urls(self) -> tuple[str, ...]:
        return OFFICIAL_ALPACA_BASE_URLS + self.extra_alpaca_base_urls

    @property
    def uses_emulators(self) -> bool:
        return bool(self.pubsub_emulator_host or self.firestore_emulator_host)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read the settings; a malformed value raises ``ValueError`` naming the variable."""
        env = os.environ if env is None else env
        extra = tuple(
            url.strip() for url in env.get("ALPACA_ALLOWED_BASE_URLS", "").split(",") if url.strip()
        )
        _check_allowlist(extra)
        return cls(
            project=_optional(env, "GOOGLE_CLOUD_PROJECT") or DEFAULT_PROJECT,
            pubsub_emulator_host=_optional(env, "PUBSUB_EMULATOR_HOST"),
            firestore_emulator_host=_optional(env, "FIRESTORE_EMULATOR_HOST"),
            firebase_auth_emulator_host=_optional(env, "FIREBASE_AUTH_EMULATOR_HOST"),
            extra_alpaca_base_urls=extra,
            vertex_ai_location=_optional(env, "VERTEX_AI_LOCATION") or "us-central1",
            vertex_ai_model=_optional(env, "VERTEX_AI_MODEL") or "gemini-2.5-flash",
            vertex_ai_base_url=_optional(env, "VERTEX_AI_BASE_URL"),
            alpaca_timeout_seconds=_float(env, "ALPACA_TIMEOUT_SECONDS", 10.0),
            signal_daily_quota=_int(env, "SIGNAL_DAILY_QUOTA", 20),
            pulse_rollup_delay_seconds=_float(env, "PULSE_ROLLUP_DELAY_SECONDS", 5.0),
            sync_schedule=_schedule(env),
            log_level=_log_level(env),
            keys_debounce_seconds=_float(env, "KEYS_DEBOUNCE_SECONDS", 10.0),
        )
