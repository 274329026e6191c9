"""Alpaca OAuth (Connect) in the simulator: apps, authorization codes and access tokens.

The authorization-code flow as Alpaca runs it (RFC 6749 §4.1):

- ``GET /oauth/authorize?response_type=code&client_id=…&redirect_uri=…&state=…[&scope=…]
  [&env=paper|live][&tenant=KEY_ID]`` stands for the tenant signing in to Alpaca and approving
  the app: it redirects (302) to ``redirect_uri`` with ``code`` and ``state``. ``tenant``
  (simulator only) names the simulated account that approves; without it a new one is made.
  An unknown ``client_id`` or an unregistered ``redirect_uri`` is answered 400, never
  redirected; other refusals redirect with ``error``.
- ``POST /oauth/token`` (form-encoded ``grant_type=authorization_code``, ``code``,
  ``client_id``, ``client_secret``, ``redirect_uri``) answers
  ``{access_token, token_type: "bearer", scope}``. Errors are RFC 6749 §5.2 JSON:
  ``invalid_client`` (401), ``invalid_grant`` (400: unknown, expired or reused code, another
  app's code, a redirect URI other than the authorize request's), ``invalid_request``,
  ``unsupported_grant_type``. A reused code also revokes the token it was exchanged for.
- The Trading API accepts ``Authorization: Bearer <access_token>``; a revoked or unknown
  token is 401, as Alpaca answers.

Admin API (``/_sim/oauth/…``, see the server): create apps, list grants, revoke tokens.
Tokens and client secrets never appear in listings or logs.
"""

from __future__ import annotations

import hmac
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from devtools.simulator.responses import Reply
from devtools.simulator.tenants import SimTenant, TenantRegistry

CODE_LIFETIME_SECONDS = 600.0
"""An authorization code not exchanged within 10 minutes is invalid (RFC 6749 §4.1.2)."""
DEFAULT_SCOPE = "account:write trading"
_ENVIRONMENTS = frozenset({"paper", "live"})
_CLIENT_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,128}")
_SECRET_RE = re.compile(r"[\x21-\x7e]{8,256}")
_NO_STORE = (("Cache-Control", "no-store"), ("Pragma", "no-cache"))
_FORM = "application/x-www-form-urlencoded"


@dataclass(frozen=True)
class OAuthApp:
    """An app registered for OAuth: its client credentials and redirect URIs."""

    client_id: str
    client_secret: str = field(repr=False)
    redirect_uris: tuple[str, ...]

    def info(self) -> dict[str, Any]:
        """The admin view, without the client secret."""
        return {"client_id": self.client_id, "redirect_uris": list(self.redirect_uris)}


@dataclass
class _Code:
    client_id: str
    redirect_uri: str
    tenant: str
    scope: str
    env: str
    expires_at: float
    token: str | None = field(default=None, repr=False)
    """Set once exchanged: a second exchange is refused and revokes this token."""


@dataclass
class Grant:
    """An access token issued to an app for one tenant's account."""

    token: str = field(repr=False)
    client_id: str
    tenant: str
    scope: str
    env: str
    issued_at: datetime
    revoked: bool = False

    def info(self) -> dict[str, Any]:
        """The admin view: whose token, for which app, whether revoked; not the token."""
        return {
            "client_id": self.client_id,
            "tenant": self.tenant,
            "scope": self.scope,
            "env": self.env,
            "issued_at": self.issued_at.isoformat(),
            "revoked": self.revoked,
        }


def _oauth_error(status: int, error: str, description: str) -> Reply:
    return Reply(status, {"error": error, "error_description": description}, _NO_STORE)


def _redirect(redirect_uri: str, params: Mapping[str, str | None]) -> Reply:
    parts = urlsplit(redirect_uri)
    added = urlencode({k: v for k, v in params.items() if v is not None})
    query = f"{parts.query}&{added}" if parts.query else added
    location = urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))
    return Reply(302, {}, (("Location", location), *_NO_STORE))


def _single_values(query: str) -> dict[str, str] | None:
    """Query or form parameters, each at most once (RFC 6749 §3.1); ``None`` if repeated."""
    try:
        parsed = parse_qs(query, keep_blank_values=True, strict_parsing=False)
    except ValueError:
        return None
    if any(len(values) != 1 for values in parsed.values()):
        return None
    return {name: values[0] for name, values in parsed.items()}


class OAuthServer:
    """Apps, codes and tokens of the simulator; thread-safe."""

    def __init__(
        self, registry: TenantRegistry, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._registry = registry
        self._clock = clock
        self._lock = threading.Lock()
        self._apps: dict[str, OAuthApp] = {}
        self._codes: dict[str, _Code] = {}
        self._grants: dict[str, Grant] = {}

    # --- admin ------------------------------------------------------------------------------

    def add_app(
        self,
        redirect_uris: Iterable[str],
        client_id: str | None = None,
        client_secret: str | None = None,
    ) -> OAuthApp:
        """Register an app; absent credentials are generated. ``ValueError`` on bad input."""
        if isinstance(redirect_uris, str):
            raise ValueError("redirect_uris must be a list of URLs")
        uris = tuple(redirect_uris)
        if not uris or not all(isinstance(u, str) and _absolute_url(u) for u in uris):
            raise ValueError("redirect_uris must be a non-empty list of absolute http(s) URLs")
        if client_id is not None and not (
            isinstance(client_id, str) and _CLIENT_ID_RE.fullmatch(client_id)
        ):
            raise ValueError("client_id must be 1-128 characters of A-Z, a-z, 0-9, '_' or '-'")
        if client_secret is not None and not (
            isinstance(client_secret, str) and _SECRET_RE.fullmatch(client_secret)
        ):
            raise ValueError("client_secret must be 8-256 printable characters, no spaces")
        app = OAuthApp(
            client_id=client_id or uuid.uuid4().hex,
            client_secret=client_secret or secrets.token_urlsafe(30),
            redirect_uris=uris,
        )
        with self._lock:
            if app.client_id in self._apps:
                raise ValueError("an app with this client_id already exists")
            self._apps[app.client_id] = app
        return app

    def apps(self) -> list[OAuthApp]:
        with self._lock:
            return list(self._apps.values())

    def grants(self) -> list[Grant]:
        with self._lock:
            return list(self._grants.values())

    def revoke(
        self, *, tenant: str | None = None, client_id: str | None = None, token: str | None = None
    ) -> int:
        """Revoke every live token matching all the given filters (at least one); returns
        how many were revoked."""
        if tenant is None and client_id is None and token is None:
            raise ValueError("name a tenant, a client_id or a token to revoke")
        revoked = 0
        with self._lock:
            for grant in self._grants.values():
                if grant.revoked:
                    continue
                if tenant is not None and grant.tenant != tenant:
                    continue
                if client_id is not None and grant.client_id != client_id:
                    continue
                if token is not None and not hmac.compare_digest(grant.token, token):
                    continue
                grant.revoked = True
                revoked += 1
        return revoked

    # --- the flow ---------------------------------------------------------------------------

    def authorize(self, query: str) -> Reply:
        """``GET /oauth/authorize``: the tenant approves at once; 302 with a code."""
        params = _single_values(query)
        if params is None:
            return _oauth_error(400, "invalid_request", "a parameter is repeated")
        with self._lock:
            app = self._apps.get(params.get("client_id", ""))
        if app is None:
            return _oauth_error(400, "invalid_client", "unknown client_id")
        redirect_uri = params.get("redirect_uri", "")
        if redirect_uri not in app.redirect_uris:
            return _oauth_error(400, "invalid_request", "redirect_uri is not registered")
        state = params.get("state")
        if params.get("response_type") != "code":
            return _redirect(redirect_uri, {"error": "unsupported_response_type", "state": state})
        env = params.get("env", "paper")
        if env not in _ENVIRONMENTS:
            return _redirect(redirect_uri, {"error": "invalid_request", "state": state})
        tenant = self._approving_tenant(params.get("tenant"))
        if tenant is None:
            return _redirect(redirect_uri, {"error": "access_denied", "state": state})
        code = str(uuid.uuid4())
        with self._lock:
            self._codes[code] = _Code(
                client_id=app.client_id,
                redirect_uri=redirect_uri,
                tenant=tenant.key_id,
                scope=params.get("scope") or DEFAULT_SCOPE,
                env=env,
                expires_at=self._clock() + CODE_LIFETIME_SECONDS,
            )
        return _redirect(redirect_uri, {"code": code, "state": state})

    def _approving_tenant(self, key_id: str | None) -> SimTenant | None:
        if key_id is None:
            return self._registry.create()
        return self._registry.get(key_id)

    def token(self, body: bytes, content_type: str | None) -> Reply:
        """``POST /oauth/token``: exchange a code for an access token."""
        if (content_type or "").split(";")[0].strip().lower() != _FORM:
            return _oauth_error(400, "invalid_request", f"the body must be {_FORM}")
        try:
            params = _single_values(body.decode("ascii"))
        except UnicodeDecodeError:
            params = None
        if params is None:
            return _oauth_error(400, "invalid_request", "malformed or repeated parameters")
        if params.get("grant_type") != "authorization_code":
            return _oauth_error(400, "unsupported_grant_type", "only authorization_code")
        missing = [
            name
            for name in ("code", "client_id", "client_secret", "redirect_uri")
            if not params.get(name)
        ]
        if missing:
            return _oauth_error(400, "invalid_request", f"missing {', '.join(missing)}")
        with self._lock:
            app = self._apps.get(params["client_id"])
            if app is None or not hmac.compare_digest(
                app.client_secret.encode(), params["client_secret"].encode()
            ):
                return _oauth_error(401, "invalid_client", "client authentication failed")
            return self._exchange(app, params["code"], params["redirect_uri"])

    def _exchange(self, app: OAuthApp, code_value: str, redirect_uri: str) -> Reply:
        code = self._codes.get(code_value)
        if code is None or code.client_id != app.client_id:
            return _oauth_error(400, "invalid_grant", "unknown authorization code")
        if code.token is not None:
            self._grants[code.token].revoked = True  # a replayed code may have leaked
            return _oauth_error(400, "invalid_grant", "authorization code already used")
        if self._clock() >= code.expires_at:
            return _oauth_error(400, "invalid_grant", "authorization code expired")
        if redirect_uri != code.redirect_uri:
            return _oauth_error(400, "invalid_grant", "redirect_uri does not match")
        token = str(uuid.uuid4())
        code.token = token
        self._grants[token] = Grant(
            token=token,
            client_id=app.client_id,
            tenant=code.tenant,
            scope=code.scope,
            env=code.env,
            issued_at=datetime.now(UTC),
        )
        return Reply(
            200, {"access_token": token, "token_type": "bearer", "scope": code.scope}, _NO_STORE
        )

    def tenant_for(self, token: str) -> SimTenant | None:
        """The account a live token acts on; ``None`` for an unknown or revoked token."""
        with self._lock:
            grant = self._grants.get(token)
            if grant is None or grant.revoked:
                return None
        return self._registry.get(grant.tenant)


def _absolute_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc) and not parts.fragment
