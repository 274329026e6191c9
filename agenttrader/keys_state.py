"""What the server knows of a tenant's credentials, kept on ``users/{uid}/config/alpaca``.

``configured`` (the field eligibility reads) is true only for credentials a sync has proven.
Beside it, server-written:

- ``configuredAt``: the version of the credentials last handled (the secrets document's
  update time, :mod:`agenttrader.keys_version`); the roster carries it into each message.
- ``keysState``: :class:`KeysState` of that version.
- ``keysHandledAt``, ``keysEventId``: when and by which event the secrets trigger handled it
  (its debounce window; a redelivery of that event may publish the first sync again).
- ``provenAt``, ``keysRejectedAt``, ``keysDeletedAt``: when it was proven, refused, deleted.

A config without ``keysState`` was written some other way (a script, a migration, a seed, or
before these fields existed): its ``configured`` stands as written and its version is unknown.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any

from agenttrader.keys_version import version_of

CONFIGURED = "configured"
CONFIGURED_AT = "configuredAt"
KEYS_STATE = "keysState"
KEYS_HANDLED_AT = "keysHandledAt"
KEYS_EVENT_ID = "keysEventId"
PROVEN_AT = "provenAt"
KEYS_REJECTED_AT = "keysRejectedAt"
KEYS_DELETED_AT = "keysDeletedAt"


class KeysState(StrEnum):
    """What is known of the version of the credentials on ``configuredAt``."""

    PENDING = "pending"
    """Well-formed, first sync requested, not proven yet (``configured: false``)."""
    PROVEN = "proven"
    """A sync with them succeeded (``configured: true``)."""
    REJECTED = "rejected"
    """Alpaca answered 401/403 with them (``configured: false``)."""
    INVALID = "invalid"
    """Wrong form or a base URL off the allowlist: never sent to Alpaca."""
    DELETED = "deleted"
    """No credentials stored."""


_STATES = frozenset(state.value for state in KeysState)


def state_of(config: Mapping[str, Any] | None) -> KeysState | None:
    """The ``keysState`` of a config's data; ``None`` when absent or not one of ours."""
    raw = (config or {}).get(KEYS_STATE)
    return KeysState(raw) if isinstance(raw, str) and raw in _STATES else None


def handled_version(config: Mapping[str, Any] | None) -> str | None:
    """The version of the credentials the server last handled; ``None`` when the config does
    not say (no ``keysState``: written some other way)."""
    if state_of(config) is None:
        return None
    return version_of((config or {}).get(CONFIGURED_AT))


NEW_CREDENTIALS_CLEARS = (PROVEN_AT, KEYS_REJECTED_AT, KEYS_DELETED_AT)
"""What new credentials make obsolete on ``config/alpaca`` (deleted with :func:`pending`)."""


def pending(version_at: datetime, now: datetime, handled_by: str) -> dict[str, Any]:
    """``config/alpaca``'s fields for new well-formed credentials of the version stamped
    ``version_at``, handled ``now`` by ``handled_by`` (the secrets trigger's event id, or
    ``connect_alpaca``'s own): not configured until a sync proves them."""
    return {
        CONFIGURED: False,
        CONFIGURED_AT: version_at,
        KEYS_HANDLED_AT: now,
        KEYS_EVENT_ID: handled_by,
        KEYS_STATE: KeysState.PENDING.value,
    }


def deleted(now: datetime) -> dict[str, Any]:
    """``config/alpaca``'s fields once the credentials are gone: not configured."""
    return {CONFIGURED: False, KEYS_STATE: KeysState.DELETED.value, KEYS_DELETED_AT: now}
