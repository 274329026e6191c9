"""Cloud Scheduler, played locally: publish to ``sync-tick`` every ``interval`` seconds."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime

from agenttrader.messages import format_timestamp
from agenttrader.topology import SYNC_TICK


class Ticker:
    """Publishes a tick at start and then every ``interval`` seconds until stopped."""

    def __init__(self, project: str, interval: float) -> None:
        from google.cloud import pubsub_v1

        self._publisher = pubsub_v1.PublisherClient()
        self._topic = self._publisher.topic_path(project, SYNC_TICK)
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ticker", daemon=True)
        self.ticks = 0

    def tick(self) -> str:
        """Publish one tick now; returns its message id."""
        body = json.dumps({"scheduled_at": format_timestamp(datetime.now(UTC))}).encode()
        message_id = str(self._publisher.publish(self._topic, body).result(timeout=30))
        self.ticks += 1
        return message_id

    def _run(self) -> None:
        while not self._stop.is_set():
            self.tick()
            self._stop.wait(self._interval)

    def start(self) -> Ticker:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
