"""Publishing a pulse in requests (:func:`publisher.bulk_publish.publish_all`) against a fake
transport: request sizes, what is counted as not published, and the progress it reports (the
published prefix, which a killed fan-out resumes after)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from agenttrader.deps import Deps
from agenttrader.messages import Reason, SyncRequest
from agenttrader.settings import Settings
from publisher.bulk_publish import MESSAGES_PER_REQUEST, publish_all

AT = datetime(2026, 1, 5, 15, 30, tzinfo=UTC)


class FakeApi:
    """``PublisherClient.api``: answers each publish request, failing the ones asked to; the
    first requests answer last, so completion order differs from request order."""

    def __init__(self, failing: set[str]) -> None:
        self.failing = failing
        self.sizes: list[int] = []
        self._lock = threading.Lock()

    def publish(self, request: Any, timeout: float) -> Any:
        uids = [m.attributes["uid"] for m in request.messages]
        with self._lock:
            self.sizes.append(len(uids))
        time.sleep(0.02 if uids[0] < "u-04" else 0)
        if self.failing & set(uids):
            raise ConnectionError("publish failed")
        return type("Response", (), {"message_ids": [f"id-{u}" for u in uids]})()


class FakePublisher:
    def __init__(self, api: FakeApi) -> None:
        self.api = api


def deps_with(api: FakeApi) -> Deps:
    return Deps(Settings(project="p"), publisher=FakePublisher(api))  # type: ignore[arg-type]


def requests(n: int) -> list[SyncRequest]:
    return [SyncRequest(f"u-{i:02d}", Reason.SCHEDULE, AT, pulse_id="p") for i in range(n)]


@pytest.mark.parametrize(
    ("failing", "failed", "progress"),
    [
        (set(), 0, [2, 4, 6, 8, 9]),
        ({"u-05"}, 2, [2, 4]),  # the prefix stops before the failed request
        ({"u-00"}, 2, []),
        ({"u-08"}, 1, [2, 4, 6, 8]),
    ],
)
def test_progress_is_the_published_prefix(
    failing: set[str], failed: int, progress: list[int]
) -> None:
    api = FakeApi(failing)
    seen: list[int] = []
    caller = threading.get_ident()

    def on_progress(n: int) -> None:
        assert threading.get_ident() == caller  # on the caller's thread: it may write
        seen.append(n)

    assert (
        publish_all(deps_with(api), requests(9), on_progress=on_progress, per_request=2) == failed
    )
    assert seen == progress
    assert sorted(api.sizes) == [1, 2, 2, 2, 2]


def test_requests_hold_at_most_pubsubs_maximum() -> None:
    api = FakeApi(set())
    assert publish_all(deps_with(api), requests(3)) == 0
    assert api.sizes == [3]
    for wrong in (0, MESSAGES_PER_REQUEST + 1):
        with pytest.raises(ValueError, match="per_request"):
            publish_all(deps_with(api), requests(3), per_request=wrong)
    assert publish_all(deps_with(api), []) == 0
