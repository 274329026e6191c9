"""``migrate_legacy_data``: copy the legacy single-user snapshot into one tenant's snapshot.

Decisions:

- a missing ``alpacaAccounts/snapshot`` is ``FAILED_PRECONDITION``, not ``NOT_FOUND``: the
  caller named a user, not the legacy document; ``NOT_FOUND`` means that user is not onboarded;
- the copy keeps the legacy fields, guarantees the spec's ``syncedAt`` (a timestamp),
  ``account`` (a map) and ``equity`` / ``buying_power`` / ``cash`` (strings), and adds
  ``migratedFrom``, ``migratedAt`` and ``legacyFingerprint``; fields that look like credentials
  are dropped, because the snapshot is readable by its owner;
- idempotent: when the target already holds this exact legacy snapshot nothing is written and
  the answer is ``success`` again (``alreadyMigrated: true``), without a second audit entry;
- a newer real snapshot (later ``syncedAt`` than the legacy one, or any real one when the legacy
  data has no date) is never overwritten: the answer is ``skipped`` with the reason.

The write is one batch (snapshot + audit entry) guarded by a precondition on the snapshot as
read, so a sync landing in between makes the migration decide again rather than clobber it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from agenttrader import audit, paths
from agenttrader.callable import CallableError, Status, fields_of, invalid_argument
from agenttrader.firestore_io import retry_on_conflict
from agenttrader.logs import get_logger
from agenttrader.snapshot import is_placeholder

if TYPE_CHECKING:
    from google.cloud import firestore

_log = get_logger("accounts.migration")

TARGET_FIELD = "targetUserId"
MONEY_FIELDS = ("equity", "buying_power", "cash")
LEGACY_TIME_FIELDS = ("syncedAt", "updatedAt", "lastUpdated", "timestamp")
"""Where a legacy snapshot may say when it was taken, in order of preference."""

_CREDENTIAL_NAME = re.compile(r"(?i)secret|password|token|credential|api_?key|key_?id")
_EPOCH_MILLIS_THRESHOLD = 10**11
"""Epoch numbers above this are milliseconds (10**11 seconds is the year 5138)."""


def parse_target(data: Any) -> str:
    """The validated ``targetUserId`` of a call, else ``INVALID_ARGUMENT``."""
    target = fields_of(data, allowed=(TARGET_FIELD,), required=(TARGET_FIELD,))[TARGET_FIELD]
    if not isinstance(target, str):
        raise invalid_argument(TARGET_FIELD, "must be a string")
    try:
        return paths.validate_uid(target)
    except ValueError as err:
        raise invalid_argument(
            TARGET_FIELD, "is not a valid user id (1-128 characters of [A-Za-z0-9_-:.@])"
        ) from err


def snapshot_time(data: Mapping[str, Any]) -> datetime | None:
    """When a snapshot was taken: a timestamp, an ISO 8601 string or epoch (s or ms)."""
    for name in LEGACY_TIME_FIELDS:
        value = data.get(name)
        if isinstance(value, datetime):
            return value if value.tzinfo else value.replace(tzinfo=UTC)
        if isinstance(value, str):
            try:
                parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
            except ValueError:
                continue
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            seconds = value / 1000 if value > _EPOCH_MILLIS_THRESHOLD else value
            return datetime.fromtimestamp(seconds, UTC)
    return None


def fingerprint(data: Mapping[str, Any]) -> str:
    """Identifies one version of the legacy document (its content, canonically encoded)."""
    canonical = json.dumps(data, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _money(value: Any) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def migrated_snapshot(legacy: Mapping[str, Any]) -> tuple[dict[str, Any], list[str], list[str]]:
    """The new snapshot body, the legacy fields it carries and the ones dropped as credentials."""
    from google.cloud import firestore

    dropped = sorted(name for name in legacy if _CREDENTIAL_NAME.search(name))
    kept = {name: value for name, value in legacy.items() if name not in dropped}
    account = kept.get("account")
    account = dict(account) if isinstance(account, Mapping) else {}
    body: dict[str, Any] = {**kept, "account": account}
    for name in MONEY_FIELDS:
        body[name] = _money(kept.get(name)) or _money(account.get(name)) or "0"
    body["syncedAt"] = snapshot_time(legacy) or firestore.SERVER_TIMESTAMP
    body.pop("placeholder", None)
    body.update(
        migratedFrom=paths.LEGACY_SNAPSHOT_DOC,
        migratedAt=firestore.SERVER_TIMESTAMP,
        legacyFingerprint=fingerprint(legacy),
    )
    return body, sorted(kept), dropped


def migrate_legacy_snapshot(db: firestore.Client, actor: str, target: str) -> dict[str, Any]:
    """Copy ``alpacaAccounts/snapshot`` to ``users/{target}/data/snapshot``; the callable's
    result. ``actor`` is the admin's uid, recorded in the target's audit trail."""
    root_ref = db.document(paths.user_doc(target))
    legacy_ref = db.document(paths.LEGACY_SNAPSHOT_DOC)
    snapshot_ref = db.document(paths.snapshot_doc(target))

    def attempt() -> dict[str, Any]:
        found = {s.reference.path: s for s in db.get_all([root_ref, legacy_ref, snapshot_ref])}
        if (found[root_ref.path].to_dict() or {}).get("onboarded") is not True:
            raise CallableError(Status.NOT_FOUND, f"user {target} is not onboarded")
        legacy = found[legacy_ref.path].to_dict()
        if legacy is None:
            raise CallableError(
                Status.FAILED_PRECONDITION, f"there is no legacy snapshot at {legacy_ref.path}"
            )
        current_doc = found[snapshot_ref.path]
        current = current_doc.to_dict()
        body, migrated, dropped = migrated_snapshot(legacy)
        result = {"targetUserId": target, "migratedFields": migrated, "droppedFields": dropped}
        if current and current.get("legacyFingerprint") == body["legacyFingerprint"]:
            return {
                **result,
                "status": "success",
                "alreadyMigrated": True,
                "message": "The legacy snapshot was already migrated to this user; "
                "nothing changed.",
            }
        reason = _newer_snapshot_reason(current, legacy)
        if reason:
            skipped = {"status": "skipped", "reason": reason, "message": f"Not migrated: {reason}."}
            return {**result, **skipped, "migratedFields": []}
        batch = db.batch()
        if current_doc.exists:
            option = db.write_option(last_update_time=current_doc.update_time)
            batch.update(snapshot_ref, _replacement(current or {}, body), option=option)
        else:
            batch.create(snapshot_ref, body)
        details = {"source": legacy_ref.path, "migratedFields": migrated, "droppedFields": dropped}
        action = audit.AuditAction.LEGACY_DATA_MIGRATED
        audit.record(db, target, action, actor, details, batch=batch)
        batch.commit()
        return {
            **result,
            "status": "success",
            "alreadyMigrated": False,
            "message": f"Migrated {len(migrated)} legacy fields to {snapshot_ref.path}.",
        }

    outcome = retry_on_conflict(attempt)
    _log.info(
        "legacy snapshot migration",
        fields={"status": outcome["status"], "already": outcome.get("alreadyMigrated")},
        uid=target,
        actor=actor,
    )
    return outcome


def _newer_snapshot_reason(current: Mapping[str, Any] | None, legacy: Mapping[str, Any]) -> str:
    """Why the target's snapshot must be kept, or ``""`` if the legacy one may replace it."""
    if current is None or is_placeholder(current):
        return ""
    current_time, legacy_time = snapshot_time(current), snapshot_time(legacy)
    if legacy_time is None:
        return "the user already has a synced snapshot and the legacy one carries no date"
    if current_time is not None and current_time > legacy_time:
        return "the user's snapshot is newer than the legacy one"
    return ""


def _replacement(current: Mapping[str, Any], body: Mapping[str, Any]) -> dict[str, Any]:
    """``update`` data that makes the document exactly ``body`` (stale fields deleted).

    Field names are quoted as field paths: a legacy name containing a dot is one field.
    """
    from google.cloud import firestore
    from google.cloud.firestore_v1.field_path import FieldPath

    def quoted(name: str) -> str:
        return str(FieldPath(name).to_api_repr())

    updates: dict[str, Any] = {quoted(name): value for name, value in body.items()}
    updates.update({quoted(name): firestore.DELETE_FIELD for name in current if name not in body})
    return updates
