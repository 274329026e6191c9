"""Pulses: one scheduler tick's fan-out, the pulse document's lifecycle and how its results are
counted.

Lifecycle of ``ops/pulses/history/{pulse_id}``: a tick claims it (:func:`begin`, ``state:
publishing``), finalizes the older pulses still open (:func:`finish_older`), publishes, recording
how far it got (:func:`record_progress`: every eligible uid up to ``cursor`` was published), then
marks it ``published`` with its counts (:func:`mark_published`); rollups then keep its totals
until a newer pulse freezes them (``final``). A fan-out killed half-way leaves the document in
``publishing`` with its cursor: the redelivered tick resumes after the cursor, however late
(:func:`publisher.tick.decide`). A pulse is complete only once published *and* its outcomes
reach the published count: a pulse without ``published_count`` is never complete.

Pulse ids start with the tick's publish time to the microsecond (:func:`pulse_id_for`) and are
compared as times (:func:`sort_key`), never as strings; a time more than
:data:`~agenttrader.messages.MAX_CLOCK_SKEW` ahead of the server's clock is not trusted (such a
pulse never hides the present ones).

Counting without a hot document, on documents each sync writes anyway: a success is counted on
the user's snapshot (``users/{uid}/data/snapshot``: ``pulseId``, ``syncOutcome``), the one
document a healthy tenant's sync writes; an error or a skip on ``users/{uid}/status/sync``
(``pulse_id``, ``outcome``), written only then (sync_worker/record.py keeps the two
consistent: a user is counted once, for its latest outcome). A rollup counts them with
aggregation queries (one read per 1,000 matches) and writes the totals to
``ops/pulses/history/{pulse_id}`` and ``ops/last_pulse``. Each worker instance rolls up at most
once per ``pulse_rollup_delay_seconds`` (trailing edge, so the last result is always counted),
and keeps rolling up a pulse it found incomplete (:class:`RollupScheduler`), so that results
whose own instance died before its rollup are counted by another within about two delays.
Duplicated deliveries cannot double-count: a user has one outcome per pulse.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, cast

from google.api_core import exceptions as gexc

from agenttrader import snapshot, topology
from agenttrader.logs import get_logger
from agenttrader.messages import MAX_CLOCK_SKEW
from agenttrader.paths import LAST_PULSE_DOC, PULSES_COLLECTION, pulse_doc
from agenttrader.snapshot import COLLECTION_GROUP as SNAPSHOT_COLLECTION_GROUP
from agenttrader.snapshot import Outcome

if TYPE_CHECKING:
    from google.cloud import firestore

log = get_logger(__name__)

STATUS_COLLECTION_GROUP = "status"
"""Collection group of ``users/{uid}/status/sync``, where errors and skips are counted."""


class PulseState(StrEnum):
    """``state`` of a pulse document: claimed by a tick, or all its messages published."""

    PUBLISHING = "publishing"
    PUBLISHED = "published"


_STATES = frozenset(s.value for s in PulseState)


# --- pulse ids: times first --------------------------------------------------------------------

_PULSE_TIME = re.compile(r"^(\d{8}T\d{6})(\d{6})?Z-")
"""``YYYYMMDDTHHMMSS`` + microseconds (absent in the ids of older releases) + ``Z-``."""
_UNTIMED = datetime.min.replace(tzinfo=UTC)


def pulse_id_for(tick_message_id: str, tick_time: datetime) -> str:
    """A pulse id derived from the tick, so a redelivered tick maps to the same pulse.

    It starts with the tick's publish time to the microsecond: two ticks published within one
    second are two pulses, and :func:`sort_key` orders them. Only ``[A-Za-z0-9_-]`` (a pulse id
    names a document and travels in messages)."""
    safe_id = "".join(c for c in tick_message_id if c.isalnum() or c in "-_")[:64] or "tick"
    moment = tick_time.astimezone(UTC)
    return f"{moment:%Y%m%dT%H%M%S}{moment.microsecond:06d}Z-{safe_id}"


def pulse_time(pulse_id: str) -> datetime | None:
    """The tick time a pulse id starts with (``None``: an id not made by :func:`pulse_id_for`)."""
    found = _PULSE_TIME.match(pulse_id)
    if found is None:
        return None
    try:
        seconds = datetime.strptime(found.group(1), "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        return None
    return seconds.replace(microsecond=int(found.group(2) or 0))


def sort_key(pulse_id: str) -> tuple[datetime, str]:
    """Pulses in tick order: by time (ids without one first), then by id."""
    return (pulse_time(pulse_id) or _UNTIMED, pulse_id)


def is_newer(pulse_id: str, than: str | None, now: datetime) -> bool:
    """Whether ``pulse_id`` comes after ``than`` (``None``: no pulse). A pulse time more than
    :data:`MAX_CLOCK_SKEW` ahead of ``now`` is not trusted: such a pulse is older than any."""
    if than is None:
        return True

    def key(pid: str) -> tuple[bool, datetime, str]:
        moment, _ = sort_key(pid)
        trusted = moment <= now + MAX_CLOCK_SKEW
        return (trusted, moment, pid)

    return key(pulse_id) > key(than)


# --- the pulse document ------------------------------------------------------------------------


@dataclass(frozen=True)
class Pulse:
    """``ops/pulses/history/{pulse_id}`` as read: what deciding a tick needs."""

    pulse_id: str
    state: PulseState | None = None
    final: bool = False
    """Frozen by a newer pulse (its tick started); never counted again."""
    cursor: str | None = None
    """Every eligible uid up to this one (in uid order) was published; ``None``: none yet."""
    published_before: int = 0
    """How many messages the fan-out published up to ``cursor``."""

    @classmethod
    def of(cls, pulse_id: str, data: Mapping[str, Any]) -> Pulse:
        state = data.get("state")
        cursor = data.get("cursor")
        before = data.get("cursor_published")
        return cls(
            pulse_id=pulse_id,
            state=PulseState(state) if state in _STATES else None,
            final=data.get("final") is True,
            cursor=cursor if isinstance(cursor, str) else None,
            published_before=before if isinstance(before, int) else 0,
        )


def read(db: firestore.Client, pulse_id: str) -> Pulse | None:
    """The pulse document (``None``: no such pulse yet)."""
    found = db.document(pulse_doc(pulse_id)).get()
    return Pulse.of(pulse_id, found.to_dict() or {}) if found.exists else None


RECENT_PULSES = 4
"""Pulse documents a tick reads, newest first: enough to see a newer pulse and the older ones
still open (each tick finalizes those before it, so at most a few are ever open)."""


def recent(db: firestore.Client, limit: int = RECENT_PULSES) -> list[Pulse]:
    """The newest pulse documents, newest first (by tick time)."""
    from google.cloud import firestore

    query = (
        db.collection(PULSES_COLLECTION)
        .order_by("timestamp", direction=firestore.Query.DESCENDING)
        .limit(limit)
    )
    return [Pulse.of(doc.id, doc.to_dict() or {}) for doc in query.stream()]


def newer_than(pulses: Iterable[Pulse], pulse_id: str, now: datetime) -> str | None:
    """A pulse of ``pulses`` that started after ``pulse_id`` (trusted times only), if any."""
    for pulse in pulses:
        if pulse.pulse_id != pulse_id and is_newer(pulse.pulse_id, pulse_id, now):
            return pulse.pulse_id
    return None


def older_open(pulses: Iterable[Pulse], pulse_id: str) -> list[str]:
    """The pulses of ``pulses`` before ``pulse_id`` not finalized yet: the ones a tick freezes
    before its own workers overwrite each user's outcome. Never a newer pulse: an older tick
    arriving late finalizes nothing that started after it."""
    mine = sort_key(pulse_id)
    return [p.pulse_id for p in pulses if not p.final and sort_key(p.pulse_id) < mine]


def begin(
    db: firestore.Client,
    pulse_id: str,
    *,
    tick_message_id: str,
    tick_time: datetime,
    now: datetime,
    existing: Pulse | None,
) -> Pulse:
    """Claim the pulse document for a tick about to publish (``state: publishing``), or take it
    back (``existing``: a redelivered tick resuming a fan-out left in ``publishing``); returns
    it, with the cursor to resume after."""
    from google.cloud.firestore_v1.transforms import Increment

    ref = db.document(pulse_doc(pulse_id))
    if existing is None:
        try:
            ref.create(
                {
                    "pulse_id": pulse_id,
                    "tick_message_id": tick_message_id,
                    "timestamp": tick_time,
                    "started_at": now,
                    "state": PulseState.PUBLISHING.value,
                    "attempts": 1,
                }
            )
            return Pulse(pulse_id, PulseState.PUBLISHING)
        except (gexc.AlreadyExists, gexc.Conflict):
            pass  # the same tick delivered twice at once: take what the other claimed
    current = read(db, pulse_id) or Pulse(pulse_id, PulseState.PUBLISHING)
    ref.update(
        {
            "attempts": Increment(1),
            "resumed_at": now,
            "resumed_after": current.cursor,
            "resumed_published_before": current.published_before,
        }
    )
    return current


def record_progress(db: firestore.Client, pulse_id: str, cursor: str, published: int) -> None:
    """Every eligible uid up to ``cursor`` is published (``published`` messages so far)."""
    db.document(pulse_doc(pulse_id)).update({"cursor": cursor, "cursor_published": published})


def mark_published(
    db: firestore.Client, pulse_id: str, published: int, ineligible: int, seconds: float
) -> None:
    """Every message of the pulse is out: how many, and how many users were skipped."""
    db.document(pulse_doc(pulse_id)).update(
        {
            "state": PulseState.PUBLISHED.value,
            "published_count": published,
            "ineligible_count": ineligible,
            "published_at": datetime.now(UTC),
            "publish_seconds": round(seconds, 3),
        }
    )


def finish_older(db: firestore.Client, pulse_id: str, pulses: Sequence[Pulse]) -> list[str]:
    """Freeze the final counts of the pulses before ``pulse_id`` still open (of ``pulses``, the
    :func:`recent` ones), before this pulse's workers overwrite each user's outcome (and before
    a worker's trailing rollup may have run). Returns the pulses finalized."""
    finished = older_open(pulses, pulse_id)
    for previous in finished:
        rollup(db, previous, finalize=True, superseded_by=pulse_id)
    return finished


# --- counting ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PulseTotals:
    """What a pulse did: published by the publisher, outcomes reported by workers."""

    pulse_id: str
    timestamp: datetime
    published: int | None
    """``None`` until the fan-out finished: the pulse cannot be complete before."""
    ineligible: int
    success: int
    error: int
    worker_skipped: int

    @property
    def skipped(self) -> int:
        return self.ineligible + self.worker_skipped

    @property
    def complete(self) -> bool:
        return is_complete(self.published, self.success + self.error + self.worker_skipped)

    def last_pulse_doc(self, now: datetime) -> dict[str, Any]:
        """The body of ``ops/last_pulse`` (docs/DESIGN.md fields plus ours)."""
        return {
            "pulse_id": self.pulse_id,
            "timestamp": self.timestamp,
            "success_count": self.success,
            "error_count": self.error,
            "skipped_count": self.skipped,
            "published_count": self.published,
            "complete": self.complete,
            "updated_at": now,
        }


GONE_FIELD = "gone"
"""On a pulse document: ``{uid: true}`` of users its messages found deleted since the tick. Their
outcome cannot live under ``users/{uid}`` (nothing may recreate a deleted user), so it is kept
here, once per user whatever the deliveries, and counted as an error."""


def count_gone(db: firestore.Client, pulse_id: str, uid: str) -> bool:
    """Record that ``pulse_id``'s message to ``uid`` found no such user; ``False`` when the pulse
    document does not exist (never created here) or could not be written."""
    try:
        db.document(pulse_doc(pulse_id)).update({f"{GONE_FIELD}.`{uid}`": True})
    except gexc.GoogleAPICallError as err:
        log.warning(
            f"outcome of a deleted user not counted ({type(err).__name__})", pulse_id=pulse_id
        )
        return False
    return True


def is_complete(published: int | None, outcomes: int) -> bool:
    """A pulse is complete once its fan-out finished (``published`` known) and every published
    message reported an outcome."""
    return published is not None and outcomes >= published


def count_outcomes(db: firestore.Client, pulse_id: str) -> dict[Outcome, int]:
    """Outcomes recorded for ``pulse_id``, by aggregation queries (no documents read):
    successes on the snapshots, errors and skips on ``status/sync``."""
    from google.cloud.firestore_v1.base_query import FieldFilter

    successes = (
        db.collection_group(SNAPSHOT_COLLECTION_GROUP)
        .where(filter=FieldFilter(snapshot.PULSE_FIELD, "==", pulse_id))
        .where(filter=FieldFilter(snapshot.OUTCOME_FIELD, "==", Outcome.SUCCESS.value))
    )
    counts = {Outcome.SUCCESS: _count(successes)}
    for outcome in (Outcome.ERROR, Outcome.SKIPPED):
        query = (
            db.collection_group(STATUS_COLLECTION_GROUP)
            .where(filter=FieldFilter("pulse_id", "==", pulse_id))
            .where(filter=FieldFilter("outcome", "==", outcome.value))
        )
        counts[outcome] = _count(query)
    return counts


def _count(query: Any) -> int:
    result: Any = cast(Any, query).count().get()
    return int(result[0][0].value)


CLOCK_SKEW = timedelta(seconds=1)
"""Between worker instances' clocks, when one judges whether another's rollup counted its
results."""
LAST_PULSE_WRITE_ATTEMPTS = 5
"""Conditional writes of ``ops/last_pulse`` tried before leaving it to the next rollup."""


def rollup(
    db: firestore.Client,
    pulse_id: str,
    counted_after: datetime | None = None,
    *,
    finalize: bool = False,
    superseded_by: str | None = None,
) -> PulseTotals | None:
    """Count ``pulse_id``'s outcomes; store them in its history document and in
    ``ops/last_pulse`` unless a newer pulse is shown there, or another rollup that began after
    ``counted_after`` (the caller's last result) already wrote them. Returns the totals
    (``None`` for an unknown pulse, or for a pulse already finalized).

    ``finalize`` freezes the counts: the next tick finalizes the previous pulse *before* it
    publishes (``superseded_by``: that tick's pulse), because its workers then overwrite each
    user's outcome with the new pulse id. A finalized pulse is never counted again, so its
    figures cannot go down afterwards.
    """
    now = datetime.now(UTC)  # before counting: a rollup stamped T counted everything before T
    found = db.document(pulse_doc(pulse_id)).get()
    if not found.exists:
        return None
    data = found.to_dict() or {}
    if data.get("final"):
        return None
    counts = count_outcomes(db, pulse_id)
    published = data.get("published_count")
    ineligible = data.get("ineligible_count")
    gone = data.get(GONE_FIELD)
    totals = PulseTotals(
        pulse_id=pulse_id,
        timestamp=data.get("timestamp") or now,
        published=published if isinstance(published, int) else None,
        ineligible=ineligible if isinstance(ineligible, int) else 0,
        success=counts[Outcome.SUCCESS],
        error=counts[Outcome.ERROR] + (len(gone) if isinstance(gone, dict) else 0),
        worker_skipped=counts[Outcome.SKIPPED],
    )
    history_update: dict[str, Any] = {
        "success_count": totals.success,
        "error_count": totals.error,
        "worker_skipped_count": totals.worker_skipped,
        "skipped_count": totals.skipped,
        "complete": totals.complete,
        "updated_at": now,
    }
    if totals.complete and not data.get("completed_at"):
        history_update["completed_at"] = now
        # One line per pulse, the source of the log-based metrics of infra/monitoring.py.
        started = data.get("timestamp")
        attempted = totals.success + totals.error
        log.info(
            "pulse complete",
            pulse_id=pulse_id,
            fields={
                "published": totals.published,
                "success": totals.success,
                "error": totals.error,
                "skipped": totals.skipped,
                "error_rate": round(totals.error / attempted, 4) if attempted else 0.0,
                "duration_seconds": (
                    round((now - started).total_seconds(), 3)
                    if isinstance(started, datetime)
                    else None
                ),
            },
        )
    if finalize:
        history_update["final"] = True
        if superseded_by is not None:
            history_update["superseded_by"] = superseded_by
    db.document(pulse_doc(pulse_id)).update(history_update)

    _publish_last(db, totals, counted_after, now)
    return totals


def _publish_last(
    db: firestore.Client, totals: PulseTotals, counted_after: datetime | None, now: datetime
) -> None:
    """Write ``ops/last_pulse`` unless it shows a newer pulse, or a rollup that counted after
    ``counted_after``. A conditional write on the document's update time, not a transaction:
    a transaction locks the document until it ends, and a worker killed inside one left it
    locked for a minute (every write to it failing meanwhile)."""
    ref = db.document(LAST_PULSE_DOC)
    for _ in range(LAST_PULSE_WRITE_ATTEMPTS):
        found = ref.get()
        current = found.to_dict() or {}
        shown = current.get("pulse_id")
        shown = shown if isinstance(shown, str) and shown else None
        if shown is not None and shown != totals.pulse_id:
            if not is_newer(totals.pulse_id, shown, now):
                return
        elif shown == totals.pulse_id and counted_since(current, counted_after):
            return
        try:
            if found.exists:
                option = db.write_option(last_update_time=found.update_time)
                ref.update(totals.last_pulse_doc(now), option=option)
            else:
                ref.create(totals.last_pulse_doc(now))
            return
        except (gexc.FailedPrecondition, gexc.AlreadyExists, gexc.Conflict):
            continue  # another rollup wrote it meanwhile: decide again on what it wrote
    log.warning("ops/last_pulse kept changing; left to the next rollup", pulse_id=totals.pulse_id)


def counted_since(last_pulse: Mapping[str, Any], moment: datetime | None) -> bool:
    """Whether the rollup that wrote ``last_pulse`` began after ``moment`` (so it counted every
    result recorded before it); ``None``: no moment to compare with."""
    updated = last_pulse.get("updated_at")
    return moment is not None and isinstance(updated, datetime) and updated > moment + CLOCK_SKEW


# --- the workers' rollups ------------------------------------------------------------------

_WORKER = topology.subscription(topology.USER_SYNC_WORKER)
_ATTEMPTS = _WORKER.dead_letter.max_delivery_attempts if _WORKER.dead_letter else 5
_MAX_BACKOFF = _WORKER.retry.maximum_backoff_seconds if _WORKER.retry else 600
WATCH_WINDOW = timedelta(
    seconds=_ATTEMPTS * _WORKER.ack_deadline_seconds + (_ATTEMPTS - 1) * _MAX_BACKOFF
)
"""How long after its tick a pulse can still receive results: every delivery attempt of a
message taking its whole ack deadline, with the longest backoff between them (45 min with the
production topology). An incomplete pulse is not watched longer."""


class Watch(StrEnum):
    """What a worker instance's rollup of one pulse does, decided from ``ops/last_pulse``."""

    COUNT = "count"
    SKIP = "skip"
    """Counted by another instance within the delay, after this one's last result: not now."""
    STOP = "stop"
    """Nothing more to do: a newer pulse is shown, the pulse is complete, or its window ended."""


def watch_step(
    last_pulse: Mapping[str, Any],
    pulse_id: str,
    *,
    last_result: datetime,
    now: datetime,
    delay: timedelta,
) -> Watch:
    """Whether an instance that recorded results of ``pulse_id`` (the latest at
    ``last_result``) counts it now, given ``ops/last_pulse`` as read at ``now``."""
    shown = last_pulse.get("pulse_id")
    shown = shown if isinstance(shown, str) and shown else None
    moment = pulse_time(pulse_id)
    if moment is not None and now > moment + WATCH_WINDOW:
        return Watch.STOP
    if shown is None or shown != pulse_id:
        return Watch.STOP if shown is not None and is_newer(shown, pulse_id, now) else Watch.COUNT
    updated = last_pulse.get("updated_at")
    recently = isinstance(updated, datetime) and updated > now - delay
    if counted_since(last_pulse, last_result) and (recently or last_pulse.get("complete")):
        return Watch.STOP if last_pulse.get("complete") is True else Watch.SKIP
    return Watch.COUNT


_LATEST = ""
""":meth:`RollupScheduler.request` key of "the pulse ``ops/last_pulse`` shows" (no pulse id is
empty)."""


class RollupScheduler:
    """Per-instance trailing-edge throttle for :func:`rollup`, and a watch on the pulses it
    found incomplete.

    ``request(pulse_id)`` after each result; the rollup runs ``delay`` seconds later, once for
    all the results of that window. A pulse found incomplete is looked at again every ``delay``
    (:func:`watch_step`): counted unless another instance counted it within the delay, until it
    is complete, a newer pulse is shown or :data:`WATCH_WINDOW` ends. So results recorded by an
    instance killed before its own rollup are counted by any other instance that recorded a
    result of the pulse, within two delays. Each watching instance reads ``ops/last_pulse``
    once per delay; counting (the pulse document, three aggregation queries of one read per
    1,000 matches, ``ops/last_pulse`` again) happens about once per delay across all of them.
    Runs on daemon threads, outside the requests' latency.
    """

    def __init__(
        self,
        db_factory: Callable[[], firestore.Client],
        delay: float,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._db_factory = db_factory
        self._delay = delay
        self._clock = clock
        self._pending: set[str] = set()
        self._last_result: dict[str, datetime] = {}
        self._lock = threading.Lock()

    def request(self, pulse_id: str | None) -> None:
        """``None``: a result outside any pulse (replay, manual, first sync). It replaced the
        user's outcome, which may have counted in the latest pulse: that pulse is rolled up."""
        key = pulse_id or _LATEST
        with self._lock:
            self._last_result[key] = self._clock()
        self._schedule(key)

    def watching(self) -> set[str]:
        """Pulses (``""``: the latest) this instance will roll up again."""
        with self._lock:
            return set(self._pending)

    def _schedule(self, key: str) -> None:
        with self._lock:
            if key in self._pending:
                return
            self._pending.add(key)
        timer = threading.Timer(self._delay, self._run, args=(key,))
        timer.daemon = True
        timer.start()

    def _run(self, key: str) -> None:
        with self._lock:
            self._pending.discard(key)
            last_result = self._last_result.get(key, self._clock())
        again = False
        pulse_id: object = key
        try:
            db = self._db_factory()
            last = db.document(LAST_PULSE_DOC).get().to_dict() or {}
            if key == _LATEST:
                pulse_id = last.get("pulse_id")
            if isinstance(pulse_id, str) and pulse_id:
                again = self._step(db, pulse_id, last, last_result)
        except Exception:
            log.exception("pulse rollup failed", pulse_id=pulse_id)  # the next result retries
        if again:
            self._schedule(key)
        else:
            with self._lock:
                if key not in self._pending and self._last_result.get(key) == last_result:
                    self._last_result.pop(key, None)

    def _step(
        self, db: firestore.Client, pulse_id: str, last: Mapping[str, Any], last_result: datetime
    ) -> bool:
        """One look at ``pulse_id``; whether to look again after the delay."""
        now = self._clock()
        step = watch_step(
            last, pulse_id, last_result=last_result, now=now, delay=timedelta(seconds=self._delay)
        )
        if step is Watch.STOP:
            return False
        if step is Watch.SKIP:
            return True
        totals = rollup(db, pulse_id, last_result)
        return totals is not None and not totals.complete
