"""The version of a tenant's credentials: ``keys_version`` in ``user-sync`` messages.

The secrets trigger stamps ``config/alpaca.configuredAt`` whenever credentials are accepted;
the roster keeps that stamp beside each eligible user, the publisher puts it in each message,
and a worker holding the credentials of that version skips reading them again. Versions only
move forward: a rotation is a later stamp.
"""

from __future__ import annotations

from datetime import datetime


def version_of(configured_at: object) -> str | None:
    """The ``keys_version`` of a ``configuredAt`` timestamp (microseconds since the epoch);
    ``None`` for anything that is not a timestamp."""
    if not isinstance(configured_at, datetime):
        return None
    return str(int(configured_at.timestamp() * 1_000_000))
