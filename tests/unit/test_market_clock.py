"""The market-hours schedule: the pure decision on hand-written clocks, the asking tenant, and
the worker's clock refresh with hand-written fakes (Firestore, Alpaca client)."""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agenttrader import market_clock
from agenttrader.credentials import AlpacaKeys
from agenttrader.deps import Deps
from agenttrader.errors import AlpacaUnavailable
from agenttrader.market_clock import (
    MAX_CLOCK_AGE,
    Decision,
    MarketClock,
    Why,
    clock_call_fits,
    decide,
    decide_for_tick,
    pick_asker,
    refresh,
    refresh_after_sync,
)
from agenttrader.messages import Reason, SyncRequest
from agenttrader.paths import MARKET_CLOCK_DOC
from agenttrader.settings import Settings, SyncSchedule
from tests.log_capture import json_log_lines

MARKET = SyncSchedule.MARKET_HOURS
NOW = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)  # a Tuesday, 10:00 in New York
KEYS = AlpacaKeys("PKCLOCKTEST000000001", "clock-secret-0123456789abcdef", "https://x.test")


def stored(
    is_open: bool = True,
    next_open: datetime = NOW + timedelta(hours=23, minutes=30),
    next_close: datetime = NOW + timedelta(hours=6),
    checked_at: datetime = NOW - timedelta(minutes=30),
    **overrides: object,
) -> dict[str, Any]:
    """The data of ``ops/market_clock`` as Firestore returns it (UTC datetimes)."""
    data: dict[str, Any] = {
        "is_open": is_open,
        "next_open": next_open,
        "next_close": next_close,
        "checked_at": checked_at,
        "pulse_id": "p-1",
    }
    data.update(overrides)
    return data


def closed(next_open: datetime, **kwargs: Any) -> dict[str, Any]:
    return stored(
        is_open=False, next_open=next_open, next_close=next_open + timedelta(hours=6.5), **kwargs
    )


# --- decide: every branch ----------------------------------------------------------------------


def test_always_publishes_and_never_asks_whatever_is_stored() -> None:
    for data in (None, stored(), closed(NOW + timedelta(hours=1)), {"is_open": "junk"}):
        assert decide(SyncSchedule.ALWAYS, data, NOW) == Decision(True, False, Why.ALWAYS)


def test_no_clock_publishes_and_asks() -> None:
    assert decide(MARKET, None, NOW) == Decision(True, True, Why.NO_CLOCK)


@pytest.mark.parametrize(
    "data",
    [
        {},
        stored(is_open="true"),
        stored(is_open=None),
        stored(next_open="2026-12-02T14:30:00Z"),
        stored(next_close=None),
        stored(checked_at=1_764_600_000),
        stored(next_close=datetime(2026, 12, 1, 21, 0)),  # naive
        {"is_open": True, "next_open": NOW, "next_close": NOW},  # no checked_at
    ],
    ids=[
        "empty",
        "is_open-string",
        "is_open-missing",
        "next_open-string",
        "next_close-missing",
        "checked_at-number",
        "naive-timestamp",
        "checked_at-missing",
    ],
)
def test_an_unreadable_clock_publishes_and_asks(data: dict[str, Any]) -> None:
    assert decide(MARKET, data, NOW) == Decision(True, True, Why.UNREADABLE)


def test_open_and_before_next_close_publishes_without_asking() -> None:
    decision = decide(MARKET, stored(), NOW)

    assert (decision.publish, decision.check_clock, decision.why) == (True, False, Why.OPEN)
    assert decision.clock is not None and decision.clock.next_close == NOW + timedelta(hours=6)


@pytest.mark.parametrize("after", [timedelta(0), timedelta(seconds=1), timedelta(hours=3)])
def test_open_but_past_next_close_is_stale(after: timedelta) -> None:
    decision = decide(MARKET, stored(next_close=NOW - after), NOW)

    assert (decision.publish, decision.check_clock, decision.why) == (True, True, Why.STALE)


def test_closed_and_before_next_open_publishes_nothing() -> None:
    decision = decide(MARKET, closed(NOW + timedelta(minutes=1)), NOW)

    assert (decision.publish, decision.check_clock, decision.why) == (False, False, Why.CLOSED)
    assert decision.clock is not None and decision.clock.next_open == NOW + timedelta(minutes=1)


@pytest.mark.parametrize("after", [timedelta(0), timedelta(seconds=1), timedelta(days=2)])
def test_closed_but_past_next_open_is_stale(after: timedelta) -> None:
    decision = decide(MARKET, closed(NOW - after), NOW)

    assert (decision.publish, decision.check_clock, decision.why) == (True, True, Why.STALE)


@pytest.mark.parametrize("is_open", [True, False])
def test_a_clock_checked_more_than_a_day_ago_is_stale_whatever_it_says(is_open: bool) -> None:
    far = NOW + timedelta(days=3)
    data = stored(is_open=is_open, next_open=far, next_close=far, checked_at=NOW - MAX_CLOCK_AGE)
    fresh_enough = decide(MARKET, data, NOW)
    data["checked_at"] = NOW - MAX_CLOCK_AGE - timedelta(seconds=1)
    too_old = decide(MARKET, data, NOW)

    assert fresh_enough.why is (Why.OPEN if is_open else Why.CLOSED)
    assert (too_old.publish, too_old.check_clock, too_old.why) == (True, True, Why.STALE)


def test_a_clock_checked_in_the_future_beyond_clock_skew_is_stale() -> None:
    skewed = decide(
        MARKET, closed(NOW + timedelta(hours=1), checked_at=NOW + timedelta(minutes=1)), NOW
    )
    bogus = decide(
        MARKET, closed(NOW + timedelta(hours=1), checked_at=NOW + timedelta(hours=1)), NOW
    )

    assert skewed.why is Why.CLOSED
    assert (bogus.publish, bogus.check_clock, bogus.why) == (True, True, Why.STALE)


def test_a_weekend_closure_skips_until_the_day_old_clock_is_asked_again() -> None:
    friday_close = datetime(2026, 12, 4, 21, 0, 30, tzinfo=UTC)
    monday_open = datetime(2026, 12, 7, 14, 30, tzinfo=UTC)
    data = closed(monday_open, checked_at=friday_close)

    saturday = decide(MARKET, data, friday_close + timedelta(hours=20))
    saturday_later = decide(MARKET, data, friday_close + timedelta(hours=24, minutes=1))
    monday = decide(MARKET, data, monday_open)

    assert saturday.why is Why.CLOSED and not saturday.publish
    assert saturday_later.why is Why.STALE and saturday_later.check_clock
    assert monday.why is Why.STALE and monday.publish


# --- decide_for_tick: what it reads ------------------------------------------------------------


class _Snapshot:
    def __init__(self, data: dict[str, Any] | None) -> None:
        self.exists = data is not None
        self._data = data

    def to_dict(self) -> dict[str, Any] | None:
        return self._data


class _Doc:
    def __init__(self, db: _FakeFirestore, path: str) -> None:
        self._db, self._path = db, path

    def get(self) -> _Snapshot:
        self._db.reads.append(self._path)
        return _Snapshot(self._db.docs.get(self._path))

    def set(self, data: dict[str, Any]) -> None:
        if self._db.fail_writes:
            raise RuntimeError("firestore is down")
        self._db.docs[self._path] = dict(data)


class _FakeFirestore:
    def __init__(self) -> None:
        self.docs: dict[str, dict[str, Any]] = {}
        self.reads: list[str] = []
        self.fail_writes = False

    def document(self, path: str) -> _Doc:
        return _Doc(self, path)


def _deps(schedule: SyncSchedule, db: _FakeFirestore) -> Deps:
    settings = Settings(project="demo-clock", sync_schedule=schedule)
    return Deps(settings, firestore_client=db)  # type: ignore[arg-type]


def test_always_reads_nothing() -> None:
    db = _FakeFirestore()
    db.docs[MARKET_CLOCK_DOC] = closed(NOW + timedelta(hours=1))

    decision = decide_for_tick(_deps(SyncSchedule.ALWAYS, db), NOW)

    assert decision.why is Why.ALWAYS and db.reads == []


def test_market_hours_reads_the_stored_clock_once() -> None:
    db = _FakeFirestore()
    missing = decide_for_tick(_deps(MARKET, db), NOW)
    db.docs[MARKET_CLOCK_DOC] = closed(NOW + timedelta(hours=1))
    shut = decide_for_tick(_deps(MARKET, db), NOW)

    assert missing.why is Why.NO_CLOCK and shut.why is Why.CLOSED
    assert db.reads == [MARKET_CLOCK_DOC, MARKET_CLOCK_DOC]


# --- the asking tenant ---------------------------------------------------------------------------


def test_no_users_no_asker() -> None:
    assert pick_asker([], "p-1") is None


def test_the_asker_is_one_of_the_users_and_stable_per_pulse() -> None:
    users = ["u-c", "u-a", "u-b"]

    first = pick_asker(users, "20261201T150000Z-42")

    assert first in users
    assert pick_asker(sorted(users, reverse=True), "20261201T150000Z-42") == first
    assert pick_asker({u: None for u in users}, "20261201T150000Z-42") == first


def test_the_asker_changes_between_pulses() -> None:
    users = [f"u-{i}" for i in range(5)]

    askers = {pick_asker(users, f"20261201T15{minute:02d}00Z-{minute}") for minute in range(60)}

    assert askers == set(users)


# --- the worker's refresh ------------------------------------------------------------------------

ALPACA_CLOCK = {
    "timestamp": "2026-12-01T10:00:00.123456789-05:00",
    "is_open": True,
    "next_open": "2026-12-02T09:30:00-05:00",
    "next_close": "2026-12-01T16:00:00-05:00",
}


class _FakeClient:
    """What ``fetch_clock`` uses of alpaca-py's TradingClient: ``get(path)``."""

    def __init__(self, answer: object) -> None:
        self.answer = answer
        self.paths: list[str] = []

    def get(self, path: str) -> object:
        self.paths.append(path)
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    with json_log_lines(logging.INFO) as lines:
        yield lines


def test_refresh_stores_the_clock_and_nothing_of_the_tenant() -> None:
    db, client = _FakeFirestore(), _FakeClient(dict(ALPACA_CLOCK))

    clock = refresh(db, client, KEYS, uid="u-7", pulse_id="p-9", now=NOW)  # type: ignore[arg-type]

    assert client.paths == ["/clock"]
    assert clock is not None
    assert db.docs[MARKET_CLOCK_DOC] == {
        "is_open": True,
        "next_open": datetime(2026, 12, 2, 14, 30, tzinfo=UTC),
        "next_close": datetime(2026, 12, 1, 21, 0, tzinfo=UTC),
        "checked_at": NOW,
        "pulse_id": "p-9",
    }
    assert MarketClock.from_document(db.docs[MARKET_CLOCK_DOC]) == clock
    assert decide(MARKET, db.docs[MARKET_CLOCK_DOC], NOW).why is Why.OPEN


@pytest.mark.parametrize(
    ("answer", "logged"),
    [
        (AlpacaUnavailable("Alpaca is unavailable (HTTP 503)"), "HTTP 503"),
        (ValueError("boom"), "does not parse"),
        ([1, 2], "wrong shape"),
        ({**ALPACA_CLOCK, "is_open": "yes"}, "is_open must be"),
        ({**ALPACA_CLOCK, "next_close": "at four"}, "next_close is not an RFC 3339"),
        ({**ALPACA_CLOCK, "next_open": None}, "next_open must be"),
    ],
    ids=["unavailable", "unparseable", "list", "is_open", "next_close", "next_open"],
)
def test_a_failing_clock_call_changes_nothing_and_is_logged_without_secrets(
    answer: object, logged: str, log_lines: io.StringIO
) -> None:
    db, client = _FakeFirestore(), _FakeClient(answer)
    db.docs[MARKET_CLOCK_DOC] = before = closed(NOW + timedelta(hours=1))

    assert refresh(db, client, KEYS, uid="u-7", pulse_id="p-9", now=NOW) is None  # type: ignore[arg-type]

    assert db.docs[MARKET_CLOCK_DOC] == before
    (line,) = [json.loads(text) for text in log_lines.getvalue().splitlines()]
    assert line["severity"] == "WARNING" and logged in line["message"]
    assert line["logging.googleapis.com/labels"]["uid"] == "u-7"
    assert KEYS.key_id not in log_lines.getvalue() and KEYS.secret_key not in log_lines.getvalue()


def test_a_failing_clock_write_is_swallowed(log_lines: io.StringIO) -> None:
    db, client = _FakeFirestore(), _FakeClient(dict(ALPACA_CLOCK))
    db.fail_writes = True

    assert refresh(db, client, KEYS, uid="u-7", pulse_id=None, now=NOW) is None  # type: ignore[arg-type]

    assert MARKET_CLOCK_DOC not in db.docs
    assert "market clock not refreshed: RuntimeError" in log_lines.getvalue()


def _asking(check_clock: bool = True) -> SyncRequest:
    return SyncRequest("u-7", Reason.SCHEDULE, NOW, pulse_id="p-9", check_clock=check_clock)


def test_the_worker_hook_refreshes_only_for_an_asking_message() -> None:
    db, client = _FakeFirestore(), _FakeClient(dict(ALPACA_CLOCK))
    deps = _deps(MARKET, db)
    started = time.monotonic()

    skipped = refresh_after_sync(deps, client, KEYS, _asking(False), started)  # type: ignore[arg-type]
    assert skipped is None and client.paths == [] and db.docs == {}

    asked = refresh_after_sync(deps, client, KEYS, _asking(), started)  # type: ignore[arg-type]
    assert asked is not None and client.paths == ["/clock"]
    assert db.docs[MARKET_CLOCK_DOC]["pulse_id"] == "p-9"


def test_the_clock_call_starts_only_when_it_still_fits_the_ack_deadline(
    log_lines: io.StringIO,
) -> None:
    # user-sync-worker's ack deadline is 60 s; a call may take connect + read timeout.
    assert clock_call_fits(0.2, 10.0) and clock_call_fits(30.0, 10.0)
    assert not clock_call_fits(30.5, 10.0) and not clock_call_fits(0.0, 26.0)
    db, client = _FakeFirestore(), _FakeClient(dict(ALPACA_CLOCK))
    slow_sync_began = time.monotonic() - 45.0

    late = refresh_after_sync(_deps(MARKET, db), client, KEYS, _asking(), slow_sync_began)  # type: ignore[arg-type]

    assert late is None and client.paths == [] and db.docs == {}
    assert "too little of the ack deadline" in log_lines.getvalue()


def test_alpaca_clock_bodies_parse_with_nanoseconds_and_offsets() -> None:
    clock = MarketClock.from_alpaca(ALPACA_CLOCK, NOW)

    assert clock.is_open is True and clock.checked_at == NOW
    assert clock.next_close == datetime(2026, 12, 1, 21, 0, tzinfo=UTC)
    assert market_clock.MarketClock.from_alpaca(
        {**ALPACA_CLOCK, "next_open": "2026-12-02T14:30:00.000000001Z"}, NOW
    ).next_open == datetime(2026, 12, 2, 14, 30, tzinfo=UTC)
