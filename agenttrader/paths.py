"""Every Firestore path the backend touches; ``firestore.rules`` mirrors this module.

Paths are plain strings (``client.document(path)`` takes them), so the rules, the tests and the
code all spell a document the same way.
"""

from __future__ import annotations

import re

USERS = "users"
OPS = "ops"

_UID = re.compile(r"^[A-Za-z0-9_\-:.@]{1,128}$")
"""Firebase uids are at most 128 characters; ``/`` would escape the user's subtree."""


def validate_uid(uid: object) -> str:
    """Return ``uid`` if it can name a user document, else raise ``ValueError``."""
    if not isinstance(uid, str) or not _UID.fullmatch(uid) or uid in {".", ".."}:
        raise ValueError(f"invalid uid {str(uid)[:40]!r}: 1-128 characters of [A-Za-z0-9_-:.@]")
    return uid


def user_doc(uid: str) -> str:
    return f"{USERS}/{validate_uid(uid)}"


def alpaca_config_doc(uid: str) -> str:
    """``configured: bool`` is set by the server once valid keys were written."""
    return f"{user_doc(uid)}/config/alpaca"


def alpaca_secret_doc(uid: str) -> str:
    """Write-only for the owner; only the server ever reads it."""
    return f"{user_doc(uid)}/secrets/alpaca"


def trading_status_doc(uid: str) -> str:
    """The kill-switch: ``enabled: bool``."""
    return f"{user_doc(uid)}/status/trading"


def last_sync_error_doc(uid: str) -> str:
    return f"{user_doc(uid)}/status/last_sync_error"


def sync_state_doc(uid: str) -> str:
    """Outcome of the user's latest sync (``pulse_id``, ``outcome``): pulses are counted from
    these documents with aggregation queries, so no counter document takes every write."""
    return f"{user_doc(uid)}/status/sync"


def snapshot_doc(uid: str) -> str:
    return f"{user_doc(uid)}/data/snapshot"


def trading_signals_collection(uid: str) -> str:
    return f"{user_doc(uid)}/trading_signals"


def trading_signal_doc(uid: str, signal_id: str) -> str:
    return f"{trading_signals_collection(uid)}/{signal_id}"


def audit_collection(uid: str) -> str:
    """Server-written, owner-readable trail of key changes, kill-switch toggles, admin actions."""
    return f"{user_doc(uid)}/audit"


def usage_doc(uid: str, day: str) -> str:
    """Per-user daily usage counters (``day`` is ``YYYY-MM-DD`` in UTC)."""
    return f"{user_doc(uid)}/usage/{day}"


LAST_PULSE_DOC = f"{OPS}/last_pulse"
"""Timestamp and success / error / skipped counts of the latest pulse."""

PULSES_COLLECTION = f"{OPS}/pulses/history"
"""One document per pulse (``ops/pulses/history/{pulse_id}``): published, skipped, totals."""


def pulse_doc(pulse_id: str) -> str:
    return f"{PULSES_COLLECTION}/{pulse_id}"


def pulse_shard_doc(pulse_id: str, shard: int) -> str:
    """Workers count results into one of several shards, so no document takes every write."""
    return f"{pulse_doc(pulse_id)}/shards/{shard}"


LEGACY_SNAPSHOT_DOC = "alpacaAccounts/snapshot"
"""The original single-user snapshot, source of ``migrate_legacy_data``."""


def uid_of(path: str) -> str:
    """The uid of any document under ``users/{uid}/``; ``ValueError`` for other paths."""
    parts = path.split("/")
    if len(parts) < 2 or parts[0] != USERS:
        raise ValueError(f"not a user path: {path!r}")
    return validate_uid(parts[1])
