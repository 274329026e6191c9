"""The version of a tenant's credentials: ``keys_version`` in ``user-sync`` messages.

A version names one content of ``users/{uid}/secrets/alpaca`` (:func:`stored_version`): for
plaintext a client wrote, the document's update time in microseconds since the epoch; for the
sealed form, its ``keys_version`` field, which the server sets when it seals (the plaintext's
version, so sealing, and later re-wrapping, change the document but not the credentials'
version). Firestore keeps the update time of a write that changes nothing, so equal versions
mean equal credentials, and every real change is a later version. The secrets trigger stamps
the version it handled on ``config/alpaca.configuredAt`` (:mod:`agenttrader.keys_state`); the
roster keeps that stamp beside each eligible user, the publisher puts it in each message, and
a worker holding the credentials of that version skips reading them again.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from agenttrader.credentials.sealed import is_sealed


def version_of(configured_at: object) -> str | None:
    """The ``keys_version`` of a timestamp (microseconds since the epoch); ``None`` for
    anything that is not a timestamp."""
    if not isinstance(configured_at, datetime):
        return None
    return str(int(configured_at.timestamp() * 1_000_000))


def stored_version(snapshot: Any) -> str | None:
    """The version of the credentials in a read of ``secrets/alpaca`` (a Firestore
    ``DocumentSnapshot``); ``None`` when there is no such document."""
    if not snapshot.exists:
        return None
    data = snapshot.to_dict() or {}
    sealed = data.get("keys_version") if is_sealed(data) else None
    return sealed if isinstance(sealed, str) else version_of(snapshot.update_time)
