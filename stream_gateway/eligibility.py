"""Who may stream: the roster (:mod:`agenttrader.roster_read`), read again whenever one of
its documents changes.

A Firestore listener on ``ops/roster`` and its shard collection tells the gateway that
something changed (a kill-switch flipped, keys deleted or rejected, a tenant gone: every
eligibility change passes through the roster's triggers); the gateway then reads the roster
once (debounced), whatever the number of changes. No tenant document is polled.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from agenttrader import roster_read
from agenttrader.paths import ROSTER_COLLECTION, ROSTER_DOC

if TYPE_CHECKING:
    from google.cloud import firestore


class RosterEligibility:
    """The eligible tenants (uid → keys version) and a change signal."""

    def __init__(self, db: firestore.Client) -> None:
        self._db = db

    def read(self) -> dict[str, str | None]:
        """The eligible tenants now (none while the roster was never built: the tick builds
        it)."""
        roster = roster_read.read(self._db)
        return {} if roster is None else dict(roster.eligible)

    def watch(self, changed: Callable[[], None]) -> Callable[[], None]:
        """Call ``changed`` (from the listener's thread) whenever a roster document changes;
        returns the function that stops listening."""

        def on_snapshot(*_: Any) -> None:
            changed()

        watches = [
            self._db.collection(ROSTER_COLLECTION).on_snapshot(on_snapshot),
            self._db.document(ROSTER_DOC).on_snapshot(on_snapshot),
        ]

        def stop() -> None:
            for watch in watches:
                watch.unsubscribe()  # type: ignore[no-untyped-call]

        return stop
