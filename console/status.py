"""Pipeline status: recent pulses, the tenants currently failing, the dead-letter depth, and the
alert conditions of the product spec.

Everything is read from what the pipeline already writes: ``ops/pulses/history/{pulse_id}``
(counts and timing of each pulse), ``users/{uid}/status/last_sync_error`` (present while a
tenant's latest sync failed; deleted by the next success) and ``users/{uid}/status/sync``
(``consecutive_failures``, maintained by the worker). A healthy tenant's sync writes only its
snapshot, but these stay exact: every failure writes ``last_sync_error`` and flags the snapshot
(``syncFailing``), and the first success after a flagged snapshot deletes ``last_sync_error``
and resets ``consecutive_failures`` in the same commit (sync_worker/record.py). The tool
never reads secrets.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from agenttrader import paths

if TYPE_CHECKING:
    from google.cloud import firestore

    from console.deadletters import Listing

DEFAULT_PULSES = 5
HISTORY_HOURS = 24
"""How far back the console's pulse chart reaches by default."""
MAX_HISTORY = 2_000
"""Pulses read for a chart at most (a day of one-minute ticks is 1,440)."""
SLOW_PULSE_SECONDS = 45.0
"""A pulse still incomplete after this long (the scheduler ticks every 60 s) is an alert."""
ERROR_RATE_THRESHOLD = 0.10
"""Alert when more than this share of a pulse's syncs failed (errors / (successes + errors))."""
CONSECUTIVE_FAILURES_THRESHOLD = 3
"""Alert for a tenant whose last this-many syncs all failed."""
MAX_FAILING = 1_000
"""Failing tenants read at most; the count says when there are more."""
STATUS_GROUP = "status"
"""Collection group of ``users/{uid}/status/last_sync_error`` (a literal: infra/indexes.py
declares the index each collection-group query needs, and its test reads this file)."""


@dataclass(frozen=True)
class PulseStatus:
    pulse_id: str
    timestamp: datetime | None
    published: int | None
    success: int
    error: int
    skipped: int
    complete: bool
    duration_seconds: float | None
    """``completed_at - timestamp`` once complete (``publish_seconds`` for records without
    ``completed_at``); while incomplete, the time elapsed so far."""

    @property
    def error_rate(self) -> float | None:
        attempted = self.success + self.error
        return self.error / attempted if attempted else None

    @property
    def slow(self) -> bool:
        return self.duration_seconds is not None and self.duration_seconds > SLOW_PULSE_SECONDS


@dataclass(frozen=True)
class FailingTenant:
    uid: str
    error_class: str
    error: str
    last_failed_at: datetime | None
    """``timestamp`` of ``status/last_sync_error``: the latest failure."""
    consecutive_failures: int | None
    """Final failures in a row (``status/sync``); ``None`` if the worker never counted them."""
    final: bool
    """``False`` while Pub/Sub is still retrying a transient failure."""


class AlertKind(StrEnum):
    ERROR_RATE = "error_rate"
    SLOW_PULSE = "slow_pulse"
    CONSECUTIVE_FAILURES = "consecutive_failures"


@dataclass(frozen=True)
class Alert:
    kind: AlertKind
    message: str


@dataclass(frozen=True)
class PipelineStatus:
    now: datetime
    pulses: tuple[PulseStatus, ...]
    """Newest first."""
    failing: tuple[FailingTenant, ...]
    """Most consecutive failures first."""
    failing_capped: bool
    """``True`` when there were more failing tenants than were read."""
    dead_letters: Listing | None
    """The depth peek (``scanned``; ``exhausted=False`` means at least that many)."""
    dead_letters_problem: str | None
    alerts: tuple[Alert, ...]


def read_status(
    db: firestore.Client,
    *,
    now: datetime,
    peek: Callable[[], Listing] | None,
    pulses: int = DEFAULT_PULSES,
) -> PipelineStatus:
    """Read the status; ``peek`` measures the dead-letter depth (``None``: skip it)."""
    recent = read_pulses(db, now=now, limit=pulses)
    failing, capped = read_failing(db)
    depth: Listing | None = None
    problem: str | None = None
    if peek is not None:
        try:
            depth = peek()
        except Exception as err:  # noqa: BLE001 - the rest of the status is still worth showing
            problem = f"{type(err).__name__}: {err}"[:200]
    return PipelineStatus(
        now=now,
        pulses=recent,
        failing=failing,
        failing_capped=capped,
        dead_letters=depth,
        dead_letters_problem=problem,
        alerts=alerts_for(recent, failing),
    )


def read_pulses(db: firestore.Client, *, now: datetime, limit: int) -> tuple[PulseStatus, ...]:
    from google.cloud import firestore

    query = (
        db.collection(paths.PULSES_COLLECTION)
        .order_by("timestamp", direction=firestore.Query.DESCENDING)
        .limit(limit)
    )
    return tuple(pulse_status(doc.to_dict() or {}, doc.id, now) for doc in query.stream())


def read_history(
    db: firestore.Client, *, now: datetime, hours: float = HISTORY_HOURS
) -> tuple[PulseStatus, ...]:
    """The pulses that started in the last ``hours``, oldest first (for a chart): one query on
    ``timestamp`` (an automatic single-field index), at most :data:`MAX_HISTORY` documents."""
    from google.cloud import firestore
    from google.cloud.firestore_v1.base_query import FieldFilter

    query = (
        db.collection(paths.PULSES_COLLECTION)
        .where(filter=FieldFilter("timestamp", ">=", now - timedelta(hours=hours)))
        .order_by("timestamp", direction=firestore.Query.DESCENDING)
        .limit(MAX_HISTORY)
    )
    newest_first = [pulse_status(doc.to_dict() or {}, doc.id, now) for doc in query.stream()]
    return tuple(reversed(newest_first))


def pulse_status(data: dict[str, Any], pulse_id: str, now: datetime) -> PulseStatus:
    """One ``ops/pulses/history`` document as a :class:`PulseStatus`."""
    timestamp = _datetime(data.get("timestamp"))
    completed_at = _datetime(data.get("completed_at"))
    complete = data.get("complete") is True
    duration: float | None = None
    if complete and completed_at is not None and timestamp is not None:
        duration = (completed_at - timestamp).total_seconds()
    elif complete and isinstance(data.get("publish_seconds"), int | float):
        duration = float(data["publish_seconds"])
    elif not complete and timestamp is not None:
        duration = (now - timestamp).total_seconds()
    skipped = data.get("skipped_count")
    return PulseStatus(
        pulse_id=str(data.get("pulse_id") or pulse_id),
        timestamp=timestamp,
        published=_int(data.get("published_count")),
        success=_int(data.get("success_count")) or 0,
        error=_int(data.get("error_count")) or 0,
        skipped=_int(skipped if skipped is not None else data.get("ineligible_count")) or 0,
        complete=complete,
        duration_seconds=None if duration is None else max(duration, 0.0),
    )


def read_failing(
    db: firestore.Client, *, limit: int = MAX_FAILING
) -> tuple[tuple[FailingTenant, ...], bool]:
    """Tenants with a ``status/last_sync_error`` document, found by equality on ``final`` (a
    field only that document has: ``True`` once Pub/Sub stops retrying). Production serves
    these with the collection-group index on ``status.final`` (infra/indexes.py)."""
    from google.cloud.firestore_v1.base_query import FieldFilter

    errors: dict[str, dict[str, Any]] = {}
    for final in (True, False):
        query = (
            db.collection_group(STATUS_GROUP)
            .where(filter=FieldFilter("final", "==", final))
            .select(["error_class", "error", "timestamp", "final"])
            .limit(limit + 1)
        )
        for doc in query.stream():
            uid = paths.owner_of(doc.reference.path, paths.STATUS_LAST_SYNC_ERROR)
            if uid is not None:
                errors[uid] = doc.to_dict() or {}
    capped = len(errors) > limit
    uids = sorted(errors)[:limit]
    refs = [db.document(paths.sync_state_doc(uid)) for uid in uids]
    streaks = {
        snap.reference.path: _int((snap.to_dict() or {}).get("consecutive_failures"))
        for snap in (db.get_all(refs, field_paths=["consecutive_failures"]) if refs else [])
        if snap.exists
    }
    tenants = [
        FailingTenant(
            uid=uid,
            error_class=str(errors[uid].get("error_class") or "unknown"),
            error=str(errors[uid].get("error") or ""),
            last_failed_at=_datetime(errors[uid].get("timestamp")),
            consecutive_failures=streaks.get(paths.sync_state_doc(uid)),
            final=errors[uid].get("final") is True,
        )
        for uid in uids
    ]
    tenants.sort(key=lambda t: (-(t.consecutive_failures or 0), t.uid))
    return tuple(tenants), capped


def alerts_for(
    pulses: Sequence[PulseStatus], failing: Sequence[FailingTenant]
) -> tuple[Alert, ...]:
    """The spec's alert conditions, judged on the newest pulse (the newest complete one for the
    error rate, so a pulse still running does not alarm on a partial count)."""
    alerts: list[Alert] = []
    judged = next((p for p in pulses if p.complete), pulses[0] if pulses else None)
    rate = judged.error_rate if judged else None
    if judged is not None and rate is not None and rate > ERROR_RATE_THRESHOLD:
        alerts.append(
            Alert(
                AlertKind.ERROR_RATE,
                f"pulse {judged.pulse_id}: {rate:.0%} of syncs failed ({judged.error} of "
                f"{judged.success + judged.error}; threshold {ERROR_RATE_THRESHOLD:.0%})",
            )
        )
    newest = pulses[0] if pulses else None
    if newest is not None and newest.slow:
        state = "took" if newest.complete else "still incomplete after"
        alerts.append(
            Alert(
                AlertKind.SLOW_PULSE,
                f"pulse {newest.pulse_id} {state} {newest.duration_seconds:.0f} s"
                f" (threshold {SLOW_PULSE_SECONDS:.0f} s)",
            )
        )
    streaking = [
        t for t in failing if (t.consecutive_failures or 0) >= CONSECUTIVE_FAILURES_THRESHOLD
    ]
    if streaking:
        shown = ", ".join(f"{t.uid} ({t.consecutive_failures})" for t in streaking[:10])
        more = f" and {len(streaking) - 10} more" if len(streaking) > 10 else ""
        alerts.append(
            Alert(
                AlertKind.CONSECUTIVE_FAILURES,
                f"{len(streaking)} tenant(s) failed {CONSECUTIVE_FAILURES_THRESHOLD}+ syncs in a"
                f" row: {shown}{more}",
            )
        )
    return tuple(alerts)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _datetime(value: Any) -> datetime | None:
    return value if isinstance(value, datetime) else None
