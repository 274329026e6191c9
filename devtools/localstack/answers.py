"""The push bridge's acks and nacks, sent in batches by one flusher thread.

A delivery that ends queues its answer (ack on 2xx, nack otherwise); the flusher sends everything
that finished within :data:`FLUSH_INTERVAL_SECONDS` of the oldest waiting answer in one
``Acknowledge`` and one ``ModifyAckDeadline(0)`` request (ack ids of many messages each), so the
emulator serves about one answer request per interval instead of one per message.

Holding an answer back that long is safe: the delivery's timeout keeps a margin of at least
a second below the ack deadline (see :mod:`.push_bridge`), far more than the interval. An answer
that cannot be sent is not retried here: the lease runs out and Pub/Sub redelivers the message,
at least once either way (the sender logs the failure).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from agenttrader.logs import get_logger

log = get_logger(__name__)

FLUSH_INTERVAL_SECONDS = 0.05
"""Longest an answer waits for others to share its request."""
MAX_IDS_PER_REQUEST = 1000
"""Ack ids per request, as the Pub/Sub client library batches them (requests stay far below
Pub/Sub's 512 KiB limit)."""

Send = Callable[[bool, list[str]], None]
"""``send(ok, ack_ids)``: acknowledge (``ok``) or nack the messages; handles its own errors."""


class AnswerBatcher:
    """Collects answers and sends them every :data:`FLUSH_INTERVAL_SECONDS` while there are
    any; :meth:`stop` sends what is left."""

    def __init__(
        self,
        send: Send,
        *,
        interval: float = FLUSH_INTERVAL_SECONDS,
        max_ids: int = MAX_IDS_PER_REQUEST,
        name: str = "push-bridge-answers",
    ) -> None:
        if max_ids < 1:
            raise ValueError(f"max_ids must be at least 1, got {max_ids}")
        self._send = send
        self._interval = interval
        self._max_ids = max_ids
        self._cond = threading.Condition()
        self._acks: list[str] = []
        self._nacks: list[str] = []
        self._oldest: float | None = None
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    @property
    def pending(self) -> int:
        """Answers queued and not sent yet."""
        with self._cond:
            return len(self._acks) + len(self._nacks)

    def start(self) -> AnswerBatcher:
        self._thread.start()
        return self

    def add(self, ack_id: str, *, ok: bool) -> bool:
        """Queue an ack (``ok``) or a nack. ``False`` once stopping: nothing sends it any more,
        so Pub/Sub redelivers the message after its lease."""
        with self._cond:
            if self._stopping:
                return False
            (self._acks if ok else self._nacks).append(ack_id)
            if self._oldest is None:
                self._oldest = time.monotonic()
                self._cond.notify()
            return True

    def stop(self, timeout: float | None = None) -> None:
        """Send every queued answer, then end the flusher (waiting up to ``timeout`` for it).
        Idempotent; answers added from now on are refused."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread.ident is None:  # never started: send here
            self._flush(*self._take())
        else:
            self._thread.join(timeout)

    def _take(self) -> tuple[list[str], list[str]]:
        with self._cond:
            acks, nacks = self._acks, self._nacks
            self._acks, self._nacks, self._oldest = [], [], None
            return acks, nacks

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._oldest is None and not self._stopping:
                    self._cond.wait()
                if self._oldest is None:  # stopping, and everything was sent
                    return
                due = self._oldest + self._interval
                while not self._stopping and (remaining := due - time.monotonic()) > 0:
                    self._cond.wait(remaining)
            self._flush(*self._take())

    def _flush(self, acks: list[str], nacks: list[str]) -> None:
        for ok, ack_ids in ((True, acks), (False, nacks)):
            for start in range(0, len(ack_ids), self._max_ids):
                try:
                    self._send(ok, ack_ids[start : start + self._max_ids])
                except Exception:  # the flusher must outlive a faulty sender
                    log.exception("push bridge: sending answers failed unexpectedly")
