"""Alpaca OAuth (Connect): exchanging a tenant's authorization code for an access token.

``POST {ALPACA_OAUTH_BASE_URL}/oauth/token``, form-encoded ``grant_type=authorization_code``,
``code``, ``client_id``, ``client_secret``, ``redirect_uri`` (RFC 6749 §4.1.3), with the
instance's timeout, no redirect followed, no proxy or netrc from the environment, and no retry
(the tenant's browser retries by starting over: a code is spent by its first exchange).

Every outcome is a :class:`~agenttrader.callable.CallableError` the tenant may see, written
here: Alpaca's body, the code, the token and the client secret never reach a message or a log
line. Of Alpaca's answer only the RFC 6749 §5.2 error code is read, and only to choose a
message (:func:`failure_for`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import requests

from agenttrader.callable import CallableError, Status
from agenttrader.logs import get_logger, secret_scope

log = get_logger("accounts.alpaca_oauth")

TOKEN_PATH = "/oauth/token"

RESTART = "start connecting your Alpaca account again"
"""What a tenant can do about a refused code: a new authorization gives a new one."""
REFUSED_CODE = CallableError(
    Status.FAILED_PRECONDITION,
    "Alpaca refused the authorization code (unknown, expired, already used, or issued for "
    f"another redirect_uri): {RESTART}",
    details={"reason": "invalid_grant"},
)
UNAVAILABLE = CallableError(
    Status.UNAVAILABLE, "Alpaca could not be reached to finish connecting; retry later"
)
MISCONFIGURED = CallableError(
    Status.FAILED_PRECONDITION,
    "Alpaca Connect is not available on this deployment (its OAuth client is not configured "
    "or was refused); operators have been alerted",
    details={"reason": "oauth_client"},
)
UNEXPECTED = CallableError(
    Status.INTERNAL, "Alpaca answered the token request unexpectedly; operators were alerted"
)


@dataclass(frozen=True)
class OAuthClient:
    """The app's registration with Alpaca (one for the whole deployment)."""

    client_id: str
    client_secret: str = field(repr=False)
    token_origin: str
    """Where ``/oauth/token`` is: ``ALPACA_OAUTH_BASE_URL``, already on the allowlist."""


def failure_for(status: int, body: object) -> CallableError:
    """What a non-200 answer of the token endpoint means for the tenant (``body``: Alpaca's
    parsed JSON or ``None``)."""
    error = body.get("error") if isinstance(body, Mapping) else None
    if status == 400 and error in ("invalid_grant", "invalid_request"):
        return REFUSED_CODE
    if status in (400, 401) and error in ("invalid_client", "unauthorized_client"):
        return MISCONFIGURED
    if status == 401:
        return MISCONFIGURED
    if status == 429 or status >= 500:
        return UNAVAILABLE
    return UNEXPECTED


def exchange_code(
    session: requests.Session, client: OAuthClient, code: str, redirect_uri: str, timeout: float
) -> str:
    """The access token Alpaca issues for ``code``; a :class:`CallableError` otherwise."""
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "client_id": client.client_id,
        "client_secret": client.client_secret,
        "redirect_uri": redirect_uri,
    }
    with secret_scope(code, client.client_secret):
        try:
            response = session.post(
                client.token_origin + TOKEN_PATH,
                data=form,
                headers={"Accept": "application/json"},
                timeout=timeout,
                allow_redirects=False,
            )
        except requests.RequestException as err:
            log.warning(f"Alpaca token endpoint unreachable ({type(err).__name__})")
            raise UNAVAILABLE from None
        try:
            body: Any = response.json()
        except ValueError:
            body = None
        if response.status_code != 200:
            failure = failure_for(response.status_code, body)
            _log_failure(response.status_code, body, failure)
            raise failure
    token = body.get("access_token") if isinstance(body, Mapping) else None
    kind = body.get("token_type") if isinstance(body, Mapping) else None
    if not isinstance(token, str) or not isinstance(kind, str) or kind.lower() != "bearer":
        log.error("Alpaca token endpoint answered 200 without a bearer access_token")
        raise UNEXPECTED
    return token


def _log_failure(status: int, body: object, failure: CallableError) -> None:
    """One line for operators: the HTTP status and Alpaca's RFC 6749 error code (a fixed
    vocabulary), never the description, the code or any secret."""
    error = body.get("error") if isinstance(body, Mapping) else None
    named = error if error in _RFC6749_ERRORS else None
    severity = log.error if failure is MISCONFIGURED or failure is UNEXPECTED else log.warning
    severity(
        f"Alpaca refused the OAuth code exchange (HTTP {status})",
        fields={"oauth_error": named, "status": failure.status.value},
    )


_RFC6749_ERRORS = frozenset(
    {
        "invalid_request",
        "invalid_client",
        "invalid_grant",
        "unauthorized_client",
        "unsupported_grant_type",
        "invalid_scope",
    }
)
"""RFC 6749 §5.2: the only error codes a token endpoint answers."""


def new_session() -> requests.Session:
    """A session for the token endpoint: no proxy or netrc lookups from the environment."""
    session = requests.Session()
    session.trust_env = False
    return session
