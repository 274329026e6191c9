"""The model port: what a signal provider is given, what it returns, how it fails."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from signal_worker.portfolio import Portfolio
from signal_worker.request import MarketConditions


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
