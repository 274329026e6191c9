"""The push bridge's hand-off: pulls sized to the idle delivery threads, each pulled message
handed straight to one of them."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from devtools.localstack.pull_gate import HandOff
from tests.pipeline_fixtures import wait_for


class Workers:
    """Threads that take items off ``handoff`` until it closes, recording what they took."""

    def __init__(self, handoff: HandOff[str], count: int) -> None:
        self.taken: list[str] = []
        self.lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self._run, args=(handoff,), daemon=True) for _ in range(count)
        ]
        for thread in self.threads:
            thread.start()

    def _run(self, handoff: HandOff[str]) -> None:
        while (item := handoff.take()) is not None:
            with self.lock:
                self.taken.append(item)

    def count(self) -> int:
        with self.lock:
            return len(self.taken)

    def join(self) -> None:
        for thread in self.threads:
            thread.join(timeout=10)
        assert not any(t.is_alive() for t in self.threads)


def _in_thread(call: Callable[[], object]) -> tuple[threading.Thread, list[object]]:
    results: list[object] = []
    thread = threading.Thread(target=lambda: results.append(call()), daemon=True)
    thread.start()
    return thread, results


def test_waiting_workers_are_free_and_each_given_item_is_taken_once() -> None:
    handoff: HandOff[str] = HandOff()
    workers = Workers(handoff, 3)
    wait_for(lambda: handoff.free == 3, timeout=10)
    assert handoff.give(["a", "b"]) == []
    wait_for(lambda: workers.count() == 2, timeout=10)
    wait_for(lambda: handoff.free == 3, timeout=10)  # both came back for more
    assert sorted(workers.taken) == ["a", "b"]
    handoff.close()
    workers.join()
    assert handoff.free == 0


def test_more_items_than_free_workers_are_refused() -> None:
    handoff: HandOff[str] = HandOff()
    workers = Workers(handoff, 1)
    wait_for(lambda: handoff.free == 1, timeout=10)
    with pytest.raises(ValueError, match="2 items for 1 free workers"):
        handoff.give(["a", "b"])
    handoff.close()
    workers.join()
    assert workers.taken == []


def test_the_free_count_stays_exact_under_a_stream_of_items() -> None:
    """Workers coming back from an item race those woken for the next one; whoever takes it,
    the free count always equals the workers waiting, so no capacity is ever lost."""
    handoff: HandOff[str] = HandOff()
    workers = Workers(handoff, 4)
    items = [f"m{i}" for i in range(2000)]

    def puller() -> None:
        left = list(items)
        while left:
            free = handoff.wait_free(1, 0)
            batch, left = left[:free], left[free:]
            assert handoff.give(batch) == []

    thread, _ = _in_thread(puller)
    wait_for(lambda: workers.count() == len(items), timeout=60)
    thread.join(timeout=10)
    wait_for(lambda: handoff.free == 4, timeout=10)
    assert sorted(workers.taken) == sorted(items)
    handoff.close()
    workers.join()


def test_wait_free_waits_for_a_worker() -> None:
    handoff: HandOff[str] = HandOff()
    thread, results = _in_thread(lambda: handoff.wait_free(1, 0))
    workers = Workers(handoff, 1)
    thread.join(timeout=10)
    assert results == [1]
    handoff.close()
    workers.join()


def test_wait_free_lingers_for_the_capacity_it_wants() -> None:
    handoff: HandOff[str] = HandOff()
    first = Workers(handoff, 1)
    wait_for(lambda: handoff.free == 1, timeout=10)
    thread, results = _in_thread(lambda: handoff.wait_free(2, 60))
    second = Workers(handoff, 1)
    thread.join(timeout=30)
    assert results == [2]  # not 1: it waited for the second worker
    handoff.close()
    first.join()
    second.join()


def test_wait_free_settles_for_what_is_free_when_the_linger_ends() -> None:
    handoff: HandOff[str] = HandOff()
    workers = Workers(handoff, 1)
    wait_for(lambda: handoff.free == 1, timeout=10)
    assert handoff.wait_free(3, 0.01) == 1
    handoff.close()
    workers.join()


def test_close_releases_everyone_and_refuses_later_items() -> None:
    handoff: HandOff[str] = HandOff()
    workers = Workers(handoff, 2)
    wait_for(lambda: handoff.free == 2, timeout=10)
    assert handoff.give(["given before close"]) == []
    handoff.close()
    workers.join()
    # Given before the close: still delivered, not lost.
    assert workers.taken == ["given before close"]
    assert handoff.give(["late"]) == ["late"]
    assert handoff.take() is None
    assert handoff.wait_free(1, 10) == 0
    assert handoff.free == 0


def test_close_wakes_a_puller_waiting_for_capacity() -> None:
    handoff: HandOff[str] = HandOff()
    thread, results = _in_thread(lambda: handoff.wait_free(1, 0))
    handoff.close()
    thread.join(timeout=10)
    assert results == [0]
