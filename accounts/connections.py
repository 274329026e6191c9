"""``connect_alpaca`` and ``disconnect_alpaca``: a tenant connects an Alpaca account through
Alpaca OAuth (Connect), or disconnects whatever credentials are stored.

Connecting (after Alpaca's authorize page redirected the tenant's browser back with a code):

1. the request is checked (:func:`parse_connect`): ``code``, ``redirect_uri``,
   ``environment`` (``paper`` | ``live``) and an optional ``base_url``, which must pass the
   base-URL allowlist and may not name the other environment's official API; without it, the
   environment's official URL;
2. the code is exchanged for an access token (:mod:`accounts.alpaca_oauth`);
3. one commit stores the token **sealed** in ``users/{uid}/secrets/alpaca`` (``auth:
   "oauth"``, a fresh ``keys_version``; the server writes the sealed form directly, no
   plaintext ever rests), marks ``config/alpaca`` pending for that version exactly as the
   secrets trigger does for new keys (:func:`agenttrader.keys_state.pending`: configured
   once a sync proves the token), and audits ``oauth_connected`` (environment and host, never
   the token);
4. a ``first_sync`` is published for that ``keys_version``.

The secrets trigger sees the sealed write and leaves it alone (server-written, handled here).
When the publish fails the call answers ``UNAVAILABLE`` and the credentials stay pending: the
tenant connects again (a code is spent once), which stores and first-syncs a new version.

Disconnecting deletes ``secrets/alpaca`` (guarded by the update time read, so keys a client
wrote meanwhile are decided on again, not deleted unseen), unmarks ``configured``
(``keysState: "deleted"``, so the trigger's delete event changes nothing more) and audits
``oauth_disconnected`` (``keys_deleted`` when the credentials were API keys). Idempotent.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from accounts.first_sync import publish_first_sync
from agenttrader import audit, keys_state, paths
from agenttrader.callable import CallableError, Status, fields_of, invalid_argument, require_string
from agenttrader.credentials import OAuthToken, is_sealed
from agenttrader.errors import DisallowedBaseUrl, InvalidKeys
from agenttrader.firestore_io import add_set_fields, call, retry_on_conflict
from agenttrader.keys_version import version_of
from agenttrader.logs import get_logger
from agenttrader.settings import LIVE_ALPACA_BASE_URL, PAPER_ALPACA_BASE_URL
from agenttrader.urls import check_base_url, origin_of

if TYPE_CHECKING:
    from agenttrader.deps import Deps

log = get_logger("accounts.connections")

Environment = Literal["paper", "live"]
OFFICIAL_URLS: dict[str, str] = {"paper": PAPER_ALPACA_BASE_URL, "live": LIVE_ALPACA_BASE_URL}
"""Each environment's official Trading API: the default ``base_url``."""

MAX_CODE_LENGTH = 1024
MAX_REDIRECT_URI_LENGTH = 2048
_CODE = re.compile(r"[\x21-\x7e]+")
"""Printable ASCII without spaces (RFC 6749 ``code`` is VSCHAR)."""

Exchange = Callable[[str, str], str]
"""``(code, redirect_uri) -> access token``: :func:`accounts.alpaca_oauth.exchange_code` bound
to the app's client and a session."""


@dataclass(frozen=True)
class ConnectRequest:
    """A checked ``connect_alpaca`` request."""

    code: str
    redirect_uri: str
    environment: Environment
    base_url: str
    """The allowlisted origin the token will be used with."""


def parse_connect(data: Any, allowed_base_urls: tuple[str, ...]) -> ConnectRequest:
    """``INVALID_ARGUMENT`` naming the field and the rule for anything else; a refused value
    is never echoed (a code, or a URL with something pasted into it)."""
    fields = fields_of(
        data,
        allowed=("code", "redirect_uri", "environment", "base_url"),
        required=("code", "redirect_uri", "environment"),
    )
    code = require_string(fields["code"], "code", max_length=MAX_CODE_LENGTH)
    if not _CODE.fullmatch(code):
        raise invalid_argument("code", "must be printable characters without spaces")
    redirect_uri = require_string(
        fields["redirect_uri"], "redirect_uri", max_length=MAX_REDIRECT_URI_LENGTH
    )
    if not _absolute_http_url(redirect_uri):
        raise invalid_argument("redirect_uri", "must be an absolute http(s) URL without fragment")
    environment = fields["environment"]
    if environment not in OFFICIAL_URLS:
        raise invalid_argument("environment", 'must be "paper" or "live"')
    raw_base = fields.get("base_url")
    if raw_base is None:
        base_url = OFFICIAL_URLS[environment]
    else:
        try:
            base_url = check_base_url(raw_base, allowed_base_urls)
        except DisallowedBaseUrl as err:
            raise invalid_argument("base_url", str(err)) from None
        other = next(env for env in OFFICIAL_URLS if env != environment)
        if base_url == origin_of(OFFICIAL_URLS[other]):
            raise invalid_argument("base_url", f"is Alpaca's {other} API, not {environment}")
    return ConnectRequest(code, redirect_uri, environment, base_url)


def _absolute_http_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return (
        parts.scheme in ("http", "https")
        and bool(parts.hostname)
        and not parts.fragment
        and not any(c.isspace() for c in url)
    )


def _now() -> datetime:
    return datetime.now(UTC)


def connect(
    deps: Deps,
    uid: str,
    request: ConnectRequest,
    exchange: Exchange,
    *,
    clock: Callable[[], datetime] = _now,
) -> dict[str, Any]:
    """Exchange the code, store the token sealed, mark and first-sync it; the answer for the
    tenant (no secret in it)."""
    access_token = exchange(request.code, request.redirect_uri)
    try:
        token = OAuthToken(access_token=access_token, base_url=request.base_url)
    except InvalidKeys:
        log.error("Alpaca issued an access token of an unusable shape", uid=uid)
        raise CallableError(
            Status.INTERNAL, "Alpaca issued an unusable access token; operators were alerted"
        ) from None
    db = deps.firestore
    now = clock()
    version = version_of(now)
    secret_path = paths.alpaca_secret_doc(uid)
    sealed = deps.vault.seal(token, uid, secret_path, version)
    host = deps.alpaca.allowed_host(request.base_url)
    handled_by = f"connect_alpaca:{uuid.uuid4().hex}"
    config_ref = db.document(paths.alpaca_config_doc(uid))

    def attempt() -> None:
        config = call(config_ref.get)
        batch = db.batch()
        batch.set(db.document(secret_path), sealed)
        add_set_fields(
            batch,
            db,
            config_ref.path,
            keys_state.pending(now, now, handled_by),
            delete=keys_state.NEW_CREDENTIALS_CLEARS,
            last_update_time=config.update_time if config.exists else None,
        )
        audit.record(
            db,
            uid,
            audit.AuditAction.OAUTH_CONNECTED,
            uid,
            {"environment": request.environment, "base_url_host": host},
            batch=batch,
            entry_id=handled_by,
        )
        call(batch.commit)

    retry_on_conflict(attempt)
    publish_first_sync(deps, uid, version)
    log.info(
        "Alpaca account connected through OAuth; first sync requested",
        uid=uid,
        fields={"environment": request.environment},
    )
    return {
        "status": "connected",
        "environment": request.environment,
        "baseUrlHost": host,
        "auth": "oauth",
    }


def disconnect(deps: Deps, uid: str, *, clock: Callable[[], datetime] = _now) -> dict[str, Any]:
    """Delete the tenant's credentials (whichever kind), unmark ``configured``, audit it."""
    db = deps.firestore
    secret_ref = db.document(paths.alpaca_secret_doc(uid))
    config_ref = db.document(paths.alpaca_config_doc(uid))

    def attempt() -> str | None:
        snapshot = call(secret_ref.get)
        if not snapshot.exists:
            return None
        stored = snapshot.to_dict() or {}
        auth = str(stored.get("auth")) if is_sealed(stored) else "keys"
        batch = db.batch()
        batch.delete(secret_ref, option=db.write_option(last_update_time=snapshot.update_time))
        batch.set(config_ref, keys_state.deleted(clock()), merge=True)
        action = (
            audit.AuditAction.OAUTH_DISCONNECTED
            if auth == "oauth"
            else audit.AuditAction.KEYS_DELETED
        )
        audit.record(db, uid, action, uid, {"auth": auth}, batch=batch)
        call(batch.commit)
        return auth

    auth = retry_on_conflict(attempt)
    if auth is None:
        return {"status": "not_connected", "message": "No Alpaca credentials were stored."}
    log.info("Alpaca credentials disconnected by the tenant", uid=uid, fields={"auth": auth})
    return {
        "status": "disconnected",
        "auth": auth,
        "message": "Your Alpaca credentials were deleted; syncing stopped.",
    }
