"""``migrate_legacy_data``: copy the legacy single-user snapshot into one tenant's snapshot.

Decisions:

- a missing ``alpacaAccounts/snapshot`` is ``FAILED_PRECONDITION``, not ``NOT_FOUND``: the
  caller named a user, not the legacy document; ``NOT_FOUND`` means that user is not onboarded;
- the copy holds only what a snapshot may hold (:data:`agenttrader.snapshot.DATA`, an
  allowlist applied recursively: the top-level fields, Alpaca's account fields, each position's
  fields), guarantees the spec's ``syncedAt`` (a timestamp), ``account`` (a map) and
  ``equity`` / ``buying_power`` / ``cash`` (strings), and adds ``migratedFrom``, ``migratedAt``
  and ``legacyFingerprint``. The snapshot is readable by its owner, so even an allowlisted field
  is dropped when its value looks like a credential (:func:`looks_like_credential`). What was
  dropped is reported by path (``account.secret_key``, ``positions[].auth``), never by value,
  and a path that itself looks like a credential is reported as :data:`MASKED_PATH`;
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
from agenttrader.snapshot import DATA, allowed_fields, is_placeholder

if TYPE_CHECKING:
    from google.cloud import firestore

_log = get_logger("accounts.migration")

TARGET_FIELD = "targetUserId"
MONEY_FIELDS = ("equity", "buying_power", "cash")
LEGACY_TIME_FIELDS = ("syncedAt", "updatedAt", "lastUpdated", "timestamp")
"""Where a legacy snapshot may say when it was taken, in order of preference."""

_CREDENTIAL_SHAPES = re.compile(
    "|".join(
        (
            r"://[^/\s?#@]*@",  # a URL with userinfo
            r"(?i:\b(?:basic|bearer)\s+[A-Za-z0-9._~+/=\-]{8,})",  # an Authorization value
            r"(?<![A-Za-z0-9])[PAC]K[A-Z0-9]{14,30}(?![A-Za-z0-9])",  # an Alpaca key id
            r"-----BEGIN [A-Z ]*PRIVATE KEY-----",
            r"\beyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.",  # a JWT
            # A credential assigned by name: ``secret_key=…``, ``"api_key": …``.
            r"(?i:(?:secret|passw(?:or)?d|api[_-]?key|access[_-]?key|private[_-]?key|key[_-]?id"
            r"|token)[a-z_\-]*['\"]?\s*[:=])",
        )
    )
)
_OPAQUE_TOKEN = re.compile(r"(?<![A-Za-z0-9+/=_\-])[A-Za-z0-9+/=_\-]{32,}(?![A-Za-z0-9+/=_\-])")
"""A run of 32+ token characters: an Alpaca secret (40 letters and digits), a hex or base64
secret. Amounts, timestamps, symbols and account numbers are shorter or broken by ``.``/``:``;
an id is a UUID, which :func:`looks_like_credential` lets through."""
_UUID = re.compile(r"[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")
MASKED_PATH = "[a field whose name looks like a credential]"
MAX_REPORTED_PATH_CHARS = 200
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


def looks_like_credential(value: Any) -> bool:
    """Whether a string holds something shaped like a credential: a URL with userinfo, a
    ``Basic``/``Bearer`` value, an Alpaca key id (``PK…``/``AK…``/``CK…``), a private key, a
    JWT, a ``name=value`` credential assignment, or an opaque token of 32+ characters holding
    letters and digits (an Alpaca secret, in any case). Account ids and asset ids (UUIDs),
    account numbers (``PA…``), amounts, symbols and timestamps do not match."""
    if not isinstance(value, str):
        return False
    if _CREDENTIAL_SHAPES.search(value):
        return True
    return any(_opaque(token) for token in _OPAQUE_TOKEN.findall(value))


def _opaque(token: str) -> bool:
    return (
        any(c.isalpha() for c in token)
        and any(c.isdigit() for c in token)
        and not _UUID.fullmatch(token)
    )


def reported_path(path: str) -> str:
    """A dropped field's path as the result and the audit entry name it: never a name that
    looks like a credential (a key pasted as a field name), never an unbounded one."""
    if looks_like_credential(path):
        return MASKED_PATH
    if len(path) > MAX_REPORTED_PATH_CHARS:
        return path[: MAX_REPORTED_PATH_CHARS - 1] + "…"
    return path


def migrated_snapshot(legacy: Mapping[str, Any]) -> tuple[dict[str, Any], list[str], list[str]]:
    """The new snapshot body, the top-level legacy fields it carries and the paths of those it
    dropped (not in the snapshot allowlist, or holding a credential-like value)."""
    from google.cloud import firestore

    kept, dropped_paths = allowed_fields(legacy, DATA, refuse=looks_like_credential)
    dropped = sorted({reported_path(path) for path in dropped_paths})
    account = kept.get("account")
    account = dict(account) if isinstance(account, Mapping) else {}
    body: dict[str, Any] = {**kept, "account": account}
    for name in MONEY_FIELDS:
        body[name] = _money(kept.get(name)) or _money(account.get(name)) or "0"
    body["syncedAt"] = snapshot_time(legacy) or firestore.SERVER_TIMESTAMP
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
