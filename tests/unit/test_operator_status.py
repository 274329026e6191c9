"""Pulse records read as statuses, the spec's alert conditions, and the status rendering."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from console import documents
from console.deadletters import Listing
from console.status import (
    AlertKind,
    FailingTenant,
    PipelineStatus,
    PulseStatus,
    alerts_for,
    pulse_status,
)
from operations import render

NOW = datetime(2025, 3, 4, 12, 0, 0, tzinfo=UTC)
KEY_ID = "PKSECRETKEYID0000042"


def pulse(**overrides: Any) -> PulseStatus:
    values: dict[str, Any] = {
        "pulse_id": "p1",
        "timestamp": NOW - timedelta(minutes=1),
        "published": 10,
        "success": 10,
        "error": 0,
        "skipped": 2,
        "complete": True,
        "duration_seconds": 5.0,
    }
    values.update(overrides)
    return PulseStatus(**values)


def tenant(uid: str, streak: int | None, error: str = "Alpaca refused the keys") -> FailingTenant:
    return FailingTenant(uid, "AlpacaAuthError", error, NOW - timedelta(minutes=2), streak, True)


def test_pulse_status_durations() -> None:
    started = NOW - timedelta(minutes=3)
    done = pulse_status(
        {
            "pulse_id": "p1",
            "timestamp": started,
            "completed_at": started + timedelta(seconds=12.5),
            "complete": True,
            "published_count": 8,
            "success_count": 6,
            "error_count": 2,
            "skipped_count": 3,
        },
        "doc-id",
        NOW,
    )
    assert (done.published, done.success, done.error, done.skipped) == (8, 6, 2, 3)
    assert done.duration_seconds == 12.5 and done.error_rate == 0.25 and not done.slow
    running = pulse_status({"timestamp": started, "published_count": 8}, "p2", NOW)
    assert running.pulse_id == "p2" and not running.complete
    assert running.duration_seconds == 180.0 and running.slow
    legacy = pulse_status(
        {"timestamp": started, "complete": True, "publish_seconds": 0.4, "ineligible_count": 4},
        "p3",
        NOW,
    )
    assert legacy.duration_seconds == 0.4 and legacy.skipped == 4 and legacy.error_rate is None


def test_no_alerts_when_healthy() -> None:
    assert alerts_for([pulse()], [tenant("a", 2)]) == ()
    assert alerts_for([], []) == ()


def test_error_rate_above_ten_percent() -> None:
    assert alerts_for([pulse(success=9, error=1)], []) == ()  # exactly 10 %: not above
    (alert,) = alerts_for([pulse(success=8, error=2)], [])
    assert alert.kind is AlertKind.ERROR_RATE and "20%" in alert.message


def test_error_rate_is_judged_on_the_newest_complete_pulse() -> None:
    running = pulse(pulse_id="p2", success=0, error=3, complete=False, duration_seconds=10.0)
    assert alerts_for([running, pulse(pulse_id="p1")], []) == ()


def test_slow_pulse() -> None:
    (alert,) = alerts_for([pulse(duration_seconds=46.0)], [])
    assert alert.kind is AlertKind.SLOW_PULSE and "took 46 s" in alert.message
    (alert,) = alerts_for([pulse(complete=False, duration_seconds=90.0, error=0)], [])
    assert "still incomplete after 90 s" in alert.message
    # Only the newest pulse counts: an old slow one is history.
    assert alerts_for([pulse(pulse_id="p2"), pulse(duration_seconds=80.0)], []) == ()


def test_consecutive_failures() -> None:
    (alert,) = alerts_for([pulse()], [tenant("a", 3), tenant("b", 1), tenant("c", None)])
    assert alert.kind is AlertKind.CONSECUTIVE_FAILURES
    assert "a (3)" in alert.message and "b" not in alert.message.split(":", 1)[1]


def status(**overrides: Any) -> PipelineStatus:
    values: dict[str, Any] = {
        "now": NOW,
        "pulses": (pulse(success=5, error=5, duration_seconds=50.0),),
        "failing": (tenant("alice", 4, error=f"bad key {KEY_ID} secret_key=hunter22"),),
        "failing_capped": False,
        "dead_letters": Listing((), 7, True),
        "dead_letters_problem": None,
    }
    values.update(overrides)
    values["alerts"] = alerts_for(values["pulses"], values["failing"])
    return PipelineStatus(**values)


def test_render_status_shows_everything_and_no_secret() -> None:
    text = render.render_status(
        status(), "demo-p", "projects/demo-p/subscriptions/h", max_tenants=5
    )
    assert "p1" in text and "50.0s !" in text and "50%" in text
    assert "alice" in text and "AlpacaAuthError" in text
    assert "7 held" in text
    for kind in ("error_rate", "slow_pulse", "consecutive_failures"):
        assert f"! {kind}" in text
    assert KEY_ID not in text and "hunter22" not in text
    quiet = render.render_status(
        status(pulses=(), failing=(), dead_letters=None), "demo-p", "h", max_tenants=5
    )
    assert "none recorded" in quiet and "ALERTS\n  none" in quiet


def test_status_json() -> None:
    document = documents.status_json(status(), "demo-p", "h")
    encoded = json.dumps(document)
    assert KEY_ID not in encoded and "hunter22" not in encoded
    assert document["pulses"][0]["error_rate"] == 0.5
    assert document["failing_tenants"][0]["consecutive_failures"] == 4
    assert document["dead_letters"]["held"] == 7
    assert {a["kind"] for a in document["alerts"]} == {
        "error_rate",
        "slow_pulse",
        "consecutive_failures",
    }
