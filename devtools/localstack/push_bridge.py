"""Pub/Sub push, played locally: pull a subscription and POST each message to a function exactly
as Pub/Sub push does.

The emulator's own push loop delivers at most 2 requests at a time; this bridge delivers with
Pub/Sub-like concurrency. It acks on 2xx and nacks otherwise, so the emulator's retry and
dead-letter policies stay in force.

How it pulls: one puller thread and ``concurrency`` delivery threads. The puller waits until
delivery threads are idle, pulls at most as many messages as there are idle threads (at most
:data:`MAX_PULL_MESSAGES`) in one synchronous ``Pull`` and hands each message straight to an
idle thread (:mod:`.pull_gate`), which POSTs it at once. So a message is leased only while a
thread delivers it: nothing waits un-delivered in a client-side queue, where a lease could
lapse and the emulator redeliver the message. While most threads are busy, the puller lingers up to
:data:`PULL_LINGER_SECONDS` for more of them to become idle before it pulls, so a busy
subscription is pulled in batches rather than a message at a time; the messages wait in Pub/Sub
meanwhile, unleased.

Answers are batched too (:mod:`.answers`): a flusher sends the acks, and the nacks
(``ModifyAckDeadline(0)``), of every delivery that ended within the last
:data:`~.answers.FLUSH_INTERVAL_SECONDS` in one request each. Together this takes the emulator
from two requests per message (a pull of one, an answer of one) to a fraction of one.

Why no lease extension: the POST's timeout is kept below the subscription's ack deadline (read
from the subscription) by :data:`LEASE_MARGIN` of it, at least a second, as with real push,
where the ack deadline is the push request's timeout; a delivery that takes longer counts as
failed and is nacked, so a lease cannot lapse while the bridge holds a message (the answer's
wait for its batch is far shorter than the margin) and there is nothing to extend.

An empty subscription costs one open pull at a time (the puller's); errors of the emulator are
logged once per kind and retried with backoff; no thread ever dies of them. A failed answer
request is logged once per kind as well; its messages are redelivered after their leases, never
lost.
"""

from __future__ import annotations

import base64
import random
import threading
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, timedelta
from typing import TYPE_CHECKING, Any, Protocol

import requests
from google.api_core.retry import Retry, if_transient_error

from agenttrader.logs import get_logger
from agenttrader.messages import format_timestamp
from devtools.localstack.answers import AnswerBatcher
from devtools.localstack.pull_gate import HandOff
from devtools.localstack.subscriber import subscriber_client

if TYPE_CHECKING:
    from google.pubsub_v1.types import Subscription

log = get_logger(__name__)

DRAIN_SECONDS = 5.0
"""How long stopping waits for deliveries in flight."""
PULL_TIMEOUT_SECONDS = 2.0
"""Deadline of one ``Pull``. The emulator answers an empty pull about 0.9 s before the
deadline, so an idle puller polls about once a second and stopping waits about 1 s for it."""
MAX_PULL_MESSAGES = 32
"""Most messages one ``Pull`` asks for (never more than the idle delivery threads)."""
PULL_LINGER_SECONDS = 0.2
"""How long the puller waits, once a delivery thread is idle, for more to become idle (up to a
quarter of ``concurrency``, at most :data:`MAX_PULL_MESSAGES`) before it pulls. Each ``Pull``
costs the emulator milliseconds of CPU whatever it brings, so fuller pulls cost it less per
message; waiting longer than this gained nothing against a saturated endpoint. The
messages wait in Pub/Sub meanwhile, not leased, and the pipeline's throughput stays the same."""
MIN_IDLE_POLL_SECONDS = 0.5
"""An empty pull that came back sooner than this is followed by a pause up to it: no busy loop
even against a server that answers empty pulls at once."""
LEASE_MARGIN = 0.1
"""Share of the ack deadline kept free between a delivery's timeout and the lease's end."""
MIN_LEASE_MARGIN_SECONDS = 1.0
"""The margin's floor, covering the answer's wait for its batch and the request itself."""
RPC_TIMEOUT_SECONDS = 10.0
"""Deadline of ``Acknowledge``, ``ModifyAckDeadline`` and ``GetSubscription``, retries of
transient errors included."""
BACKOFF_FIRST_SECONDS = 0.2
BACKOFF_MAX_SECONDS = 5.0
_ANSWER_RETRY = Retry(
    predicate=if_transient_error, initial=0.1, maximum=1.0, timeout=RPC_TIMEOUT_SECONDS
)
"""A lost ack is a duplicate delivery later: transient errors are retried, briefly."""
DEFAULT_MAX_BACKOFF_SECONDS = 600.0
"""Pub/Sub's maximum backoff when a retry policy names none."""
ACKED_MEMORY = 100_000
"""Message ids of acked deliveries remembered to count duplicates (the newest ones)."""


class Subscriber(Protocol):
    """What the bridge calls of a ``pubsub_v1.SubscriberClient``."""

    def subscription_path(self, project: str, subscription: str) -> str: ...

    def get_subscription(self, *, subscription: str, timeout: float, retry: Any) -> Any: ...

    def pull(self, *, request: dict[str, Any], timeout: float, retry: Any) -> Any: ...

    def acknowledge(self, *, request: dict[str, Any], timeout: float, retry: Any) -> Any: ...

    def modify_ack_deadline(
        self, *, request: dict[str, Any], timeout: float, retry: Any
    ) -> Any: ...

    def close(self) -> None: ...


def push_body(subscription_path: str, received: Any) -> dict[str, Any]:
    """The JSON body Pub/Sub push sends for ``received``, a ``ReceivedMessage`` of a ``Pull``
    response (proto-plus or its raw protobuf)."""
    from google.pubsub_v1.types import ReceivedMessage

    if isinstance(received, ReceivedMessage):
        received = ReceivedMessage.pb(received)
    message = received.message
    publish_time = format_timestamp(message.publish_time.ToDatetime(tzinfo=UTC))
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
    # 0 means "not counted": Pub/Sub counts attempts only with a dead-letter policy.
    if received.delivery_attempt:
        body["deliveryAttempt"] = received.delivery_attempt
    return body


@dataclass
class BridgeStats:
    """Counts since start (for the terminal view, tests and benchmarks)."""

    delivered: int = 0
    acked: int = 0
    """Deliveries answered 2xx; their acks reach Pub/Sub in the next batch."""
    nacked: int = 0
    duplicates: int = 0
    """Deliveries of a message id that was acked before or was being delivered at the time:
    work a faithful push would not have caused (the worker ignores them, at a cost)."""
    pull_errors: int = 0
    pulls: int = 0
    """``Pull`` requests answered (empty ones included)."""
    answer_requests: int = 0
    """``Acknowledge`` and ``ModifyAckDeadline`` requests that went through."""
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, ok: bool, *, duplicate: bool = False) -> None:
        with self.lock:
            self.delivered += 1
            if ok:
                self.acked += 1
            else:
                self.nacked += 1
            if duplicate:
                self.duplicates += 1

    def add_pull(self, *, failed: bool = False) -> None:
        with self.lock:
            if failed:
                self.pull_errors += 1
            else:
                self.pulls += 1

    def add_answer_request(self) -> None:
        with self.lock:
            self.answer_requests += 1


class _Ledger:
    """Message ids being delivered now and the last :data:`ACKED_MEMORY` acked ones."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._in_flight: Counter[str] = Counter()
        self._acked: OrderedDict[str, None] = OrderedDict()

    def begin(self, message_id: str) -> bool:
        """Record a delivery; ``True`` when it duplicates an acked or running one."""
        with self._lock:
            duplicate = message_id in self._acked or self._in_flight[message_id] > 0
            self._in_flight[message_id] += 1
            return duplicate

    def end(self, message_id: str, acked: bool) -> None:
        with self._lock:
            self._in_flight[message_id] -= 1
            if self._in_flight[message_id] <= 0:
                del self._in_flight[message_id]
            if acked:
                self._acked[message_id] = None
                self._acked.move_to_end(message_id)
                while len(self._acked) > ACKED_MEMORY:
                    self._acked.popitem(last=False)

    @property
    def in_flight(self) -> int:
        with self._lock:
            return sum(self._in_flight.values())


class _OncePerKind:
    """Logs the first failure of each kind until that operation succeeds again."""

    def __init__(self, subscription_path: str) -> None:
        self._subscription = subscription_path
        self._lock = threading.Lock()
        self._failing: set[str] = set()

    def failed(self, operation: str, err: BaseException) -> None:
        kind = f"{operation} {type(err).__name__}"
        with self._lock:
            if kind in self._failing:
                return
            self._failing.add(kind)
        detail = str(err).splitlines()[0][:200] if str(err) else ""
        log.warning(
            f"push bridge: {operation} failed ({type(err).__name__}: {detail}); retrying, "
            "further failures of this kind are not logged until it succeeds again",
            subscription=self._subscription,
        )

    def succeeded(self, operation: str) -> None:
        if not self._failing:  # the common case, without the lock
            return
        with self._lock:
            kinds = {k for k in self._failing if k.split(" ", 1)[0] == operation}
            self._failing -= kinds
        if kinds:
            log.info(f"push bridge: {operation} works again", subscription=self._subscription)


@dataclass(frozen=True)
class _Policy:
    """What the bridge needs of the subscription's settings."""

    ack_deadline: float
    max_delivery_attempts: int | None
    """Of the dead-letter policy; ``None`` without one."""
    max_backoff: float
    """Longest wait before a nacked message is redelivered: the retry policy's maximum
    (600 s when it names none); 0 without a retry policy (redelivered at once)."""

    @classmethod
    def of(cls, subscription: Subscription) -> _Policy:
        dead_letter = subscription.dead_letter_policy
        retry = subscription.retry_policy
        max_backoff = 0.0
        if retry:
            max_backoff = _seconds(retry.maximum_backoff) or DEFAULT_MAX_BACKOFF_SECONDS
        return cls(
            ack_deadline=float(subscription.ack_deadline_seconds),
            max_delivery_attempts=(
                dead_letter.max_delivery_attempts if dead_letter.dead_letter_topic else None
            ),
            max_backoff=max_backoff,
        )

    @property
    def delivery_limit(self) -> float:
        """Longest a delivery may take: the ack deadline less the lease margin."""
        margin = max(self.ack_deadline * LEASE_MARGIN, MIN_LEASE_MARGIN_SECONDS)
        return max(self.ack_deadline - margin, self.ack_deadline / 2)

    def is_last_attempt(self, delivery_attempt: int) -> bool:
        limit = self.max_delivery_attempts
        return limit is not None and delivery_attempt >= limit


def _seconds(value: Any) -> float:
    """A proto-plus Duration reads back as a timedelta (or a Duration message)."""
    if isinstance(value, timedelta):
        return value.total_seconds()
    return float(value.seconds) + float(value.nanos) / 1e9


class _Backoff:
    """Exponential with full jitter between :data:`BACKOFF_FIRST_SECONDS` and the maximum."""

    def __init__(self) -> None:
        self._next = BACKOFF_FIRST_SECONDS

    def reset(self) -> None:
        self._next = BACKOFF_FIRST_SECONDS

    def delay(self) -> float:
        delay = random.uniform(self._next / 2, self._next)
        self._next = min(self._next * 2, BACKOFF_MAX_SECONDS)
        return delay


class PushBridge:
    """Delivers ``subscription`` to ``endpoint`` with up to ``concurrency`` requests in flight;
    a request gets ``timeout`` seconds, at most 90 % of the subscription's ack deadline.

    ``subscriber`` defaults to a ``pubsub_v1.SubscriberClient`` for the emulator named by
    ``PUBSUB_EMULATOR_HOST`` that takes messages of any size Pub/Sub allows
    (:mod:`.subscriber`); the bridge closes it on :meth:`stop`.
    """

    def __init__(
        self,
        project: str,
        subscription: str,
        endpoint: str,
        *,
        concurrency: int = 32,
        timeout: float = 60.0,
        subscriber: Subscriber | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        if subscriber is None:
            subscriber = subscriber_client()
        self._subscriber: Subscriber = subscriber
        self.subscription_path: str = self._subscriber.subscription_path(project, subscription)
        self.endpoint = endpoint
        self._concurrency = concurrency
        self._timeout = timeout
        self._batch_wanted = max(1, min(MAX_PULL_MESSAGES, concurrency // 4))
        self._policy: _Policy | None = None
        self._last_final_nack: float | None = None
        self._stopping = threading.Event()
        self._handoff: HandOff[tuple[Any, float]] = HandOff()
        self._answers = AnswerBatcher(self._send_answers)
        self._ledger = _Ledger()
        self._errors = _OncePerKind(self.subscription_path)
        self._threads: list[threading.Thread] = []
        self._stopped = False
        self.stats = BridgeStats()

    @property
    def in_flight(self) -> int:
        """Deliveries (POSTs) running now."""
        return self._ledger.in_flight

    def start(self) -> PushBridge:
        if self._threads or self._stopped:
            raise RuntimeError("a PushBridge starts once")
        self._answers.start()
        for i in range(self._concurrency):
            self._threads.append(
                threading.Thread(target=self._deliver_loop, name=f"push-bridge-{i}", daemon=True)
            )
        self._threads.append(
            threading.Thread(target=self._pull_loop, name="push-bridge-pull", daemon=True)
        )
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        """Stop pulling, let deliveries in flight finish for up to :data:`DRAIN_SECONDS`
        (messages pulled meanwhile are nacked), send every answer, then close the client.
        Idempotent.

        The emulator forwards a message to the dead-letter topic only when a pull comes in
        after its last attempt's backoff. So when a message was just nacked at its last
        attempt, the bridge first keeps pulling (and delivering) until that backoff has
        passed, for at most :data:`DRAIN_SECONDS`: a stopped stack leaves nothing half
        dead-lettered behind.
        """
        if self._stopped:
            return
        self._stopped = True
        self._let_dead_letters_out()
        self._stopping.set()
        self._handoff.close()
        deadline = time.monotonic() + max(DRAIN_SECONDS, PULL_TIMEOUT_SECONDS)
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        running = sum(1 for t in self._threads if t.is_alive())
        if running:
            log.warning(
                f"push bridge stopped with {running} threads still running; Pub/Sub "
                "redelivers the messages they hold after the ack deadline",
                subscription=self.subscription_path,
            )
        self._answers.stop(timeout=RPC_TIMEOUT_SECONDS + 1)
        self._subscriber.close()

    def _let_dead_letters_out(self) -> None:
        last, policy = self._last_final_nack, self._policy
        if last is None or policy is None or not self._threads:
            return
        # After the backoff, the puller's pull under way ends and the next one forwards.
        until = last + policy.max_backoff + 2 * PULL_TIMEOUT_SECONDS
        time.sleep(max(0.0, min(until - time.monotonic(), DRAIN_SECONDS)))

    # --- the puller --------------------------------------------------------------------------

    def _pull_loop(self) -> None:
        backoff = _Backoff()
        while not self._stopping.is_set():
            free = self._handoff.wait_free(self._batch_wanted, PULL_LINGER_SECONDS)
            if free == 0:  # closed: stopping
                return
            started = time.monotonic()
            asked = min(free, MAX_PULL_MESSAGES)
            try:
                timeout = self._delivery_timeout()
                received = self._pull(asked)
            except Exception as err:  # noqa: BLE001 - any failure: log once, back off
                self.stats.add_pull(failed=True)
                self._errors.failed("pull", err)
                self._stopping.wait(backoff.delay())
                continue
            self.stats.add_pull()
            self._errors.succeeded("pull")
            backoff.reset()
            if not received:
                self._stopping.wait(MIN_IDLE_POLL_SECONDS - (time.monotonic() - started))
                continue
            self._dispatch(received[:asked], timeout)
            for message in received[asked:]:  # more than asked for (never seen): handed back
                self._answers.add(message.ack_id, ok=False)

    def _dispatch(self, received: list[Any], timeout: float) -> None:
        """Hand each message to an idle delivery thread; when stopping, nack them instead."""
        back = received
        if not self._stopping.is_set():
            given = self._handoff.give([(message, timeout) for message in received])
            back = [message for message, _ in given]
        for message in back:
            self._answers.add(message.ack_id, ok=False)

    def _delivery_timeout(self) -> float:
        """``timeout``, capped below the subscription's ack deadline."""
        return min(self._timeout, self._subscription_policy().delivery_limit)

    def _subscription_policy(self) -> _Policy:
        """Read from the subscription once (by the puller, before its first pull)."""
        if self._policy is None:
            self._policy = _Policy.of(
                self._subscriber.get_subscription(
                    subscription=self.subscription_path,
                    timeout=RPC_TIMEOUT_SECONDS,
                    retry=None,
                )
            )
        return self._policy

    def _pull(self, max_messages: int) -> list[Any]:
        """Up to ``max_messages`` messages, as raw protobuf (proto-plus wraps every field
        access)."""
        from google.pubsub_v1.types import PullResponse

        response = self._subscriber.pull(
            request={"subscription": self.subscription_path, "max_messages": max_messages},
            timeout=PULL_TIMEOUT_SECONDS,
            retry=None,
        )
        return list(PullResponse.pb(response).received_messages)

    # --- a delivery thread -------------------------------------------------------------------

    def _deliver_loop(self) -> None:
        session = requests.Session()
        try:
            while (item := self._handoff.take()) is not None:
                received, timeout = item
                self._deliver(session, received, timeout)
        finally:
            session.close()

    def _deliver(self, session: requests.Session, received: Any, timeout: float) -> None:
        message_id = received.message.message_id
        duplicate = self._ledger.begin(message_id)
        ok = False
        try:
            ok = self._post(session, received, timeout)
        finally:
            self._ledger.end(message_id, ok)
            self._answers.add(received.ack_id, ok=ok)
            policy = self._policy
            if not ok and policy and policy.is_last_attempt(received.delivery_attempt):
                self._last_final_nack = time.monotonic()
            self.stats.add(ok, duplicate=duplicate)

    def _post(self, session: requests.Session, received: Any, timeout: float) -> bool:
        try:
            response = session.post(
                self.endpoint, json=push_body(self.subscription_path, received), timeout=timeout
            )
        except requests.RequestException as err:
            self._errors.failed("push", err)
            return False
        self._errors.succeeded("push")
        return 200 <= response.status_code < 300

    # --- the flusher -------------------------------------------------------------------------

    def _send_answers(self, ok: bool, ack_ids: list[str]) -> None:
        """Ack, or nack (ack deadline 0: redelivered after the retry policy's backoff), a batch.
        If the request fails, the leases run out and Pub/Sub redelivers: at least once either
        way."""
        operation = "acknowledge" if ok else "nack"
        request: dict[str, Any] = {"subscription": self.subscription_path, "ack_ids": ack_ids}
        try:
            if ok:
                self._subscriber.acknowledge(
                    request=request, retry=_ANSWER_RETRY, timeout=RPC_TIMEOUT_SECONDS
                )
            else:
                self._subscriber.modify_ack_deadline(
                    request={**request, "ack_deadline_seconds": 0},
                    retry=_ANSWER_RETRY,
                    timeout=RPC_TIMEOUT_SECONDS,
                )
        except Exception as err:  # noqa: BLE001 - logged once; Pub/Sub redelivers
            self._errors.failed(operation, err)
            return
        self.stats.add_answer_request()
        self._errors.succeeded(operation)
