"""What one gateway instance counts: for its health endpoint, its logs and the benchmarks."""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Rate:
    """Events per second over the last ``window`` seconds."""

    window: float = 10.0
    clock: Callable[[], float] = time.monotonic
    _times: deque[float] = field(default_factory=deque)

    def add(self, count: int = 1) -> None:
        now = self.clock()
        self._times.extend([now] * count)
        self._trim(now)

    def per_second(self) -> float:
        self._trim(self.clock())
        return len(self._times) / self.window

    def _trim(self, now: float) -> None:
        while self._times and now - self._times[0] > self.window:
            self._times.popleft()


@dataclass
class Metrics:
    """Counters of one instance (touched from its event loop; publish results from the
    Pub/Sub client's threads only increment)."""

    events: int = 0
    events_rate: Rate = field(default_factory=Rate)
    attempts: int = 0
    attempts_rate: Rate = field(default_factory=Rate)
    connections: int = 0
    """Streams that reached listening."""
    refused: int = 0
    held_elsewhere: int = 0
    orders_written: int = 0
    order_write_failures: int = 0
    syncs: Counter[str] = field(default_factory=Counter)
    sync_failures: int = 0
    stopped: int = 0
    """Streams closed because they are no longer wanted here (not eligible, keys changed,
    bucket released)."""
    ended: int = 0
    """Connections that ended from the other side (dropped, closed by the server)."""
    lease_losses: int = 0
    watchdog_aborts: int = 0

    def snapshot(self) -> dict[str, object]:
        return {
            "events": self.events,
            "events_per_second": round(self.events_rate.per_second(), 2),
            "connection_attempts": self.attempts,
            "attempts_per_second": round(self.attempts_rate.per_second(), 2),
            "connections": self.connections,
            "refused": self.refused,
            "held_elsewhere": self.held_elsewhere,
            "orders_written": self.orders_written,
            "order_write_failures": self.order_write_failures,
            "syncs": dict(self.syncs),
            "sync_failures": self.sync_failures,
            "stopped": self.stopped,
            "ended": self.ended,
            "lease_losses": self.lease_losses,
            "watchdog_aborts": self.watchdog_aborts,
        }
