"""Dead letters of ``user-sync``: decoded, filtered, listed, replayed and purged.

Two kinds reach ``user-sync-dead-letter`` (see :mod:`agenttrader.deadletter`): the worker's
permanent failures (attribute ``source=worker`` with ``error_class``, ``error``, ...) and Pub/Sub's
own after the delivery limit (``CloudPubSubDeadLetterSource*`` attributes, no ``source``; the
last error is in the tenant's ``status/last_sync_error``). Both keep the original body.

Replay contract (docs/DESIGN.md, "Replay"): a dead letter is acknowledged only after its republish
to ``user-sync`` resolved; anything else is released. An interrupted replay therefore loses
nothing and at worst republishes a message twice, which the worker ignores as a duplicate.
"""

from __future__ import annotations

import concurrent.futures
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from agenttrader.deadletter import SOURCE_WORKER
from agenttrader.messages import Reason, SyncRequest
from agenttrader.paths import valid_uid
from console.hold import HoldSubscription, Lease, Received, leased

SOURCE_DELIVERY_LIMIT = "delivery-limit"
"""Pub/Sub dead-lettered the message after the worker failed it on every delivery attempt."""
SOURCE_UNKNOWN = "unknown"
"""Neither the worker's attributes nor Pub/Sub's: published by hand or by an older version."""
SOURCES = (SOURCE_WORKER, SOURCE_DELIVERY_LIMIT, SOURCE_UNKNOWN)
DELIVERY_LIMIT_ERROR_CLASS = "DeliveryLimitExceeded"
"""The error class shown (and filtered on) for Pub/Sub's own dead letters."""
DEFAULT_MAX_REPLAYS = 3
"""A dead letter already replayed this often is refused without ``--force``."""
DEFAULT_RATE = 10.0
"""Replays per second unless told otherwise: gentle on the worker and on Alpaca."""
PUBLISH_TIMEOUT_SECONDS = 30.0
MAX_IN_FLIGHT = 100
"""Republishes awaiting Pub/Sub's answer at once; each is acknowledged as soon as it resolves."""
MAX_CONSECUTIVE_FAILURES = 5
"""After this many republishes in a row failed, the replay stops: Pub/Sub is unreachable."""
_DURATION = re.compile(r"^(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_DURATION_UNITS = ("weeks", "days", "hours", "minutes", "seconds")
_PUBSUB_DELIVERY_COUNT = "CloudPubSubDeadLetterSourceDeliveryCount"
_PUBSUB_SOURCE_SUBSCRIPTION = "CloudPubSubDeadLetterSourceSubscription"


class Publisher(Protocol):
    """The part of ``google.cloud.pubsub_v1.PublisherClient`` used here."""

    def publish(self, topic: str, data: bytes, **attrs: str) -> concurrent.futures.Future[str]: ...


@dataclass(frozen=True)
class DeadLetter:
    """One held dead letter, decoded for display and replay (never the raw body)."""

    message_id: str
    published_at: datetime
    """When it reached the dead-letter topic; ``--older-than`` / ``--newer-than`` compare this."""
    source: str
    """:data:`SOURCE_WORKER`, :data:`SOURCE_DELIVERY_LIMIT` or :data:`SOURCE_UNKNOWN`."""
    uid: str | None
    error_class: str
    error: str
    reason: str | None
    """The ``reason`` of the dead-lettered request (``schedule``, ``replay``, ...)."""
    delivery_attempts: int | None
    request: SyncRequest | None = field(repr=False)
    """The decoded body; ``None`` when it is malformed (see ``decode_error``)."""
    decode_error: str | None = None

    @property
    def replay_count(self) -> int | None:
        return None if self.request is None else self.request.replay_count

    def age(self, now: datetime) -> timedelta:
        return max(now - self.published_at, timedelta(0))

    def refusal(self, max_replays: int, force: bool) -> str | None:
        """Why this dead letter must not be replayed, or ``None``."""
        if self.request is None:
            return f"malformed body ({self.decode_error}): it cannot be replayed, only purged"
        if self.request.replay_count >= max_replays and not force:
            return (
                f"already replayed {self.request.replay_count} times (limit {max_replays});"
                " fix the cause, then replay with --force"
            )
        return None

    def replay_request(self, now: datetime) -> SyncRequest:
        """The request to republish: ``reason=replay``, one more replay, the first non-replay
        reason kept (a replayed schedule still respects the kill-switch), a fresh
        ``requested_at`` so the snapshot it writes is newer than any before. The pulse id is
        dropped: a replay is not part of the pulse that failed."""
        if self.request is None:
            raise ValueError("a malformed dead letter cannot be replayed")
        old = self.request
        original = old.original_reason or (old.reason if old.reason is not Reason.REPLAY else None)
        return SyncRequest(
            uid=old.uid,
            reason=Reason.REPLAY,
            requested_at=now,
            replay_count=old.replay_count + 1,
            original_reason=original,
        )


def decode(message: Any) -> DeadLetter:
    """A dead letter from a ``PubsubMessage``; never raises on a bad body."""
    attributes = {str(k): str(v) for k, v in dict(message.attributes).items()}
    request: SyncRequest | None = None
    decode_error: str | None = None
    try:
        request = SyncRequest.from_bytes(bytes(message.data), attributes)
    except ValueError as err:
        decode_error = str(err)
    if attributes.get("source") == SOURCE_WORKER:
        source = SOURCE_WORKER
        attempts = _int(attributes.get("delivery_attempt"))
        error_class = attributes.get("error_class") or "unknown"
        error = attributes.get("error", "")
    elif _PUBSUB_DELIVERY_COUNT in attributes:
        source = SOURCE_DELIVERY_LIMIT
        attempts = _int(attributes.get(_PUBSUB_DELIVERY_COUNT))
        error_class = DELIVERY_LIMIT_ERROR_CLASS
        subscription = attributes.get(_PUBSUB_SOURCE_SUBSCRIPTION, "").rsplit("/", 1)[-1]
        error = f"Pub/Sub gave up after {attempts or '?'} delivery attempts" + (
            f" on {subscription}" if subscription else ""
        )
    else:
        source = SOURCE_UNKNOWN
        attempts = _int(attributes.get("delivery_attempt"))
        error_class = attributes.get("error_class") or "unknown"
        error = attributes.get("error", "")
    return DeadLetter(
        message_id=str(message.message_id),
        published_at=message.publish_time,
        source=source,
        uid=request.uid if request is not None else valid_uid(attributes.get("uid")),
        error_class=error_class,
        error=error,
        reason=request.reason.value if request is not None else attributes.get("reason"),
        delivery_attempts=attempts,
        request=request,
        decode_error=decode_error,
    )


def _int(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None


def parse_duration(text: str) -> timedelta:
    """``30s``, ``30m``, ``2h``, ``1d``, ``1w`` and combinations such as ``1h30m`` (the ages of
    ``--older-than`` / ``--newer-than`` and of the console's filters); ``ValueError`` otherwise."""
    match = _DURATION.fullmatch(text.strip().lower())
    if not text.strip() or match is None:
        raise ValueError(
            f"invalid duration {text[:40]!r}: use a number with a unit, e.g. 30s, 30m, 2h, 1d,"
            " 1h30m"
        )
    return timedelta(
        **{
            unit: int(value)
            for unit, value in zip(_DURATION_UNITS, match.groups(), strict=True)
            if value
        }
    )


@dataclass(frozen=True)
class Filters:
    """Which dead letters a command acts on; an empty field does not filter."""

    uids: frozenset[str] = frozenset()
    error_classes: frozenset[str] = frozenset()
    """Compared case-insensitively."""
    sources: frozenset[str] = frozenset()
    older_than: timedelta | None = None
    newer_than: timedelta | None = None

    def __post_init__(self) -> None:
        unknown = self.sources - set(SOURCES)
        if unknown:
            raise ValueError(f"unknown source(s) {sorted(unknown)}; known: {', '.join(SOURCES)}")
        if (
            self.older_than is not None
            and self.newer_than is not None
            and self.older_than >= self.newer_than
        ):
            raise ValueError("--older-than must be shorter than --newer-than, or nothing matches")

    def matches(self, letter: DeadLetter, now: datetime) -> bool:
        if self.uids and letter.uid not in self.uids:
            return False
        wanted = {c.lower() for c in self.error_classes}
        if wanted and letter.error_class.lower() not in wanted:
            return False
        if self.sources and letter.source not in self.sources:
            return False
        age = letter.age(now)
        if self.older_than is not None and age < self.older_than:
            return False
        return self.newer_than is None or age < self.newer_than


class _Selection:
    """Decodes each scanned message once and remembers it for the caller."""

    def __init__(self, filters: Filters, now: datetime) -> None:
        self._filters = filters
        self._now = now
        self.letters: dict[str, DeadLetter] = {}

    def __call__(self, message: Any) -> bool:
        letter = decode(message)
        self.letters[letter.message_id] = letter
        return self._filters.matches(letter, self._now)

    def of(self, received: Received) -> DeadLetter:
        return self.letters[received.message.message_id]


# --- list ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Listing:
    letters: tuple[DeadLetter, ...]
    scanned: int
    """Held dead letters seen, matching or not."""
    exhausted: bool
    """``False`` when the listing stopped at ``--limit`` (or the scan cap): there may be more."""


def list_dead_letters(
    hold: HoldSubscription,
    filters: Filters,
    *,
    now: datetime,
    limit: int | None = None,
) -> Listing:
    """The matching dead letters, oldest first; every message is left in place."""
    selection = _Selection(filters, now)
    with leased(hold, selection, limit=limit) as lease:
        letters = [selection.of(r) for r in lease.selected]
        return Listing(_oldest_first(letters), lease.scanned, lease.exhausted)


def dead_letter_depth(hold: HoldSubscription) -> Listing:
    """How many dead letters are held (``exhausted=False``: at least that many)."""
    with leased(hold, lambda _message: False) as lease:
        return Listing((), lease.scanned, lease.exhausted)


def _oldest_first(letters: Sequence[DeadLetter]) -> tuple[DeadLetter, ...]:
    return tuple(sorted(letters, key=lambda letter: letter.published_at))


@dataclass(frozen=True)
class ErrorClassGroup:
    """The held dead letters of one error class: how many, whose, since when."""

    error_class: str
    count: int
    uids: tuple[str, ...]
    """Distinct tenants, sorted, at most :data:`GROUP_UIDS_SHOWN` of them."""
    tenants: int
    """Distinct tenants in all (a malformed body may name none)."""
    oldest: datetime
    newest: datetime


GROUP_UIDS_SHOWN = 20
"""Tenants named per error class; the count says how many there are."""


def group_by_error_class(letters: Sequence[DeadLetter]) -> tuple[ErrorClassGroup, ...]:
    """The letters by error class, the largest group first (then by name)."""
    by_class: dict[str, list[DeadLetter]] = {}
    for letter in letters:
        by_class.setdefault(letter.error_class, []).append(letter)
    groups = []
    for error_class, members in by_class.items():
        uids = sorted({m.uid for m in members if m.uid is not None})
        times = [m.published_at for m in members]
        groups.append(
            ErrorClassGroup(
                error_class=error_class,
                count=len(members),
                uids=tuple(uids[:GROUP_UIDS_SHOWN]),
                tenants=len(uids),
                oldest=min(times),
                newest=max(times),
            )
        )
    return tuple(sorted(groups, key=lambda g: (-g.count, g.error_class)))


# --- replay -------------------------------------------------------------------------------------


class Status(StrEnum):
    """What happened to one matching dead letter."""

    REPLAYED = "replayed"
    WOULD_REPLAY = "would_replay"
    REFUSED = "refused"
    FAILED = "failed"
    NOT_ATTEMPTED = "not_attempted"
    """The replay stopped (Ctrl-C, or Pub/Sub kept failing) before reaching it; still held."""
    PURGED = "purged"
    WOULD_PURGE = "would_purge"


@dataclass(frozen=True)
class Item:
    letter: DeadLetter
    status: Status
    detail: str = ""
    """The refusal or failure reason; for a replay, the new message id."""
    replay_count: int | None = None
    """The ``replay_count`` of the republished request."""


@dataclass(frozen=True)
class Report:
    """Outcome of a replay or a purge."""

    items: tuple[Item, ...]
    scanned: int
    exhausted: bool
    dry_run: bool = False
    interrupted: bool = False
    """Ctrl-C stopped it; what was not acknowledged is back in the subscription."""
    aborted: str | None = None
    """Why it stopped early on its own (Pub/Sub failing), else ``None``."""
    cancelled: bool = False
    """The purge was not confirmed; nothing was deleted."""

    def count(self, status: Status) -> int:
        return sum(1 for item in self.items if item.status is status)

    @property
    def skipped(self) -> int:
        """Held dead letters that did not match the filters; left in place."""
        return self.scanned - len(self.items)


@dataclass(frozen=True)
class Progress:
    """Reported after each republish resolves."""

    total: int
    """Dead letters to republish (matching, not refused)."""
    replayed: int
    failed: int
    refused: int

    @property
    def done(self) -> int:
        return self.replayed + self.failed


class Pacer:
    """At most ``rate`` republishes per second, evenly spaced: a token bucket of one token, so a
    long pause never turns into a burst. ``rate`` of ``None`` or 0 means no limit."""

    def __init__(
        self,
        rate: float | None,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._interval = 1.0 / rate if rate else 0.0
        self._monotonic = monotonic
        self._sleep = sleep
        self._next = float("-inf")

    def wait(self) -> None:
        if not self._interval:
            return
        now = self._monotonic()
        if self._next > now:
            self._sleep(self._next - now)
            now = self._next
        self._next = now + self._interval


@dataclass
class _InFlight:
    received: Received
    letter: DeadLetter
    request: SyncRequest
    future: concurrent.futures.Future[str]


class _Replayer:
    """One replay run: publishes, settles futures, acknowledges what went out."""

    def __init__(
        self,
        publisher: Publisher,
        topic: str,
        lease: Lease,
        *,
        pacer: Pacer,
        clock: Callable[[], datetime],
        progress: Callable[[Progress], None] | None,
        total: int,
        refused: int,
    ) -> None:
        self._publisher = publisher
        self._topic = topic
        self._lease = lease
        self._pacer = pacer
        self._clock = clock
        self._progress = progress
        self._total = total
        self._refused = refused
        self.items: dict[str, Item] = {}
        self._in_flight: list[_InFlight] = []
        self._replayed = 0
        self._failed = 0
        self._failures_in_a_row = 0

    @property
    def failing(self) -> bool:
        return self._failures_in_a_row >= MAX_CONSECUTIVE_FAILURES

    def send(self, received: Received, letter: DeadLetter) -> None:
        self._pacer.wait()
        request = letter.replay_request(self._clock())
        try:
            future = self._publisher.publish(
                self._topic, request.to_bytes(), **request.attributes()
            )
        except Exception as err:  # noqa: BLE001 - any publish failure is reported, not raised
            self._fail(received, letter, f"republish failed: {type(err).__name__}: {err}")
        else:
            self._in_flight.append(_InFlight(received, letter, request, future))
        if len(self._in_flight) >= MAX_IN_FLIGHT:
            self._wait(PUBLISH_TIMEOUT_SECONDS, concurrent.futures.FIRST_COMPLETED)
        self._settle()

    def drain(self, timeout: float) -> None:
        """Wait up to ``timeout`` for the rest; what stays unanswered is left unacknowledged
        (released when the lease ends) and reported as failed."""
        self._wait(timeout, concurrent.futures.ALL_COMPLETED)
        self._settle()
        for pending in self._in_flight:
            self._fail(
                pending.received,
                pending.letter,
                f"no answer from Pub/Sub within {timeout:.0f} s; left in the dead-letter"
                " subscription (if it did go out, replaying it again is harmless)",
            )
        self._in_flight.clear()

    def _wait(self, timeout: float, return_when: str) -> None:
        futures = [pending.future for pending in self._in_flight]
        if futures:
            concurrent.futures.wait(futures, timeout=timeout, return_when=return_when)

    def _settle(self) -> None:
        """Acknowledge each republish that resolved; release each that failed."""
        waiting: list[_InFlight] = []
        for pending in self._in_flight:
            if not pending.future.done():
                waiting.append(pending)
                continue
            error = pending.future.exception()
            if error is not None:
                self._fail(
                    pending.received,
                    pending.letter,
                    f"republish failed: {type(error).__name__}: {error}",
                )
            else:
                self._done(pending, str(pending.future.result()))
        self._in_flight = waiting

    def _done(self, pending: _InFlight, new_message_id: str) -> None:
        self._failures_in_a_row = 0
        self._replayed += 1
        detail = new_message_id
        try:
            self._lease.ack([pending.received.ack_id])
        except Exception as err:  # noqa: BLE001 - the republish stands; say what it means
            detail += (
                f" (acknowledging the dead letter failed: {type(err).__name__};"
                " it stays held and a later replay repeats it, which is harmless)"
            )
        self.items[pending.letter.message_id] = Item(
            pending.letter, Status.REPLAYED, detail, pending.request.replay_count
        )
        self._report()

    def _fail(self, received: Received, letter: DeadLetter, why: str) -> None:
        self._failures_in_a_row += 1
        self._failed += 1
        self._lease.release([received.ack_id])
        self.items[letter.message_id] = Item(letter, Status.FAILED, why[:300])
        self._report()

    def _report(self) -> None:
        if self._progress is not None:
            self._progress(Progress(self._total, self._replayed, self._failed, self._refused))


def replay(
    hold: HoldSubscription,
    publisher: Publisher,
    topic: str,
    filters: Filters,
    *,
    clock: Callable[[], datetime],
    pacer: Pacer | None = None,
    limit: int | None = None,
    max_replays: int = DEFAULT_MAX_REPLAYS,
    force: bool = False,
    dry_run: bool = False,
    progress: Callable[[Progress], None] | None = None,
    drain_timeout: float = PUBLISH_TIMEOUT_SECONDS,
) -> Report:
    """Republish the matching dead letters to ``topic`` (``projects/P/topics/user-sync``).

    Each is acknowledged only once its republish resolved; refused, failed and unreached ones
    are released at once. Ctrl-C ends the run with ``interrupted=True`` after acknowledging
    what already went out.
    """
    selection = _Selection(filters, clock())
    with leased(hold, selection, limit=limit) as lease:
        matching = sorted(
            ((r, selection.of(r)) for r in lease.selected), key=lambda rl: rl[1].published_at
        )
        items: dict[str, Item] = {}
        to_send: list[tuple[Received, DeadLetter]] = []
        for received, letter in matching:
            refusal = letter.refusal(max_replays, force)
            if refusal is not None:
                items[letter.message_id] = Item(letter, Status.REFUSED, refusal)
            elif dry_run:
                would = letter.replay_request(clock())
                items[letter.message_id] = Item(
                    letter, Status.WOULD_REPLAY, replay_count=would.replay_count
                )
            else:
                to_send.append((received, letter))
        if dry_run or not to_send:
            return _build_report(matching, items, lease, dry_run=dry_run)
        refused = [r.ack_id for r, letter in matching if letter.message_id in items]
        lease.release(refused)  # at once: they are not delayed for the whole replay

        replayer = _Replayer(
            publisher,
            topic,
            lease,
            pacer=pacer or Pacer(None),
            clock=clock,
            progress=progress,
            total=len(to_send),
            refused=len(refused),
        )
        interrupted = False
        aborted: str | None = None
        try:
            for received, letter in to_send:
                if replayer.failing:
                    aborted = (
                        f"stopped after {MAX_CONSECUTIVE_FAILURES} republishes in a row failed"
                    )
                    break
                replayer.send(received, letter)
            replayer.drain(drain_timeout)
        except KeyboardInterrupt:
            interrupted = True
            replayer.drain(min(drain_timeout, 5.0))
        items.update(replayer.items)
        return _build_report(matching, items, lease, interrupted=interrupted, aborted=aborted)


def _build_report(
    matching: Sequence[tuple[Received, DeadLetter]],
    items: dict[str, Item],
    lease: Lease,
    **flags: Any,
) -> Report:
    ordered = tuple(
        items.get(letter.message_id) or Item(letter, Status.NOT_ATTEMPTED)
        for _received, letter in matching
    )
    return Report(ordered, lease.scanned, lease.exhausted, **flags)


# --- purge --------------------------------------------------------------------------------------


def purge(
    hold: HoldSubscription,
    filters: Filters,
    *,
    now: datetime,
    confirm: Callable[[Sequence[DeadLetter]], bool],
    limit: int | None = None,
    dry_run: bool = False,
) -> Report:
    """Delete (acknowledge) the matching dead letters once ``confirm`` agreed; nothing else."""
    selection = _Selection(filters, now)
    with leased(hold, selection, limit=limit) as lease:
        matching = sorted(
            ((r, selection.of(r)) for r in lease.selected), key=lambda rl: rl[1].published_at
        )
        letters = [letter for _r, letter in matching]
        if dry_run:
            items = {lt.message_id: Item(lt, Status.WOULD_PURGE) for lt in letters}
            return _build_report(matching, items, lease, dry_run=True)
        if not letters:
            return _build_report(matching, {}, lease)
        if not confirm(letters):
            return _build_report(
                matching,
                {lt.message_id: Item(lt, Status.NOT_ATTEMPTED) for lt in letters},
                lease,
                cancelled=True,
            )
        lease.ack([r.ack_id for r, _letter in matching])
        items = {lt.message_id: Item(lt, Status.PURGED) for lt in letters}
        return _build_report(matching, items, lease)
