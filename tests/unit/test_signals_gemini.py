"""The Gemini provider through the real google-genai client, against the Vertex AI stand-in;
and which provider answers."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from types import SimpleNamespace

import google.auth
import pytest

from agenttrader.settings import Settings
from devtools.emulators import free_port
from devtools.vertex_standin import Mode, VertexStandIn
from signal_worker import providers
from signal_worker.gemini import (
    OVERRIDE_NOTICE,
    OVERRIDE_PROVIDER,
    PROVIDER,
    STAND_IN_TOKEN,
    GeminiProvider,
    _is_google_endpoint,
)
from signal_worker.heuristic import HeuristicProvider
from signal_worker.model import ModelFailed, ModelUnavailable, SignalInput
from signal_worker.portfolio import Portfolio
from signal_worker.prompt import build_prompt
from signal_worker.schema import RESPONSE_SCHEMA, TradingSignal
from tests.callable_fixtures import synced_snapshot

PORTFOLIO = Portfolio.from_snapshot(synced_snapshot())
INPUT = SignalInput(build_prompt(PORTFOLIO, "calm"), PORTFOLIO)


@pytest.fixture
def settings(standin: VertexStandIn) -> Settings:
    return Settings(
        project="demo-gemini",
        vertex_ai_location="europe-west4",
        vertex_ai_base_url=standin.base_url,
    )


@pytest.fixture
def provider(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> GeminiProvider:
    def no_adc(*args: object, **kwargs: object) -> None:
        raise AssertionError("Google credentials must not be looked up with VERTEX_AI_BASE_URL")

    monkeypatch.setattr(google.auth, "default", no_adc)
    return GeminiProvider(settings, timeout_seconds=1.0)


@pytest.fixture(autouse=True)
def _fresh_providers() -> Iterator[None]:
    providers.reset_providers()
    yield
    providers.reset_providers()


def test_happy_path_through_the_real_client(
    provider: GeminiProvider, standin: VertexStandIn
) -> None:
    reply = provider.generate(INPUT)
    assert TradingSignal.from_json(reply.text).symbol == "MSFT"
    # The stand-in answered, not Gemini: the label says so.
    assert (reply.provider, reply.notice) == (OVERRIDE_PROVIDER, OVERRIDE_NOTICE)
    assert provider.name == OVERRIDE_PROVIDER
    assert reply.model == "gemini-2.5-flash"
    assert reply.model_version == "gemini-2.5-flash-standin"
    assert reply.finish_reason == "STOP"
    assert reply.prompt_tokens > 0 and reply.candidates_tokens > 0
    assert reply.total_tokens == reply.prompt_tokens + reply.candidates_tokens
    assert reply.latency_ms > 0

    (request,) = standin.requests
    assert request.path == (
        "/v1beta1/projects/demo-gemini/locations/europe-west4/publishers/google/models/"
        "gemini-2.5-flash:generateContent"
    )
    assert request.headers["authorization"] == f"Bearer {STAND_IN_TOKEN}"
    assert request.prompt == INPUT.prompt
    config = request.generation_config
    assert config["responseMimeType"] == "application/json"
    schema = config["responseSchema"]
    assert schema["type"] == "OBJECT"
    assert schema["required"] == RESPONSE_SCHEMA["required"]
    assert schema["properties"]["action"]["enum"] == ["BUY", "SELL", "HOLD"]
    assert schema["properties"]["risks"] == {"type": "ARRAY", "items": {"type": "STRING"}}
    assert config["temperature"] == pytest.approx(0.2)


def test_the_client_is_built_once(provider: GeminiProvider) -> None:
    assert provider.client() is provider.client()


@pytest.mark.parametrize(
    ("mode", "error"),
    [
        (Mode.HTTP_500, ModelUnavailable),
        (Mode.HTTP_429, ModelUnavailable),
        (Mode.TIMEOUT, ModelUnavailable),
        (Mode.HTTP_400, ModelFailed),
        (Mode.MAX_TOKENS, ModelFailed),
    ],
)
def test_failures_are_sorted(
    provider: GeminiProvider, standin: VertexStandIn, mode: Mode, error: type[Exception]
) -> None:
    standin.fail_next(mode)
    started = time.monotonic()
    with pytest.raises(error) as raised:
        provider.generate(INPUT)
    assert time.monotonic() - started < 5  # no retries, and the timeout holds
    assert "stand-in" not in str(raised.value)  # the remote text is never kept
    assert len(standin.requests) == 1


def test_text_that_is_not_json_is_left_to_the_schema_check(
    provider: GeminiProvider, standin: VertexStandIn
) -> None:
    standin.fail_next(Mode.INVALID_JSON)
    with pytest.raises(ValueError, match="not JSON"):
        TradingSignal.from_json(provider.generate(INPUT).text)


def test_an_unreachable_endpoint_is_unavailable() -> None:
    settings = Settings(project="demo-x", vertex_ai_base_url=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ModelUnavailable):
        GeminiProvider(settings, timeout_seconds=1.0).generate(INPUT)


@pytest.mark.parametrize(
    ("base_url", "label"),
    [
        (None, PROVIDER),
        ("https://europe-west4-aiplatform.googleapis.com", PROVIDER),
        ("http://127.0.0.1:8089", OVERRIDE_PROVIDER),
        ("https://googleapis.com.evil.example", OVERRIDE_PROVIDER),
    ],
)
def test_an_answer_is_labelled_gemini_only_from_google(base_url: str | None, label: str) -> None:
    """What answered is stored with the signal (``vertex.provider``): Gemini only when the
    request went to Google's endpoint."""
    answer = json.dumps(
        {"action": "HOLD", "symbol": "", "confidence": 0.5, "rationale": "r", "risks": []}
    )
    response = SimpleNamespace(
        candidates=[SimpleNamespace(finish_reason="STOP")],
        text=answer,
        usage_metadata=None,
        model_version="gemini-2.5-flash-001",
    )
    models = SimpleNamespace(generate_content=lambda **_: response)
    provider = GeminiProvider(Settings(project="p", vertex_ai_base_url=base_url))
    provider._client = SimpleNamespace(models=models)  # type: ignore[assignment]

    reply = provider.generate(INPUT)

    assert reply.provider == provider.name == label
    assert reply.usage()["provider"] == label
    assert reply.notice == (OVERRIDE_NOTICE if label == OVERRIDE_PROVIDER else None)


def test_google_endpoints_keep_google_credentials() -> None:
    assert _is_google_endpoint("https://europe-west4-aiplatform.googleapis.com")
    assert not _is_google_endpoint("http://127.0.0.1:8089")
    assert not _is_google_endpoint("https://googleapis.com.evil.example")


# --- which provider --------------------------------------------------------------------------


def test_a_base_url_selects_gemini_without_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(providers, "google_credentials_available", lambda: False)
    chosen = providers.select_provider(Settings(project="p", vertex_ai_base_url="http://h:1"))
    assert isinstance(chosen, GeminiProvider)


def test_credentials_select_gemini(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(providers, "google_credentials_available", lambda: True)
    assert isinstance(providers.select_provider(Settings(project="p")), GeminiProvider)


def test_neither_selects_the_labelled_heuristic(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(providers, "google_credentials_available", lambda: False)
    assert isinstance(providers.select_provider(Settings(project="p")), HeuristicProvider)


def test_the_credentials_probe_runs_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def fake_default(*args: object, **kwargs: object) -> None:
        calls.append(1)
        raise google.auth.exceptions.DefaultCredentialsError("none")

    monkeypatch.setattr(google.auth, "default", fake_default)
    assert providers.google_credentials_available() is False
    assert providers.google_credentials_available() is False
    assert len(calls) == 1


def test_providers_are_cached_per_settings_and_replaceable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(providers, "google_credentials_available", lambda: False)
    offline = Settings(project="p")
    assert providers.provider_for(offline) is providers.provider_for(offline)
    assert providers.provider_for(offline) is not providers.provider_for(Settings(project="q"))
    replacement = HeuristicProvider()
    providers.set_provider(replacement)
    assert providers.provider_for(offline) is replacement
    providers.set_provider(None)
    assert providers.provider_for(offline) is not replacement


# --- the stand-in itself ---------------------------------------------------------------------


def test_standin_modes_and_records(standin: VertexStandIn) -> None:
    url = f"{standin.base_url}/v1/projects/p/locations/l/publishers/google/models/m:generateContent"

    def post(body: bytes) -> tuple[int, dict[str, object]]:
        request = urllib.request.Request(url, data=body, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as err:
            with err:
                return err.code, json.loads(err.read())

    text = build_prompt(Portfolio.from_snapshot({"positions": [{"symbol": "TSLA"}]}), None)
    prompt = json.dumps({"contents": [{"parts": [{"text": text}]}]}).encode()
    standin.set_mode(Mode.HTTP_429)
    standin.fail_next(Mode.HTTP_500, times=2)
    assert [post(prompt)[0] for _ in range(4)] == [500, 500, 429, 429]
    standin.set_mode(Mode.OK)
    status, body = post(prompt)
    assert status == 200
    candidate = body["candidates"][0]  # type: ignore[index]
    assert json.loads(candidate["content"]["parts"][0]["text"])["symbol"] == "TSLA"
    assert [r.model for r in standin.requests] == ["m"] * 5
    assert post(b"not json")[0] == 400

    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(standin.base_url + "/v1/other", data=b"{}", timeout=5)
    with missing.value:
        assert missing.value.code == 404
