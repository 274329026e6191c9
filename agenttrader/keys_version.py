"""The version of a tenant's credentials: ``keys_version`` in ``user-sync`` messages.

A version names one content of ``users/{uid}/secrets/alpaca``: the document's update time in
microseconds since the epoch (:func:`stored_version`). Firestore keeps the update time of a
write that changes nothing, so equal versions mean equal credentials, and every real change
is a later version. The secrets trigger stamps the version it handled on
``config/alpaca.configuredAt`` (:mod:`agenttrader.keys_state`); the roster keeps that stamp
beside each eligible user, the publisher puts it in each message, and a worker holding the
credentials of that version skips reading them again.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any


def version_of(configured_at: object) -> str | None:
    """The ``keys_version`` of a timestamp (microseconds since the epoch); ``None`` for
    anything that is not a timestamp."""
    if not isinstance(configured_at, datetime):
        return None
    return str(int(configured_at.timestamp() * 1_000_000))


def stored_version(snapshot: Any) -> str | None:
    """The version of the credentials in a read of ``secrets/alpaca`` (a Firestore
    ``DocumentSnapshot``); ``None`` when there is no such document."""
    return version_of(snapshot.update_time) if snapshot.exists else None
