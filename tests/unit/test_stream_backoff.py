"""Reconnecting without storms (:mod:`stream_gateway.backoff`): jittered exponential delays,
a longer base for a stream held elsewhere, and an instance-wide connection rate."""

from __future__ import annotations

import pytest

from stream_gateway.backoff import HELD_ELSEWHERE, RECONNECT, Backoff, RateLimiter


@pytest.mark.parametrize(
    ("attempt", "low", "high"),
    [
        (1, 0.5, 1.0),
        (2, 1.0, 2.0),
        (3, 2.0, 4.0),
        (6, 16.0, 32.0),
        (7, 30.0, 60.0),
        (50, 30.0, 60.0),
    ],
)
def test_the_delay_doubles_up_to_the_cap_with_half_of_it_random(
    attempt: int, low: float, high: float
) -> None:
    assert RECONNECT.delay(attempt, lambda: 0.0) == low
    assert RECONNECT.delay(attempt, lambda: 1.0) == high
    assert low <= RECONNECT.delay(attempt) <= high


def test_attempt_zero_or_less_waits_like_the_first() -> None:
    assert RECONNECT.delay(0, lambda: 0.0) == RECONNECT.delay(1, lambda: 0.0)


def test_a_stream_held_elsewhere_waits_longer() -> None:
    assert HELD_ELSEWHERE.delay(1, lambda: 0.0) >= 15.0
    assert HELD_ELSEWHERE.delay(20, lambda: 1.0) == HELD_ELSEWHERE.cap


def test_tenants_dropped_together_come_back_spread() -> None:
    import random

    rng = random.Random(7)
    delays = sorted(Backoff().delay(1, rng.random) for _ in range(1000))
    assert delays[0] >= 0.5 and delays[-1] <= 1.0
    assert delays[750] - delays[250] > 0.2  # spread over the window, not bunched


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_rate_limiter_lets_a_burst_through_then_the_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=10, burst=3, clock=clock)
    assert [limiter.wait_time() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.wait_time() == pytest.approx(0.1)
    clock.now = 0.1
    assert limiter.wait_time() == 0.0
    clock.now = 100.0
    assert [limiter.wait_time() for _ in range(3)] == [0.0, 0.0, 0.0]  # never more than burst
    assert limiter.wait_time() > 0


def test_attempts_never_exceed_rate_times_time_plus_burst() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=50, burst=20, clock=clock)
    granted = 0
    while clock.now < 10.0:
        if limiter.wait_time() == 0.0:
            granted += 1
        else:
            clock.now += 0.001
    assert granted <= 50 * 10 + 20


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (1, 0)])
def test_a_limiter_needs_a_positive_rate_and_burst(rate: float, burst: int) -> None:
    with pytest.raises(ValueError):
        RateLimiter(rate, burst)
