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
Results are ordered by ``requestedAt`` as snapshots always were (the worker bounds it by the
server's clock first, see :func:`agenttrader.messages.requested_at_bound`): a result of a
message no newer than the stored snapshot (a duplicate, or superseded) writes nothing of its
own, neither snapshot nor failure nor skip, so a failing copy of a message that already
succeeded cannot turn it into an error. A superseded message of a pulse only moves the
tenant's latest outcome, newer than the message, to its pulse (:func:`superseded_plan`), so
that every message of a pulse counts once in it. Where the message has no pulse and the
snapshot no outcome yet, the tenant's pulse is known to ``status/sync`` alone: it is read
(first syncs, placeholders) and its write is guarded by its update time as well.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from google.api_core import exceptions as gexc
from google.cloud.firestore_v1.transforms import Increment

from agenttrader.errors import DependencyUnavailable
from agenttrader.firestore_io import add_set_fields
from agenttrader.firestore_io import call as firestore_call
from agenttrader.paths import last_sync_error_doc, snapshot_doc, sync_state_doc
from agenttrader.pulses import is_newer
from agenttrader.snapshot import (
    FAILING_FIELD,
    OUTCOME_FIELD,
    PLACEHOLDER_FIELD,
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
        now = datetime.now(UTC)
        stale = current.staleness(request.requested_at, now=now)
        if stale is not None:
            return stale
        source = pulse_from(change, current, request.pulse_id)
        state = SyncState.read(db, request.uid) if source is PulseFrom.STATUS else None
        writes = plan(change, current, request, now=now, sync_state=state)
        if _commit(db, request.uid, writes):
            return None
        current = Stored.read(db, request.uid)
    raise DependencyUnavailable("the snapshot kept changing while the sync result was written")


def count_superseded(db: firestore.Client, request: SyncRequest, stored: Stored | None) -> bool:
    """A pulse's message superseded by a newer snapshot still counts for its pulse: the
    tenant's latest outcome (newer than the message) moves to it from an older pulse
    (:func:`superseded_plan`). Guarded like :func:`record`; returns whether it was written."""
    current = stored if stored is not None else Stored.read(db, request.uid)
    for _ in range(PRECONDITION_RETRIES):
        writes = superseded_plan(current, request, now=datetime.now(UTC))
        if writes is None:
            return False
        if _commit(db, request.uid, writes):
            return True
        current = Stored.read(db, request.uid)
    raise DependencyUnavailable("the snapshot kept changing while the sync result was written")


def _commit(db: firestore.Client, uid: str, writes: WritePlan) -> bool:
    """Commit ``writes`` in one batch; ``False`` when a precondition failed (decide again)."""
    batch = db.batch()
    _add_writes(db, batch, uid, writes)
    try:
        firestore_call(batch.commit)
    except _CONFLICTS:
        return False
    return True


# --- deciding what a result writes (pure) ----------------------------------------------------


@dataclass(frozen=True)
class SyncState:
    """``status/sync`` as read to learn the tenant's pulse; its write is then guarded by it."""

    exists: bool
    pulse_id: str | None = None
    update_time: datetime | None = None

    @classmethod
    def read(cls, db: firestore.Client, uid: str) -> SyncState:
        found = firestore_call(db.document(sync_state_doc(uid)).get)
        if not found.exists:
            return cls(exists=False)
        pulse = (found.to_dict() or {}).get("pulse_id")
        return cls(True, pulse if isinstance(pulse, str) else None, found.update_time)


class PulseFrom(StrEnum):
    """Where the pulse the tenant's outcome counts for after a result comes from."""

    MESSAGE = "message"
    """The message's pulse."""
    SNAPSHOT = "snapshot"
    """The stored snapshot's: a sync outside a pulse keeps the one the outcome counts for."""
    STATUS = "status"
    """``status/sync``'s, read first: the snapshot carries no outcome yet, and the result
    writes one."""
    NOWHERE = "nowhere"
    """Unknown, and nothing written needs it: ``status/sync`` keeps its own."""


def pulse_from(change: Change, stored: Stored, message_pulse: str | None) -> PulseFrom:
    """Where the pulse of ``change`` comes from, given the snapshot as read and the message's
    pulse; :data:`PulseFrom.STATUS` means ``status/sync`` must be read before :func:`plan`."""
    if message_pulse is not None:
        return PulseFrom.MESSAGE
    if stored.outcome is not None:
        return PulseFrom.SNAPSHOT
    if change.outcome is not None and (stored.exists or change.snapshot is not None):
        return PulseFrom.STATUS
    return PulseFrom.NOWHERE


class SnapshotWrite(StrEnum):
    """How a result writes ``users/{uid}/data/snapshot``."""

    FULL = "full"
    """The synced data with the result fields; a placeholder's marker deleted, a missing
    snapshot created."""
    MARKS = "marks"
    """The result fields alone, on the stored snapshot (its data and ``requestedAt`` stay)."""
    ABSENT = "absent"
    """Nothing: a delete requiring the snapshot still absent (a failure never creates one),
    so that a snapshot written since the read fails the commit."""


class ErrorWrite(StrEnum):
    """What a result does to ``status/last_sync_error``."""

    SET = "set"
    DELETE = "delete"
    NONE = "none"


class StatusWrite(StrEnum):
    """How a result writes ``status/sync``."""

    NONE = "none"
    MERGE = "merge"
    """Merged: ``consecutive_failures`` survives to be incremented, an unknown pulse is kept."""
    UPDATE = "update"
    """Updated, guarded by the update time read to learn the pulse."""
    CREATE = "create"
    """Created: it was read absent to learn the pulse."""


@dataclass(frozen=True)
class WritePlan:
    """What one result writes, each write guarded by what was read (:func:`plan`)."""

    snapshot: SnapshotWrite
    snapshot_fields: Mapping[str, Any]
    """Top-level fields set on the snapshot (``ABSENT``: none); others are left alone."""
    snapshot_deletes: tuple[str, ...]
    """Top-level fields deleted from the snapshot."""
    snapshot_guard: datetime | None
    """The snapshot's update time as read; ``None``: it must still be absent."""
    error: ErrorWrite
    error_body: Mapping[str, Any]
    """The body of ``status/last_sync_error`` when ``error`` is ``SET`` (else empty)."""
    status: StatusWrite
    status_fields: Mapping[str, Any]
    """The fields of ``status/sync`` written (``NONE``: none)."""
    status_guard: datetime | None
    """``status/sync``'s update time as read, for an ``UPDATE``."""


def plan(
    change: Change,
    stored: Stored,
    request: SyncRequest,
    *,
    now: datetime,
    sync_state: SyncState | None = None,
) -> WritePlan:
    """What ``change`` writes over the snapshot ``stored`` (no newer than the message), for
    ``request``, at ``now``; ``sync_state`` is ``status/sync`` as read when :func:`pulse_from`
    says :data:`PulseFrom.STATUS` (else unused)."""
    source = pulse_from(change, stored, request.pulse_id)
    read = sync_state if source is PulseFrom.STATUS else None
    if source is PulseFrom.STATUS and read is None:
        raise ValueError("the pulse is known to status/sync alone: read it first")
    pulse = {
        PulseFrom.MESSAGE: request.pulse_id,
        PulseFrom.SNAPSHOT: stored.pulse_id,
        PulseFrom.STATUS: read.pulse_id if read is not None else None,
        PulseFrom.NOWHERE: None,
    }[source]

    snapshot, fields, deletes = _snapshot_write(change, stored, pulse)
    status, status_fields, status_guard = _status_write(change, stored, request, now, read)
    if status is not StatusWrite.NONE and source is not PulseFrom.NOWHERE:
        status_fields["pulse_id"] = pulse
    return WritePlan(
        snapshot=snapshot,
        snapshot_fields=fields,
        snapshot_deletes=deletes,
        snapshot_guard=stored.update_time if stored.exists else None,
        error=_error_write(change, stored),
        error_body=change.error or {},
        status=status,
        status_fields=status_fields,
        status_guard=status_guard,
    )


def superseded_plan(stored: Stored, request: SyncRequest, *, now: datetime) -> WritePlan | None:
    """What a message of a pulse writes when the stored snapshot is newer (``None``: nothing).

    The tenant's latest outcome came from a message at least as new as this one (a success
    stamps ``requestedAt``; a failure is recorded only for a message newer than it), so it is
    the tenant's outcome in this pulse too: where it counts for an older pulse, or none, it
    moves to this one (``pulseId``, and ``status/sync.pulse_id`` for an error or a skip, which
    are counted there), and the pulse completes. An outcome counting for this pulse or a newer
    one stays where it is. The snapshot's data and ``requestedAt`` are not touched."""
    pulse = request.pulse_id
    outcome = stored.outcome
    if (
        pulse is None
        or outcome is None
        or stored.staleness(request.requested_at, now=now) is not Stale.SUPERSEDED
        or stored.pulse_id == pulse
        or not is_newer(pulse, stored.pulse_id, now)
    ):
        return None
    counted_on_status = outcome != Outcome.SUCCESS
    return WritePlan(
        snapshot=SnapshotWrite.MARKS,
        snapshot_fields={PULSE_FIELD: pulse},
        snapshot_deletes=(),
        snapshot_guard=stored.update_time,
        error=ErrorWrite.NONE,
        error_body={},
        status=StatusWrite.MERGE if counted_on_status else StatusWrite.NONE,
        status_fields={"pulse_id": pulse} if counted_on_status else {},
        status_guard=None,
    )


def _snapshot_write(
    change: Change, stored: Stored, pulse: str | None
) -> tuple[SnapshotWrite, dict[str, Any], tuple[str, ...]]:
    if change.snapshot is not None:
        body = {
            **change.snapshot,
            PULSE_FIELD: pulse,
            OUTCOME_FIELD: Outcome.SUCCESS.value,
            FAILING_FIELD: False,
        }
        return SnapshotWrite.FULL, body, (PLACEHOLDER_FIELD,) if stored.exists else ()
    if not stored.exists:
        return SnapshotWrite.ABSENT, {}, ()
    marks: dict[str, Any] = {}
    if change.error is not None:
        marks[FAILING_FIELD] = True
    if change.outcome is not None:
        marks[OUTCOME_FIELD] = change.outcome.value
        marks[PULSE_FIELD] = pulse
    return SnapshotWrite.MARKS, marks, ()


def _error_write(change: Change, stored: Stored) -> ErrorWrite:
    if change.error is not None:
        return ErrorWrite.SET
    if change.snapshot is not None and stored.failing is not False:
        return ErrorWrite.DELETE
    return ErrorWrite.NONE


def _status_write(
    change: Change, stored: Stored, request: SyncRequest, now: datetime, read: SyncState | None
) -> tuple[StatusWrite, dict[str, Any], datetime | None]:
    """``status/sync``'s write without its pulse: none for a retried failure, nor for a
    success over a clean snapshot (``status/sync`` already says success)."""
    if change.outcome is None or (change.snapshot is not None and stored.clean):
        return StatusWrite.NONE, {}, None
    body: dict[str, Any] = {
        "outcome": change.outcome.value,
        "reason": request.reason.value,
        "requested_at": request.requested_at,
        "at": now,
        "error_class": change.error_class,
    }
    # Final failures in a row (the operator's alert); a skip neither breaks nor extends it.
    if change.outcome is Outcome.ERROR:
        body["consecutive_failures"] = Increment(1)
    elif change.outcome is Outcome.SUCCESS:
        body["consecutive_failures"] = 0
    if read is None:
        return StatusWrite.MERGE, body, None
    if read.exists:
        return StatusWrite.UPDATE, body, read.update_time
    return StatusWrite.CREATE, body, None


def _add_writes(db: firestore.Client, batch: Any, uid: str, writes: WritePlan) -> None:
    """Add the writes of ``writes`` to ``batch``, with their preconditions."""
    if writes.snapshot is SnapshotWrite.ABSENT:
        batch.delete(db.document(snapshot_doc(uid)), option=db.write_option(exists=False))
    else:
        add_set_fields(
            batch,
            db,
            snapshot_doc(uid),
            writes.snapshot_fields,
            delete=writes.snapshot_deletes,
            last_update_time=writes.snapshot_guard,
        )

    error = db.document(last_sync_error_doc(uid))
    if writes.error is ErrorWrite.SET:
        batch.set(error, dict(writes.error_body))
    elif writes.error is ErrorWrite.DELETE:
        batch.delete(error)

    status = db.document(sync_state_doc(uid))
    body = dict(writes.status_fields)
    if writes.status is StatusWrite.MERGE:
        batch.set(status, body, merge=True)
    elif writes.status is StatusWrite.UPDATE:
        batch.update(status, body, option=db.write_option(last_update_time=writes.status_guard))
    elif writes.status is StatusWrite.CREATE:
        batch.create(status, body)


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
