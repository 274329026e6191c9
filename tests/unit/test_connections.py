"""``connect_alpaca``'s decisions: the request it accepts (a table), what each answer of
Alpaca's token endpoint means for the tenant (a table), and the code exchange against the
Alpaca simulator's ``/oauth/token``, with nothing secret in an error or a log line."""

from __future__ import annotations

import io
import traceback
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from accounts import alpaca_oauth
from accounts.alpaca_oauth import (
    MISCONFIGURED,
    REFUSED_CODE,
    UNAVAILABLE,
    UNEXPECTED,
    OAuthClient,
    exchange_code,
    failure_for,
)
from accounts.connections import ConnectRequest, parse_connect
from agenttrader.callable import CallableError, Status
from agenttrader.settings import OFFICIAL_ALPACA_BASE_URLS
from devtools.emulators import free_port
from devtools.simulator import AlpacaSimulator
from devtools.simulator.oauth import OAuthApp
from tests.log_capture import json_log_lines

PAPER, LIVE = OFFICIAL_ALPACA_BASE_URLS
LOCAL = "http://127.0.0.1:8765"
ALLOWED = (*OFFICIAL_ALPACA_BASE_URLS, LOCAL)
REDIRECT = "https://app.example.com/alpaca/callback"
VALID = {"code": "c0de-1234", "redirect_uri": REDIRECT, "environment": "paper"}


# --- the request -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (VALID, ConnectRequest("c0de-1234", REDIRECT, "paper", PAPER)),
        ({**VALID, "environment": "live"}, ConnectRequest("c0de-1234", REDIRECT, "live", LIVE)),
        (
            {**VALID, "base_url": PAPER + "/v2"},
            ConnectRequest("c0de-1234", REDIRECT, "paper", PAPER),
        ),
        ({**VALID, "base_url": LOCAL + "/"}, ConnectRequest("c0de-1234", REDIRECT, "paper", LOCAL)),
        (
            {**VALID, "environment": "live", "base_url": LOCAL},
            ConnectRequest("c0de-1234", REDIRECT, "live", LOCAL),
        ),
        (
            {**VALID, "redirect_uri": "http://localhost:5173/cb?x=1"},
            ConnectRequest("c0de-1234", "http://localhost:5173/cb?x=1", "paper", PAPER),
        ),
    ],
    ids=["paper", "live", "paper-v2", "allowlisted", "live-allowlisted", "local-redirect"],
)
def test_accepted_requests(data: dict[str, Any], expected: ConnectRequest) -> None:
    assert parse_connect(data, ALLOWED) == expected


SECRETISH = "PKLEAKEDKEY0123456789"


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (None, "code"),
        ("code", "data"),
        ({**VALID, "extra": 1}, "extra"),
        ({k: v for k, v in VALID.items() if k != "code"}, "code"),
        ({**VALID, "code": ""}, "code"),
        ({**VALID, "code": 42}, "code"),
        ({**VALID, "code": "has space"}, "code"),
        ({**VALID, "code": "x" * 1025}, "code"),
        ({**VALID, "redirect_uri": "/relative"}, "redirect_uri"),
        ({**VALID, "redirect_uri": "javascript:alert(1)"}, "redirect_uri"),
        ({**VALID, "redirect_uri": REDIRECT + "#frag"}, "redirect_uri"),
        ({**VALID, "redirect_uri": "https://a.example/ b"}, "redirect_uri"),
        ({**VALID, "environment": "sandbox"}, "environment"),
        ({**VALID, "environment": None}, "environment"),
        ({**VALID, "base_url": f"https://{SECRETISH}.evil.example"}, "base_url"),
        ({**VALID, "base_url": "http://paper-api.alpaca.markets"}, "base_url"),
        ({**VALID, "base_url": 7}, "base_url"),
        ({**VALID, "base_url": LIVE}, "base_url"),
        ({**VALID, "environment": "live", "base_url": PAPER}, "base_url"),
    ],
    ids=[
        "null",
        "not-an-object",
        "unknown-field",
        "no-code",
        "empty-code",
        "number-code",
        "spaced-code",
        "long-code",
        "relative-redirect",
        "script-redirect",
        "fragment-redirect",
        "spaced-redirect",
        "unknown-environment",
        "null-environment",
        "off-allowlist",
        "http-downgrade",
        "number-base-url",
        "live-url-for-paper",
        "paper-url-for-live",
    ],
)
def test_refused_requests_name_the_field_and_echo_nothing(data: Any, field: str) -> None:
    with pytest.raises(CallableError) as info:
        parse_connect(data, ALLOWED)

    assert info.value.status is Status.INVALID_ARGUMENT
    assert field in info.value.message or (info.value.details or {}).get("field") == field
    assert SECRETISH not in info.value.message and "evil" not in info.value.message


# --- the token endpoint's answers ------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (400, {"error": "invalid_grant"}, REFUSED_CODE),
        (400, {"error": "invalid_request"}, REFUSED_CODE),
        (401, {"error": "invalid_client"}, MISCONFIGURED),
        (400, {"error": "invalid_client"}, MISCONFIGURED),
        (400, {"error": "unauthorized_client"}, MISCONFIGURED),
        (401, None, MISCONFIGURED),
        (400, {"error": "unsupported_grant_type"}, UNEXPECTED),
        (400, None, UNEXPECTED),
        (403, {"error": "access_denied"}, UNEXPECTED),
        (302, None, UNEXPECTED),
        (404, None, UNEXPECTED),
        (429, None, UNAVAILABLE),
        (500, {"error": "server_error"}, UNAVAILABLE),
        (503, None, UNAVAILABLE),
    ],
)
def test_what_a_refusal_means_for_the_tenant(
    status: int, body: object, expected: CallableError
) -> None:
    assert failure_for(status, body) is expected


def test_the_tenant_facing_statuses() -> None:
    assert REFUSED_CODE.status is Status.FAILED_PRECONDITION  # start over: a new code
    assert MISCONFIGURED.status is Status.FAILED_PRECONDITION
    assert UNAVAILABLE.status is Status.UNAVAILABLE
    assert UNEXPECTED.status is Status.INTERNAL


# --- the exchange against the simulator ------------------------------------------------------


@pytest.fixture(scope="module")
def sim() -> Iterator[AlpacaSimulator]:
    with AlpacaSimulator() as simulator:
        yield simulator


@pytest.fixture
def app(sim: AlpacaSimulator) -> OAuthApp:
    return sim.add_oauth_app([REDIRECT])


@pytest.fixture
def logged() -> Iterator[io.StringIO]:
    with json_log_lines() as lines:
        yield lines


def _client(sim: AlpacaSimulator, app: OAuthApp, secret: str | None = None) -> OAuthClient:
    return OAuthClient(app.client_id, secret or app.client_secret, sim.base_url)


def _exchange(client: OAuthClient, code: str, redirect_uri: str = REDIRECT) -> str:
    with alpaca_oauth.new_session() as session:
        return exchange_code(session, client, code, redirect_uri, timeout=2.0)


def _refusal(client: OAuthClient, code: str, redirect_uri: str = REDIRECT) -> CallableError:
    with pytest.raises(CallableError) as info:
        _exchange(client, code, redirect_uri)
    return info.value


def _clean(text: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in text


def test_a_code_is_exchanged_for_a_token_that_acts_on_the_approving_account(
    sim: AlpacaSimulator, app: OAuthApp, logged: io.StringIO
) -> None:
    tenant = sim.add_tenant()
    code = sim.authorize(app, REDIRECT, tenant=tenant.key_id)

    token = _exchange(_client(sim, app), code)

    [grant] = [g for g in sim.oauth_grants() if g.client_id == app.client_id]
    assert grant.tenant == tenant.key_id and grant.token == token
    _clean(logged.getvalue(), token, code, app.client_secret)


def test_refused_codes_mean_start_again_and_leak_nothing(
    sim: AlpacaSimulator, app: OAuthApp, logged: io.StringIO
) -> None:
    client = _client(sim, app)
    wrong_redirect = sim.authorize(app, REDIRECT)
    spent = sim.authorize(app, REDIRECT)
    _exchange(client, spent)

    refusals = [
        _refusal(client, wrong_redirect, "https://app.example.com/other"),
        _refusal(client, spent),
        _refusal(client, "never-issued-code"),
    ]

    assert all(refusal is REFUSED_CODE for refusal in refusals)
    for refusal in refusals:
        text = str(refusal) + "".join(traceback.format_exception(refusal))
        _clean(text, wrong_redirect, spent, app.client_secret, "never-issued-code")
    _clean(logged.getvalue(), wrong_redirect, spent, app.client_secret, "never-issued-code")
    assert "invalid_grant" in logged.getvalue()  # operators see Alpaca's error code


def test_a_wrong_client_secret_is_a_misconfigured_deployment(
    sim: AlpacaSimulator, app: OAuthApp, logged: io.StringIO
) -> None:
    code = sim.authorize(app, REDIRECT)
    wrong = "wrong-client-secret-0123456789"

    refusal = _refusal(_client(sim, app, secret=wrong), code)

    assert refusal is MISCONFIGURED
    _clean(logged.getvalue() + str(refusal), wrong, code)
    assert '"severity": "ERROR"' in logged.getvalue()


def test_an_unreachable_token_endpoint_is_unavailable(logged: io.StringIO) -> None:
    client = OAuthClient("client", "client-secret-0123456789", f"http://127.0.0.1:{free_port()}")

    assert _refusal(client, "some-code") is UNAVAILABLE
    _clean(logged.getvalue(), "client-secret-0123456789", "some-code")


def test_a_redirect_is_not_followed(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[dict[str, Any]] = []

    def post(self: requests.Session, url: str, **kwargs: Any) -> requests.Response:
        sent.append({"url": url, **kwargs})
        response = requests.Response()
        response.status_code = 302
        response.headers["Location"] = "http://169.254.169.254/"
        response._content = b""
        return response

    monkeypatch.setattr(requests.Session, "post", post)
    client = OAuthClient("client", "client-secret-0123456789", PAPER)

    assert _refusal(client, "some-code") is UNEXPECTED
    [request] = sent
    assert request["url"] == PAPER + "/oauth/token"
    assert request["allow_redirects"] is False and request["timeout"] == 2.0
    assert request["data"]["grant_type"] == "authorization_code"
