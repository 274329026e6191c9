"""The push bridge's answers: acks and nacks of many deliveries sent in one request per kind."""

from __future__ import annotations

import logging
import threading

import pytest

from devtools.localstack.answers import AnswerBatcher
from tests.pipeline_fixtures import wait_for


class Sent:
    """A sender recording each request as ``(ok, ack_ids)``; fails the first ``fail`` ones."""

    def __init__(self, fail: int = 0) -> None:
        self.requests: list[tuple[bool, list[str]]] = []
        self.fail = fail
        self.lock = threading.Lock()

    def __call__(self, ok: bool, ack_ids: list[str]) -> None:
        with self.lock:
            if self.fail:
                self.fail -= 1
                raise RuntimeError("sender broke")
            self.requests.append((ok, list(ack_ids)))

    def snapshot(self) -> list[tuple[bool, list[str]]]:
        with self.lock:
            return list(self.requests)


def test_answers_waiting_together_go_out_in_one_request_per_kind() -> None:
    sent = Sent()
    batcher = AnswerBatcher(sent, interval=60)
    for i in range(5):
        assert batcher.add(f"ack-{i}", ok=True)
    for i in range(3):
        assert batcher.add(f"nack-{i}", ok=False)
    batcher.start()
    assert batcher.pending == 8  # the interval (60 s) has not passed
    batcher.stop(timeout=10)  # stopping sends at once
    assert sent.snapshot() == [
        (True, [f"ack-{i}" for i in range(5)]),
        (False, [f"nack-{i}" for i in range(3)]),
    ]
    assert batcher.pending == 0


def test_the_flusher_sends_once_the_interval_has_passed() -> None:
    sent = Sent()
    batcher = AnswerBatcher(sent, interval=0.01).start()
    try:
        batcher.add("a", ok=True)
        wait_for(lambda: sent.snapshot() == [(True, ["a"])], timeout=10)
        batcher.add("b", ok=False)
        wait_for(lambda: len(sent.snapshot()) == 2, timeout=10)
        assert sent.snapshot()[1] == (False, ["b"])
    finally:
        batcher.stop(timeout=10)


def test_large_batches_are_split_into_requests_of_max_ids() -> None:
    sent = Sent()
    batcher = AnswerBatcher(sent, max_ids=2)
    for i in range(5):
        batcher.add(str(i), ok=True)
    batcher.stop()  # never started: stop sends in the caller
    assert sent.snapshot() == [(True, ["0", "1"]), (True, ["2", "3"]), (True, ["4"])]


def test_answers_after_stop_are_refused() -> None:
    sent = Sent()
    batcher = AnswerBatcher(sent).start()
    batcher.stop(timeout=10)
    batcher.stop(timeout=10)  # idempotent
    assert batcher.add("late", ok=True) is False
    assert sent.snapshot() == []
    assert batcher.pending == 0


def test_a_sender_that_raises_does_not_end_the_flusher(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="devtools.localstack.answers")
    sent = Sent(fail=1)
    batcher = AnswerBatcher(sent, interval=0.01).start()
    try:
        batcher.add("lost", ok=True)
        wait_for(lambda: sent.fail == 0 and batcher.pending == 0, timeout=10)
        batcher.add("after", ok=True)
        wait_for(lambda: sent.snapshot() == [(True, ["after"])], timeout=10)
    finally:
        batcher.stop(timeout=10)
    assert [r.getMessage() for r in caplog.records] == [
        "push bridge: sending answers failed unexpectedly"
    ]


def test_max_ids_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_ids"):
        AnswerBatcher(Sent(), max_ids=0)
