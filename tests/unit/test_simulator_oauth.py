"""The simulator's Alpaca OAuth (Connect): the authorization-code flow over HTTP, Bearer
authentication through alpaca-py's ``TradingClient(oauth_token=…)``, the refusal scenarios
(revoked token, wrong redirect URI, reused code) and the admin API."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.models import TradeAccount

from devtools.simulator import AlpacaSimulator, OAuthApp, Scenario, SimTenant
from devtools.simulator.oauth import CODE_LIFETIME_SECONDS, DEFAULT_SCOPE, OAuthServer
from devtools.simulator.tenants import TenantRegistry

REDIRECT = "http://127.0.0.1:5000/alpaca/callback"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
def sim() -> Iterator[AlpacaSimulator]:
    with AlpacaSimulator(port=0) as simulator:
        yield simulator


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


@pytest.fixture
def app(sim: AlpacaSimulator) -> OAuthApp:
    return sim.add_oauth_app([REDIRECT, "https://app.example.com/cb?from=app"])


def _authorize(
    sim: AlpacaSimulator, http: requests.Session, app: OAuthApp, **params: str
) -> requests.Response:
    query = {
        "response_type": "code",
        "client_id": app.client_id,
        "redirect_uri": REDIRECT,
        "state": "st-123",
        **params,
    }
    return http.get(f"{sim.base_url}/oauth/authorize", params=query, allow_redirects=False)


def _redirected(response: requests.Response) -> tuple[str, dict[str, str]]:
    assert response.status_code == 302, response.text
    parts = urlsplit(response.headers["Location"])
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    return f"{parts.scheme}://{parts.netloc}{parts.path}", query


def _code(sim: AlpacaSimulator, http: requests.Session, app: OAuthApp, **params: str) -> str:
    return _redirected(_authorize(sim, http, app, **params))[1]["code"]


def _exchange(
    sim: AlpacaSimulator, http: requests.Session, app: OAuthApp, code: str, /, **override: str
) -> requests.Response:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "client_id": app.client_id,
        "client_secret": app.client_secret,
        "redirect_uri": REDIRECT,
        **override,
    }
    return http.post(f"{sim.base_url}/oauth/token", data=form)


def _token(sim: AlpacaSimulator, http: requests.Session, app: OAuthApp, **params: str) -> str:
    response = _exchange(sim, http, app, _code(sim, http, app, **params))
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def _client(sim: AlpacaSimulator, token: str) -> TradingClient:
    client = TradingClient(oauth_token=token, paper=True, url_override=sim.base_url)
    client._retry = 0
    return client


# --- the flow -----------------------------------------------------------------------------------


def test_code_then_token_then_alpaca_py_trades_with_bearer(
    sim: AlpacaSimulator, http: requests.Session, app: OAuthApp
) -> None:
    tenant = sim.add_tenant(positions=[{"symbol": "AAPL", "qty": 3, "avg_entry_price": 100}])

    target, query = _redirected(_authorize(sim, http, app, tenant=tenant.key_id, env="paper"))
    exchanged = _exchange(sim, http, app, query["code"])
    body = exchanged.json()
    client = _client(sim, body["access_token"])
    account = client.get_account()

    assert target == REDIRECT and query["state"] == "st-123"
    assert exchanged.status_code == 200 and exchanged.headers["Cache-Control"] == "no-store"
    assert set(body) == {"access_token", "token_type", "scope"}
    assert (body["token_type"], body["scope"]) == ("bearer", DEFAULT_SCOPE)
    assert client._get_auth_headers() == {"Authorization": f"Bearer {body['access_token']}"}
    assert isinstance(account, TradeAccount) and str(account.id) == tenant.account_id
    assert [p.symbol for p in client.get_all_positions()] == ["AAPL"]  # type: ignore[union-attr]
    assert sim.stats()["by_status"] == {"200": 2}
    assert sim.requests_for(tenant.key_id) == 2


def test_authorize_without_a_tenant_makes_a_new_account(
    sim: AlpacaSimulator, http: requests.Session, app: OAuthApp
) -> None:
    token = _token(sim, http, app, scope="trading", env="live")

    (grant,) = sim.oauth_grants()
    account = _client(sim, token).get_account()
    assert len(sim.tenants()) == 1
    assert grant.tenant == sim.tenants()[0].key_id
    assert isinstance(account, TradeAccount) and str(account.id) == sim.tenants()[0].account_id
    assert (grant.scope, grant.env, grant.revoked) == ("trading", "live", False)
    assert token not in repr(grant) and token not in str(grant.info())


def test_a_registered_redirect_keeps_its_own_query(
    sim: AlpacaSimulator, http: requests.Session, app: OAuthApp
) -> None:
    redirect = "https://app.example.com/cb?from=app"
    response = _authorize(sim, http, app, redirect_uri=redirect)

    target, query = _redirected(response)
    assert target == "https://app.example.com/cb"
    assert query["from"] == "app" and query["state"] == "st-123" and "code" in query


def test_keys_and_tokens_both_authenticate(
    sim: AlpacaSimulator, http: requests.Session, app: OAuthApp
) -> None:
    tenant = sim.add_tenant()
    token = _token(sim, http, app, tenant=tenant.key_id)
    keys = TradingClient(tenant.key_id, tenant.secret_key, paper=True, url_override=sim.base_url)

    assert str(_client(sim, token).get_account().id) == tenant.account_id  # type: ignore[union-attr]
    assert str(keys.get_account().id) == tenant.account_id  # type: ignore[union-attr]


def test_scenarios_apply_to_oauth_callers_too(
    sim: AlpacaSimulator, http: requests.Session, app: OAuthApp
) -> None:
    tenant = sim.add_tenant(Scenario(kind="rate_limited"))
    client = _client(sim, _token(sim, http, app, tenant=tenant.key_id))

    with pytest.raises(APIError) as raised:
        client.get_account()

    assert raised.value.status_code == 429


# --- the scenarios: revoked token, wrong redirect URI, reused code ------------------------------


@pytest.mark.parametrize("by", ["tenant", "client_id", "token"])
def test_a_revoked_token_is_401_and_others_still_work(
    sim: AlpacaSimulator, http: requests.Session, app: OAuthApp, by: str
) -> None:
    alice, bob = sim.add_tenant(), sim.add_tenant()
    alice_token = _token(sim, http, app, tenant=alice.key_id)
    other_app = sim.add_oauth_app([REDIRECT])
    bob_token = _token(sim, http, other_app, tenant=bob.key_id)
    target = {"tenant": alice.key_id, "client_id": app.client_id, "token": alice_token}[by]

    revoked = http.post(f"{sim.base_url}/_sim/oauth/revoke", json={by: target})
    with pytest.raises(APIError) as raised:
        _client(sim, alice_token).get_account()

    assert revoked.status_code == 200 and revoked.json() == {"revoked": 1}
    assert raised.value.status_code == 401
    assert raised.value.message == "request is not authorized"
    assert alice_token not in raised.value.response.text
    assert isinstance(_client(sim, bob_token).get_account(), TradeAccount)
    assert [g.revoked for g in sim.oauth_grants()] == [True, False]
    assert sim.revoke_oauth_tokens(tenant=alice.key_id) == 0  # already revoked


def test_a_wrong_redirect_uri_is_invalid_grant_and_spends_nothing(
    sim: AlpacaSimulator, http: requests.Session, app: OAuthApp
) -> None:
    code = _code(sim, http, app)

    wrong = _exchange(sim, http, app, code, redirect_uri="https://app.example.com/cb?from=app")
    right = _exchange(sim, http, app, code)

    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    assert "redirect_uri" in wrong.json()["error_description"]
    assert right.status_code == 200


def test_a_reused_code_is_invalid_grant_and_revokes_its_token(
    sim: AlpacaSimulator, http: requests.Session, app: OAuthApp
) -> None:
    code = _code(sim, http, app)
    first = _exchange(sim, http, app, code)
    token = first.json()["access_token"]

    again = _exchange(sim, http, app, code)
    with pytest.raises(APIError) as raised:
        _client(sim, token).get_account()

    assert first.status_code == 200
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    assert "access_token" not in again.json()
    assert raised.value.status_code == 401


def test_an_expired_code_is_invalid_grant() -> None:
    now = [1000.0]
    registry = TenantRegistry()
    oauth = OAuthServer(registry, clock=lambda: now[0])
    app = oauth.add_app([REDIRECT])
    query = urlencode(
        {"response_type": "code", "client_id": app.client_id, "redirect_uri": REDIRECT}
    )
    location = dict(oauth.authorize(query).headers)["Location"]
    code = parse_qs(urlsplit(location).query)["code"][0]
    form = urlencode(
        {
            "grant_type": "authorization_code",
            "code": code,
            "client_id": app.client_id,
            "client_secret": app.client_secret,
            "redirect_uri": REDIRECT,
        }
    ).encode()

    now[0] += CODE_LIFETIME_SECONDS
    expired = oauth.token(form, FORM["Content-Type"])

    assert expired.status == 400
    assert expired.body == {
        "error": "invalid_grant",
        "error_description": "authorization code expired",
    }


# --- refusals -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "status", "error"),
    [
        ({"client_secret": "not-the-secret"}, 401, "invalid_client"),
        ({"client_id": "unknown-app"}, 401, "invalid_client"),
        ({"grant_type": "client_credentials"}, 400, "unsupported_grant_type"),
        ({"code": ""}, 400, "invalid_request"),
        ({"redirect_uri": ""}, 400, "invalid_request"),
        ({"code": "no-such-code"}, 400, "invalid_grant"),
    ],
)
def test_token_refusals(
    sim: AlpacaSimulator,
    http: requests.Session,
    app: OAuthApp,
    *,
    override: dict[str, str],
    status: int,
    error: str,
) -> None:
    code = _code(sim, http, app)

    refused = _exchange(sim, http, app, code, **override)

    assert refused.status_code == status and refused.json()["error"] == error
    assert refused.headers["Cache-Control"] == "no-store"
    assert app.client_secret not in refused.text


def test_token_needs_a_form_with_each_parameter_once(
    sim: AlpacaSimulator, http: requests.Session, app: OAuthApp
) -> None:
    code = _code(sim, http, app)
    fields = {
        "grant_type": "authorization_code",
        "code": code,
        "client_id": app.client_id,
        "client_secret": app.client_secret,
        "redirect_uri": REDIRECT,
    }
    url = f"{sim.base_url}/oauth/token"

    as_json = http.post(url, json=fields)
    repeated = http.post(url, data=[*fields.items(), ("code", code)], headers=FORM)
    not_ascii = http.post(url, data="code=\xe9".encode("latin-1"), headers=FORM)

    for refused in (as_json, repeated, not_ascii):
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_request"
    assert _exchange(sim, http, app, code).status_code == 200  # the code was never spent


def test_another_apps_code_is_invalid_grant(
    sim: AlpacaSimulator, http: requests.Session, app: OAuthApp
) -> None:
    other = sim.add_oauth_app([REDIRECT])
    code = _code(sim, http, other)

    refused = _exchange(sim, http, app, code)

    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"


@pytest.mark.parametrize(
    ("params", "status", "error"),
    [
        ({"client_id": "unknown-app"}, 400, "invalid_client"),
        ({"redirect_uri": "http://127.0.0.1:5000/elsewhere"}, 400, "invalid_request"),
        ({"redirect_uri": ""}, 400, "invalid_request"),
    ],
)
def test_authorize_never_redirects_to_an_unregistered_place(
    sim: AlpacaSimulator,
    http: requests.Session,
    app: OAuthApp,
    *,
    params: dict[str, str],
    status: int,
    error: str,
) -> None:
    response = _authorize(sim, http, app, **params)

    assert response.status_code == status and "Location" not in response.headers
    assert response.json()["error"] == error


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"env": "sandbox"}, "invalid_request"),
        ({"tenant": "PKNOSUCHTENANT000000"}, "access_denied"),
    ],
)
def test_authorize_refusals_redirect_with_the_error_and_state(
    sim: AlpacaSimulator,
    http: requests.Session,
    app: OAuthApp,
    params: dict[str, str],
    error: str,
) -> None:
    target, query = _redirected(_authorize(sim, http, app, **params))

    assert target == REDIRECT
    assert query == {"error": error, "state": "st-123"}
    assert sim.tenants() == []


def test_oauth_routes_answer_their_method_only(
    sim: AlpacaSimulator, http: requests.Session
) -> None:
    assert http.post(f"{sim.base_url}/oauth/authorize").status_code == 405
    assert http.get(f"{sim.base_url}/oauth/token").status_code == 405


@pytest.mark.parametrize(
    "authorization", ["Bearer not-a-token", "bearer not-a-token", "Basic abc", "Bearer "]
)
def test_unknown_or_unusable_authorization_is_401(
    sim: AlpacaSimulator, http: requests.Session, authorization: str
) -> None:
    sim.add_tenant()

    response = http.get(f"{sim.base_url}/v2/account", headers={"Authorization": authorization})

    assert response.status_code == 401
    assert "not-a-token" not in response.text


# --- the admin API ------------------------------------------------------------------------------


def test_admin_creates_apps_and_lists_them_without_secrets(
    sim: AlpacaSimulator, http: requests.Session
) -> None:
    base = f"{sim.base_url}/_sim/oauth"

    created = http.post(f"{base}/apps", json={"redirect_uris": [REDIRECT]})
    chosen = http.post(
        f"{base}/apps",
        json={
            "client_id": "agenttrader",
            "client_secret": "app-secret-123",
            "redirect_uris": [REDIRECT],
        },
    )
    listing = http.get(f"{base}/apps")

    assert created.status_code == 201 and chosen.status_code == 201
    secret = created.json()["client_secret"]
    assert len(secret) >= 32 and chosen.json()["client_secret"] == "app-secret-123"
    assert [a["client_id"] for a in listing.json()] == [created.json()["client_id"], "agenttrader"]
    assert secret not in listing.text and "app-secret-123" not in listing.text
    assert all(set(a) == {"client_id", "redirect_uris"} for a in listing.json())


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "redirect_uris must be a non-empty list"),
        ({"redirect_uris": "http://127.0.0.1/cb"}, "redirect_uris must be a list"),
        ({"redirect_uris": ["/relative"]}, "absolute"),
        ({"redirect_uris": ["ftp://x.example/cb"]}, "absolute"),
        ({"redirect_uris": [REDIRECT + "#frag"]}, "absolute"),
        ({"redirect_uris": [REDIRECT], "client_id": "has space"}, "client_id must be"),
        ({"redirect_uris": [REDIRECT], "client_secret": "short"}, "client_secret must be"),
        ({"redirect_uris": [REDIRECT], "scopes": []}, "unknown app field(s): scopes"),
        ([], "request body must be a JSON object"),
    ],
)
def test_admin_refuses_bad_apps(
    sim: AlpacaSimulator, http: requests.Session, body: Any, message: str
) -> None:
    response = http.post(f"{sim.base_url}/_sim/oauth/apps", json=body)

    assert response.status_code == 400 and message in response.json()["message"]
    assert http.get(f"{sim.base_url}/_sim/oauth/apps").json() == []


def test_admin_refuses_a_duplicate_client_id(sim: AlpacaSimulator, http: requests.Session) -> None:
    sim.add_oauth_app([REDIRECT], client_id="agenttrader")

    response = http.post(
        f"{sim.base_url}/_sim/oauth/apps",
        json={"client_id": "agenttrader", "redirect_uris": [REDIRECT]},
    )

    assert response.status_code == 400 and "already exists" in response.json()["message"]


def test_admin_lists_grants_without_tokens(
    sim: AlpacaSimulator, http: requests.Session, app: OAuthApp
) -> None:
    tenant = sim.add_tenant()
    token = _token(sim, http, app, tenant=tenant.key_id)

    listing = http.get(f"{sim.base_url}/_sim/oauth/grants")

    (grant,) = listing.json()
    assert (grant["tenant"], grant["client_id"], grant["revoked"]) == (
        tenant.key_id,
        app.client_id,
        False,
    )
    assert token not in listing.text


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "name a tenant, a client_id or a token"),
        ({"uid": "x"}, "unknown revoke field(s): uid"),
        ({"tenant": 5}, "must be strings"),
    ],
)
def test_admin_refuses_bad_revocations(
    sim: AlpacaSimulator, http: requests.Session, body: dict[str, Any], message: str
) -> None:
    response = http.post(f"{sim.base_url}/_sim/oauth/revoke", json=body)

    assert response.status_code == 400 and message in response.json()["message"]


def test_admin_oauth_routes(sim: AlpacaSimulator, http: requests.Session) -> None:
    base = f"{sim.base_url}/_sim/oauth"

    assert http.put(f"{base}/apps", json={}).status_code == 405
    assert http.delete(f"{base}/grants").status_code == 405
    assert http.get(f"{base}/revoke").status_code == 405
    assert http.get(f"{base}/nothing").status_code == 404


# --- secrets ------------------------------------------------------------------------------------


def test_codes_tokens_and_client_secrets_stay_out_of_logs(
    sim: AlpacaSimulator,
    http: requests.Session,
    app: OAuthApp,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG, logger="devtools.simulator")
    tenant: SimTenant = sim.add_tenant()
    code = _code(sim, http, app, tenant=tenant.key_id)
    token = _exchange(sim, http, app, code).json()["access_token"]
    _exchange(sim, http, app, code)
    with pytest.raises(APIError):
        _client(sim, token).get_account()

    output = caplog.text + "".join(capfd.readouterr())
    assert "GET /oauth/authorize 302" in caplog.text and "POST /oauth/token 400" in caplog.text
    for secret in (code, token, app.client_secret, "st-123"):
        assert secret not in output
    assert app.client_secret not in repr(app)
