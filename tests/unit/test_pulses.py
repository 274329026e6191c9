"""The pure parts of :mod:`agenttrader.pulses`: pulse ids ordered as times (to the microsecond,
never as strings, a time from the future not trusted), which pulses a tick finalizes or defers
to, when a pulse is complete, and what a worker instance's rollup watch does next."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from agenttrader.messages import MAX_CLOCK_SKEW
from agenttrader.pulses import (
    CLOCK_SKEW,
    WATCH_WINDOW,
    Pulse,
    PulseState,
    PulseTotals,
    Watch,
    is_complete,
    is_newer,
    newer_than,
    older_open,
    pulse_id_for,
    pulse_time,
    sort_key,
    watch_step,
)

T = datetime(2026, 1, 5, 15, 30, 0, tzinfo=UTC)
NOW = T + timedelta(minutes=5)


def test_a_pulse_id_starts_with_the_tick_time_to_the_microsecond() -> None:
    tick = T.replace(microsecond=123456)
    assert pulse_id_for("9876", tick) == "20260105T153000123456Z-9876"
    assert pulse_time(pulse_id_for("9876", tick)) == tick
    # Another timezone names the same instant; unsafe characters never reach the id.
    other = tick.astimezone(timezone(timedelta(hours=-5)))
    assert pulse_id_for("a/b c", other) == "20260105T153000123456Z-abc"
    assert pulse_id_for("///", tick).endswith("Z-tick")


def test_two_ticks_in_one_second_are_two_pulses_in_tick_order() -> None:
    # Message ids that sort the other way as strings ("9" > "10").
    first = pulse_id_for("9", T.replace(microsecond=100))
    second = pulse_id_for("10", T.replace(microsecond=900_000))
    assert first != second
    assert first[:15] == second[:15]  # the same second: all older releases' ids held
    assert sort_key(first) < sort_key(second)
    assert is_newer(second, first, NOW) and not is_newer(first, second, NOW)


@pytest.mark.parametrize(
    ("pulse_id", "expected"),
    [
        ("20260105T153000Z-77", T),  # second resolution, as older releases wrote them
        ("20260105T153000000001Z-77", T.replace(microsecond=1)),
        ("p1", None),
        ("20261305T153000Z-1", None),  # month 13
        ("20260105T153000", None),
        ("20260105T1530001Z-1", None),  # neither seconds nor microseconds
    ],
)
def test_pulse_time_parses_both_id_formats(pulse_id: str, expected: datetime | None) -> None:
    assert pulse_time(pulse_id) == expected


def test_ids_of_both_formats_compare_as_times() -> None:
    old = "20260105T153000Z-1"  # 15:30:00.000000, in the old format
    new = "20260105T153000500000Z-2"  # half a second later
    assert old > new  # as strings: the wrong order ("Z" > "5")
    assert is_newer(new, old, NOW) and not is_newer(old, new, NOW)
    assert sorted([new, "p-untimed", old], key=sort_key) == ["p-untimed", old, new]


@pytest.mark.parametrize(
    ("candidate", "than", "newer"),
    [
        (pulse_id_for("2", T + timedelta(seconds=60)), pulse_id_for("1", T), True),
        (pulse_id_for("1", T), pulse_id_for("2", T + timedelta(seconds=60)), False),
        (pulse_id_for("1", T), None, True),
        (pulse_id_for("1", T), pulse_id_for("1", T), False),
        # Ahead of the server's clock by more than the skew: older than any trusted pulse.
        (pulse_id_for("f", NOW + timedelta(hours=1)), pulse_id_for("1", T), False),
        (pulse_id_for("1", T), pulse_id_for("f", NOW + timedelta(hours=1)), True),
        (pulse_id_for("f", NOW + MAX_CLOCK_SKEW), pulse_id_for("1", T), True),
        (pulse_id_for("1", T), "p-untimed", True),
    ],
)
def test_is_newer(candidate: str, than: str | None, newer: bool) -> None:
    assert is_newer(candidate, than, NOW) is newer


def pulse(at: datetime, tick: str, *, final: bool = False) -> Pulse:
    return Pulse(pulse_id_for(tick, at), PulseState.PUBLISHED, final=final)


def test_a_tick_finalizes_only_older_open_pulses_and_defers_to_newer_ones() -> None:
    mine = pulse_id_for("m", T)
    older = pulse(T - timedelta(minutes=1), "o")
    frozen = pulse(T - timedelta(minutes=2), "f", final=True)
    newer = pulse(T + timedelta(seconds=1), "n")
    ahead = pulse(NOW + timedelta(hours=1), "x")
    recent = [ahead, newer, Pulse(mine, PulseState.PUBLISHING), older, frozen]

    assert older_open(recent, mine) == [older.pulse_id]
    assert newer_than(recent, mine, NOW) == newer.pulse_id
    # The newer pulse's own tick finalizes this one and the older ones, never itself.
    assert older_open(recent, newer.pulse_id) == [mine, older.pulse_id]
    assert newer_than(recent, newer.pulse_id, NOW) is None  # the hour-ahead one is not trusted


@pytest.mark.parametrize(
    ("published", "outcomes", "complete"),
    [(None, 0, False), (None, 5, False), (0, 0, True), (3, 2, False), (3, 3, True), (3, 4, True)],
)
def test_a_pulse_is_complete_once_published_and_every_outcome_is_in(
    published: int | None, outcomes: int, complete: bool
) -> None:
    assert is_complete(published, outcomes) is complete


def test_a_pulse_still_publishing_reports_no_published_count_and_is_not_complete() -> None:
    totals = PulseTotals("p", T, None, 0, success=435, error=0, worker_skipped=0)
    body = totals.last_pulse_doc(NOW)
    assert body["published_count"] is None and body["complete"] is False


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({}, Pulse("p")),
        (
            {"state": "publishing", "cursor": "u-9", "cursor_published": 9},
            Pulse("p", PulseState.PUBLISHING, cursor="u-9", published_before=9),
        ),
        ({"state": "published", "final": True}, Pulse("p", PulseState.PUBLISHED, final=True)),
        ({"state": "odd", "final": "yes", "cursor": 3, "cursor_published": "9"}, Pulse("p")),
    ],
)
def test_the_pulse_document_as_read(data: dict[str, Any], expected: Pulse) -> None:
    assert Pulse.of("p", data) == expected


DELAY = timedelta(seconds=5)
MINE = pulse_id_for("m", T)
LAST_RESULT = NOW - timedelta(seconds=3)


def shown(
    pulse_id: str | None, updated: datetime | None, *, complete: bool = False
) -> dict[str, Any]:
    return {"pulse_id": pulse_id, "updated_at": updated, "complete": complete}


WATCH_TABLE = [
    # ops/last_pulse as read → what an instance whose last result of MINE was at LAST_RESULT does
    ({}, NOW, Watch.COUNT),
    (shown(pulse_id_for("o", T - timedelta(minutes=1)), NOW), NOW, Watch.COUNT),
    (shown(pulse_id_for("n", T + timedelta(minutes=1)), NOW), NOW, Watch.STOP),
    (shown(pulse_id_for("x", NOW + timedelta(hours=1)), NOW), NOW, Watch.COUNT),
    # Counted by someone after my last result, within the delay: not again now.
    (shown(MINE, LAST_RESULT + CLOCK_SKEW * 2), NOW, Watch.SKIP),
    (shown(MINE, LAST_RESULT + CLOCK_SKEW * 2, complete=True), NOW, Watch.STOP),
    # Counted after my last result, but longer ago than the delay, incomplete: count again
    # (an instance killed before its rollup may have recorded results since).
    (shown(MINE, LAST_RESULT + CLOCK_SKEW * 2), NOW + DELAY * 2, Watch.COUNT),
    (shown(MINE, LAST_RESULT + CLOCK_SKEW * 2, complete=True), NOW + DELAY * 2, Watch.STOP),
    # Counted before my last result: my result is not in it.
    (shown(MINE, LAST_RESULT - timedelta(seconds=1)), NOW, Watch.COUNT),
    (shown(MINE, LAST_RESULT - timedelta(seconds=1), complete=True), NOW, Watch.COUNT),
    (shown(MINE, None), NOW, Watch.COUNT),
    # Past the window in which a pulse can still receive results: stop watching.
    (shown(MINE, T), T + WATCH_WINDOW + timedelta(seconds=1), Watch.STOP),
    ({}, T + WATCH_WINDOW + timedelta(seconds=1), Watch.STOP),
]


@pytest.mark.parametrize(("last_pulse", "now", "step"), WATCH_TABLE)
def test_what_a_rollup_watch_does(last_pulse: dict[str, Any], now: datetime, step: Watch) -> None:
    assert watch_step(last_pulse, MINE, last_result=LAST_RESULT, now=now, delay=DELAY) is step


def test_the_watch_window_covers_every_delivery_attempt_of_a_message() -> None:
    # 5 attempts of a 60 s ack deadline, 600 s backoff between them (agenttrader.topology).
    assert timedelta(minutes=40) < WATCH_WINDOW <= timedelta(hours=1)
