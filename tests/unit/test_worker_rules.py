"""The worker's rules as pure functions: the kill-switch, and what a stale message comes to."""

from __future__ import annotations

from typing import Any

import pytest

from agenttrader.messages import Reason
from agenttrader.snapshot import Stale
from sync_worker.worker import STALE_RESULTS, Result, skips_for_kill_switch

SWITCHED = [Reason.SCHEDULE, Reason.TRADE_UPDATE, Reason.RECONCILE]
"""Reasons a kill-switch that is not on skips: the scheduled syncs and the stream gateway's."""
RUN_ANYWAY = [Reason.FIRST_SYNC, Reason.MANUAL, Reason.REPLAY]
"""Reasons that sync whatever the kill-switch says (a replay counts by its original reason)."""

TRADING: list[tuple[str, dict[str, Any] | None, bool]] = [
    # id, status/trading's data (None: no such document), whether trading is on
    ("enabled", {"enabled": True, "message": "on"}, True),
    ("disabled", {"enabled": False}, False),
    ("missing_field", {"message": "set up by a script"}, False),
    ("empty_document", {}, False),
    ("string_true", {"enabled": "true"}, False),  # truthy is not true: only a bool counts
    ("one", {"enabled": 1}, False),
    ("null", {"enabled": None}, False),
    ("no_document", None, False),
]


def test_every_reason_is_decided() -> None:
    """A new reason must be placed on one side of the kill-switch, here and in the worker."""
    assert sorted(SWITCHED + RUN_ANYWAY) == sorted(Reason)


@pytest.mark.parametrize("reason", SWITCHED + RUN_ANYWAY)
@pytest.mark.parametrize(
    ("trading", "on"), [(t[1], t[2]) for t in TRADING], ids=[t[0] for t in TRADING]
)
def test_the_kill_switch_skips_scheduled_syncs_unless_trading_is_on(
    reason: Reason, trading: dict[str, Any] | None, on: bool
) -> None:
    expected = reason in SWITCHED and not on
    assert skips_for_kill_switch(reason, trading) is expected


@pytest.mark.parametrize(
    ("stale", "result"),
    [(Stale.DUPLICATE, Result.DUPLICATE), (Stale.SUPERSEDED, Result.SUPERSEDED)],
)
def test_a_stale_message_is_acknowledged_as_what_it_is(stale: Stale, result: Result) -> None:
    assert STALE_RESULTS[stale] is result


def test_every_staleness_has_a_result() -> None:
    assert set(STALE_RESULTS) == set(Stale)
