"""Leasing the messages of ``user-sync-dead-letter-hold`` without consuming them.

Pub/Sub has no "peek". A scan pulls until a pull brings nothing new (deduplicated by message
id), holding every lease meanwhile: releasing one mid-scan would have it delivered again ahead
of the messages not seen yet, and the scan would stop early. When the scan ends, what was not
selected is handed back at once with ``modify_ack_deadline(0)``; what was selected stays leased
(kept alive by :class:`LeaseKeeper`) until the caller acknowledges or releases it, and whatever
is still held when the lease ends is released too.

Nothing is ever lost: a message leaves the subscription only through :meth:`Lease.ack`. If the
process dies (``kill -9``), its leases simply expire after the subscription's ack deadline and
the messages are delivered again. The hold subscription has no dead-letter policy, so the extra
deliveries a scan causes count for nothing.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from google.api_core import exceptions as gexc

from agenttrader import topology

PULL_BATCH = 500
"""Messages asked for per pull."""
PULL_TIMEOUT_SECONDS = 1.5
"""An empty pull waits this long: the emulator answers empty about a second before the
deadline, production Pub/Sub may wait it out (``DeadlineExceeded`` reads as empty)."""
LEASE_SECONDS = topology.subscription(topology.USER_SYNC_DEAD_LETTER_HOLD).ack_deadline_seconds
"""How long each renewal of a lease lasts: the hold subscription's own ack deadline."""
MAX_SCAN = 10_000
"""A scan stops after this many distinct messages; the rest wait for the next run."""
_CHUNK = 500
"""Ack ids per acknowledge / modify request (far below the request size limit)."""


class Subscriber(Protocol):
    """The part of ``google.cloud.pubsub_v1.SubscriberClient`` used here."""

    def pull(self, request: Any = ..., *, retry: Any = ..., timeout: Any = ...) -> Any: ...

    def acknowledge(self, request: Any = ...) -> Any: ...

    def modify_ack_deadline(self, request: Any = ...) -> Any: ...


@dataclass(frozen=True)
class Received:
    """One delivery: the lease (``ack_id``) and the Pub/Sub message."""

    ack_id: str = field(repr=False)
    message: Any
    """``google.pubsub_v1.types.PubsubMessage`` (``message_id``, ``data``, ``attributes``,
    ``publish_time``)."""


class HoldSubscription:
    """Pull, acknowledge, release and extend on one pull subscription, in chunks."""

    def __init__(
        self,
        subscriber: Subscriber,
        path: str,
        *,
        pull_timeout: float = PULL_TIMEOUT_SECONDS,
        batch: int = PULL_BATCH,
    ) -> None:
        self.subscriber = subscriber
        self.path = path
        self._pull_timeout = pull_timeout
        self._batch = batch

    def pull(self, max_messages: int | None = None) -> list[Received]:
        wanted = min(max_messages or self._batch, self._batch)
        try:
            response = self.subscriber.pull(
                request={"subscription": self.path, "max_messages": wanted},
                timeout=self._pull_timeout,
                retry=None,
            )
        except gexc.DeadlineExceeded:
            return []  # production Pub/Sub waits for messages instead of answering empty
        return [Received(r.ack_id, r.message) for r in response.received_messages]

    def ack(self, ack_ids: Sequence[str]) -> None:
        for chunk in _chunks(ack_ids):
            self.subscriber.acknowledge(request={"subscription": self.path, "ack_ids": chunk})

    def extend(self, ack_ids: Sequence[str], seconds: int) -> None:
        for chunk in _chunks(ack_ids):
            self.subscriber.modify_ack_deadline(
                request={
                    "subscription": self.path,
                    "ack_ids": chunk,
                    "ack_deadline_seconds": seconds,
                }
            )

    def release(self, ack_ids: Sequence[str]) -> None:
        """Make the messages deliverable again now. A failed release only delays them until
        the ack deadline; it loses nothing, so it is not an error."""
        with contextlib.suppress(gexc.GoogleAPIError):
            self.extend(ack_ids, 0)


def _chunks(items: Sequence[str]) -> Iterator[list[str]]:
    for start in range(0, len(items), _CHUNK):
        yield list(items[start : start + _CHUNK])


class LeaseKeeper:
    """Renews the leases it holds every ``LEASE_SECONDS / 3`` on a daemon thread, so a slow
    replay (``--rate 0.1``) or a confirmation prompt does not let them expire."""

    def __init__(
        self,
        hold: HoldSubscription,
        *,
        seconds: int = LEASE_SECONDS,
        interval: float | None = None,
    ) -> None:
        self._hold = hold
        self._seconds = seconds
        self._interval = interval if interval is not None else seconds / 3
        self._ack_ids: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lease-keeper", daemon=True)
        self._thread.start()

    def add(self, ack_id: str) -> None:
        with self._lock:
            self._ack_ids.add(ack_id)

    def discard(self, ack_ids: Sequence[str]) -> None:
        with self._lock:
            self._ack_ids.difference_update(ack_ids)

    def held(self) -> list[str]:
        with self._lock:
            return sorted(self._ack_ids)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            ack_ids = self.held()
            if ack_ids:
                # A failed renewal is retried on the next round; at worst a lease expires and
                # the message is delivered again, which loses nothing.
                with contextlib.suppress(gexc.GoogleAPIError):
                    self._hold.extend(ack_ids, self._seconds)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class Lease:
    """The messages a scan selected, leased to this process until acked or released."""

    def __init__(
        self,
        hold: HoldSubscription,
        keeper: LeaseKeeper,
        selected: list[Received],
        scanned: int,
        exhausted: bool,
    ) -> None:
        self._hold = hold
        self._keeper = keeper
        self.selected = selected
        self.scanned = scanned
        """Distinct messages the scan saw (selected or not)."""
        self.exhausted = exhausted
        """``True`` when the scan read the subscription to its end; ``False`` when it stopped
        at the caller's limit or at :data:`MAX_SCAN`."""

    def ack(self, ack_ids: Sequence[str]) -> None:
        """Remove the messages from the subscription (raises if Pub/Sub refuses)."""
        self._hold.ack(ack_ids)
        self._keeper.discard(ack_ids)

    def release(self, ack_ids: Sequence[str]) -> None:
        self._keeper.discard(ack_ids)
        self._hold.release(ack_ids)


@contextlib.contextmanager
def leased(
    hold: HoldSubscription,
    select: Callable[[Any], bool],
    *,
    limit: int | None = None,
    max_scan: int = MAX_SCAN,
    keeper_interval: float | None = None,
) -> Iterator[Lease]:
    """Scan the subscription; yield a :class:`Lease` on the messages ``select`` accepted (at
    most ``limit``). Everything not acked is released on exit, whatever the exit."""
    keeper = LeaseKeeper(hold, interval=keeper_interval)
    try:
        selected, scanned, exhausted = _scan(hold, keeper, select, limit, max_scan)
        chosen = {r.ack_id for r in selected}
        others = [a for a in keeper.held() if a not in chosen]
        keeper.discard(others)
        hold.release(others)
        yield Lease(hold, keeper, selected, scanned, exhausted)
    finally:
        keeper.stop()
        hold.release(keeper.held())


def _scan(
    hold: HoldSubscription,
    keeper: LeaseKeeper,
    select: Callable[[Any], bool],
    limit: int | None,
    max_scan: int,
) -> tuple[list[Received], int, bool]:
    latest: dict[str, str] = {}  # message id -> its newest ack id
    selected: dict[str, Received] = {}
    while True:
        if limit is not None and len(selected) >= limit:
            return list(selected.values()), len(latest), False
        if len(latest) >= max_scan:
            return list(selected.values()), len(latest), False
        fresh = 0
        for received in hold.pull(max_scan - len(latest)):
            message_id = received.message.message_id
            previous = latest.get(message_id)
            latest[message_id] = received.ack_id
            keeper.add(received.ack_id)
            if previous is not None:
                # Delivered again (a lease lapsed): only the newest ack id is valid.
                keeper.discard([previous])
                if message_id in selected:
                    selected[message_id] = received
                continue
            fresh += 1
            if (limit is None or len(selected) < limit) and select(received.message):
                selected[message_id] = received
        if not fresh:
            return list(selected.values()), len(latest), True
