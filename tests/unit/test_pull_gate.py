"""The idle gate of the push bridge: one watcher polls, the others park until work appears."""

from __future__ import annotations

import threading

from agenttrader.localstack.pull_gate import IdleGate
from tests.pipeline_fixtures import wait_for


def _park(gate: IdleGate, results: list[bool]) -> threading.Thread:
    thread = threading.Thread(target=lambda: results.append(gate.idle(False)), daemon=True)
    thread.start()
    return thread


def test_the_first_idle_thread_watches_and_the_others_park() -> None:
    gate = IdleGate()
    assert gate.idle(False) is True  # nobody watched: this thread polls on
    assert gate.watched
    results: list[bool] = []
    threads = [_park(gate, results) for _ in range(3)]
    wait_for(lambda: gate.parked == 3, timeout=10)
    assert results == []
    gate.close()
    for thread in threads:
        thread.join(timeout=10)
    assert results == [False, False, False]


def test_a_watcher_stays_the_watcher_while_it_finds_nothing() -> None:
    gate = IdleGate()
    assert gate.idle(False) is True
    assert gate.idle(True) is True
    assert gate.parked == 0


def test_found_hands_over_the_watch_and_wakes_exactly_one_parked_thread() -> None:
    gate = IdleGate()
    assert gate.idle(False) is True
    results: list[bool] = []
    threads = [_park(gate, results) for _ in range(2)]
    wait_for(lambda: gate.parked == 2, timeout=10)
    gate.found(True)  # the watcher's pull brought a message
    wait_for(lambda: len(results) == 1, timeout=10)
    assert results == [False]
    assert gate.parked == 1
    assert not gate.watched
    # The woken thread found nothing either: it becomes the watcher instead of parking.
    assert gate.idle(False) is True
    gate.close()
    for thread in threads:
        thread.join(timeout=10)
    assert results == [False, False]


def test_a_closed_gate_never_parks() -> None:
    gate = IdleGate()
    gate.close()
    assert gate.idle(False) is False
    assert gate.idle(False) is False
    assert gate.parked == 0
