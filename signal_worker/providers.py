"""Which signal provider answers, built once per instance.

Gemini on Vertex AI answers whenever ``VERTEX_AI_BASE_URL`` is set or Google application-default
credentials are available (docs/DESIGN.md); only without either does the clearly labelled local
heuristic answer, so the product works on a laptop without a cloud project.
"""

from __future__ import annotations

import functools
import threading
from typing import TYPE_CHECKING

from agenttrader.logs import get_logger
from signal_worker.model import SignalProvider

if TYPE_CHECKING:
    from agenttrader.settings import Settings

_log = get_logger("signal_worker")


def google_credentials_available() -> bool:
    """Whether application-default credentials exist (asked once per instance: the lookup may
    probe the metadata server)."""
    return _credentials_probe()


@functools.cache
def _credentials_probe() -> bool:
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    try:
        google.auth.default()
    except DefaultCredentialsError:
        return False
    return True


def select_provider(settings: Settings) -> SignalProvider:
    """Gemini when it can be reached, else the local heuristic (logged once, loudly)."""
    if settings.vertex_ai_base_url or google_credentials_available():
        from signal_worker.gemini import GeminiProvider

        return GeminiProvider(settings)
    from signal_worker.heuristic import HeuristicProvider

    _log.warning(
        "no VERTEX_AI_BASE_URL and no Google credentials: trading signals come from the local "
        "heuristic, not from Gemini"
    )
    return HeuristicProvider()


_providers: dict[Settings, SignalProvider] = {}
_override: SignalProvider | None = None
_lock = threading.Lock()


def provider_for(settings: Settings) -> SignalProvider:
    """The instance-wide provider for ``settings``, built on first use (its HTTP client and
    connection pool are then reused by every call), unless :func:`set_provider` replaced it."""
    with _lock:
        if _override is not None:
            return _override
        provider = _providers.get(settings)
        if provider is None:
            provider = _providers[settings] = select_provider(settings)
        return provider


def set_provider(provider: SignalProvider | None) -> None:
    """Use ``provider`` for every call (tests); ``None`` goes back to :func:`select_provider`."""
    global _override  # noqa: PLW0603 - one provider per instance, like agenttrader.deps
    with _lock:
        _override = provider


def reset_providers() -> None:
    """Forget built providers, any override and the credentials probe (tests that change the
    environment)."""
    set_provider(None)
    with _lock:
        _providers.clear()
    _credentials_probe.cache_clear()
