"""The accounts entry points: ``onboard_user``, ``delete_account``, ``connect_alpaca``,
``disconnect_alpaca`` and ``migrate_legacy_data`` (Firebase callable protocol) and
``on_alpaca_secret_written`` (Firestore ``document.v1.written`` on
``users/{uid}/secrets/alpaca``: a tenant's credentials written, rotated or deleted).

Each only decodes or validates its input, gets the instance's dependencies and calls this
package's use case; :func:`agenttrader.callable.https_callable` does the callable protocol, the
ID token and the errors.
"""

from __future__ import annotations

from typing import Any

import functions_framework
from cloudevents.http import CloudEvent

from accounts import alpaca_oauth, connections, deletion, migration, onboarding
from accounts.key_changes import handle_key_change
from agenttrader import redelivery, runtime
from agenttrader.callable import CallContext, fields_of, https_callable
from agenttrader.callable.tenancy import TenantPolicy
from agenttrader.events import document_change
from agenttrader.logs import get_logger

log = get_logger(__name__)


@https_callable
def onboard_user(ctx: CallContext, data: Any) -> dict[str, Any]:
    """Create the caller's tenant documents (once), if the tenant policy accepts the caller;
    takes no arguments."""
    fields_of(data, allowed=())
    deps = runtime.deps()
    return onboarding.onboard(deps.firestore, ctx, TenantPolicy.from_settings(deps.settings))


@https_callable
def delete_account(ctx: CallContext, data: Any) -> dict[str, Any]:
    """The caller deletes his tenant data (everything under ``users/{uid}``, credentials
    first); takes no arguments. Open to any signed-in user, tenant or not, so that nobody is
    ever kept from removing what is stored about them; the sign-in account itself stays."""
    fields_of(data, allowed=())
    db = runtime.deps().firestore
    done = deletion.delete_tenant(db, ctx.uid, actor=ctx.uid, reason=deletion.Reason.SELF_SERVICE)
    return deletion.account_deletion_result(done)


@https_callable(tenant=True)
def connect_alpaca(ctx: CallContext, data: Any) -> dict[str, Any]:
    """Finish Alpaca OAuth (Connect): ``{code, redirect_uri, environment, base_url?}`` from the
    tenant's browser after Alpaca's authorize redirect; the token is stored sealed."""
    deps = runtime.deps()
    settings = deps.settings
    request = connections.parse_connect(data, settings.allowed_alpaca_base_urls)
    client_id, client_secret = settings.alpaca_oauth_client_id, settings.alpaca_oauth_client_secret
    if client_id is None or client_secret is None:
        log.error("connect_alpaca called but ALPACA_OAUTH_CLIENT_ID / _SECRET are not set")
        raise alpaca_oauth.MISCONFIGURED
    client = alpaca_oauth.OAuthClient(client_id, client_secret, settings.alpaca_oauth_base_url)

    def exchange(code: str, redirect_uri: str) -> str:
        with alpaca_oauth.new_session() as session:
            return alpaca_oauth.exchange_code(
                session, client, code, redirect_uri, settings.alpaca_timeout_seconds
            )

    return connections.connect(deps, ctx.uid, request, exchange)


@https_callable(tenant=True)
def disconnect_alpaca(ctx: CallContext, data: Any) -> dict[str, Any]:
    """Delete the tenant's Alpaca credentials (keys or OAuth) and stop syncing; no arguments."""
    fields_of(data, allowed=())
    return connections.disconnect(runtime.deps(), ctx.uid)


@https_callable
def migrate_legacy_data(ctx: CallContext, data: Any) -> dict[str, Any]:
    """Admins only: copy the legacy snapshot into ``{targetUserId}``'s snapshot."""
    ctx.require_admin()
    target = migration.parse_target(data)
    return migration.migrate_legacy_snapshot(runtime.deps().firestore, ctx.uid, target)


@functions_framework.cloud_event
def on_alpaca_secret_written(event: CloudEvent) -> None:
    """Act on the keys stored now: validate new ones and request their first sync (whose
    success marks them configured), unmark deleted ones.

    The event payload holds the keys: it is decoded, never logged.
    """
    try:
        change = document_change(event)
    except ValueError as err:
        log.error(f"secrets event ignored: {err}", event_id=event["id"])
        return
    with redelivery.for_document(change, event["id"]):
        handle_key_change(runtime.deps(), change, event["id"])
