"""Eventarc's Firestore trigger, played locally: listen to a collection group and POST each
change to a function as the binary-mode CloudEvent Eventarc sends (protobuf
``DocumentEventData`` with old and new values).

Changes present when the listener starts are not delivered (Eventarc fires on writes, not on
existing documents). Events are delivered ``concurrency`` at a time, in no guaranteed order,
and a non-2xx answer is retried with backoff without holding up the others, as Eventarc does
(with retries on) in front of a function serving concurrent requests. The bridge holds
document values in memory to supply ``old_value``; it never logs them.
"""

from __future__ import annotations

import queue
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import requests

from agenttrader.events import FIRESTORE_WRITTEN, FIRESTORE_WRITTEN_WITH_AUTH
from agenttrader.logs import get_logger
from devtools.eventarc import encode_document_event, firestore_event_headers

log = get_logger(__name__)

MAX_ATTEMPTS = 8
CONCURRENCY = 8
"""Events in flight at once: the deployed triggers serve 10 concurrent requests per instance."""


class EventarcBridge:
    """Delivers writes of documents in ``collection_group`` accepted by ``matches``."""

    def __init__(
        self,
        project: str,
        db: Any,
        collection_group: str,
        endpoint: str,
        matches: Callable[[str], bool],
        *,
        event_type: str = FIRESTORE_WRITTEN,
        narrow: Any = None,
        backoff_seconds: float = 0.5,
        concurrency: int = CONCURRENCY,
    ) -> None:
        self._project = project
        self._db = db
        self._group = collection_group
        self.endpoint = endpoint
        self._matches = matches
        self._event_type = event_type
        # A filter that keeps the listener off documents of the group it does not watch: a
        # listener on all of ``status`` would receive every sync's outcome write.
        self._narrow = narrow
        # A listener cannot know who wrote: withAuthContext events say so, as Eventarc does
        # for writes it cannot attribute.
        self._auth = ("unknown", "") if event_type == FIRESTORE_WRITTEN_WITH_AUTH else None
        self._backoff = backoff_seconds
        self._values: dict[str, dict[str, Any]] = {}
        self._queue: queue.Queue[tuple[str, Any, Any] | None] = queue.Queue()
        self._primed = threading.Event()
        self._watch: Any = None
        self._senders = [
            threading.Thread(target=self._send_loop, name=f"eventarc-bridge-{n}", daemon=True)
            for n in range(concurrency)
        ]
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self.delivered = 0
        self.failed = 0

    def _on_snapshot(self, docs: list[Any], changes: list[Any], read_time: Any) -> None:
        first = not self._primed.is_set()
        for change in changes:
            path = change.document.reference.path
            if not self._matches(path):
                continue
            old = self._values.get(path)
            if change.type.name == "REMOVED":
                new = None
                self._values.pop(path, None)
            else:
                new = change.document.to_dict() or {}
                self._values[path] = new
            if not first:
                self._queue.put((path, old, new))
        self._primed.set()

    def _send_loop(self) -> None:
        session = requests.Session()
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                self._deliver(session, *item)
            finally:
                self._queue.task_done()

    def _deliver(self, session: requests.Session, path: str, old: Any, new: Any) -> None:
        """POST one event until it is accepted (or the attempts run out, or the bridge stops)."""
        now = datetime.now(UTC)
        body = encode_document_event(self._project, path, old, new, now)
        headers = firestore_event_headers(
            self._project,
            path,
            uuid.uuid4().hex,
            now,
            event_type=self._event_type,
            auth=self._auth,
        )
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                response = session.post(self.endpoint, data=body, headers=headers, timeout=60)
                if 200 <= response.status_code < 300:
                    with self._lock:
                        self.delivered += 1
                    return
            except requests.RequestException:
                pass
            if self._stopping.wait(self._backoff * 2 ** (attempt - 1)):
                return
        with self._lock:
            self.failed += 1
        log.error("Firestore event not delivered after retries", document=path)

    def start(self, timeout: float = 30.0) -> EventarcBridge:
        for sender in self._senders:
            sender.start()
        query = self._db.collection_group(self._group)
        if self._narrow is not None:
            query = query.where(filter=self._narrow)
        self._watch = query.on_snapshot(self._on_snapshot)
        if not self._primed.wait(timeout):
            raise TimeoutError(f"Firestore listener on {self._group!r} did not start")
        return self

    def idle(self) -> bool:
        """Nothing queued and nothing being delivered."""
        with self._queue.mutex:
            return self._queue.unfinished_tasks == 0

    def stop(self) -> None:
        self._stopping.set()
        if self._watch is not None:
            self._watch.unsubscribe()
        for _ in self._senders:
            self._queue.put(None)
        for sender in self._senders:
            sender.join(timeout=5)
