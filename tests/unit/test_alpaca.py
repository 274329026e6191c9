"""Alpaca access for one tenant: key validation, the guarded client, error translation.

The guarded-session tests run alpaca-py's real ``TradingClient`` against tiny local HTTP
servers; the scenario tests run it against the Alpaca simulator.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pydantic
import pytest
import requests
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient

from agenttrader import logs
from agenttrader.alpaca import (
    AlpacaClientFactory,
    alpaca_errors,
    fetch_account_state,
    fetch_clock,
    translate,
)
from agenttrader.credentials import AlpacaKeys, OAuthToken
from agenttrader.errors import (
    AgentTraderError,
    AlpacaAuthError,
    AlpacaConnectionError,
    AlpacaRateLimited,
    AlpacaRequestError,
    AlpacaTimeout,
    AlpacaUnavailable,
    DisallowedBaseUrl,
    InvalidKeys,
    MissingKeys,
    PermanentError,
    RetryableError,
)
from agenttrader.settings import OFFICIAL_ALPACA_BASE_URLS
from devtools.emulators import free_port
from devtools.simulator import REGULAR, AlpacaSimulator, ClockSetting, Scenario
from tests.log_capture import json_log_lines

KEY_ID = "PKTESTKEY0123456789A"
SECRET = "sEcReT-value-0123456789abcdefghijklmnopq"
PAPER = "https://paper-api.alpaca.markets"
LIVE = "https://api.alpaca.markets"


def _keys(base_url: str = PAPER, key_id: str = KEY_ID, secret: str = SECRET) -> AlpacaKeys:
    return AlpacaKeys(key_id=key_id, secret_key=secret, base_url=base_url)


def _assert_no_secret(text: str, *secrets: str) -> None:
    for secret in secrets or (KEY_ID, SECRET):
        assert secret not in text


# --- AlpacaKeys ------------------------------------------------------------------------------


def test_keys_repr_and_str_never_show_the_values() -> None:
    keys = _keys()

    for text in (repr(keys), str(keys), f"{keys}", f"{keys!r}", repr([keys]), repr({"k": keys})):
        _assert_no_secret(text)
        assert PAPER in text


def test_key_id_hint_shows_only_the_last_four_characters() -> None:
    assert _keys().key_id_hint == "…789A"


def test_from_document_accepts_a_valid_document() -> None:
    keys = AlpacaKeys.from_document(
        {"key_id": KEY_ID, "secret_key": SECRET, "base_url": PAPER, "extra": 1}
    )

    assert keys == _keys()


@pytest.mark.parametrize(
    "document",
    [
        None,
        {},
        {"base_url": PAPER},
        {"key_id": KEY_ID, "base_url": PAPER},
        {"secret_key": SECRET, "base_url": PAPER},
        {"key_id": None, "secret_key": SECRET, "base_url": PAPER},
        {"key_id": KEY_ID, "secret_key": None, "base_url": PAPER},
    ],
    ids=["none", "empty", "no-keys", "no-secret", "no-key-id", "null-key-id", "null-secret"],
)
def test_from_document_missing_keys(document: dict[str, Any] | None) -> None:
    with pytest.raises(MissingKeys):
        AlpacaKeys.from_document(document)


@pytest.mark.parametrize(
    "overrides",
    [
        {"key_id": 12345678901},
        {"key_id": ["PKTESTKEY0123456789A"]},
        {"key_id": ""},
        {"key_id": "PK12345"},
        {"key_id": "P" * 129},
        {"key_id": "PKTEST KEY0123"},
        {"key_id": "PKTESTKEY\n0123456789"},
        {"key_id": "PKTESTKEY0123456789A\n"},
        {"key_id": "PKTÉSTKEY0123456789"},
        {"secret_key": 123456789012},
        {"secret_key": b"bytes-secret-value"},
        {"secret_key": ""},
        {"secret_key": "short12"},
        {"secret_key": "s" * 257},
        {"secret_key": "secret\nvalue-0123"},
        {"secret_key": "secret-value-0123\n"},
        {"secret_key": "secret\r\nX-Injected: 1"},
        {"secret_key": "secret value 0123"},
        {"secret_key": "secret\tvalue0123"},
        {"secret_key": "secret\x00value0123"},
        {"secret_key": "sécret-value-0123"},
        {"base_url": None},
        {"base_url": ""},
        {"base_url": 443},
        {"base_url": ["https://paper-api.alpaca.markets"]},
    ],
)
def test_from_document_invalid_keys(overrides: dict[str, Any]) -> None:
    document = {"key_id": KEY_ID, "secret_key": SECRET, "base_url": PAPER, **overrides}

    with pytest.raises(InvalidKeys) as info:
        AlpacaKeys.from_document(document)

    bad_value = next(iter(overrides.values()))
    echoed = [str(bad_value)] if isinstance(bad_value, str) and len(bad_value) >= 8 else []
    _assert_no_secret(str(info.value), SECRET, KEY_ID, *echoed)


def test_from_document_accepts_the_length_limits() -> None:
    keys = AlpacaKeys.from_document(
        {"key_id": "K" * 128, "secret_key": "~" * 256, "base_url": PAPER}
    )
    assert len(keys.key_id) == 128
    assert AlpacaKeys.from_document(
        {"key_id": "K" * 8, "secret_key": "!" * 8, "base_url": PAPER}
    ).secret_key == ("!" * 8)


def test_key_errors_are_permanent() -> None:
    assert issubclass(MissingKeys, PermanentError)
    assert issubclass(InvalidKeys, PermanentError)


# --- AlpacaClientFactory ---------------------------------------------------------------------


@pytest.fixture
def clients() -> Iterator[list[TradingClient]]:
    """Clients built by a test; their sessions are closed afterwards."""
    built: list[TradingClient] = []
    yield built
    for client in built:
        client._session.close()


def _factory_for(
    clients: list[TradingClient], allowed: tuple[str, ...], timeout: float = 2.0
) -> Callable[[AlpacaKeys], TradingClient]:
    factory = AlpacaClientFactory(allowed, timeout)

    def build(keys: AlpacaKeys) -> TradingClient:
        client = factory.for_user(keys)
        clients.append(client)
        return client

    return build


@pytest.mark.parametrize(
    "base_url",
    [
        "https://paper-api.alpaca.markets.evil.example",
        "http://paper-api.alpaca.markets",
        "https://user:pass@paper-api.alpaca.markets",
        "http://169.254.169.254",
        "http://127.0.0.1:8766",
        "http://localhost:8765",
        "file:///etc/passwd",
    ],
)
def test_for_user_refuses_disallowed_base_urls(base_url: str) -> None:
    factory = AlpacaClientFactory((*OFFICIAL_ALPACA_BASE_URLS, "http://127.0.0.1:8765"), 1.0)

    with pytest.raises(DisallowedBaseUrl):
        factory.for_user(_keys(base_url))


@pytest.mark.parametrize(
    ("base_url", "origin", "paper"),
    [
        (PAPER, PAPER, True),
        (PAPER + "/v2", PAPER, True),
        (PAPER + "/", PAPER, True),
        (LIVE + "/v2/", LIVE, False),
        ("HTTPS://API.ALPACA.MARKETS", LIVE, False),
        ("http://127.0.0.1:8765/v2", "http://127.0.0.1:8765", True),
    ],
)
def test_for_user_builds_a_guarded_client_for_the_origin(
    clients: list[TradingClient], base_url: str, origin: str, paper: bool
) -> None:
    build = _factory_for(clients, (*OFFICIAL_ALPACA_BASE_URLS, "http://127.0.0.1:8765"), 2.5)

    client = build(_keys(base_url))

    assert isinstance(client, TradingClient)
    assert client._retry == 0
    # alpaca-py appends "/v2/..." itself: the client gets the bare origin, never a path.
    assert client._base_url == origin
    assert client._sandbox is paper
    assert client._api_key == KEY_ID
    assert client._secret_key == SECRET
    assert isinstance(client._session, requests.Session)


def test_each_user_gets_a_client_of_their_own(clients: list[TradingClient]) -> None:
    build = _factory_for(clients, OFFICIAL_ALPACA_BASE_URLS)

    first = build(_keys(key_id="PKFIRSTKEY0123456789"))
    second = build(_keys(key_id="PKSECONDKEY012345678"))

    assert first is not second
    assert first._session is not second._session
    assert first._api_key == "PKFIRSTKEY0123456789"
    assert second._api_key == "PKSECONDKEY012345678"


# --- the guarded session against local HTTP servers ------------------------------------------


@dataclass
class _Server:
    """A loopback HTTP server whose answer a test chooses."""

    respond: Callable[[BaseHTTPRequestHandler], None]
    hits: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    base_url: str = ""


@pytest.fixture
def server() -> Iterator[_Server]:
    state = _Server(respond=lambda handler: None)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.hits.append((self.path, dict(self.headers.items())))
            state.respond(self)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    state.base_url = f"http://127.0.0.1:{httpd.server_port}"
    yield state
    state.release.set()
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


def _reply(status: int, body: str = "", headers: dict[str, str] | None = None) -> Any:
    def respond(handler: BaseHTTPRequestHandler) -> None:
        payload = body.encode()
        handler.send_response(status)
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)

    return respond


def _client_for(server: _Server, clients: list[TradingClient], timeout: float = 2.0) -> Any:
    keys = _keys(server.base_url)
    return _factory_for(clients, (*OFFICIAL_ALPACA_BASE_URLS, server.base_url), timeout)(keys), keys


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirects_are_refused_and_not_followed(
    server: _Server, clients: list[TradingClient], status: int
) -> None:
    server.respond = _reply(status, headers={"Location": server.base_url + "/elsewhere"})
    client, keys = _client_for(server, clients)

    with pytest.raises(AlpacaRequestError, match="redirect"):
        fetch_account_state(client, keys)

    assert [path for path, _ in server.hits] == ["/v2/account"]


def test_redirect_to_another_host_never_carries_the_keys(
    server: _Server, clients: list[TradingClient]
) -> None:
    server.respond = _reply(302, headers={"Location": "http://169.254.169.254/latest"})
    client, keys = _client_for(server, clients)

    with pytest.raises(AlpacaRequestError) as info:
        fetch_account_state(client, keys)

    assert len(server.hits) == 1
    _assert_no_secret(str(info.value))


def test_a_hanging_server_times_out(server: _Server, clients: list[TradingClient]) -> None:
    server.respond = lambda handler: server.release.wait(5) and None
    client, keys = _client_for(server, clients, timeout=0.3)

    started = time.monotonic()
    with pytest.raises(AlpacaTimeout):
        fetch_account_state(client, keys)

    assert time.monotonic() - started < 2.0
    assert len(server.hits) == 1


@pytest.mark.parametrize(
    ("status", "error"),
    [(429, AlpacaRateLimited), (504, AlpacaUnavailable), (503, AlpacaUnavailable)],
)
def test_no_builtin_retry_on_429_or_5xx(
    server: _Server, clients: list[TradingClient], status: int, error: type[Exception]
) -> None:
    # alpaca-py's default would sleep 3 s and retry 429/504 three times; Pub/Sub retries here.
    server.respond = _reply(status, json.dumps({"code": status * 100000, "message": "slow down"}))
    client, keys = _client_for(server, clients)

    started = time.monotonic()
    with pytest.raises(error):
        fetch_account_state(client, keys)

    assert len(server.hits) == 1
    assert time.monotonic() - started < 2.0


def test_the_client_sends_this_users_keys_to_the_allowed_origin(
    server: _Server, clients: list[TradingClient]
) -> None:
    server.respond = _reply(401, json.dumps({"code": 40110000, "message": "unauthorized."}))
    client, keys = _client_for(server, clients)

    with pytest.raises(AlpacaAuthError) as info:
        fetch_account_state(client, keys)

    (path, headers), *_ = server.hits
    assert path == "/v2/account"
    assert headers["APCA-API-KEY-ID"] == KEY_ID
    assert headers["APCA-API-SECRET-KEY"] == SECRET
    _assert_no_secret(str(info.value))


TOKEN = "oauth-access-token-0123456789abcdef"


def test_an_oauth_client_sends_the_bearer_token_and_no_key_headers(
    server: _Server, clients: list[TradingClient], captured_logs: Callable[[], str]
) -> None:
    server.respond = _reply(401, json.dumps({"code": 40110000, "message": "unauthorized."}))
    token = OAuthToken(access_token=TOKEN, base_url=server.base_url + "/v2")
    client = _factory_for(clients, (*OFFICIAL_ALPACA_BASE_URLS, server.base_url))(token)

    with pytest.raises(AlpacaAuthError) as info:
        fetch_account_state(client, token)
    logs.get_logger("agenttrader.test").exception("sync failed", uid="user-1")

    (path, headers), *_ = server.hits
    assert path == "/v2/account"
    assert headers["Authorization"] == f"Bearer {TOKEN}"
    assert "APCA-API-KEY-ID" not in headers and "APCA-API-SECRET-KEY" not in headers
    text = str(info.value) + "".join(traceback.format_exception(info.value))
    _assert_no_secret(text + captured_logs(), TOKEN)


def test_an_oauth_client_is_guarded_like_a_keys_client(
    server: _Server, clients: list[TradingClient]
) -> None:
    server.respond = _reply(302, headers={"Location": "http://169.254.169.254/latest"})
    token = OAuthToken(access_token=TOKEN, base_url=server.base_url)
    build = _factory_for(clients, (*OFFICIAL_ALPACA_BASE_URLS, server.base_url), timeout=0.5)
    client = build(token)

    with pytest.raises(AlpacaRequestError, match="redirect"):
        fetch_clock(client, token)
    assert len(server.hits) == 1 and client._retry == 0
    with pytest.raises(DisallowedBaseUrl):
        build(OAuthToken(access_token=TOKEN, base_url="https://evil.example"))
    live = build(OAuthToken(access_token=TOKEN, base_url=LIVE))
    assert live._base_url == LIVE and live._oauth_token == TOKEN and live._api_key is None


def test_alpaca_errors_scopes_an_oauth_token() -> None:
    name = "agenttrader.test.alpaca_errors_oauth"
    token = OAuthToken(access_token="lowercase-token-without-any-pattern", base_url=PAPER)
    with (
        json_log_lines(logging.WARNING, name) as stream,
        pytest.raises(AlpacaTimeout),
        alpaca_errors(token),
    ):
        logging.getLogger(name).warning("calling with %s", token.access_token)
        raise requests.ReadTimeout(f"timed out {token.access_token}")

    assert token.access_token not in stream.getvalue()
    assert token.access_token not in repr(token)


@pytest.mark.parametrize("body", ["not json at all", "{}", '{"id": 5}', "[1, 2]"])
def test_unparseable_success_bodies_are_request_errors(
    server: _Server, clients: list[TradingClient], body: str
) -> None:
    server.respond = _reply(200, body)
    client, keys = _client_for(server, clients)

    with pytest.raises(AlpacaRequestError, match="does not parse"):
        fetch_account_state(client, keys)


@pytest.mark.parametrize("body", ["not json at all", "[1, 2]", '"open"'])
def test_unparseable_clock_bodies_are_request_errors(
    server: _Server, clients: list[TradingClient], body: str
) -> None:
    server.respond = _reply(200, body)
    client, keys = _client_for(server, clients)

    with pytest.raises(AlpacaRequestError, match="does not parse"):
        fetch_clock(client, keys)

    assert [path for path, _ in server.hits] == ["/v2/clock"]


def test_the_clock_is_asked_with_this_users_keys_and_no_redirect(
    server: _Server, clients: list[TradingClient]
) -> None:
    server.respond = _reply(302, headers={"Location": "http://169.254.169.254/latest"})
    client, keys = _client_for(server, clients)

    with pytest.raises(AlpacaRequestError, match="redirect") as info:
        fetch_clock(client, keys)

    ((path, headers),) = server.hits
    assert path == "/v2/clock" and headers["APCA-API-KEY-ID"] == KEY_ID
    _assert_no_secret(str(info.value))


def test_nothing_listening_is_a_connection_error(clients: list[TradingClient]) -> None:
    base_url = f"http://127.0.0.1:{free_port()}"
    keys = _keys(base_url)
    client = _factory_for(clients, (base_url,), 1.0)(keys)

    with pytest.raises(AlpacaConnectionError):
        fetch_account_state(client, keys)


# --- translate -------------------------------------------------------------------------------


def _api_error(status: int | None) -> APIError:
    body = json.dumps({"code": 1, "message": f"echo APCA-API-SECRET-KEY: {SECRET} {KEY_ID}"})
    if status is None:
        return APIError(body)
    response = requests.Response()
    response.status_code = status
    response._content = body.encode()
    http_error = requests.HTTPError(f"{status} for url http://x/?k={SECRET}", response=response)
    return APIError(body, http_error)


@pytest.mark.parametrize(
    ("exc", "expected", "status_text"),
    [
        (_api_error(401), AlpacaAuthError, "401"),
        (_api_error(403), AlpacaAuthError, "403"),
        (_api_error(429), AlpacaRateLimited, "429"),
        (_api_error(500), AlpacaUnavailable, "500"),
        (_api_error(502), AlpacaUnavailable, "502"),
        (_api_error(503), AlpacaUnavailable, "503"),
        (_api_error(504), AlpacaUnavailable, "504"),
        (_api_error(400), AlpacaRequestError, "400"),
        (_api_error(404), AlpacaRequestError, "404"),
        (_api_error(422), AlpacaRequestError, "422"),
        (_api_error(None), AlpacaRequestError, "HTTP"),
        (requests.Timeout(f"timed out {SECRET}"), AlpacaTimeout, "in time"),
        (requests.ReadTimeout(f"read {KEY_ID}"), AlpacaTimeout, "in time"),
        (requests.ConnectTimeout(f"connect {SECRET}"), AlpacaTimeout, "in time"),
        (requests.ConnectionError(f"refused {SECRET}"), AlpacaConnectionError, "reached"),
        (requests.exceptions.SSLError(f"tls {SECRET}"), AlpacaConnectionError, "reached"),
        (requests.exceptions.ChunkedEncodingError(SECRET), AlpacaConnectionError, "failed"),
        (requests.TooManyRedirects(SECRET), AlpacaConnectionError, "failed"),
        (ValueError(f"bad value {SECRET}"), AlpacaRequestError, "does not parse"),
        (KeyError(SECRET), AlpacaRequestError, "does not parse"),
        (TypeError(SECRET), AlpacaRequestError, "does not parse"),
        (json.JSONDecodeError(SECRET, "doc", 0), AlpacaRequestError, "does not parse"),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else None,
)
def test_translate_maps_to_the_retry_contract(
    exc: BaseException, expected: type[AgentTraderError], status_text: str
) -> None:
    translated = translate(exc)

    assert type(translated) is expected
    assert status_text in str(translated)
    _assert_no_secret(str(translated) + repr(translated))
    assert "echo" not in str(translated)


def test_translate_maps_pydantic_validation_errors() -> None:
    class Model(pydantic.BaseModel):
        equity: float

    with pytest.raises(pydantic.ValidationError) as info:
        Model(equity=f"not-a-number {SECRET}")  # type: ignore[arg-type]

    translated = translate(info.value)

    assert type(translated) is AlpacaRequestError
    _assert_no_secret(str(translated))


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (AlpacaAuthError, False),
        (AlpacaRequestError, False),
        (AlpacaRateLimited, True),
        (AlpacaUnavailable, True),
        (AlpacaTimeout, True),
        (AlpacaConnectionError, True),
    ],
)
def test_translated_classes_carry_the_retry_decision(
    error: type[AgentTraderError], retryable: bool
) -> None:
    assert issubclass(error, RetryableError) is retryable
    assert issubclass(error, PermanentError) is not retryable


def test_translate_returns_our_own_errors_unchanged() -> None:
    own = AlpacaRequestError("redirect")

    assert translate(own) is own


def test_translate_reraises_what_it_does_not_know() -> None:
    unknown = RuntimeError("a bug")

    with pytest.raises(RuntimeError) as info:
        translate(unknown)

    assert info.value is unknown


def test_alpaca_errors_translates_and_scopes_the_keys() -> None:
    logger = logging.getLogger("agenttrader.test.alpaca_errors")
    keys = _keys(secret="lower-case-secret-no-pattern")
    with json_log_lines(logging.WARNING, logger.name) as stream:
        with pytest.raises(AlpacaTimeout) as info, alpaca_errors(keys):
            logger.warning("about to call with %s", keys.secret_key)
            raise requests.ReadTimeout(f"timed out {keys.secret_key}")
        logger.warning("after %s", keys.secret_key)

    inside, after = stream.getvalue().splitlines()
    assert "lower-case-secret-no-pattern" not in inside
    assert "lower-case-secret-no-pattern" in after  # the scope ended with the block
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__ is True
    _assert_no_secret("".join(traceback.format_exception(info.value)), keys.secret_key)


# --- against the Alpaca simulator ------------------------------------------------------------


@pytest.fixture(scope="module")
def simulator() -> Iterator[AlpacaSimulator]:
    sim = AlpacaSimulator(port=0)
    sim.start()
    yield sim
    sim.stop()


@pytest.fixture
def captured_logs(caplog: pytest.LogCaptureFixture) -> Iterator[Callable[[], str]]:
    """Everything logged, ours and the libraries', DEBUG up: the raw records (caplog's plain
    formatter, no redaction) and the lines our JSON formatter writes."""
    caplog.set_level(logging.DEBUG)
    with json_log_lines() as stream:
        yield lambda: stream.getvalue() + caplog.text


def _sim_client(
    simulator: AlpacaSimulator,
    clients: list[TradingClient],
    scenario: Scenario,
    timeout: float = 2.0,
) -> tuple[TradingClient, AlpacaKeys]:
    tenant = simulator.add_tenant(scenario=scenario)
    keys = AlpacaKeys.from_document(
        {"key_id": tenant.key_id, "secret_key": tenant.secret_key, "base_url": simulator.base_url}
    )
    allowed = (*OFFICIAL_ALPACA_BASE_URLS, simulator.base_url)
    return _factory_for(clients, allowed, timeout)(keys), keys


def test_fetch_account_state_of_a_normal_tenant(
    simulator: AlpacaSimulator,
    clients: list[TradingClient],
    captured_logs: Callable[[], str],
) -> None:
    client, keys = _sim_client(simulator, clients, Scenario(kind="normal"))

    state = fetch_account_state(client, keys)

    assert set(state) == {"account", "positions"}
    account = state["account"]
    for name in ("id", "account_number", "status", "equity", "buying_power", "cash"):
        assert name in account
    assert isinstance(account["status"], str)  # enums become their values
    assert float(account["equity"]) > 0
    assert isinstance(state["positions"], list)
    for position in state["positions"]:
        assert isinstance(position["symbol"], str)
        assert isinstance(position["asset_id"], str)  # UUIDs become strings
    json.dumps(state, default=str)
    assert simulator.requests_for(keys.key_id) == 2
    _assert_no_secret(captured_logs(), keys.key_id, keys.secret_key)


@pytest.mark.parametrize(
    ("scenario", "error"),
    [
        (Scenario(kind="bad_keys"), AlpacaAuthError),
        (Scenario(kind="forbidden"), AlpacaAuthError),
        (Scenario(kind="rate_limited"), AlpacaRateLimited),
        (Scenario(kind="server_error"), AlpacaUnavailable),
        (Scenario(kind="server_error", status=503), AlpacaUnavailable),
        (Scenario(kind="timeout", hang_seconds=5.0), AlpacaTimeout),
    ],
    ids=["bad_keys", "forbidden", "rate_limited", "server_error", "server_error_503", "timeout"],
)
def test_failing_tenants_map_to_the_retry_contract(
    simulator: AlpacaSimulator,
    clients: list[TradingClient],
    captured_logs: Callable[[], str],
    scenario: Scenario,
    error: type[AgentTraderError],
) -> None:
    client, keys = _sim_client(simulator, clients, scenario, timeout=0.5)

    started = time.monotonic()
    with pytest.raises(error) as info:
        fetch_account_state(client, keys)
    logs.get_logger("agenttrader.test").exception("sync failed", uid="user-1")

    assert time.monotonic() - started < 3.0
    assert simulator.requests_for(keys.key_id) == 1  # no built-in retry
    exc = info.value
    text = str(exc) + repr(exc) + str(exc.args) + "".join(traceback.format_exception(exc))
    _assert_no_secret(text, keys.key_id, keys.secret_key)
    _assert_no_secret(captured_logs(), keys.key_id, keys.secret_key)


def test_an_oauth_tenant_syncs_and_a_revoked_token_is_an_auth_error(
    simulator: AlpacaSimulator,
    clients: list[TradingClient],
    captured_logs: Callable[[], str],
) -> None:
    redirect = "https://app.example.com/alpaca/callback"
    app = simulator.add_oauth_app([redirect])
    tenant = simulator.add_tenant()
    code = simulator.authorize(app, redirect, tenant=tenant.key_id)
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect}
    form |= {"client_id": app.client_id, "client_secret": app.client_secret}
    answer = requests.post(f"{simulator.base_url}/oauth/token", data=form, timeout=5).json()
    token = OAuthToken(access_token=answer["access_token"], base_url=simulator.base_url)
    client = _factory_for(clients, (*OFFICIAL_ALPACA_BASE_URLS, simulator.base_url))(token)

    state = fetch_account_state(client, token)
    simulator.revoke_oauth_tokens(token=token.access_token)
    with pytest.raises(AlpacaAuthError):
        fetch_account_state(client, token)

    assert state["account"]["account_number"] == tenant.account_number
    assert simulator.requests_for(tenant.key_id) == 2  # the revoked token reaches no account
    _assert_no_secret(captured_logs(), token.access_token)


def test_one_tenants_failure_does_not_touch_another(
    simulator: AlpacaSimulator, clients: list[TradingClient]
) -> None:
    bad_client, bad_keys = _sim_client(simulator, clients, Scenario(kind="server_error"))
    good_client, good_keys = _sim_client(simulator, clients, Scenario(kind="normal"))

    with pytest.raises(AlpacaUnavailable):
        fetch_account_state(bad_client, bad_keys)
    state = fetch_account_state(good_client, good_keys)

    assert "equity" in state["account"]


def test_fetch_clock_returns_alpacas_body_as_sent(
    simulator: AlpacaSimulator, clients: list[TradingClient]
) -> None:
    client, keys = _sim_client(simulator, clients, Scenario(kind="normal"))
    opens = datetime(2031, 1, 2, 14, 30, tzinfo=UTC)
    simulator.set_clock(ClockSetting(is_open=False, next_open=opens, next_close=opens))
    try:
        clock = fetch_clock(client, keys)
    finally:
        simulator.set_clock(REGULAR)

    assert set(clock) == {"timestamp", "is_open", "next_open", "next_close"}
    assert clock["is_open"] is False
    assert datetime.fromisoformat(clock["next_open"]) == opens
    assert simulator.requests_for(keys.key_id) == 1


@pytest.mark.parametrize(
    ("status", "error"),
    [(503, AlpacaUnavailable), (429, AlpacaRateLimited), (401, AlpacaAuthError)],
)
def test_a_failing_clock_maps_to_the_retry_contract_without_secrets(
    simulator: AlpacaSimulator,
    clients: list[TradingClient],
    captured_logs: Callable[[], str],
    status: int,
    error: type[AgentTraderError],
) -> None:
    client, keys = _sim_client(simulator, clients, Scenario(kind="normal"))
    simulator.set_clock(ClockSetting(fail_status=status))
    try:
        with pytest.raises(error) as info:
            fetch_clock(client, keys)
    finally:
        simulator.set_clock(REGULAR)

    assert simulator.requests_for(keys.key_id) == 1
    text = str(info.value) + "".join(traceback.format_exception(info.value))
    _assert_no_secret(text, keys.key_id, keys.secret_key)
    _assert_no_secret(captured_logs(), keys.key_id, keys.secret_key)
