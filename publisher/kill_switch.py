"""Auditing kill-switch toggles: ``users/{uid}/status/trading`` written by anyone.

The Eventarc trigger is ``google.cloud.firestore.document.v1.written.withAuthContext``: its
``authtype`` / ``authid`` attributes say who wrote (the end user's uid for a client write, a
service account for the server). The entry records who and ``enabled`` old → new; writes that
do not change ``enabled`` are not toggles and record nothing.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

from agenttrader import audit
from agenttrader.events import DocumentChange
from agenttrader.logs import get_logger
from agenttrader.paths import STATUS_TRADING, owner_of

if TYPE_CHECKING:
    from agenttrader.deps import Deps

log = get_logger(__name__)


class Toggle(StrEnum):
    """What the trigger did."""

    RECORDED = "recorded"
    UNCHANGED = "unchanged"
    IGNORED = "ignored"


def trading_owner(path: str) -> str | None:
    """The uid when ``path`` is ``users/{uid}/status/trading``, else ``None``."""
    return owner_of(path, STATUS_TRADING)


def actor_of(auth_type: str | None, auth_id: str | None) -> str:
    """``user:{uid}``, ``service_account:{email}``… or ``unknown`` (no auth context)."""
    if auth_type and auth_id:
        return f"{auth_type}:{auth_id}"[:256]
    return auth_type or "unknown"


def handle_trading_change(deps: Deps, change: DocumentChange, event_id: str, actor: str) -> Toggle:
    """Record a toggle of the kill-switch in the owner's audit trail (idempotent per event)."""
    uid = trading_owner(change.path)
    if uid is None:
        return Toggle.IGNORED
    old = (change.old or {}).get("enabled")
    new = (change.new or {}).get("enabled")
    if old == new:
        return Toggle.UNCHANGED
    recorded = audit.record_while_user_exists(
        deps.firestore,
        uid,
        audit.AuditAction.KILL_SWITCH_TOGGLED,
        actor,
        {"old": old, "new": new, "deleted": change.new is None},
        entry_id=f"trading-{event_id}"[:1500],
    )
    if not recorded:
        # The tenant deleted his account: the toggle was the deletion's; nothing to keep.
        return Toggle.IGNORED
    log.info("kill-switch toggled", uid=uid, fields={"old": old, "new": new, "actor": actor})
    return Toggle.RECORDED
