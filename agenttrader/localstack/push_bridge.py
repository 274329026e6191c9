"""Pub/Sub push, played locally: streaming-pull a subscription and POST each message to a
function exactly as Pub/Sub push does.

The emulator's own push loop delivers at most 2 requests at a time; this bridge delivers with
Pub/Sub-like concurrency. It acks on 2xx and nacks otherwise, so the emulator's retry and
dead-letter policies stay in force.
"""

from __future__ import annotations

import base64
import contextlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import requests

from agenttrader.logs import get_logger
from agenttrader.messages import format_timestamp

log = get_logger(__name__)

DRAIN_SECONDS = 5.0
"""How long stopping waits for deliveries in flight."""


def push_body(subscription_path: str, message: Any) -> dict[str, Any]:
    """The JSON body Pub/Sub push sends for ``message`` (a received pull message)."""
    publish_time = format_timestamp(message.publish_time)
    body: dict[str, Any] = {
        "subscription": subscription_path,
        "message": {
            "data": base64.b64encode(message.data).decode(),
            "attributes": dict(message.attributes),
            "messageId": message.message_id,
            "message_id": message.message_id,
            "publishTime": publish_time,
            "publish_time": publish_time,
        },
    }
    if message.delivery_attempt is not None:
        body["deliveryAttempt"] = message.delivery_attempt
    return body


@dataclass
class BridgeStats:
    """Counts since start (for the terminal view, tests and benchmarks)."""

    delivered: int = 0
    acked: int = 0
    nacked: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, ok: bool) -> None:
        with self.lock:
            self.delivered += 1
            if ok:
                self.acked += 1
            else:
                self.nacked += 1


class PushBridge:
    """Delivers ``subscription`` to ``endpoint`` with up to ``concurrency`` requests in flight."""

    def __init__(
        self,
        project: str,
        subscription: str,
        endpoint: str,
        *,
        concurrency: int = 32,
        timeout: float = 60.0,
    ) -> None:
        from google.cloud import pubsub_v1

        self._subscriber = pubsub_v1.SubscriberClient()
        self.subscription_path = self._subscriber.subscription_path(project, subscription)
        self.endpoint = endpoint
        self._concurrency = concurrency
        self._timeout = timeout
        self._local = threading.local()
        self._future: Any = None
        self._executor: ThreadPoolExecutor | None = None
        self._in_flight = 0
        self._lock = threading.Lock()
        self.stats = BridgeStats()

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            self._local.session = session
        return session

    def _deliver(self, message: Any) -> None:
        with self._lock:
            self._in_flight += 1
        try:
            self._post(message)
        finally:
            with self._lock:
                self._in_flight -= 1

    def _post(self, message: Any) -> None:
        try:
            response = self._session().post(
                self.endpoint,
                json=push_body(self.subscription_path, message),
                timeout=self._timeout,
            )
            ok = 200 <= response.status_code < 300
        except requests.RequestException as err:
            log.warning(f"push to {self.endpoint} failed: {type(err).__name__}")
            ok = False
        if ok:
            message.ack()
        else:
            message.nack()
        self.stats.add(ok)

    def start(self) -> PushBridge:
        from google.cloud import pubsub_v1
        from google.cloud.pubsub_v1.subscriber.scheduler import ThreadScheduler

        executor = ThreadPoolExecutor(
            max_workers=self._concurrency, thread_name_prefix="push-bridge"
        )
        self._executor = executor
        self._future = self._subscriber.subscribe(
            self.subscription_path,
            self._deliver,
            flow_control=pubsub_v1.types.FlowControl(max_messages=self._concurrency),
            scheduler=ThreadScheduler(executor),
        )
        return self

    def stop(self) -> None:
        if self._future is not None:
            self._future.cancel()
            # A cancelled stream ends with an error by design.
            with contextlib.suppress(Exception):
                self._future.result(timeout=10)
            # Let deliveries in flight finish (for a few seconds) before the functions behind
            # them are stopped; whatever does not finish is nacked and redelivered later.
            if self._executor is not None:
                self._executor.shutdown(wait=False, cancel_futures=True)
            deadline = time.monotonic() + DRAIN_SECONDS
            while self._in_flight and time.monotonic() < deadline:
                time.sleep(0.05)
            self._future = None
        self._subscriber.close()
