"""What a sync result writes (:func:`sync_worker.record.plan`): a table of outcome × stored
snapshot × message pulse, and the invariants of :mod:`sync_worker.record` checked by applying
each plan to the three documents of a tenant held in memory."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import pytest
from google.cloud.firestore_v1.transforms import Increment

from agenttrader.messages import MAX_CLOCK_SKEW, Reason, SyncRequest
from agenttrader.pulses import pulse_id_for
from agenttrader.snapshot import (
    FAILING_FIELD,
    OUTCOME_FIELD,
    PLACEHOLDER_FIELD,
    PULSE_FIELD,
    REQUESTED_AT_FIELD,
    Outcome,
    Stale,
    Stored,
    placeholder,
)
from sync_worker.record import (
    Change,
    ErrorWrite,
    PulseFrom,
    SnapshotWrite,
    StatusWrite,
    SyncState,
    WritePlan,
    counted_outcome,
    inconsistencies,
    plan,
    pulse_from,
    superseded_plan,
)

NOW = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)
EARLIER = NOW - timedelta(minutes=1)
SNAPSHOT_READ_AT = NOW - timedelta(seconds=30)
STATUS_READ_AT = NOW - timedelta(seconds=40)
ERROR_BODY = {"error": "Alpaca answered 503", "timestamp": NOW, "error_class": "AlpacaUnavailable"}
SYNCED = {"syncedAt": NOW, REQUESTED_AT_FIELD: NOW, "account": {"id": "a-1"}, "equity": "10"}
OLD_DATA = {"syncedAt": EARLIER, REQUESTED_AT_FIELD: EARLIER, "account": {"id": "a-0"}}


# --- the tenants: a snapshot and the status/sync and status/last_sync_error beside it -------


@dataclass(frozen=True)
class Tenant:
    """One tenant's three documents before the result (``None``: absent), consistent."""

    snapshot: Mapping[str, Any] | None
    status: Mapping[str, Any] | None
    error: Mapping[str, Any] | None = None

    def stored(self) -> Stored:
        if self.snapshot is None:
            return Stored(exists=False)
        return Stored(exists=True, update_time=SNAPSHOT_READ_AT, data=self.snapshot)

    def sync_state(self) -> SyncState:
        if self.status is None:
            return SyncState(exists=False)
        return SyncState(True, self.status.get("pulse_id"), STATUS_READ_AT)


def outcome(value: Outcome, failing: bool) -> dict[str, Any]:
    """A snapshot carrying a recorded outcome for pulse ``p-stored``."""
    return {**OLD_DATA, OUTCOME_FIELD: value.value, PULSE_FIELD: "p-stored", FAILING_FIELD: failing}


def status(value: Outcome, pulse: str, failures: int) -> dict[str, Any]:
    return {"outcome": value.value, "pulse_id": pulse, "consecutive_failures": failures}


TENANTS = {
    # No snapshot; a final failure was recorded without one (it never creates a snapshot).
    "absent": Tenant(None, status(Outcome.ERROR, "p-status", 1), ERROR_BODY),
    # Onboarding's placeholder: no outcome on it, the pulse known to status/sync alone.
    "placeholder": Tenant(placeholder(), status(Outcome.SKIPPED, "p-status", 0)),
    # Healthy: the snapshot's pulse is the current one, status/sync's may be older.
    "clean": Tenant(outcome(Outcome.SUCCESS, False), status(Outcome.SUCCESS, "p-old", 0)),
    # A success, then a failure Pub/Sub still retries.
    "failing": Tenant(
        outcome(Outcome.SUCCESS, True), status(Outcome.SUCCESS, "p-old", 0), ERROR_BODY
    ),
    "error": Tenant(outcome(Outcome.ERROR, True), status(Outcome.ERROR, "p-stored", 2), ERROR_BODY),
    "skipped": Tenant(outcome(Outcome.SKIPPED, False), status(Outcome.SKIPPED, "p-stored", 0)),
}

CHANGES = {
    "success": Change.success(SYNCED),
    "skip": Change.skip(),
    "final": Change.failure(ERROR_BODY, "AlpacaUnavailable", final=True),
    "retried": Change.failure(ERROR_BODY, "AlpacaUnavailable", final=False),
}


def request(pulse: str | None) -> SyncRequest:
    reason = Reason.SCHEDULE if pulse is not None else Reason.MANUAL
    return SyncRequest("u1", reason, NOW, pulse_id=pulse)


def planned(change: str, tenant: str, pulse: str | None) -> WritePlan:
    """The plan, with status/sync read first exactly when :func:`pulse_from` says so."""
    found, stored = TENANTS[tenant], TENANTS[tenant].stored()
    source = pulse_from(CHANGES[change], stored, pulse)
    read = found.sync_state() if source is PulseFrom.STATUS else None
    return plan(CHANGES[change], stored, request(pulse), now=NOW, sync_state=read)


# --- the table ------------------------------------------------------------------------------

FULL, MARKS, ABSENT = SnapshotWrite.FULL, SnapshotWrite.MARKS, SnapshotWrite.ABSENT
SET, DELETE, KEEP = ErrorWrite.SET, ErrorWrite.DELETE, ErrorWrite.NONE
NO, MERGE, UPDATE = StatusWrite.NONE, StatusWrite.MERGE, StatusWrite.UPDATE
KEPT = "(kept)"
"""The pulse is unknown and not written: ``status/sync`` keeps its own."""
MSG = "p-msg"


class Row(NamedTuple):
    """One case: a change over a tenant's documents, for a message with or without a pulse."""

    change: str
    tenant: str
    pulse: str | None
    snapshot: SnapshotWrite
    error: ErrorWrite
    status: StatusWrite
    written_pulse: str
    """The pulse written on the snapshot and status/sync (``KEPT``: none written)."""


TABLE = [
    Row("success", "absent", MSG, FULL, DELETE, MERGE, MSG),
    Row("success", "absent", None, FULL, DELETE, UPDATE, "p-status"),
    Row("success", "placeholder", MSG, FULL, DELETE, MERGE, MSG),
    Row("success", "placeholder", None, FULL, DELETE, UPDATE, "p-status"),
    Row("success", "clean", MSG, FULL, KEEP, NO, MSG),  # the one write of a healthy tenant
    Row("success", "clean", None, FULL, KEEP, NO, "p-stored"),
    Row("success", "failing", MSG, FULL, DELETE, MERGE, MSG),
    Row("success", "failing", None, FULL, DELETE, MERGE, "p-stored"),
    Row("success", "error", MSG, FULL, DELETE, MERGE, MSG),
    Row("success", "error", None, FULL, DELETE, MERGE, "p-stored"),  # a replay heals its pulse
    Row("success", "skipped", MSG, FULL, KEEP, MERGE, MSG),
    Row("success", "skipped", None, FULL, KEEP, MERGE, "p-stored"),
    Row("skip", "absent", MSG, ABSENT, KEEP, MERGE, MSG),
    Row("skip", "absent", None, ABSENT, KEEP, MERGE, KEPT),
    Row("skip", "placeholder", MSG, MARKS, KEEP, MERGE, MSG),
    Row("skip", "placeholder", None, MARKS, KEEP, UPDATE, "p-status"),
    Row("skip", "clean", MSG, MARKS, KEEP, MERGE, MSG),
    Row("skip", "clean", None, MARKS, KEEP, MERGE, "p-stored"),
    Row("skip", "failing", MSG, MARKS, KEEP, MERGE, MSG),
    Row("skip", "failing", None, MARKS, KEEP, MERGE, "p-stored"),
    Row("skip", "error", MSG, MARKS, KEEP, MERGE, MSG),
    Row("skip", "error", None, MARKS, KEEP, MERGE, "p-stored"),
    Row("skip", "skipped", MSG, MARKS, KEEP, MERGE, MSG),
    Row("skip", "skipped", None, MARKS, KEEP, MERGE, "p-stored"),
    Row("final", "absent", MSG, ABSENT, SET, MERGE, MSG),
    Row("final", "absent", None, ABSENT, SET, MERGE, KEPT),
    Row("final", "placeholder", MSG, MARKS, SET, MERGE, MSG),
    Row("final", "placeholder", None, MARKS, SET, UPDATE, "p-status"),
    Row("final", "clean", MSG, MARKS, SET, MERGE, MSG),
    Row("final", "clean", None, MARKS, SET, MERGE, "p-stored"),  # a racing replay failed
    Row("final", "failing", MSG, MARKS, SET, MERGE, MSG),
    Row("final", "failing", None, MARKS, SET, MERGE, "p-stored"),
    Row("final", "error", MSG, MARKS, SET, MERGE, MSG),
    Row("final", "error", None, MARKS, SET, MERGE, "p-stored"),
    Row("final", "skipped", MSG, MARKS, SET, MERGE, MSG),
    Row("final", "skipped", None, MARKS, SET, MERGE, "p-stored"),
    # Not counted while Pub/Sub retries: the outcome, its pulse and status/sync stay.
    Row("retried", "absent", MSG, ABSENT, SET, NO, KEPT),
    Row("retried", "absent", None, ABSENT, SET, NO, KEPT),
    Row("retried", "placeholder", MSG, MARKS, SET, NO, KEPT),
    Row("retried", "placeholder", None, MARKS, SET, NO, KEPT),
    Row("retried", "clean", MSG, MARKS, SET, NO, KEPT),
    Row("retried", "clean", None, MARKS, SET, NO, KEPT),
    Row("retried", "failing", MSG, MARKS, SET, NO, KEPT),
    Row("retried", "failing", None, MARKS, SET, NO, KEPT),
    Row("retried", "error", MSG, MARKS, SET, NO, KEPT),
    Row("retried", "error", None, MARKS, SET, NO, KEPT),
    Row("retried", "skipped", MSG, MARKS, SET, NO, KEPT),
    Row("retried", "skipped", None, MARKS, SET, NO, KEPT),
]
CASES = [
    pytest.param(row, id=f"{row.change}-{row.tenant}-{'pulse' if row.pulse else 'no_pulse'}")
    for row in TABLE
]


def result_fields(change: str, pulse: str) -> dict[str, Any]:
    """The result fields each kind of change sets on a snapshot."""
    fields: dict[str, dict[str, Any]] = {
        "success": {OUTCOME_FIELD: "success", PULSE_FIELD: pulse, FAILING_FIELD: False},
        "skip": {OUTCOME_FIELD: "skipped", PULSE_FIELD: pulse},
        "final": {OUTCOME_FIELD: "error", PULSE_FIELD: pulse, FAILING_FIELD: True},
        "retried": {FAILING_FIELD: True},
    }
    return fields[change]


def test_the_table_covers_every_change_tenant_and_pulse() -> None:
    keys = [(row.change, row.tenant, row.pulse) for row in TABLE]
    assert sorted(keys, key=repr) == sorted(
        [(c, t, p) for c in CHANGES for t in TENANTS for p in (MSG, None)], key=repr
    )


@pytest.mark.parametrize("row", CASES)
def test_what_a_result_writes(row: Row) -> None:
    change, tenant, pulse, snapshot, error, status, written_pulse = row
    writes = planned(change, tenant, pulse)
    stored = TENANTS[tenant].stored()

    assert writes.snapshot is snapshot
    marks = result_fields(change, written_pulse)
    if snapshot is FULL:
        assert writes.snapshot_fields == {**SYNCED, **marks}
    elif snapshot is MARKS:
        assert writes.snapshot_fields == marks
    else:
        assert writes.snapshot_fields == {}
    placeholder_deleted = (PLACEHOLDER_FIELD,) if snapshot is FULL and stored.exists else ()
    assert writes.snapshot_deletes == placeholder_deleted
    # Every write is guarded by the snapshot as read: its update time, or its absence.
    assert writes.snapshot_guard == (SNAPSHOT_READ_AT if stored.exists else None)

    assert writes.error is error
    assert writes.error_body == (ERROR_BODY if error is SET else {})

    assert writes.status is status
    assert writes.status_guard == (STATUS_READ_AT if status is UPDATE else None)
    if status is NO:
        assert writes.status_fields == {}
    elif written_pulse == KEPT:
        assert "pulse_id" not in writes.status_fields
    else:
        assert writes.status_fields["pulse_id"] == written_pulse


@pytest.mark.parametrize(
    ("change", "body"),
    [
        ("success", {"outcome": "success", "error_class": None, "consecutive_failures": 0}),
        ("skip", {"outcome": "skipped", "error_class": None}),
        (
            "final",
            {
                "outcome": "error",
                "error_class": "AlpacaUnavailable",
                "consecutive_failures": Increment(1),
            },
        ),
    ],
)
def test_the_status_body_counts_final_failures_in_a_row(change: str, body: dict[str, Any]) -> None:
    writes = planned(change, "error", MSG)
    assert writes.status_fields == {
        **body,
        "reason": "schedule",
        "requested_at": NOW,
        "at": NOW,
        "pulse_id": MSG,
    }


@pytest.mark.parametrize("change", ["success", "skip", "final"])
@pytest.mark.parametrize(
    ("read", "status", "guard"),
    [
        (SyncState(exists=False), StatusWrite.CREATE, None),
        (SyncState(True, None, STATUS_READ_AT), StatusWrite.UPDATE, STATUS_READ_AT),
    ],
    ids=["absent", "without_pulse"],
)
def test_status_sync_read_without_a_pulse_is_created_or_updated_with_none(
    change: str, read: SyncState, status: StatusWrite, guard: datetime | None
) -> None:
    stored = TENANTS["placeholder"].stored()
    assert pulse_from(CHANGES[change], stored, None) is PulseFrom.STATUS
    writes = plan(CHANGES[change], stored, request(None), now=NOW, sync_state=read)
    assert (writes.status, writes.status_guard) == (status, guard)
    assert writes.status_fields["pulse_id"] is None
    assert writes.snapshot_fields[PULSE_FIELD] is None


@pytest.mark.parametrize(
    ("change", "tenant", "pulse", "source"),
    [
        ("success", "clean", MSG, PulseFrom.MESSAGE),
        ("retried", "absent", MSG, PulseFrom.MESSAGE),
        ("skip", "skipped", None, PulseFrom.SNAPSHOT),
        ("retried", "error", None, PulseFrom.SNAPSHOT),
        ("success", "absent", None, PulseFrom.STATUS),
        ("success", "placeholder", None, PulseFrom.STATUS),
        ("skip", "placeholder", None, PulseFrom.STATUS),
        ("final", "placeholder", None, PulseFrom.STATUS),
        # Nothing written carries a pulse: status/sync is not read.
        ("skip", "absent", None, PulseFrom.NOWHERE),
        ("final", "absent", None, PulseFrom.NOWHERE),
        ("retried", "placeholder", None, PulseFrom.NOWHERE),
        ("retried", "absent", None, PulseFrom.NOWHERE),
    ],
)
def test_status_sync_is_read_only_when_it_alone_knows_a_pulse_that_is_written(
    change: str, tenant: str, pulse: str | None, source: PulseFrom
) -> None:
    assert pulse_from(CHANGES[change], TENANTS[tenant].stored(), pulse) is source


def test_a_plan_that_needs_status_sync_refuses_to_guess_its_pulse() -> None:
    with pytest.raises(ValueError, match="read it first"):
        plan(CHANGES["success"], Stored(exists=False), request(None), now=NOW)


def test_a_status_sync_read_is_ignored_where_the_pulse_is_known() -> None:
    read = SyncState(True, "p-status", STATUS_READ_AT)
    writes = plan(
        CHANGES["skip"], TENANTS["error"].stored(), request(MSG), now=NOW, sync_state=read
    )
    assert writes.status is StatusWrite.MERGE and writes.status_fields["pulse_id"] == MSG


# --- the invariants, on the documents each plan leaves behind -------------------------------


@dataclass
class Documents:
    """A tenant's three documents in memory, written as the batch would write them."""

    snapshot: dict[str, Any] | None
    status: dict[str, Any] | None
    error: dict[str, Any] | None = field(default=None)

    @classmethod
    def of(cls, tenant: Tenant) -> Documents:
        def copy(doc: Mapping[str, Any] | None) -> dict[str, Any] | None:
            return dict(doc) if doc is not None else None

        return cls(copy(tenant.snapshot), copy(tenant.status), copy(tenant.error))

    def apply(self, writes: WritePlan) -> None:
        if writes.snapshot is not SnapshotWrite.ABSENT:
            base = self.snapshot if self.snapshot is not None else {}
            self.snapshot = {**base, **writes.snapshot_fields}
            for name in writes.snapshot_deletes:
                self.snapshot.pop(name, None)
        if writes.error is ErrorWrite.SET:
            self.error = dict(writes.error_body)
        elif writes.error is ErrorWrite.DELETE:
            self.error = None
        if writes.status is not StatusWrite.NONE:
            before = self.status if writes.status is not StatusWrite.CREATE else None
            self.status = _merged(before or {}, writes.status_fields)


def _merged(before: Mapping[str, Any], fields: Mapping[str, Any]) -> dict[str, Any]:
    after = dict(before)
    for name, value in fields.items():
        after[name] = (after.get(name, 0) + value.value) if isinstance(value, Increment) else value
    return after


@pytest.mark.parametrize("row", CASES)
def test_every_plan_keeps_the_three_documents_in_agreement(row: Row) -> None:
    change, tenant, pulse, written_pulse = row.change, row.tenant, row.pulse, row.written_pulse
    found = TENANTS[tenant]
    docs = Documents.of(found)
    assert inconsistencies(docs.snapshot, docs.status, docs.error) == []
    counted_before = counted_outcome(docs.snapshot, docs.status)

    docs.apply(planned(change, tenant, pulse))

    assert inconsistencies(docs.snapshot, docs.status, docs.error) == []
    counted = counted_outcome(docs.snapshot, docs.status)
    if change == "retried":
        assert counted == counted_before
    else:
        kept = (found.status or {}).get("pulse_id")
        expected_pulse = kept if written_pulse == KEPT else written_pulse
        expected = {"success": "success", "skip": "skipped", "final": "error"}[change]
        assert counted == (expected_pulse, expected)
    if change != "success":  # a failure or a skip never creates a snapshot nor touches its data
        assert (docs.snapshot is None) is (found.snapshot is None)
        assert data_of(docs.snapshot) == data_of(found.snapshot)
    error_after = {"success": None, "skip": found.error}.get(change, ERROR_BODY)
    assert docs.error == error_after


def data_of(snapshot: Mapping[str, Any] | None) -> dict[str, Any]:
    """A snapshot's fields other than the result's."""
    result = {OUTCOME_FIELD, PULSE_FIELD, FAILING_FIELD}
    return {k: v for k, v in (snapshot or {}).items() if k not in result}


# --- a superseded message of a pulse ---------------------------------------------------------

LONG_AGO = EARLIER - timedelta(minutes=2)
"""A message requested before every stored snapshot of :data:`TENANTS`: superseded by them."""
OLDER_PULSE = pulse_id_for("1", LONG_AGO)
"""Its pulse: after ``p-stored`` (an id without a time sorts before every timed one)."""


def superseded(pulse: str | None = OLDER_PULSE, at: datetime = LONG_AGO) -> SyncRequest:
    return SyncRequest("u1", Reason.SCHEDULE, at, pulse_id=pulse)


@pytest.mark.parametrize(
    ("tenant", "moved"),
    [
        ("absent", False),  # nothing stored: not superseded
        ("placeholder", False),  # no requestedAt: any real message is newer
        ("clean", True),
        ("failing", True),
        ("error", True),
        ("skipped", True),
    ],
)
def test_a_superseded_message_moves_the_latest_outcome_to_its_pulse(
    tenant: str, moved: bool
) -> None:
    found = TENANTS[tenant]
    writes = superseded_plan(found.stored(), superseded(), now=NOW)
    assert (writes is not None) is moved
    if writes is None:
        return
    docs = Documents.of(found)
    counted_before = counted_outcome(docs.snapshot, docs.status)
    assert counted_before is not None
    docs.apply(writes)
    # Counted once, in the message's pulse, with the outcome it had; nothing else changed.
    assert counted_outcome(docs.snapshot, docs.status) == (OLDER_PULSE, counted_before[1])
    assert inconsistencies(docs.snapshot, docs.status, docs.error) == []
    assert data_of(docs.snapshot) == data_of(found.snapshot)
    assert docs.error == found.error
    assert writes.snapshot is SnapshotWrite.MARKS and writes.snapshot_guard == SNAPSHOT_READ_AT
    assert writes.snapshot_fields == {PULSE_FIELD: OLDER_PULSE}


FAR_FUTURE = datetime(9999, 12, 31, tzinfo=UTC)
NEWER_STORED = {**outcome(Outcome.SUCCESS, False), PULSE_FIELD: pulse_id_for("9", EARLIER)}


@pytest.mark.parametrize(
    ("snapshot", "request_"),
    [
        # The outcome already counts for a newer pulse (its message came first): it stays.
        (NEWER_STORED, superseded()),
        (NEWER_STORED, superseded(pulse_id_for("9", EARLIER))),  # the same pulse
        (outcome(Outcome.SUCCESS, False), superseded(pulse=None)),  # no pulse to count for
        (outcome(Outcome.SUCCESS, False), superseded(at=EARLIER)),  # a duplicate
        (outcome(Outcome.SUCCESS, False), superseded(at=NOW)),  # newer: not superseded
        ({**OLD_DATA, PULSE_FIELD: "p"}, superseded()),  # no outcome recorded on it yet
        # A snapshot stamped in the future is not trusted: the message is not superseded.
        ({**outcome(Outcome.SUCCESS, False), REQUESTED_AT_FIELD: FAR_FUTURE}, superseded()),
    ],
    ids=["newer-pulse", "same-pulse", "no-pulse", "duplicate", "newer", "no-outcome", "future"],
)
def test_a_superseded_message_leaves_other_outcomes_alone(
    snapshot: dict[str, Any], request_: SyncRequest
) -> None:
    stored = Stored(exists=True, update_time=SNAPSHOT_READ_AT, data=snapshot)
    assert superseded_plan(stored, request_, now=NOW) is None


@pytest.mark.parametrize(
    ("stored_at", "requested_at", "stale"),
    [
        (NOW, NOW, Stale.DUPLICATE),
        (NOW, EARLIER, Stale.SUPERSEDED),
        (EARLIER, NOW, None),
        (NOW + MAX_CLOCK_SKEW, NOW, Stale.SUPERSEDED),  # a clock a little ahead: trusted
        (NOW + MAX_CLOCK_SKEW + timedelta(microseconds=1), NOW, None),
        (FAR_FUTURE, NOW, None),  # stamped before the worker bounded it: not trusted
        (FAR_FUTURE, FAR_FUTURE, None),
    ],
)
def test_staleness_trusts_no_stored_time_beyond_the_clock_skew(
    stored_at: datetime, requested_at: datetime, stale: Stale | None
) -> None:
    stored = Stored(exists=True, update_time=NOW, data={REQUESTED_AT_FIELD: stored_at})
    assert stored.staleness(requested_at, now=NOW) is stale
