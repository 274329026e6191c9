"""Who keeps polling an empty subscription: one thread, the watcher; the others park.

The push bridge runs ``concurrency`` threads that each pull one message at a time. While the
subscription is busy they all pull. When a pull finds nothing, the thread parks unless nobody
watches yet, in which case it becomes the watcher and keeps polling (the emulator holds an
empty pull open until just before its deadline). Whenever a pull brings a message, the puller
wakes one parked thread; that one wakes another when its own pull brings one, and so on, so a
burst puts every thread to work within a few pull round trips, and an idle subscription costs
one open pull at a time instead of ``concurrency``.

Invariant: a thread parks only while a watcher exists, and the watcher gives up its role only
when its pull brought a message (it then delivers and comes back), so parked threads are
never left without somebody who will wake them.
"""

from __future__ import annotations

import threading


class IdleGate:
    """Shared by the threads of one bridge; :meth:`close` releases everyone for good."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._watched = False
        self._closed = False
        self._parked = 0

    @property
    def parked(self) -> int:
        """Threads waiting in :meth:`idle` right now."""
        with self._cond:
            return self._parked

    @property
    def watched(self) -> bool:
        with self._cond:
            return self._watched

    def idle(self, watcher: bool) -> bool:
        """Called by a thread whose pull found nothing (or failed). Returns ``True`` when the
        caller is the watcher, which polls again (after its own backoff); otherwise parks until
        woken by :meth:`found` or :meth:`close` and returns ``False``."""
        with self._cond:
            if watcher or self._closed:
                return watcher
            if not self._watched:
                self._watched = True
                return True
            self._parked += 1
            try:
                self._cond.wait()
            finally:
                self._parked -= 1
            return False

    def found(self, watcher: bool) -> None:
        """Called by a thread whose pull brought messages: a watcher gives up its role (it is
        busy now), and one parked thread is woken to pull as well."""
        with self._cond:
            if watcher:
                self._watched = False
            self._cond.notify(1)

    def close(self) -> None:
        """Wake every parked thread; from now on :meth:`idle` never parks."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
