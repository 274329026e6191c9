"""Alpaca access for one tenant: a client built for that tenant's credentials only, error
translation.

The client is alpaca-py's ``TradingClient`` (the real code path), with three changes that one
tenant's sync needs: a timeout on every request, no redirects followed, and no built-in retry
(alpaca-py sleeps 3 s and retries 429/504 three times by default; Pub/Sub owns retries here).
API keys travel in the ``APCA-API-KEY-ID`` / ``APCA-API-SECRET-KEY`` headers, an OAuth
(Connect) token as ``Authorization: Bearer``; everything else is the same for both.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import requests
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient

from agenttrader.credentials.model import AlpacaKeys, Credentials
from agenttrader.errors import (
    AgentTraderError,
    AlpacaAuthError,
    AlpacaConnectionError,
    AlpacaRateLimited,
    AlpacaRequestError,
    AlpacaTimeout,
    AlpacaUnavailable,
)
from agenttrader.logs import secret_scope
from agenttrader.urls import allowed_host, check_base_url

LIVE_HOST = "api.alpaca.markets"


class _GuardedSession(requests.Session):
    """A session that always applies the timeout and never follows a redirect.

    One session per tenant (cookies never cross tenants), over the factory's shared connection
    pool: credentials travel in each request's headers, so reusing a kept-alive connection
    (and its TLS handshake) across tenants shares nothing of theirs. Proxy and netrc lookups
    in the environment are skipped (``trust_env``): they cost more than the request itself.
    """

    def __init__(self, timeout: float, adapter: requests.adapters.HTTPAdapter) -> None:
        super().__init__()
        self._timeout = timeout
        self.trust_env = False
        self.mount("https://", adapter)
        self.mount("http://", adapter)
        # Not ``max_redirects = 0``: requests would then raise TooManyRedirects (a retryable
        # RequestException) for any 3xx before the permanent check below could see it.

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        kwargs["timeout"] = self._timeout
        kwargs["allow_redirects"] = False
        response = super().request(method, url, *args, **kwargs)
        if response.is_redirect or 300 <= response.status_code < 400:
            raise AlpacaRequestError(
                f"redirect refused: Alpaca answered HTTP {response.status_code} "
                "and redirects are not followed"
            )
        return response


class AlpacaClientFactory:
    """Builds one ``TradingClient`` per tenant, refusing base URLs outside the allowlist."""

    def __init__(
        self, allowed_base_urls: tuple[str, ...], timeout_seconds: float, pool_size: int = 256
    ) -> None:
        self._allowed = allowed_base_urls
        self._timeout = timeout_seconds
        self._adapter = requests.adapters.HTTPAdapter(
            pool_connections=8, pool_maxsize=pool_size, max_retries=0
        )

    def origin_for(self, credentials: Credentials) -> str:
        """The allowed origin the client will call (``DisallowedBaseUrl`` otherwise, naming
        the rule that failed, never the URL)."""
        return check_base_url(credentials.base_url, self._allowed)

    def allowed_host(self, base_url: object) -> str | None:
        """The host of ``base_url`` when it is on the allowlist (safe to record), else
        ``None``."""
        return allowed_host(base_url, self._allowed)

    def for_user(self, credentials: Credentials) -> TradingClient:
        """A client of its own for one tenant, calling the allowed origin of its base URL
        with its keys or (``OAuthToken``) its bearer token."""
        origin = self.origin_for(credentials)
        paper = urlsplit(origin).hostname != LIVE_HOST
        if isinstance(credentials, AlpacaKeys):
            client = TradingClient(
                api_key=credentials.key_id,
                secret_key=credentials.secret_key,
                paper=paper,
                url_override=origin,
            )
        else:
            client = TradingClient(
                oauth_token=credentials.access_token, paper=paper, url_override=origin
            )
        # alpaca-py has no public switch for these; tests/unit/test_alpaca.py pins that they hold.
        client._retry = 0
        client._session = _GuardedSession(self._timeout, self._adapter)
        return client


def translate(exc: BaseException) -> AgentTraderError:
    """Map an alpaca-py / requests exception to the retry contract, without its message text
    (which could echo request headers or URLs)."""
    if isinstance(exc, AgentTraderError):
        return exc
    if isinstance(exc, APIError):
        status = exc.status_code or 0
        if status in (401, 403):
            return AlpacaAuthError(f"Alpaca refused the keys (HTTP {status})")
        if status == 429:
            return AlpacaRateLimited("Alpaca rate limit reached (HTTP 429)")
        if status >= 500:
            return AlpacaUnavailable(f"Alpaca is unavailable (HTTP {status})")
        return AlpacaRequestError(f"Alpaca refused the request (HTTP {status})")
    if isinstance(exc, requests.Timeout):
        return AlpacaTimeout("Alpaca did not answer in time")
    if isinstance(exc, requests.ConnectionError):
        return AlpacaConnectionError("Alpaca could not be reached")
    if isinstance(exc, ValueError | KeyError | TypeError):
        return AlpacaRequestError(
            f"Alpaca sent a response that does not parse ({type(exc).__name__})"
        )
    if isinstance(exc, requests.RequestException):
        return AlpacaConnectionError(f"Alpaca request failed ({type(exc).__name__})")
    raise exc


@contextmanager
def alpaca_errors(credentials: Credentials) -> Iterator[None]:
    """Translate failures of the calls inside, with the credentials (keys or token) redacted
    from anything logged."""
    with secret_scope(*credentials.secrets):
        try:
            yield
        except Exception as exc:  # noqa: BLE001 - translate() re-raises what it does not know
            raise translate(exc) from None


def fetch_account_state(client: TradingClient, credentials: Credentials) -> dict[str, Any]:
    """Account and open positions of one tenant (2 Alpaca calls), every field as Alpaca sent it.

    Through alpaca-py's own request path (auth headers, error mapping to ``APIError``) but
    without its model parsing: the snapshot stores the fields verbatim, and validating every
    field of every tenant's account through pydantic cost more CPU than the rest of the sync.
    """
    with alpaca_errors(credentials):
        account = client.get("/account")
        positions = client.get("/positions")
        if (
            not isinstance(account, dict)
            or not isinstance(account.get("id"), str)
            or not isinstance(positions, list)
            or not all(isinstance(p, dict) for p in positions)
        ):
            raise AlpacaRequestError("Alpaca sent a response that does not parse (wrong shape)")
        return {"account": account, "positions": positions}


def fetch_clock(client: TradingClient, credentials: Credentials) -> dict[str, Any]:
    """Alpaca's market clock (``GET /v2/clock``, 1 call) with one tenant's client, as sent:
    ``timestamp``, ``is_open``, ``next_open``, ``next_close``. The same allowlisted client,
    timeout and error translation as :func:`fetch_account_state`; the fields are checked by
    :mod:`agenttrader.market_clock`."""
    with alpaca_errors(credentials):
        clock = client.get("/clock")
        if not isinstance(clock, dict):
            raise AlpacaRequestError("Alpaca sent a clock that does not parse (wrong shape)")
        return clock
