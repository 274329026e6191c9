"""Hands pulled messages straight to idle delivery threads: the push bridge's pull is sized to
the free capacity, so nothing it pulls waits in a queue while its lease runs.

One puller and ``concurrency`` workers share a :class:`HandOff`. A worker that has nothing to do
waits in :meth:`HandOff.take` and counts as *free*. The puller waits in
:meth:`HandOff.wait_free` until some workers are free, pulls at most that many messages, and
gives them away with :meth:`HandOff.give`, which takes them off the free count at once.

Invariant: items waiting in the hand-off are never more than the workers waiting for them
(``give`` refuses more than are free, and only the one puller gives), so every item is picked
up by a worker that is already waiting, within a thread switch.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


class HandOff(Generic[T]):
    """Shared by the puller and the workers of one bridge; :meth:`close` ends it for good."""

    def __init__(self) -> None:
        lock = threading.Lock()
        self._work = threading.Condition(lock)
        """Workers wait on it for items."""
        self._capacity = threading.Condition(lock)
        """The puller waits on it for free workers."""
        self._items: deque[T] = deque()
        self._free = 0
        """Workers waiting in :meth:`take` minus the items already given to them."""
        self._closed = False

    @property
    def free(self) -> int:
        """Workers waiting for an item and not promised one yet."""
        with self._work:
            return self._free

    @property
    def closed(self) -> bool:
        with self._work:
            return self._closed

    def take(self) -> T | None:
        """Worker: wait for the next item; ``None`` once the hand-off is closed (an item given
        before that is still taken)."""
        with self._work:
            if self._closed and not self._items:
                return None
            # Counted as free even when an item is there already: that item was promised to a
            # worker still waiting, which then stays free in its place.
            self._free += 1
            self._capacity.notify()
            while not self._items and not self._closed:
                self._work.wait()
            if self._items:
                return self._items.popleft()
            self._free -= 1  # closed while waiting, nothing was given
            return None

    def wait_free(self, want: int, linger: float) -> int:
        """Puller: wait until a worker is free, then up to ``linger`` seconds more until ``want``
        are. Returns how many are free (``0`` once closed). Only :meth:`give` lowers the count,
        so the answer holds until the puller gives."""
        with self._work:
            while self._free == 0 and not self._closed:
                self._capacity.wait()
            if self._free < want and linger > 0:
                deadline = time.monotonic() + linger
                while self._free < want and not self._closed:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._capacity.wait(remaining)
            return 0 if self._closed else self._free

    def give(self, items: Sequence[T]) -> list[T]:
        """Puller: hand ``items`` to as many waiting workers. Returns the items not handed over
        because the hand-off was closed meanwhile (all of them, then)."""
        with self._work:
            if self._closed:
                return list(items)
            if len(items) > self._free:
                raise ValueError(f"{len(items)} items for {self._free} free workers")
            self._free -= len(items)
            self._items.extend(items)
            self._work.notify(len(items))
            return []

    def close(self) -> None:
        """Wake everyone: waiting workers take what was given, then get ``None``; the puller
        gets ``0`` free."""
        with self._work:
            self._closed = True
            self._work.notify_all()
            self._capacity.notify_all()
