"""What must hold after the chaos pulse, its retries and the replay.

Every invariant is a function of the :class:`Evidence` gathered at the end (Firestore read
directly, document by document, and what the taps and the snapshot listener saw during the run)
returning its violations, one readable line each; an empty list is a pass.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from agenttrader.messages import Reason, SyncRequest
from agenttrader.snapshot import Outcome
from chaos.faults import Fault
from console.deadletters import SOURCE_DELIVERY_LIMIT, decode
from sync_worker.record import counted_outcome, inconsistencies

MAX_LISTED = 12
"""Violations listed per invariant in the report; the count is always complete."""


@dataclass(frozen=True)
class Message:
    """One message a tap saw (a subscription of the chaos run's own on the topic)."""

    message_id: str
    data: bytes = field(repr=False)
    attributes: dict[str, str]
    publish_time: datetime

    @property
    def request(self) -> SyncRequest | None:
        try:
            return SyncRequest.from_bytes(self.data, self.attributes)
        except ValueError:
            return None

    @property
    def uid(self) -> str | None:
        request = self.request
        return request.uid if request is not None else self.attributes.get("uid")


@dataclass(frozen=True)
class TenantState:
    """One tenant at the end of the run: what it should be, and what Firestore holds."""

    uid: str
    account_id: str
    """The simulator account behind the tenant's keys: the only one its snapshot may show."""
    fault: Fault | None
    """``None`` for a tenant whose keys were never configured."""
    configured: bool
    enabled: bool
    snapshot: dict[str, Any] | None
    """``data/snapshot``: carries a success (``pulseId``, ``syncOutcome``), see
    :mod:`sync_worker.record`."""
    last_error: dict[str, Any] | None
    sync_state: dict[str, Any] | None
    """``status/sync``: carries an error or a skip (``pulse_id``, ``outcome``)."""

    @property
    def counted(self) -> tuple[str | None, str] | None:
        """``(pulse id, outcome)`` its documents say it counts for, if any."""
        return counted_outcome(self.snapshot, self.sync_state)

    @property
    def eligible(self) -> bool:
        return self.configured and self.enabled


@dataclass(frozen=True)
class Evidence:
    pulse_id: str
    pulse_requested_at: datetime
    """``requested_at`` of the pulse's messages (the tick's publish time)."""
    eligible_at_tick: frozenset[str]
    """The tenants the roster listed as eligible when the tick was published."""
    tenants: dict[str, TenantState]
    """Every user document of the project, by uid."""
    last_pulse: dict[str, Any] | None
    published: dict[str, Message]
    """Everything published to ``user-sync`` from before the tick to the end, by message id."""
    dead_letters: dict[str, Message]
    """Everything published to ``user-sync-dead-letter`` over the same time, by message id."""
    injected: dict[str, str]
    """Message ids the run published itself: ``duplicate``, ``racing_replay``, ``replay``."""
    acked: int
    nacked: int
    snapshot_history: dict[str, list[datetime]]
    """Each tenant's snapshot ``requestedAt`` in the order a listener saw them change."""

    # --- derived views, shared by the checks and the report -----------------------------------

    def pulse_messages(self) -> list[Message]:
        """The publisher's own messages for the pulse (copies the run made excluded)."""
        out = []
        for message in self.published.values():
            request = message.request
            if (
                message.message_id not in self.injected
                and request is not None
                and request.reason is Reason.SCHEDULE
                and request.pulse_id == self.pulse_id
            ):
                out.append(message)
        return out

    def published_by_kind(self) -> Counter[str]:
        kinds: Counter[str] = Counter()
        pulse = {m.message_id for m in self.pulse_messages()}
        for message_id, message in self.published.items():
            if message_id in self.injected:
                kinds[self.injected[message_id]] += 1
            elif message_id in pulse:
                kinds["pulse"] += 1
            else:
                request = message.request
                kinds[f"other ({request.reason.value if request else 'malformed'})"] += 1
        return kinds

    def dead_letters_by_source(self) -> Counter[str]:
        return Counter(decode(m).source for m in self.dead_letters.values())

    def dead_lettered_uids(self) -> Counter[str]:
        return Counter(m.uid for m in self.dead_letters.values() if m.uid)

    def outcomes(self) -> Counter[str]:
        """The truth of the pulse, user by user: each tenant's latest outcome if it counts for
        this pulse (a success on its snapshot, else an error or skip on ``status/sync``)."""
        counted = [t.counted for t in self.tenants.values()]
        return Counter(c[1] for c in counted if c is not None and c[0] == self.pulse_id)


def _requested_at(snapshot: dict[str, Any] | None) -> datetime | None:
    value = (snapshot or {}).get("requestedAt")
    return value if isinstance(value, datetime) else None


# --- the invariants -------------------------------------------------------------------------


def eligible_tenants_synced_or_dead_lettered(evidence: Evidence) -> list[str]:
    """Every tenant eligible at the end (configured, trading enabled) has a snapshot requested
    by this pulse or later, or else a recorded ``status/last_sync_error`` and a dead letter."""
    dead = evidence.dead_lettered_uids()
    violations = []
    for tenant in sorted(evidence.tenants.values(), key=lambda t: t.uid):
        if not tenant.eligible:
            continue
        requested = _requested_at(tenant.snapshot)
        if requested is not None and requested >= evidence.pulse_requested_at:
            continue
        if tenant.last_error is not None and dead[tenant.uid]:
            continue
        error = (tenant.last_error or {}).get("error_class")
        violations.append(
            f"{tenant.uid} (fault {tenant.fault}): snapshot requestedAt {requested or 'none'}"
            f" (pulse {evidence.pulse_requested_at}), last_sync_error {error or 'none'},"
            f" dead letters {dead[tenant.uid]}"
        )
    return violations


def eligible_at_tick_messaged(evidence: Evidence) -> list[str]:
    """Every tenant eligible when the tick was published got at least one message of the
    pulse, whatever happened to the publisher meanwhile (killed mid-fan-out, the tick
    redelivered, the fan-out resumed)."""
    messaged = Counter(m.uid for m in evidence.pulse_messages())
    return [
        f"{uid}: eligible at the tick, no message of pulse {evidence.pulse_id}"
        for uid in sorted(evidence.eligible_at_tick)
        if not messaged[uid]
    ]


def snapshots_never_go_back(evidence: Evidence) -> list[str]:
    """No snapshot is replaced by one requested earlier: each tenant's ``requestedAt`` never
    decreases in what the listener saw, and the stored one is the newest it saw."""
    violations = []
    for uid, seen in sorted(evidence.snapshot_history.items()):
        for before, after in itertools.pairwise(seen):
            if after < before:
                violations.append(f"{uid}: requestedAt went back from {before} to {after}")
        tenant = evidence.tenants.get(uid)
        stored = _requested_at(tenant.snapshot if tenant else None)
        if seen and (stored is None or stored < max(seen)):
            violations.append(f"{uid}: stored requestedAt {stored} older than {max(seen)} seen")
    return violations


def snapshots_hold_own_account(evidence: Evidence) -> list[str]:
    """A tenant's snapshot shows the account behind its own keys, never another's."""
    violations = []
    owners: dict[str, list[str]] = {}
    for tenant in sorted(evidence.tenants.values(), key=lambda t: t.uid):
        if tenant.snapshot is None:
            continue
        account = tenant.snapshot.get("account") or {}
        shown = str(account.get("id"))
        owners.setdefault(shown, []).append(tenant.uid)
        if shown != tenant.account_id:
            violations.append(
                f"{tenant.uid}: snapshot shows account {shown}, its keys reach {tenant.account_id}"
            )
    for shown, uids in sorted(owners.items()):
        if len(uids) > 1:
            violations.append(f"account {shown} appears in the snapshots of {', '.join(uids)}")
    return violations


def last_pulse_counts_match_truth(evidence: Evidence) -> list[str]:
    """``ops/last_pulse`` equals the per-user truth: success / error = users whose documents
    hold that outcome for this pulse (read one by one: :meth:`TenantState.counted`; the rollup
    counts with aggregation queries); skipped = users the publisher left out (every user minus
    those it published a message for) + users the worker skipped."""
    last = evidence.last_pulse
    if last is None:
        return ["ops/last_pulse does not exist"]
    if last.get("pulse_id") != evidence.pulse_id:
        return [f"ops/last_pulse is pulse {last.get('pulse_id')}, not {evidence.pulse_id}"]
    outcomes = evidence.outcomes()
    published = {m.uid for m in evidence.pulse_messages()}
    expected = {
        "success_count": outcomes[Outcome.SUCCESS.value],
        "error_count": outcomes[Outcome.ERROR.value],
        "skipped_count": len(evidence.tenants) - len(published) + outcomes[Outcome.SKIPPED.value],
        "published_count": len(published),
    }
    return [
        f"{name} is {last.get(name)}, the per-user truth is {value}"
        for name, value in expected.items()
        if last.get(name) != value
    ]


def outcome_documents_agree(evidence: Evidence) -> list[str]:
    """Each tenant's snapshot, ``status/sync`` and ``status/last_sync_error`` agree: the same
    latest outcome, counted for the same pulse, ``syncFailing`` exactly while an error is
    recorded. (A success counted on the snapshot while ``status/sync`` holds an error or a
    skip would count the tenant twice; a stale error document would list it as failing.)"""
    violations = []
    for tenant in sorted(evidence.tenants.values(), key=lambda t: t.uid):
        found = inconsistencies(tenant.snapshot, tenant.sync_state, tenant.last_error)
        violations.extend(f"{tenant.uid} (fault {tenant.fault}): {v}" for v in found)
    return violations


def no_message_lost(evidence: Evidence) -> list[str]:
    """Every message published to ``user-sync`` (the pulse, the copies, the replays) was either
    acknowledged by the push bridge or dead-lettered by Pub/Sub after its delivery limit.
    A message the worker dead-lettered itself was acknowledged too, so it is in the first term."""
    published = len(evidence.published)
    by_source = evidence.dead_letters_by_source()
    limit = by_source[SOURCE_DELIVERY_LIMIT]
    if published == evidence.acked + limit:
        return []
    return [
        f"published {published} != acknowledged {evidence.acked} + dead-lettered after the"
        f" delivery limit {limit} (difference {published - evidence.acked - limit}:"
        " positive means messages neither acknowledged nor dead-lettered,"
        " negative means messages acknowledged more than once)"
    ]


Invariant = Callable[[Evidence], list[str]]

INVARIANTS: tuple[tuple[str, Invariant], ...] = (
    (
        "every tenant eligible at the tick got the pulse's message at least once",
        eligible_at_tick_messaged,
    ),
    (
        "every eligible tenant: fresh snapshot, or error + dead letter",
        eligible_tenants_synced_or_dead_lettered,
    ),
    ("no snapshot older than one already written", snapshots_never_go_back),
    ("no tenant's snapshot holds another tenant's data", snapshots_hold_own_account),
    ("ops/last_pulse counts equal the per-user truth", last_pulse_counts_match_truth),
    ("each tenant's outcome documents agree", outcome_documents_agree),
    ("no message lost: published = acknowledged + dead-lettered", no_message_lost),
)


def check(evidence: Evidence) -> list[tuple[str, list[str]]]:
    """Every invariant's violations, in the report's order."""
    return [(name, invariant(evidence)) for name, invariant in INVARIANTS]
