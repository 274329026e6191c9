"""Runtime settings, read once from the environment (names fixed by docs/DESIGN.md)."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

LIVE_ALPACA_BASE_URL = "https://api.alpaca.markets"
"""Alpaca's live Trading API, also where its OAuth tokens are issued (``POST /oauth/token``)."""
PAPER_ALPACA_BASE_URL = "https://paper-api.alpaca.markets"
"""Alpaca's paper Trading API."""
OFFICIAL_ALPACA_BASE_URLS: tuple[str, ...] = (PAPER_ALPACA_BASE_URL, LIVE_ALPACA_BASE_URL)
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


def _fanout_batch(env: Mapping[str, str]) -> int:
    value = _int(env, "FANOUT_MESSAGES_PER_REQUEST", 1000)
    if not 1 <= value <= 1000:
        raise ValueError(f"FANOUT_MESSAGES_PER_REQUEST must be 1..1000, got {value}")
    return value


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    value = _int(env, name, default)
    if value < 1:
        raise ValueError(f"{name} must be at least 1, got {value}")
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


ANONYMOUS_PROVIDER = "anonymous"
"""Firebase's ``sign_in_provider`` of anonymous sessions: never a tenant unless
``TENANT_SIGN_IN_PROVIDERS`` names it."""

_PROVIDER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
"""A Firebase sign-in provider id: ``password``, ``phone``, ``google.com``, ``oidc.acme``…"""


def _providers(env: Mapping[str, str]) -> tuple[str, ...] | None:
    """``TENANT_SIGN_IN_PROVIDERS``: the listed ids (trimmed, de-duplicated, in order), or
    ``None`` when unset or blank, which means every provider but ``anonymous``."""
    raw = env.get("TENANT_SIGN_IN_PROVIDERS", "")
    if not raw.strip():
        return None
    listed = [item.strip() for item in raw.split(",")]
    if not all(listed):
        raise ValueError(
            f"TENANT_SIGN_IN_PROVIDERS has an empty entry: {raw[:80]!r}"
            " (comma-separated provider ids, e.g. password,google.com,phone)"
        )
    for item in listed:
        if not _PROVIDER_ID.fullmatch(item):
            raise ValueError(f"TENANT_SIGN_IN_PROVIDERS: {item[:40]!r} is not a provider id")
    return tuple(dict.fromkeys(listed))


_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ValueError(f"{name} must be true or false, got {raw[:40]!r}")


_KEK_URI = re.compile(
    r"gcp-kms://projects/[^/\s]+/locations/[a-zA-Z0-9_-]{1,63}/"
    r"keyRings/[a-zA-Z0-9_-]{1,63}/cryptoKeys/[a-zA-Z0-9_-]{1,63}"
)
"""A Cloud KMS CryptoKey as Tink names it: not a key version, which could only encrypt."""


def _kek_uri(env: Mapping[str, str]) -> str | None:
    raw = _optional(env, "CREDENTIALS_KEK_URI")
    if raw is not None and not _KEK_URI.fullmatch(raw):
        raise ValueError(
            "CREDENTIALS_KEK_URI must be gcp-kms://projects/P/locations/L/keyRings/R/cryptoKeys/K"
            f", got {raw[:120]!r}"
        )
    return raw


def _oauth_base_url(env: Mapping[str, str], allowed: tuple[str, ...]) -> str:
    """Where the OAuth code is exchanged: an allowed Alpaca origin, like a tenant's base URL
    (the request carries the app's client secret)."""
    from agenttrader.errors import DisallowedBaseUrl
    from agenttrader.urls import check_base_url

    raw = _optional(env, "ALPACA_OAUTH_BASE_URL") or LIVE_ALPACA_BASE_URL
    try:
        return check_base_url(raw, allowed)
    except DisallowedBaseUrl as err:
        raise ValueError(f"ALPACA_OAUTH_BASE_URL: {err}") from None


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
    fanout_messages_per_request: int = 1000
    """Messages per publish request of a tick's fan-out (``FANOUT_MESSAGES_PER_REQUEST``,
    1-1000, Pub/Sub's maximum being the default): a fan-out killed half-way resumes after the
    last request of the published prefix, so smaller requests resume closer to where it
    stopped (the chaos suite uses a few, to kill one between its requests)."""
    sync_schedule: SyncSchedule = SyncSchedule.ALWAYS
    """When ticks publish (``SYNC_SCHEDULE``): ``always`` or ``market-hours``."""
    log_level: str = "INFO"
    """``LOG_LEVEL``: at ``INFO`` (the default) a successful sync logs nothing — at a line per
    tenant a minute that is most of the Cloud Logging bill; ``DEBUG`` logs it too."""
    tenant_sign_in_providers: tuple[str, ...] | None = None
    """``TENANT_SIGN_IN_PROVIDERS``: the Firebase sign-in providers a tenant may use; ``None``
    (unset) is every provider but ``anonymous``, which only an explicit listing allows."""
    require_verified_email: bool = True
    """``REQUIRE_VERIFIED_EMAIL``: a tenant's ID token must carry ``email_verified: true``.
    Unset, it is on, except with the Firestore or Auth emulator in use."""
    credentials_kek_uri: str | None = None
    """``CREDENTIALS_KEK_URI``: the Cloud KMS key (key-encryption key) sealing tenant
    credentials; :meth:`credentials_kek` says what serves when it is unset."""
    alpaca_oauth_client_id: str | None = None
    """``ALPACA_OAUTH_CLIENT_ID``: the app's Alpaca OAuth (Connect) client."""
    alpaca_oauth_client_secret: str | None = field(default=None, repr=False)
    """``ALPACA_OAUTH_CLIENT_SECRET``: that client's secret (Secret Manager in production)."""
    alpaca_oauth_base_url: str = LIVE_ALPACA_BASE_URL
    """``ALPACA_OAUTH_BASE_URL``: the origin ``POST /oauth/token`` is sent to; on the
    allowlist."""
    keys_debounce_seconds: float = 10.0
    """``KEYS_DEBOUNCE_SECONDS``: the secrets trigger handles at most one new version of a
    tenant's credentials per this many seconds; a write inside the window is handled when
    Eventarc redelivers its event, reading the credentials as they are by then."""
    reconcile_every_ticks: int = 5
    """``RECONCILE_EVERY_TICKS``: a tenant whose trade-update stream is live is published by
    one tick in this many (the reconciliation poll); the others by every tick."""

    @property
    def allowed_alpaca_base_urls(self) -> tuple[str, ...]:
        return OFFICIAL_ALPACA_BASE_URLS + self.extra_alpaca_base_urls

    @property
    def uses_emulators(self) -> bool:
        return bool(self.pubsub_emulator_host or self.firestore_emulator_host)

    def credentials_kek(self) -> str | None:
        """The KEK that seals credentials: ``CREDENTIALS_KEK_URI``, or ``None`` for the local
        development KEK, which serves only while Firestore is the emulator (what it seals never
        reaches a real database). Anything else raises ``ValueError`` naming the variable.

        Asked when credentials are first sealed or opened, so only the functions that handle
        them refuse to start without it; the others never read it.
        """
        if self.credentials_kek_uri is not None:
            return self.credentials_kek_uri
        if self.firestore_emulator_host:
            return None
        raise ValueError(
            "CREDENTIALS_KEK_URI is not set: it names the Cloud KMS key sealing tenant "
            "credentials (a local development key serves only with FIRESTORE_EMULATOR_HOST set)"
        )

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
            fanout_messages_per_request=_fanout_batch(env),
            sync_schedule=_schedule(env),
            log_level=_log_level(env),
            tenant_sign_in_providers=_providers(env),
            require_verified_email=_bool(
                env,
                "REQUIRE_VERIFIED_EMAIL",
                not (
                    _optional(env, "FIRESTORE_EMULATOR_HOST")
                    or _optional(env, "FIREBASE_AUTH_EMULATOR_HOST")
                ),
            ),
            credentials_kek_uri=_kek_uri(env),
            alpaca_oauth_client_id=_optional(env, "ALPACA_OAUTH_CLIENT_ID"),
            alpaca_oauth_client_secret=_optional(env, "ALPACA_OAUTH_CLIENT_SECRET"),
            alpaca_oauth_base_url=_oauth_base_url(env, OFFICIAL_ALPACA_BASE_URLS + extra),
            keys_debounce_seconds=_float(env, "KEYS_DEBOUNCE_SECONDS", 10.0),
            reconcile_every_ticks=_positive_int(env, "RECONCILE_EVERY_TICKS", 5),
        )
