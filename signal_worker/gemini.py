"""Gemini on Vertex AI through google-genai (Vertex mode), asking for structured JSON.

``VERTEX_AI_BASE_URL`` points the real client at another endpoint (the local stand-in in tests
and ``make run``); a non-Google endpoint gets a placeholder bearer token instead of Google
credentials, so none are needed. Such an answer is labelled :data:`OVERRIDE_PROVIDER` with
:data:`OVERRIDE_NOTICE`, not as Gemini's: nothing says a Google model produced it. Errors are
sorted into transient (:class:`ModelUnavailable`: timeouts, connection failures, 408/429/5xx)
and not (:class:`ModelFailed`); nothing from the remote error text is kept, it might echo
request headers.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from agenttrader.logs import get_logger
from signal_worker.model import ModelFailed, ModelReply, ModelUnavailable, SignalInput
from signal_worker.schema import RESPONSE_SCHEMA

if TYPE_CHECKING:
    from google import genai

    from agenttrader.settings import Settings

_log = get_logger("signal_worker.gemini")

PROVIDER = "vertex-ai-gemini"
"""Label of answers from Google's Vertex AI endpoint."""
OVERRIDE_PROVIDER = "vertex-ai-endpoint-override"
"""Label of answers from a non-Google ``VERTEX_AI_BASE_URL`` (the stand-in of tests and local
runs; production deployments refuse the setting)."""
OVERRIDE_NOTICE = (
    "Answered by the endpoint VERTEX_AI_BASE_URL names instead of Google's Vertex AI (a test or "
    "local stand-in): not known to come from Gemini. Not investment advice."
)
DEFAULT_TIMEOUT_SECONDS = 30.0
"""A callable waits for the model; the Firebase SDK gives up after 70 s."""

TEMPERATURE = 0.2
"""Low: the same portfolio should not flip between BUY and SELL from one call to the next."""

STAND_IN_TOKEN = "local-stand-in"
"""Bearer token sent to a non-Google ``VERTEX_AI_BASE_URL`` (it checks none)."""

_TRANSIENT_HTTP = frozenset({408, 429, 500, 502, 503, 504})


def _is_google_endpoint(base_url: str) -> bool:
    from urllib.parse import urlsplit

    host = urlsplit(base_url).hostname or ""
    return host == "googleapis.com" or host.endswith(".googleapis.com")


class GeminiProvider:
    """One google-genai client per instance, built on first use."""

    def __init__(
        self, settings: Settings, *, timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    ) -> None:
        self.settings = settings
        self.timeout_seconds = timeout_seconds
        base_url = settings.vertex_ai_base_url
        self.overridden = bool(base_url) and not _is_google_endpoint(base_url or "")
        """Answers come from an endpoint that is not Google's (labelled so)."""
        self.name = OVERRIDE_PROVIDER if self.overridden else PROVIDER
        self._client: genai.Client | None = None
        self._lock = threading.Lock()

    def client(self) -> genai.Client:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._build_client()
        return self._client

    def _build_client(self) -> genai.Client:
        from google import genai
        from google.genai import types

        base_url = self.settings.vertex_ai_base_url
        credentials = None
        if self.overridden:
            import google.oauth2.credentials

            credentials = google.oauth2.credentials.Credentials(token=STAND_IN_TOKEN)  # type: ignore[no-untyped-call]
        return genai.Client(
            vertexai=True,
            project=self.settings.project,
            location=self.settings.vertex_ai_location,
            credentials=credentials,
            http_options=types.HttpOptions(
                base_url=base_url, timeout=int(self.timeout_seconds * 1000)
            ),
        )

    def generate(self, signal_input: SignalInput) -> ModelReply:
        from google.genai import types

        config = types.GenerateContentConfig(
            response_mime_type="application/json",
            response_schema=types.Schema.model_validate(RESPONSE_SCHEMA),
            temperature=TEMPERATURE,
            candidate_count=1,
            # No tools are offered; skip the SDK's function-calling loop (and its log line).
            automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
        )
        started = time.monotonic()
        try:
            response = self.client().models.generate_content(
                model=self.settings.vertex_ai_model, contents=signal_input.prompt, config=config
            )
        except Exception as err:
            raise _classify(err) from err
        latency_ms = round((time.monotonic() - started) * 1000, 1)
        reply = _reply(response, self.settings.vertex_ai_model, latency_ms)
        if self.overridden:
            return replace(reply, provider=OVERRIDE_PROVIDER, notice=OVERRIDE_NOTICE)
        return reply


def _classify(err: Exception) -> Exception:
    from google.auth.exceptions import GoogleAuthError
    from google.genai import errors

    kind = type(err).__name__
    if isinstance(err, errors.APIError):
        _log.warning("Vertex AI answered an error", fields={"http": err.code, "error": kind})
        if err.code in _TRANSIENT_HTTP:
            return ModelUnavailable(f"Vertex AI answered HTTP {err.code}")
        return ModelFailed(f"Vertex AI refused the request (HTTP {err.code})")
    if _is_transport_error(err):
        _log.warning("Vertex AI unreachable", fields={"error": kind})
        return ModelUnavailable(f"Vertex AI unreachable ({kind})")
    if isinstance(err, GoogleAuthError):
        _log.error("no usable Google credentials for Vertex AI", fields={"error": kind})
        return ModelFailed("Vertex AI credentials unusable")
    _log.error("Vertex AI call failed", fields={"error": kind})
    return ModelFailed(f"Vertex AI call failed ({kind})")


def _is_transport_error(err: Exception) -> bool:
    """Timeouts and connection failures of whichever HTTP library google-genai uses."""
    import httpx

    transport: tuple[type[BaseException], ...] = (httpx.TransportError, TimeoutError)
    try:
        import httpx2

        transport += (httpx2.TransportError,)
    except ImportError:
        pass
    return isinstance(err, transport)


def _reply(response: Any, model: str, latency_ms: float) -> ModelReply:
    candidates = response.candidates or []
    if not candidates:
        raise ModelFailed("Vertex AI returned no candidate")
    finish = candidates[0].finish_reason
    finish_reason = str(getattr(finish, "value", finish) or "UNSPECIFIED")
    if finish_reason != "STOP":
        # MAX_TOKENS, SAFETY, RECITATION…: the JSON is cut short or withheld.
        raise ModelFailed(f"Vertex AI stopped early ({finish_reason})")
    text = response.text
    if not text:
        raise ModelFailed("Vertex AI returned no text")
    usage = response.usage_metadata
    return ModelReply(
        text=text,
        model=model,
        model_version=response.model_version,
        provider=PROVIDER,
        prompt_tokens=(usage and usage.prompt_token_count) or 0,
        candidates_tokens=(usage and usage.candidates_token_count) or 0,
        total_tokens=(usage and usage.total_token_count) or 0,
        latency_ms=latency_ms,
        finish_reason=finish_reason,
    )
