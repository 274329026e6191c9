"""What a sync teaches about a tenant's credentials, written to ``config/alpaca``.

- :func:`prove`: a sync succeeded with the credentials of version *v*. If *v* is the version
  the secrets trigger handled last and it is not proven yet, ``configured: true``,
  ``keysState: "proven"``: the tenant becomes eligible. A success with older credentials never
  proves newer ones: the versions must be equal.
- :func:`reject`: Alpaca answered 401/403 to the credentials of version *v*, the ones stored
  now. If the config refers to *v* (or says nothing of versions: written by a script, a seed
  or a migration), ``configured: false``, ``keysState: "rejected"``, audited as
  ``keys_rejected``: the tenant leaves the roster and is not polled until new credentials
  arrive. Refused credentials that were replaced since change nothing.

Both write with a precondition on the update time read (:func:`retry_on_conflict`), so a
racing trigger that handled newer credentials in between wins; both are idempotent.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from agenttrader import audit
from agenttrader.credentials import AlpacaKeys, Credentials
from agenttrader.firestore_io import add_set_fields, retry_on_conflict
from agenttrader.firestore_io import call as _call
from agenttrader.keys_state import (
    CONFIGURED,
    KEYS_REJECTED_AT,
    KEYS_STATE,
    PROVEN_AT,
    KeysState,
    handled_version,
    state_of,
)
from agenttrader.logs import get_logger
from agenttrader.paths import alpaca_config_doc

if TYPE_CHECKING:
    from google.cloud import firestore


log = get_logger(__name__)

PROVABLE = frozenset({KeysState.PENDING, KeysState.REJECTED})
"""States a success with the handled version turns into ``proven`` (a rejection can be
reversed by a later success with the same credentials, e.g. after an operator replay)."""


def proves(config: Mapping[str, Any], version: str) -> bool:
    """Whether a success with credentials of ``version`` proves them, given the config."""
    return (
        state_of(config) in PROVABLE
        and handled_version(config) == version
        and config.get(CONFIGURED) is not True
    )


def rejects(config: Mapping[str, Any], version: str) -> bool:
    """Whether a 401/403 to the stored credentials of ``version`` unmarks them."""
    state = state_of(config)
    if state in (KeysState.INVALID, KeysState.DELETED):
        return False  # never sent to Alpaca as the current credentials
    if state is not None and handled_version(config) != version:
        return False  # the trigger handled other credentials: they get their own first sync
    return config.get(CONFIGURED) is True or state is not KeysState.REJECTED


def prove(db: firestore.Client, uid: str, version: str) -> bool:
    """Record that the credentials of ``version`` work; ``True`` if that changed the config."""
    fields = {CONFIGURED: True, KEYS_STATE: KeysState.PROVEN.value, PROVEN_AT: _now()}
    proven = _update_config(db, uid, lambda config: proves(config, version), fields)
    if proven:
        log.info("Alpaca keys proven by a successful sync; tenant configured", uid=uid)
    return proven


def reject(
    db: firestore.Client, uid: str, version: str, credentials: Credentials, error_class: str
) -> bool:
    """Record that Alpaca refused the stored credentials of ``version``; ``True`` if that
    changed the config."""

    def audited(batch: firestore.WriteBatch) -> None:
        audit.record(
            db,
            uid,
            audit.AuditAction.KEYS_REJECTED,
            audit.SYSTEM_ACTOR,
            {"error_class": error_class, **hint_detail(credentials)},
            batch=batch,
            entry_id=f"keys-rejected-{version}",
        )

    fields = {CONFIGURED: False, KEYS_STATE: KeysState.REJECTED.value, KEYS_REJECTED_AT: _now()}
    rejected = _update_config(db, uid, lambda config: rejects(config, version), fields, audited)
    if rejected:
        log.warning(
            "Alpaca refused the stored keys; tenant unmarked until new keys arrive",
            uid=uid,
            error_class=error_class,
        )
    return rejected


def hint_detail(credentials: Credentials) -> dict[str, str]:
    """What an audit entry may say of refused credentials: a key id's last 4 characters, or
    that it was an OAuth token (never any part of it)."""
    if isinstance(credentials, AlpacaKeys):
        return {"key_id_hint": credentials.key_id_hint}
    return {"auth": "oauth"}


def _update_config(
    db: firestore.Client,
    uid: str,
    applies: Callable[[Mapping[str, Any]], bool],
    fields: Mapping[str, Any],
    also: Callable[[firestore.WriteBatch], None] | None = None,
) -> bool:
    """Set ``fields`` on ``config/alpaca`` (and ``also`` in the same commit) if ``applies``
    to its data as read, unchanged since; ``True`` if written."""
    ref = db.document(alpaca_config_doc(uid))

    def attempt() -> bool:
        snapshot = _call(ref.get)
        if not snapshot.exists or not applies(snapshot.to_dict() or {}):
            return False
        batch = db.batch()
        add_set_fields(batch, db, ref.path, fields, last_update_time=snapshot.update_time)
        if also is not None:
            also(batch)
        _call(batch.commit)
        return True

    return retry_on_conflict(attempt)


def _now() -> datetime:
    return datetime.now(UTC)
