"""The push bridge without an emulator: the push body, and an unreachable emulator."""

from __future__ import annotations

import base64
import logging
from datetime import UTC, datetime

import pytest
from google.pubsub_v1.types import PubsubMessage, ReceivedMessage

from agenttrader.emulators import free_port
from agenttrader.localstack.push_bridge import PushBridge, push_body
from tests.pipeline_fixtures import wait_for

SUBSCRIPTION = "projects/demo-x/subscriptions/user-sync-worker"


def _received(attempt: int) -> ReceivedMessage:
    return ReceivedMessage(
        ack_id="ack-1",
        delivery_attempt=attempt,
        message=PubsubMessage(
            data=b'{"uid": "u1"}',
            attributes={"uid": "u1"},
            message_id="42",
            publish_time=datetime(2026, 11, 27, 8, 0, 1, 250000, tzinfo=UTC),
        ),
    )


@pytest.mark.parametrize("raw", [False, True])
def test_push_body_is_what_pubsub_push_sends(raw: bool) -> None:
    received = _received(3)
    body = push_body(SUBSCRIPTION, ReceivedMessage.pb(received) if raw else received)
    assert body == {
        "subscription": SUBSCRIPTION,
        "message": {
            "data": base64.b64encode(b'{"uid": "u1"}').decode(),
            "attributes": {"uid": "u1"},
            "messageId": "42",
            "message_id": "42",
            "publishTime": "2026-11-27T08:00:01.250000Z",
            "publish_time": "2026-11-27T08:00:01.250000Z",
        },
        "deliveryAttempt": 3,
    }


def test_push_body_leaves_out_the_attempt_pubsub_does_not_count() -> None:
    # Without a dead-letter policy Pub/Sub counts no attempts (the field is 0).
    assert "deliveryAttempt" not in push_body(SUBSCRIPTION, _received(0))


@pytest.mark.parametrize(("concurrency", "timeout"), [(0, 60.0), (4, 0.0)])
def test_bad_settings_are_refused(
    concurrency: int, timeout: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", f"127.0.0.1:{free_port()}")
    with pytest.raises(ValueError, match=r"concurrency|timeout"):
        PushBridge(
            "demo-x",
            "user-sync-worker",
            "http://127.0.0.1:9/",
            concurrency=concurrency,
            timeout=timeout,
        )


def test_an_unreachable_emulator_is_logged_once_and_retried_by_one_thread(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", f"127.0.0.1:{free_port()}")  # nobody listens
    caplog.set_level(logging.INFO, logger="agenttrader.localstack.push_bridge")
    bridge = PushBridge("demo-x", "user-sync-worker", "http://127.0.0.1:9/", concurrency=8)
    bridge.start()
    try:
        wait_for(lambda: bridge.stats.pull_errors >= 4, timeout=30)
        # Every thread tried once; then all but the watcher park instead of retrying.
        wait_for(lambda: bridge._gate.parked == 7, timeout=30)
        assert all(t.is_alive() for t in bridge._threads)
    finally:
        bridge.stop()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "pull failed (ServiceUnavailable" in warnings[0].getMessage()
    assert not any(t.is_alive() for t in bridge._threads)
    assert bridge.stats.delivered == 0
