"""``users/{uid}/data/snapshot``: the one owner of the snapshot document's schema.

The fields of docs/DESIGN.md (``syncedAt``, ``account``, ``equity``, ``buying_power``,
``cash``) plus ours: ``requestedAt`` (the message a snapshot answers: snapshots are ordered by
it), ``reason``, ``positions``, ``positions_count``, ``placeholder`` (written by onboarding
until the first sync) and the tenant's latest sync result, so a healthy tenant's sync is one
write:

- ``syncOutcome``: ``success`` | ``error`` | ``skipped`` (:class:`Outcome`), always equal to
  ``status/sync.outcome``;
- ``pulseId``: the pulse that outcome counts for;
- ``syncFailing``: ``status/last_sync_error`` exists.

:class:`Stored` is the document as a worker reads it (what deciding and guarding a write
need); :func:`synced_body` and :func:`placeholder` are the two bodies the backend writes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from agenttrader.firestore_io import call
from agenttrader.messages import MAX_CLOCK_SKEW
from agenttrader.paths import snapshot_doc

if TYPE_CHECKING:
    from google.cloud import firestore

COLLECTION_GROUP = "data"
"""Collection group of ``users/{uid}/data/snapshot``, where a pulse's successes are counted."""
PULSE_FIELD = "pulseId"
"""The snapshot's pulse: the one its tenant's latest outcome counts for."""
OUTCOME_FIELD = "syncOutcome"
"""The snapshot's copy of ``status/sync.outcome``: the tenant's latest outcome."""
FAILING_FIELD = "syncFailing"
"""``status/last_sync_error`` exists: a failure was recorded since the last success."""
REQUESTED_AT_FIELD = "requestedAt"
"""When the message this snapshot answers was requested: the order of snapshots."""
PLACEHOLDER_FIELD = "placeholder"
"""``true`` on the document onboarding writes, until a sync replaces it."""


class Outcome(StrEnum):
    """How one user's sync in a pulse ended (``syncOutcome``, ``status/sync.outcome``)."""

    SUCCESS = "success"
    ERROR = "error"
    SKIPPED = "skipped"


_OUTCOMES = frozenset(o.value for o in Outcome)


class Stale(StrEnum):
    """Why a result wrote nothing: the stored snapshot is as new as its message, or newer."""

    DUPLICATE = "duplicate"
    SUPERSEDED = "superseded"


@dataclass(frozen=True)
class Stored:
    """``users/{uid}/data/snapshot`` as read: what deciding and guarding a write needs."""

    exists: bool
    update_time: datetime | None = None
    data: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, snapshot: Any) -> Stored:
        """From a ``DocumentSnapshot``."""
        if not snapshot.exists:
            return cls(exists=False)
        return cls(exists=True, update_time=snapshot.update_time, data=snapshot.to_dict() or {})

    @classmethod
    def read(cls, db: firestore.Client, uid: str) -> Stored:
        return cls.of(call(db.document(snapshot_doc(uid)).get))

    @property
    def outcome(self) -> str | None:
        """``syncOutcome``; ``None`` on a snapshot that never carried one."""
        value = self.data.get(OUTCOME_FIELD)
        return value if isinstance(value, str) and value in _OUTCOMES else None

    @property
    def pulse_id(self) -> str | None:
        value = self.data.get(PULSE_FIELD)
        return value if isinstance(value, str) else None

    @property
    def failing(self) -> bool | None:
        """``syncFailing``; ``None`` when unknown (no snapshot, or one that never carried it)."""
        value = self.data.get(FAILING_FIELD)
        return value if isinstance(value, bool) else None

    @property
    def clean(self) -> bool:
        """The latest outcome was a success and no failure was recorded since: ``status/sync``
        and ``status/last_sync_error`` need no write."""
        return self.outcome == Outcome.SUCCESS and self.failing is False

    def staleness(self, requested_at: datetime, *, now: datetime) -> Stale | None:
        """``DUPLICATE`` / ``SUPERSEDED`` when the stored snapshot is as new or newer.

        A stored ``requestedAt`` more than :data:`~agenttrader.messages.MAX_CLOCK_SKEW` after
        ``now`` is not trusted (the worker bounds what it stores, so only data written before
        it did, or by hand, holds one): any message is newer, so such a tenant is not frozen
        until that time."""
        stored_at = self.data.get(REQUESTED_AT_FIELD)
        if not isinstance(stored_at, datetime):
            return None  # none, a placeholder or migrated legacy data: any real sync is newer
        if stored_at > now + MAX_CLOCK_SKEW:
            return None
        if stored_at > requested_at:
            return Stale.SUPERSEDED
        if stored_at == requested_at:
            return Stale.DUPLICATE
        return None


def synced_body(
    requested_at: datetime, reason: str, state: Mapping[str, Any], synced_at: datetime
) -> dict[str, Any]:
    """The data of a snapshot synced from Alpaca's ``state`` (``account`` and ``positions``, as
    Alpaca sends them); the worker's result recording adds the outcome fields."""
    account = state["account"]
    return {
        "syncedAt": synced_at,
        REQUESTED_AT_FIELD: requested_at,
        "reason": reason,
        "account": account,
        "equity": money(account.get("equity")),
        "buying_power": money(account.get("buying_power")),
        "cash": money(account.get("cash")),
        "positions": state["positions"],
        "positions_count": len(state["positions"]),
    }


def money(value: Any) -> str:
    """Amounts are strings, as Alpaca sends them and as the spec stores them."""
    return "0" if value is None else str(value)


def placeholder() -> dict[str, Any]:
    """Shaped like a real snapshot so clients can render it; ``placeholder`` marks it."""
    return {
        "syncedAt": None,
        PLACEHOLDER_FIELD: True,
        "account": {},
        "equity": "0",
        "buying_power": "0",
        "cash": "0",
        "positions": [],
    }


def is_placeholder(snapshot: Mapping[str, Any]) -> bool:
    """Whether a snapshot is still :func:`placeholder` (no sync has written it)."""
    return snapshot.get(PLACEHOLDER_FIELD) is True or snapshot.get("syncedAt") is None
