"""The model port: what a signal provider is given and returns, and which provider answers.

Gemini on Vertex AI answers whenever ``VERTEX_AI_BASE_URL`` is set or Google application-default
credentials are available (DESIGN.md); only without either does the clearly labelled local
heuristic answer, so the product works on a laptop without a cloud project.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from agenttrader.logs import get_logger
from signal_worker.portfolio import Portfolio
from signal_worker.request import MarketConditions

if TYPE_CHECKING:
    from agenttrader.settings import Settings

_log = get_logger("signal_worker")


class ModelUnavailable(Exception):
    """Transient: the model timed out, was rate limited or answered 5xx (→ ``UNAVAILABLE``)."""


class ModelFailed(Exception):
    """Not transient: a refused request or an unusable answer (→ ``INTERNAL``)."""


@dataclass(frozen=True)
class SignalInput:
    """Everything a provider may use; Gemini reads the prompt, the heuristic the portfolio."""

    prompt: str
    portfolio: Portfolio
    market_conditions: MarketConditions | None = None


@dataclass(frozen=True)
class ModelReply:
    """A provider's answer and the facts stored beside it in ``trading_signals/{id}.vertex``."""

    text: str
    model: str
    provider: str
    prompt_tokens: int = 0
    candidates_tokens: int = 0
    total_tokens: int = 0
    latency_ms: float = 0.0
    finish_reason: str = "STOP"
    model_version: str | None = None
    """The exact version that answered, when the provider says (Vertex ``modelVersion``)."""
    notice: str | None = None
    """Shown to the user with the signal (the heuristic says it is not AI advice)."""

    def usage(self) -> dict[str, object]:
        return {
            "model": self.model,
            "provider": self.provider,
            "prompt_tokens": self.prompt_tokens,
            "candidates_tokens": self.candidates_tokens,
            "total_tokens": self.total_tokens,
            "latency_ms": self.latency_ms,
            "finish_reason": self.finish_reason,
            "model_version": self.model_version,
        }


class SignalProvider(Protocol):
    name: str

    def generate(self, signal_input: SignalInput) -> ModelReply:
        """Answer with JSON text in the shape of ``schema.RESPONSE_SCHEMA``; raise
        :class:`ModelUnavailable` or :class:`ModelFailed`."""
        ...


def google_credentials_available() -> bool:
    """Whether application-default credentials exist (asked once per instance: the lookup may
    probe the metadata server)."""
    return _credentials_probe()


@functools.cache
def _credentials_probe() -> bool:
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    try:
        google.auth.default()  # type: ignore[no-untyped-call]
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
