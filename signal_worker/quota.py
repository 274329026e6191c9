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

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from agenttrader.callable import CallableError, Status
from agenttrader.paths import usage_doc

if TYPE_CHECKING:
    from google.cloud import firestore

T = TypeVar("T")

COUNTER = "signals"
"""Field of the usage document counting today's generated (or in-flight) signals."""

CONFLICT_ATTEMPTS = 60
"""Enough for a burst of concurrent calls on one document to drain (each round, one wins)."""

_BACKOFF_BASE_SECONDS = 0.01
_BACKOFF_CAP_SECONDS = 0.25


def utc_now() -> datetime:
    return datetime.now(UTC)


def retry_on_conflict(attempt: Callable[[], T], attempts: int = CONFLICT_ATTEMPTS) -> T:
    """Call ``attempt`` until its precondition-guarded write succeeds.

    ``attempt`` re-reads what it decides on, then writes with a precondition (``create``, or
    ``last_update_time``); a lost race raises ``Conflict`` (``AlreadyExists``, ``Aborted``) or
    ``FailedPrecondition``, and the next attempt starts over after a jittered backoff.
    Sustained contention ends as ``UNAVAILABLE``: the client may retry.
    """
    from google.api_core.exceptions import Conflict, FailedPrecondition

    for number in range(attempts):
        try:
            return attempt()
        except (Conflict, FailedPrecondition):
            cap = min(_BACKOFF_CAP_SECONDS, _BACKOFF_BASE_SECONDS * 2**number)
            time.sleep(random.uniform(0, cap))
    raise CallableError(Status.UNAVAILABLE, "too many simultaneous requests; retry in a moment")


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
