"""The audit trail: server-written, owner-readable entries under ``users/{uid}/audit``.

Entries record who did what to a tenant (key changes, kill-switch toggles, migrations, admin
actions). They never hold a secret value: at most the last 4 characters of a key id and the
host of a base URL that is on the allowlist (a refused one is recorded as
``base_url_allowed: false``: its host might carry a pasted key).
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any

from agenttrader.paths import audit_collection, user_doc

if TYPE_CHECKING:
    from google.cloud import firestore


class AuditAction(StrEnum):
    """What happened."""

    KEYS_CREATED = "keys_created"
    KEYS_ROTATED = "keys_rotated"
    KEYS_DELETED = "keys_deleted"
    KEYS_REJECTED = "keys_rejected"
    OAUTH_CONNECTED = "oauth_connected"
    OAUTH_DISCONNECTED = "oauth_disconnected"
    CREDENTIALS_SEALED = "credentials_sealed"
    """A plaintext secrets document left from before was sealed (``credentials seal-existing``)."""
    CREDENTIALS_REWRAPPED = "credentials_rewrapped"
    """The data key was re-wrapped under the KEK's current primary (``credentials rewrap``)."""
    CREDENTIALS_TAMPERED = "credentials_tampered"
    """Sealed credentials did not open for this tenant and document: the sync failed closed."""
    KILL_SWITCH_TOGGLED = "kill_switch_toggled"
    ONBOARDED = "onboarded"
    LEGACY_DATA_MIGRATED = "legacy_data_migrated"
    ADMIN_ACTION = "admin_action"


SYSTEM_ACTOR = "system"
"""Actor of entries the backend writes on its own (triggers, scheduler)."""


def entry(action: AuditAction, actor: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """The document body of one audit entry."""
    from google.cloud import firestore

    return {
        "action": action.value,
        "actor": actor,
        "at": firestore.SERVER_TIMESTAMP,
        "details": details or {},
    }


def record(
    db: firestore.Client,
    uid: str,
    action: AuditAction,
    actor: str,
    details: dict[str, Any] | None = None,
    *,
    batch: firestore.WriteBatch | firestore.Transaction | None = None,
    entry_id: str | None = None,
) -> None:
    """Append one entry (inside ``batch`` when given, so it commits with the change it audits).

    ``entry_id`` makes the entry idempotent: a redelivered event writes the same document.
    """
    ref = db.collection(audit_collection(uid)).document(entry_id)
    body = entry(action, actor, details)
    if batch is not None:
        batch.set(ref, body)
    else:
        ref.set(body)


def record_while_user_exists(
    db: firestore.Client,
    uid: str,
    action: AuditAction,
    actor: str,
    details: dict[str, Any] | None = None,
    *,
    entry_id: str | None = None,
) -> bool:
    """Append one entry only while ``users/{uid}`` exists; ``False`` when it does not.

    For triggers that may run after the tenant deleted his account: a transaction reads the
    user document and writes the entry, so an entry is never written after the deletion
    committed (a deletion that commits in between makes the transaction read again).
    """
    from google.cloud import firestore

    user = db.document(user_doc(uid))
    ref = db.collection(audit_collection(uid)).document(entry_id)
    body = entry(action, actor, details)

    @firestore.transactional
    def attempt(transaction: firestore.Transaction) -> bool:
        if not user.get(transaction=transaction).exists:
            return False
        transaction.set(ref, body)
        return True

    return bool(attempt(db.transaction()))
