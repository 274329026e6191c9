"""The tick's decision (:func:`publisher.tick.decide`): a table of the tick's age × the
market-hours decision × its pulse document × whether a newer pulse started; and what a resumed
fan-out still publishes (:func:`publisher.tick.remaining`)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from agenttrader.market_clock import Decision, Why
from agenttrader.messages import MAX_CLOCK_SKEW
from agenttrader.pulses import Pulse, PulseState
from publisher.tick import STALE_TICK_AFTER, Skip, decide, remaining

OPEN = Decision(publish=True, check_clock=False, why=Why.OPEN)
CLOSED = Decision(publish=False, check_clock=False, why=Why.CLOSED)
ASKING = Decision(publish=True, check_clock=True, why=Why.STALE)
"""The clock is too old to trust: the tick publishes, and one message asks for a new one."""

FRESH = timedelta(seconds=3)
AT_LIMIT = STALE_TICK_AFTER
LATE = STALE_TICK_AFTER + timedelta(microseconds=1)
AHEAD = -timedelta(seconds=2)
"""Published "after" now: the publisher's clock runs ahead, within the skew allowance."""
AHEAD_AT_LIMIT = -MAX_CLOCK_SKEW
FUTURE = -MAX_CLOCK_SKEW - timedelta(microseconds=1)
HOUR_AHEAD = -timedelta(hours=1)

NEW = None
PUBLISHING = Pulse("p", PulseState.PUBLISHING)
RESUMABLE = Pulse("p", PulseState.PUBLISHING, cursor="u-0435", published_before=435)
PUBLISHED = Pulse("p", PulseState.PUBLISHED)
ABANDONED = Pulse("p", PulseState.PUBLISHING, final=True, cursor="u-0435")
"""Left publishing, then finalized by the next tick: its pulse reaches everyone."""

TABLE = [
    # age, market-hours decision, pulse document, newer pulse → why the tick publishes nothing
    (FRESH, OPEN, NEW, False, None),
    (FRESH, OPEN, PUBLISHING, False, None),  # redelivered mid-publish: publishes the rest
    (FRESH, OPEN, RESUMABLE, False, None),
    (FRESH, OPEN, PUBLISHED, False, Skip.DUPLICATE),
    (FRESH, ASKING, NEW, False, None),
    (FRESH, ASKING, PUBLISHED, False, Skip.DUPLICATE),
    (FRESH, CLOSED, NEW, False, Skip.MARKET_CLOSED),
    (FRESH, CLOSED, PUBLISHING, False, None),  # started while open: finished
    (FRESH, CLOSED, PUBLISHED, False, Skip.DUPLICATE),
    (AHEAD, OPEN, NEW, False, None),
    (AHEAD, CLOSED, NEW, False, Skip.MARKET_CLOSED),
    (AHEAD, OPEN, PUBLISHED, False, Skip.DUPLICATE),
    (AHEAD_AT_LIMIT, OPEN, NEW, False, None),
    (AT_LIMIT, OPEN, NEW, False, None),
    (AT_LIMIT, OPEN, PUBLISHING, False, None),
    (AT_LIMIT, OPEN, PUBLISHED, False, Skip.DUPLICATE),
    (AT_LIMIT, CLOSED, NEW, False, Skip.MARKET_CLOSED),
    (LATE, OPEN, NEW, False, Skip.STALE),
    (LATE, OPEN, PUBLISHING, False, None),  # killed mid-fan-out, redelivered late: resumed
    (LATE, OPEN, RESUMABLE, False, None),
    (LATE, CLOSED, RESUMABLE, False, None),
    (LATE, OPEN, PUBLISHED, False, Skip.DUPLICATE),
    (LATE, ASKING, NEW, False, Skip.STALE),
    (LATE, CLOSED, NEW, False, Skip.STALE),
    (timedelta(hours=1), OPEN, NEW, False, Skip.STALE),
    (timedelta(hours=1), OPEN, RESUMABLE, False, None),
    # A newer pulse started: an older tick arriving late starts nothing, resumes nothing.
    (FRESH, OPEN, NEW, True, Skip.SUPERSEDED),
    (FRESH, OPEN, RESUMABLE, True, Skip.SUPERSEDED),
    (LATE, OPEN, RESUMABLE, True, Skip.SUPERSEDED),
    (LATE, OPEN, ABANDONED, False, Skip.SUPERSEDED),
    (FRESH, OPEN, PUBLISHED, True, Skip.DUPLICATE),
    # A publish time ahead of the server's clock beyond the skew is not trusted.
    (FUTURE, OPEN, NEW, False, Skip.FUTURE),
    (HOUR_AHEAD, OPEN, NEW, False, Skip.FUTURE),
    (HOUR_AHEAD, OPEN, PUBLISHING, False, Skip.FUTURE),
    (HOUR_AHEAD, CLOSED, PUBLISHED, True, Skip.FUTURE),
]


@pytest.mark.parametrize(("age", "schedule", "pulse", "newer", "skip"), TABLE)
def test_what_a_tick_does(
    age: timedelta, schedule: Decision, pulse: Pulse | None, newer: bool, skip: Skip | None
) -> None:
    assert decide(age=age, schedule=schedule, pulse=pulse, newer=newer) is skip


ELIGIBLE = {"u-3": "30", "u-1": None, "u-2": "20", "u-10": None}


@pytest.mark.parametrize(
    ("cursor", "expected"),
    [
        (None, [("u-1", None), ("u-10", None), ("u-2", "20"), ("u-3", "30")]),
        ("u-10", [("u-2", "20"), ("u-3", "30")]),
        # The cursor's tenant left the roster since: the order still says who is after it.
        ("u-15", [("u-2", "20"), ("u-3", "30")]),
        ("u-3", []),
        ("u-0", [("u-1", None), ("u-10", None), ("u-2", "20"), ("u-3", "30")]),
    ],
)
def test_a_resumed_fan_out_publishes_what_follows_the_cursor(
    cursor: str | None, expected: list[tuple[str, str | None]]
) -> None:
    assert remaining(ELIGIBLE, cursor) == expected
