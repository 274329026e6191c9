"""The console callables' clients: the instance's Firestore and publisher
(:class:`agenttrader.deps.Deps`) and a Pub/Sub subscriber for the dead-letter hold, each built
lazily, once per instance, and replaceable in tests."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from agenttrader import runtime, topology
from console.hold import HoldSubscription

if TYPE_CHECKING:
    from agenttrader.deps import Deps
    from console.hold import Subscriber


class Console:
    """What the admin callables work with, for one project."""

    def __init__(self, deps: Deps, subscriber: Subscriber | None = None) -> None:
        self.deps = deps
        self._subscriber = subscriber
        self._lock = threading.Lock()

    @property
    def project(self) -> str:
        return self.deps.settings.project

    @property
    def hold_path(self) -> str:
        return f"projects/{self.project}/subscriptions/{topology.USER_SYNC_DEAD_LETTER_HOLD}"

    @property
    def user_sync_topic(self) -> str:
        return self.deps.topic_path(topology.USER_SYNC)

    def subscriber(self) -> Subscriber:
        if self._subscriber is None:
            with self._lock:
                if self._subscriber is None:
                    import google.cloud.pubsub_v1 as pubsub_v1

                    self._subscriber = pubsub_v1.SubscriberClient()
        return self._subscriber

    def hold(self) -> HoldSubscription:
        """A view of ``user-sync-dead-letter-hold`` for one call (the client is shared)."""
        return HoldSubscription(self.subscriber(), self.hold_path)


_console: Console | None = None
_lock = threading.Lock()


def console() -> Console:
    """The instance's console clients, over :func:`agenttrader.runtime.deps` (a replaced
    ``Deps`` gives a new one)."""
    global _console  # noqa: PLW0603 - one set of clients per instance, like agenttrader.deps
    deps = runtime.deps()
    with _lock:
        if _console is None or _console.deps is not deps:
            _console = Console(deps)
        return _console


def set_console(replacement: Console | None) -> None:
    """Replace the instance's clients (tests); ``None`` builds them again on next use."""
    global _console  # noqa: PLW0603 - one set of clients per instance, like agenttrader.deps
    with _lock:
        _console = replacement
