"""``onboard_user`` and ``migrate_legacy_data`` (Firebase callable protocol).

Each adapter only validates the call, gets the instance's dependencies and calls the use case;
:func:`agenttrader.callable.https_callable` does the protocol, the ID token and the errors.
"""

from __future__ import annotations

from typing import Any

from accounts import migration, onboarding
from agenttrader import runtime
from agenttrader.callable import CallContext, fields_of, https_callable


@https_callable
def onboard_user(ctx: CallContext, data: Any) -> dict[str, Any]:
    """Create the caller's tenant documents (once); takes no arguments."""
    fields_of(data, allowed=())
    return onboarding.onboard(runtime.deps().firestore, ctx.uid, ctx.email)


@https_callable
def migrate_legacy_data(ctx: CallContext, data: Any) -> dict[str, Any]:
    """Admins only: copy the legacy snapshot into ``{targetUserId}``'s snapshot."""
    ctx.require_admin()
    target = migration.parse_target(data)
    return migration.migrate_legacy_snapshot(runtime.deps().firestore, ctx.uid, target)
