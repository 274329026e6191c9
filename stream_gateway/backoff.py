"""When to try a stream again, and how fast an instance may open streams at all.

:class:`Backoff` is exponential with jitter ("equal jitter": half the delay fixed, half
random), so tenants dropped together do not come back together; a connection that stayed up
for ``reset_after`` seconds starts over from the first delay. A stream refused because the
account's one stream is held elsewhere backs off from a longer base (:data:`HELD_ELSEWHERE`):
Alpaca keeps a half-dead connection for up to ~90 s, and the tenant's own bot may hold it for
hours. :class:`RateLimiter` bounds the connection attempts of a whole instance (a token
bucket), so a takeover of thousands of tenants, or every stream dropped at once, cannot turn
into a reconnect storm: attempts per second never exceed the rate (plus the burst).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """Delays before attempt ``n`` (1, 2, …) of a stream that keeps failing."""

    base: float = 1.0
    cap: float = 60.0
    reset_after: float = 30.0
    """A connection that lasted this long counts as healthy: the next failure starts over."""

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait before attempt ``attempt`` (≥ 1): between half and all of
        ``min(cap, base × 2^(attempt-1))``."""
        ceiling = min(self.cap, self.base * float(2 ** min(max(attempt, 1) - 1, 30)))
        return ceiling / 2 + rand() * ceiling / 2


RECONNECT = Backoff()
"""After a disconnect, a refused handshake, an unreachable server."""
HELD_ELSEWHERE = Backoff(base=30.0, cap=600.0)
"""After ``connection limit exceeded``: the account's stream is open somewhere else."""


class RateLimiter:
    """A token bucket: ``rate`` attempts a second on average, ``burst`` at once."""

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self._rate, self._burst, self._clock = rate, float(burst), clock
        self._tokens = float(burst)
        self._stamp = clock()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now

    def wait_time(self) -> float:
        """Seconds until a token is free (0: now); takes it when 0."""
        self._refill()
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        return (1 - self._tokens) / self._rate

    async def acquire(self) -> None:
        """Wait for a token (callers queue in order)."""
        async with self._lock:
            while (wait := self.wait_time()) > 0:
                await asyncio.sleep(wait)
