"""How one sync's result is written: the snapshot, ``status/sync``, ``status/last_sync_error``.

The snapshot carries the tenant's pulse result, so a successful sync of a healthy tenant costs
one write (the snapshot) and nothing else. Three fields of ``users/{uid}/data/snapshot``:

- ``syncOutcome``: ``success`` | ``error`` | ``skipped``, the tenant's latest outcome; always
  equal to ``status/sync.outcome``;
- ``pulseId``: the pulse that outcome counts for: the message's pulse; a sync outside a pulse
  (first sync, manual, replay) keeps the stored one, as ``status/sync.pulse_id`` always did, so
  a replay that fixes a dead-lettered user turns that pulse's error into a success;
- ``syncFailing``: ``status/last_sync_error`` exists (a failure was recorded since the last
  success, final or still being retried by Pub/Sub).

A pulse's successes are counted on the snapshots (``pulseId == p and syncOutcome == success``),
its errors and skips on ``status/sync`` (``pulse_id == p and outcome == ...``), see
:func:`agenttrader.pulses.count_outcomes`. No tenant is counted twice because every write below
keeps one invariant: a snapshot whose ``syncOutcome`` is ``success`` means ``status/sync`` says
``success`` too (its ``pulse_id`` may then be stale: the snapshot's is the current one).

- A success writes the snapshot. Only when the snapshot it read is not *clean* (absent, without
  ``syncOutcome`` yet, i.e. a placeholder, migrated or older data, another outcome, or
  ``syncFailing``) does it also reset ``status/sync`` and delete ``status/last_sync_error``.
- A failure writes ``status/last_sync_error`` and marks the snapshot ``syncFailing``; a final
  failure, like a kill-switch skip, also writes ``status/sync`` and the snapshot's
  ``syncOutcome`` and ``pulseId``. A failure never touches the snapshot's data or
  ``requestedAt``, and never creates a snapshot.

Every write is guarded by the snapshot as it was read: its update time, or its absence (a
delete with an ``exists=false`` precondition, which writes nothing). Two results of the same
tenant therefore never interleave: the later commit fails its precondition, reads the snapshot
again and decides again (a failure in between costs a success one more round, never its write).
Results are ordered by ``requestedAt`` as snapshots always were: a result of a message no newer
than the stored snapshot (a duplicate, or superseded) writes nothing at all, neither snapshot
nor failure nor skip, so a failing copy of a message that already succeeded cannot turn it into
an error. Where the message has no pulse and the snapshot no outcome yet, the tenant's pulse is
known to ``status/sync`` alone: it is read (first syncs, placeholders) and its write is guarded
by its update time as well.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from google.api_core import exceptions as gexc

from agenttrader.errors import DependencyUnavailable
from agenttrader.firestore_io import add_set_fields
from agenttrader.firestore_io import call as firestore_call
from agenttrader.paths import last_sync_error_doc, snapshot_doc, sync_state_doc
from agenttrader.snapshot import (
    FAILING_FIELD,
    OUTCOME_FIELD,
    PULSE_FIELD,
    Outcome,
    Stale,
    Stored,
)

if TYPE_CHECKING:
    from google.cloud import firestore

    from agenttrader.messages import SyncRequest

PRECONDITION_RETRIES = 3
"""Rounds of read-and-decide-again after a commit lost to another result of the same tenant."""
_CONFLICTS = (gexc.FailedPrecondition, gexc.AlreadyExists, gexc.Conflict, gexc.NotFound)


@dataclass(frozen=True)
class Change:
    """One sync's result, as :func:`record` writes it."""

    outcome: Outcome | None
    """The outcome recorded; ``None`` for a failure Pub/Sub retries (the outcome stays)."""
    snapshot: Mapping[str, Any] | None = None
    """A success: the snapshot's new data."""
    error: Mapping[str, Any] | None = None
    """A failure: the body of ``status/last_sync_error``."""
    error_class: str | None = None

    @classmethod
    def success(cls, snapshot: Mapping[str, Any]) -> Change:
        return cls(Outcome.SUCCESS, snapshot=snapshot)

    @classmethod
    def skip(cls) -> Change:
        return cls(Outcome.SKIPPED)

    @classmethod
    def failure(cls, error: Mapping[str, Any], error_class: str, *, final: bool) -> Change:
        return cls(Outcome.ERROR if final else None, error=error, error_class=error_class)


def record(
    db: firestore.Client, request: SyncRequest, stored: Stored | None, change: Change
) -> Stale | None:
    """Write ``change``, guarded by ``stored`` (read first when ``None``); after a lost race,
    read the snapshot again and decide again. Returns why nothing was written, if so."""
    current = stored if stored is not None else Stored.read(db, request.uid)
    for _ in range(PRECONDITION_RETRIES):
        stale = current.staleness(request.requested_at)
        if stale is not None:
            return stale
        batch = db.batch()
        _add_writes(db, batch, request, current, change)
        try:
            firestore_call(batch.commit)
            return None
        except _CONFLICTS:
            current = Stored.read(db, request.uid)
    raise DependencyUnavailable("the snapshot kept changing while the sync result was written")


@dataclass(frozen=True)
class _Pulse:
    """The pulse the tenant's outcome counts for, after this result."""

    value: str | None
    known: bool
    """``False``: only ``status/sync`` knows it, and nothing written needs it (kept there)."""
    state: Any = None
    """``status/sync`` when it was read to learn the pulse: its write is guarded by it."""


def _pulse_of(db: firestore.Client, request: SyncRequest, stored: Stored, change: Change) -> _Pulse:
    if request.pulse_id is not None:
        return _Pulse(request.pulse_id, known=True)
    if stored.outcome is not None:
        return _Pulse(stored.pulse_id, known=True)
    writes_snapshot_pulse = change.outcome is not None and (
        stored.exists or change.snapshot is not None
    )
    if not writes_snapshot_pulse:
        return _Pulse(None, known=False)
    state = firestore_call(db.document(sync_state_doc(request.uid)).get)
    value = (state.to_dict() or {}).get("pulse_id") if state.exists else None
    return _Pulse(value if isinstance(value, str) else None, known=True, state=state)


def _add_writes(
    db: firestore.Client, batch: Any, request: SyncRequest, stored: Stored, change: Change
) -> None:
    uid = request.uid
    pulse = _pulse_of(db, request, stored, change)
    guard = stored.update_time if stored.exists else None
    if change.snapshot is not None:
        body = {
            **change.snapshot,
            PULSE_FIELD: pulse.value,
            OUTCOME_FIELD: Outcome.SUCCESS.value,
            FAILING_FIELD: False,
        }
        placeholder = ("placeholder",) if stored.exists else ()
        add_set_fields(
            batch, db, snapshot_doc(uid), body, delete=placeholder, last_update_time=guard
        )
    elif stored.exists:
        marks: dict[str, Any] = {}
        if change.error is not None:
            marks[FAILING_FIELD] = True
        if change.outcome is not None:
            marks[OUTCOME_FIELD] = change.outcome.value
            marks[PULSE_FIELD] = pulse.value
        add_set_fields(batch, db, snapshot_doc(uid), marks, last_update_time=guard)
    else:
        # Writes nothing; fails if a snapshot appeared since it was read (then: decide again).
        batch.delete(db.document(snapshot_doc(uid)), option=db.write_option(exists=False))

    if change.error is not None:
        batch.set(db.document(last_sync_error_doc(uid)), dict(change.error))
    elif change.snapshot is not None and stored.failing is not False:
        batch.delete(db.document(last_sync_error_doc(uid)))

    if change.outcome is not None and not (change.snapshot is not None and stored.clean):
        _add_status(db, batch, request, change, pulse)


def _add_status(
    db: firestore.Client, batch: Any, request: SyncRequest, change: Change, pulse: _Pulse
) -> None:
    from google.cloud import firestore

    assert change.outcome is not None
    body: dict[str, Any] = {
        "outcome": change.outcome.value,
        "reason": request.reason.value,
        "requested_at": request.requested_at,
        "at": datetime.now(UTC),
        "error_class": change.error_class,
    }
    if pulse.known:
        body["pulse_id"] = pulse.value
    # Final failures in a row (the operator's alert); a skip neither breaks nor extends it.
    if change.outcome is Outcome.ERROR:
        body["consecutive_failures"] = firestore.Increment(1)
    elif change.outcome is Outcome.SUCCESS:
        body["consecutive_failures"] = 0
    ref = db.document(sync_state_doc(request.uid))
    if pulse.state is None:
        # merge: the counter must survive to be incremented; a pulse unknown here is kept.
        batch.set(ref, body, merge=True)
    elif pulse.state.exists:
        batch.update(ref, body, option=db.write_option(last_update_time=pulse.state.update_time))
    else:
        batch.create(ref, body)


# --- reading the result back (the chaos suite, tests, tools) ---------------------------------


def counted_outcome(
    snapshot: Mapping[str, Any] | None, sync_state: Mapping[str, Any] | None
) -> tuple[str | None, str] | None:
    """``(pulse id, outcome)`` a tenant counts for, from its snapshot and ``status/sync``
    (``None``: nothing recorded): a success on the snapshot, else an error or a skip on
    ``status/sync``; what :func:`agenttrader.pulses.count_outcomes` counts, user by user."""
    snap = snapshot or {}
    if snap.get(OUTCOME_FIELD) == Outcome.SUCCESS:
        pulse = snap.get(PULSE_FIELD)
        return (pulse if isinstance(pulse, str) else None, Outcome.SUCCESS.value)
    state = sync_state or {}
    outcome = state.get("outcome")
    if outcome in (Outcome.ERROR, Outcome.SKIPPED):
        pulse = state.get("pulse_id")
        return (pulse if isinstance(pulse, str) else None, str(outcome))
    return None


def inconsistencies(
    snapshot: Mapping[str, Any] | None,
    sync_state: Mapping[str, Any] | None,
    last_error: Mapping[str, Any] | None,
) -> list[str]:
    """How one tenant's three documents contradict what :func:`record` keeps (empty: agree)."""
    if snapshot is None or snapshot.get(OUTCOME_FIELD) is None:
        return []  # no snapshot, or one no result was recorded on: status/sync alone counts
    state = sync_state or {}
    found = []
    outcome = snapshot.get(OUTCOME_FIELD)
    if state.get("outcome") != outcome:
        found.append(f"snapshot syncOutcome {outcome}, status/sync outcome {state.get('outcome')}")
    elif outcome != Outcome.SUCCESS and state.get("pulse_id") != snapshot.get(PULSE_FIELD):
        found.append(
            f"{outcome} counted for pulse {state.get('pulse_id')} by status/sync, for"
            f" {snapshot.get(PULSE_FIELD)} by the snapshot"
        )
    if outcome == Outcome.SUCCESS and state.get("consecutive_failures") not in (0, None):
        found.append(f"success, but {state.get('consecutive_failures')} failures in a row")
    failing = snapshot.get(FAILING_FIELD)
    if isinstance(failing, bool) and failing is not (last_error is not None):
        found.append(
            f"syncFailing {failing}, status/last_sync_error"
            f" {'present' if last_error is not None else 'absent'}"
        )
    return found
