"""Pulses: one scheduler tick's fan-out, the pulse document's lifecycle and how its results are
counted.

Lifecycle of ``ops/pulses/history/{pulse_id}``: a tick claims it (:func:`begin`, ``state:
publishing``), finalizes the previous pulse (:func:`finish_previous`), publishes, then marks it
``published`` with its counts (:func:`mark_published`); rollups then keep its totals until the
next tick freezes them (``final``).

Counting without a hot document, on documents each sync writes anyway: a success is counted on
the user's snapshot (``users/{uid}/data/snapshot``: ``pulseId``, ``syncOutcome``), the one
document a healthy tenant's sync writes; an error or a skip on ``users/{uid}/status/sync``
(``pulse_id``, ``outcome``), written only then (sync_worker/record.py keeps the two
consistent: a user is counted once, for its latest outcome). A rollup counts them with
aggregation queries (one read per 1,000 matches) and writes the totals to
``ops/pulses/history/{pulse_id}`` and ``ops/last_pulse``. Each worker instance rolls up at most
once per ``pulse_rollup_delay_seconds`` (trailing edge, so the last result is always counted),
and only when ``ops/last_pulse`` was not refreshed within that delay by another. Duplicated
deliveries cannot double-count: a user has one outcome per pulse.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, cast

from google.api_core import exceptions as gexc

from agenttrader import snapshot
from agenttrader.logs import get_logger
from agenttrader.paths import LAST_PULSE_DOC, pulse_doc
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


def state_of(db: firestore.Client, pulse_id: str) -> str | None:
    """The pulse document's ``state`` (``None``: no such pulse yet)."""
    snapshot = db.document(pulse_doc(pulse_id)).get()
    if not snapshot.exists:
        return None
    state = (snapshot.to_dict() or {}).get("state")
    return state if isinstance(state, str) else None


def begin(
    db: firestore.Client, pulse_id: str, tick_message_id: str, tick_time: datetime, now: datetime
) -> None:
    """Claim the pulse document for a tick about to publish (``state: publishing``)."""
    db.document(pulse_doc(pulse_id)).set(
        {
            "pulse_id": pulse_id,
            "tick_message_id": tick_message_id,
            "timestamp": tick_time,
            "started_at": now,
            "state": PulseState.PUBLISHING.value,
        }
    )


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


def finish_previous(db: firestore.Client, pulse_id: str) -> None:
    """Freeze the final counts of the pulse ``ops/last_pulse`` still shows, before this pulse's
    workers overwrite each user's outcome (and before a worker's trailing rollup may have run).
    """
    previous = (db.document(LAST_PULSE_DOC).get().to_dict() or {}).get("pulse_id")
    if isinstance(previous, str) and previous != pulse_id:
        rollup(db, previous, finalize=True)


def pulse_id_for(tick_message_id: str, tick_time: datetime) -> str:
    """A pulse id derived from the tick, so a redelivered tick maps to the same pulse.

    The time prefix makes ids sort in tick order (``ops/last_pulse`` never goes backwards).
    """
    safe_id = "".join(c for c in tick_message_id if c.isalnum() or c in "-_")[:64] or "tick"
    return f"{tick_time.astimezone(UTC):%Y%m%dT%H%M%S}Z-{safe_id}"


@dataclass(frozen=True)
class PulseTotals:
    """What a pulse did: published by the publisher, outcomes reported by workers."""

    pulse_id: str
    timestamp: datetime
    published: int
    ineligible: int
    success: int
    error: int
    worker_skipped: int

    @property
    def skipped(self) -> int:
        return self.ineligible + self.worker_skipped

    @property
    def complete(self) -> bool:
        return self.success + self.error + self.worker_skipped >= self.published

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
LAST_PULSE_WRITE_ATTEMPTS = 5
"""Conditional writes of ``ops/last_pulse`` tried before leaving it to the next rollup."""


def rollup(
    db: firestore.Client,
    pulse_id: str,
    counted_after: datetime | None = None,
    *,
    finalize: bool = False,
) -> PulseTotals | None:
    """Count ``pulse_id``'s outcomes; store them in its history document and in
    ``ops/last_pulse`` unless a newer pulse started there, or another rollup that began after
    ``counted_after`` (the caller's last result) already wrote them. Returns the totals
    (``None`` for an unknown pulse, or for a pulse already finalized).

    ``finalize`` freezes the counts: the next tick finalizes the previous pulse *before* it
    publishes, because its workers then overwrite each user's outcome with the new pulse id.
    A finalized pulse is never counted again, so its figures cannot go down afterwards.
    """
    now = datetime.now(UTC)  # before counting: a rollup stamped T counted everything before T
    snapshot = db.document(pulse_doc(pulse_id)).get()
    if not snapshot.exists:
        return None
    data = snapshot.to_dict() or {}
    if data.get("final"):
        return None
    counts = count_outcomes(db, pulse_id)
    totals = PulseTotals(
        pulse_id=pulse_id,
        timestamp=data.get("timestamp") or datetime.now(UTC),
        published=int(data.get("published_count", 0)),
        ineligible=int(data.get("ineligible_count", 0)),
        success=counts[Outcome.SUCCESS],
        error=counts[Outcome.ERROR],
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
        snapshot = ref.get()
        current = snapshot.to_dict() or {}
        if str(current.get("pulse_id", "")) > totals.pulse_id:
            return
        updated = current.get("updated_at")
        if (
            counted_after is not None
            and current.get("pulse_id") == totals.pulse_id
            and isinstance(updated, datetime)
            and updated > counted_after + CLOCK_SKEW
        ):
            return
        try:
            if snapshot.exists:
                option = db.write_option(last_update_time=snapshot.update_time)
                ref.update(totals.last_pulse_doc(now), option=option)
            else:
                ref.create(totals.last_pulse_doc(now))
            return
        except (gexc.FailedPrecondition, gexc.AlreadyExists, gexc.Conflict):
            continue  # another rollup wrote it meanwhile: decide again on what it wrote
    log.warning("ops/last_pulse kept changing; left to the next rollup", pulse_id=totals.pulse_id)


_LATEST = ""
""":meth:`RollupScheduler.request` key of "the pulse ``ops/last_pulse`` shows" (no pulse id is
empty)."""


class RollupScheduler:
    """Per-instance trailing-edge throttle for :func:`rollup`.

    ``request(pulse_id)`` after each result; the rollup runs ``delay`` seconds later, once for
    all the results of that window. Runs on a daemon thread, outside the request's latency.
    """

    def __init__(self, db_factory: Callable[[], firestore.Client], delay: float) -> None:
        self._db_factory = db_factory
        self._delay = delay
        self._pending: set[str] = set()
        self._last_result: dict[str, datetime] = {}
        self._lock = threading.Lock()

    def request(self, pulse_id: str | None) -> None:
        """``None``: a result outside any pulse (replay, manual, first sync). It replaced the
        user's outcome, which may have counted in the latest pulse: that pulse is rolled up."""
        key = pulse_id or _LATEST
        with self._lock:
            self._last_result[key] = datetime.now(UTC)
            if key in self._pending:
                return
            self._pending.add(key)
        timer = threading.Timer(self._delay, self._run, args=(key,))
        timer.daemon = True
        timer.start()

    def _run(self, key: str) -> None:
        with self._lock:
            self._pending.discard(key)
            counted_after = self._last_result.pop(key)
        pulse_id: object = key
        try:
            db = self._db_factory()
            if key == _LATEST:
                pulse_id = (db.document(LAST_PULSE_DOC).get().to_dict() or {}).get("pulse_id")
            if isinstance(pulse_id, str) and pulse_id:
                rollup(db, pulse_id, counted_after)
        except Exception:
            log.exception("pulse rollup failed", pulse_id=pulse_id)
