"""The per-user daily signal quota, counted in ``users/{uid}/usage/{YYYY-MM-DD}`` (UTC).

A slot is reserved *before* the model is called and given back if the call fails, so concurrent
calls can never exceed the limit (20 parallel calls against a limit of 5 give exactly 5 signals)
and a failure costs the user nothing. An instance dying between the two costs that user one slot
for the day: the error is on the safe side of the limit.

The reservation is an optimistic compare-and-set rather than a Firestore transaction: read the
counter, then write ``count + 1`` on condition that the document is unchanged since the read
(``last_update_time``; ``create`` for the first call of the day), retrying with jitter when
another call got there first. It is as atomic as a transaction, but holds no lock: a burst of
calls on one counter converges in a few round trips, where lock-based transactions (notably on
the Firestore emulator) deadlock and abort each other for seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from agenttrader.callable import CallableError, Status
from agenttrader.firestore_io import retry_on_conflict
from agenttrader.paths import usage_doc

if TYPE_CHECKING:
    from google.cloud import firestore

T = TypeVar("T")

COUNTER = "signals"
"""Field of the usage document counting today's generated (or in-flight) signals."""


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Reservation:
    """One reserved slot: the day it counts against."""

    uid: str
    day: str
    used: int
    """Slots in use for the day, this one included."""


class DailyQuota:
    def __init__(
        self,
        db: firestore.Client,
        limit: int,
        *,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.db = db
        self.limit = limit
        self.clock = clock

    def reserve(self, uid: str) -> Reservation:
        """Take one of today's slots, or raise ``RESOURCE_EXHAUSTED``."""
        from google.cloud import firestore

        day = self.clock().astimezone(UTC).date().isoformat()
        ref = self.db.document(usage_doc(uid, day))

        def take() -> Reservation:
            snapshot = ref.get()
            used = _count((snapshot.to_dict() or {}).get(COUNTER))
            if used >= self.limit:
                raise CallableError(
                    Status.RESOURCE_EXHAUSTED,
                    f"daily limit of {self.limit} trading signals reached; "
                    "try again tomorrow (UTC)",
                )
            body = {COUNTER: used + 1, "limit": self.limit, "updatedAt": firestore.SERVER_TIMESTAMP}
            if snapshot.exists:
                option = self.db.write_option(last_update_time=snapshot.update_time)
                ref.update(body, option=option)
            else:
                ref.create(body)
            return Reservation(uid=uid, day=day, used=used + 1)

        return retry_on_conflict(take)

    def release(self, reservation: Reservation) -> None:
        """Give a slot back (the call it was reserved for failed)."""
        from google.cloud import firestore

        self.db.document(usage_doc(reservation.uid, reservation.day)).update(
            {COUNTER: firestore.Increment(-1), "updatedAt": firestore.SERVER_TIMESTAMP}
        )


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
