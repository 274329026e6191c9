"""``on_alpaca_secret_written``: react to a tenant writing, rotating or deleting their keys.

A valid write marks ``config/alpaca.configured`` and publishes a ``first_sync`` message (synced
whether or not trading is enabled); an invalid one is recorded in ``status/last_sync_error`` and
syncs nothing; a delete unmarks ``configured``. The secrets document itself is never written
(that would fire this trigger again) and its values are never logged.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from agenttrader import audit
from agenttrader.alpaca import AlpacaKeys
from agenttrader.deadletter import PUBLISH_TIMEOUT_SECONDS
from agenttrader.errors import DependencyUnavailable, PermanentError
from agenttrader.events import DocumentChange
from agenttrader.keys_version import version_of
from agenttrader.logs import get_logger, redact
from agenttrader.messages import Reason, SyncRequest
from agenttrader.paths import SECRETS_ALPACA, alpaca_config_doc, last_sync_error_doc, owner_of
from agenttrader.topology import USER_SYNC

if TYPE_CHECKING:
    from agenttrader.deps import Deps

log = get_logger(__name__)

KEY_FIELDS = ("key_id", "secret_key", "base_url")
"""Only these matter: a write that changes none of them syncs nothing."""


class KeyChange(StrEnum):
    """What the trigger did."""

    FIRST_SYNC = "first_sync"
    REJECTED = "rejected"
    DELETED = "deleted"
    UNCHANGED = "unchanged"
    IGNORED = "ignored"


def secret_owner(path: str) -> str | None:
    """The uid when ``path`` is ``users/{uid}/secrets/alpaca``, else ``None``."""
    return owner_of(path, SECRETS_ALPACA)


def _hint(data: dict[str, Any] | None) -> str | None:
    key_id = (data or {}).get("key_id")
    return f"…{key_id[-4:]}" if isinstance(key_id, str) and len(key_id) >= 8 else None


def _base_url_detail(deps: Deps, url: object) -> dict[str, Any]:
    """A base URL as an audit entry records it: its host only when it is on the allowlist."""
    host = deps.alpaca.allowed_host(url)
    return {"base_url_host": host} if host else {"base_url_allowed": False}


def handle_key_change(deps: Deps, change: DocumentChange, event_id: str) -> KeyChange:
    """Apply one write of a secrets document. Raises ``RetryableError`` to be redelivered."""
    uid = secret_owner(change.path)
    if uid is None:
        log.warning("event for a document that is not users/{uid}/secrets/alpaca ignored")
        return KeyChange.IGNORED
    db = deps.firestore
    now = datetime.now(UTC)
    batch = db.batch()
    config = db.document(alpaca_config_doc(uid))
    audit_id = f"keys-{event_id}"[:1500]
    if change.new is None:
        batch.set(config, {"configured": False, "keysDeletedAt": now}, merge=True)
        audit.record(
            db,
            uid,
            audit.AuditAction.KEYS_DELETED,
            uid,
            {"key_id_hint": _hint(change.old)},
            batch=batch,
            entry_id=audit_id,
        )
        batch.commit()
        log.info("Alpaca keys deleted; syncs stop", uid=uid)
        return KeyChange.DELETED
    if change.old is not None and all(change.old.get(f) == change.new.get(f) for f in KEY_FIELDS):
        return KeyChange.UNCHANGED
    try:
        keys = AlpacaKeys.from_document(change.new)
        deps.alpaca.origin_for(keys)
    except PermanentError as err:
        message = redact(str(err))
        batch.set(
            db.document(last_sync_error_doc(uid)),
            {
                "error": message,
                "timestamp": now,
                "error_class": err.error_class,
                "permanent": True,
                "final": True,
                "reason": Reason.FIRST_SYNC.value,
            },
        )
        batch.set(config, {"configured": False, "keysRejectedAt": now}, merge=True)
        audit.record(
            db,
            uid,
            audit.AuditAction.KEYS_REJECTED,
            uid,
            {"error_class": err.error_class, **_base_url_detail(deps, change.new.get("base_url"))},
            batch=batch,
            entry_id=audit_id,
        )
        batch.commit()
        log.warning(f"Alpaca keys rejected: {message}", uid=uid, error_class=err.error_class)
        return KeyChange.REJECTED
    action = (
        audit.AuditAction.KEYS_CREATED if change.old is None else audit.AuditAction.KEYS_ROTATED
    )
    batch.set(config, {"configured": True, "configuredAt": now}, merge=True)
    audit.record(
        db,
        uid,
        action,
        uid,
        {"key_id_hint": keys.key_id_hint, **_base_url_detail(deps, keys.base_url)},
        batch=batch,
        entry_id=audit_id,
    )
    batch.commit()
    request = SyncRequest(uid, Reason.FIRST_SYNC, now, keys_version=version_of(now))
    attributes: dict[str, Any] = request.attributes()  # Any: see deadletter.publish_dead_letter
    try:
        deps.publisher.publish(deps.topic_path(USER_SYNC), request.to_bytes(), **attributes).result(
            timeout=PUBLISH_TIMEOUT_SECONDS
        )
    except Exception as err:  # noqa: BLE001 - any publish failure: let Eventarc redeliver
        raise DependencyUnavailable(
            f"could not publish the first sync ({type(err).__name__})"
        ) from None
    log.info("Alpaca keys accepted; first sync requested", uid=uid, fields={"action": action.value})
    return KeyChange.FIRST_SYNC
