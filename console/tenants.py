"""Tenants for the admin console: paged server-side by state or by search, and one tenant's
detail with its audit trail.

A page is one bounded Firestore query plus one batched read of the page's tenants; nothing ever
reads every tenant. Each state filter is a query on the collection group of the document that
defines it (:data:`CANDIDATES`), ordered by document path so that a page continues where the
last one stopped (the cursor is that path):

============== ======================================================= ==========================
filter          candidates                                              index
============== ======================================================= ==========================
all             ``users`` by id                                          automatic
failing         ``status`` with ``final`` in (true, false): the          ``status.final`` (group)
                ``last_sync_error`` documents
kill_switch_off ``status`` with ``enabled == false``                     ``status.enabled`` (group)
not_configured  ``config`` with ``configured == false``                  ``config.configured``
healthy         ``data`` with ``syncOutcome == success``                 ``data.syncOutcome``
============== ======================================================= ==========================

The page's tenants are then read whole (:data:`TENANT_DOCS`, one batched ``get_all`` with a
field mask) and classified by :func:`classify`, a pure function; a candidate that does not
match its filter after all (``healthy`` whose kill-switch is off, say) is dropped, so a page may
hold fewer rows than asked while ``next_cursor`` says there is more.

Hook for the stream gateway (issue 15): once it records each tenant's stream, add
``stream_live`` / ``stream_down`` to :class:`StateFilter`, their query to :data:`CANDIDATES`,
the document to :data:`TENANT_DOCS` and the flag to :class:`Tenant`; the page lists every
filter the callable reports (``filters`` in :func:`console.documents.tenant_page_json`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from agenttrader import paths
from agenttrader.snapshot import COLLECTION_GROUP as SNAPSHOT_GROUP
from agenttrader.snapshot import FAILING_FIELD, OUTCOME_FIELD, PLACEHOLDER_FIELD, Outcome

if TYPE_CHECKING:
    from google.cloud import firestore

PAGE_SIZE = 25
MAX_PAGE_SIZE = 100
AUDIT_ENTRIES = 50
"""Newest audit entries shown on a tenant's page."""
STATUS_GROUP = "status"
CONFIG_GROUP = "config"
"""Collection groups queried here (literals: infra/indexes.py's test reads this file)."""
_HIGH = "\uf8ff"
"""Sorts after every character a uid or an email holds: ``[p, p + _HIGH)`` is a prefix range."""


class StateFilter(StrEnum):
    """Which tenants a page lists."""

    ALL = "all"
    HEALTHY = "healthy"
    FAILING = "failing"
    KILL_SWITCH_OFF = "kill_switch_off"
    NOT_CONFIGURED = "not_configured"


class State(StrEnum):
    """A tenant's one-word state, the first that applies in this order."""

    NOT_ONBOARDED = "not_onboarded"
    FAILING = "failing"
    NOT_CONFIGURED = "not_configured"
    KILL_SWITCH_OFF = "kill_switch_off"
    NEVER_SYNCED = "never_synced"
    HEALTHY = "healthy"


@dataclass(frozen=True)
class Tenant:
    """One tenant as the console shows it (never a key: secrets are not read)."""

    uid: str
    email: str | None
    onboarded: bool
    configured: bool
    trading_enabled: bool
    failing: bool
    """``status/last_sync_error`` exists: the latest sync failed (final or being retried)."""
    error_class: str | None
    error: str | None
    last_failed_at: datetime | None
    final: bool | None
    """``False`` while Pub/Sub still retries a transient failure."""
    consecutive_failures: int
    last_sync: datetime | None
    """``syncedAt`` of a real snapshot (not onboarding's placeholder)."""
    equity: str | None
    sync_outcome: str | None
    state: State

    def matches(self, wanted: StateFilter) -> bool:
        if wanted is StateFilter.ALL:
            return True
        if wanted is StateFilter.FAILING:
            return self.failing
        if wanted is StateFilter.KILL_SWITCH_OFF:
            return not self.trading_enabled
        if wanted is StateFilter.NOT_CONFIGURED:
            return not self.configured
        return self.state is State.HEALTHY


@dataclass(frozen=True)
class TenantDocs:
    """A tenant's documents as read (``None``: absent), keyed like :data:`TENANT_DOCS`."""

    uid: str
    docs: Mapping[str, Mapping[str, Any] | None]

    def get(self, name: str) -> Mapping[str, Any]:
        return self.docs.get(name) or {}

    def exists(self, name: str) -> bool:
        return self.docs.get(name) is not None


TENANT_DOCS: Mapping[str, Callable[[str], str]] = {
    "user": paths.user_doc,
    "config": paths.alpaca_config_doc,
    "trading": paths.trading_status_doc,
    "error": paths.last_sync_error_doc,
    "sync": paths.sync_state_doc,
    "snapshot": paths.snapshot_doc,
}
"""What a row is made of: never ``secrets/alpaca``."""

FIELD_MASK = (
    "email",
    "onboarded",
    "configured",
    "enabled",
    "error",
    "error_class",
    "timestamp",
    "final",
    "consecutive_failures",
    "syncedAt",
    "equity",
    OUTCOME_FIELD,
    FAILING_FIELD,
    PLACEHOLDER_FIELD,
)
"""The fields of those documents a row uses: a snapshot's positions are not transferred."""


def classify(found: TenantDocs) -> Tenant:
    """The row of one tenant from its documents (pure)."""
    user, config, trading = found.get("user"), found.get("config"), found.get("trading")
    error, sync, snapshot = found.get("error"), found.get("sync"), found.get("snapshot")
    onboarded = user.get("onboarded") is True
    configured = config.get("configured") is True
    enabled = trading.get("enabled") is True
    failing = found.exists("error")
    real_snapshot = found.exists("snapshot") and snapshot.get(PLACEHOLDER_FIELD) is not True
    last_sync = _datetime(snapshot.get("syncedAt")) if real_snapshot else None
    if not onboarded and not found.exists("config"):
        state = State.NOT_ONBOARDED
    elif failing:  # before not configured: keys Alpaca refused are unmarked, and failing
        state = State.FAILING
    elif not configured:
        state = State.NOT_CONFIGURED
    elif not enabled:
        state = State.KILL_SWITCH_OFF
    elif last_sync is None:
        state = State.NEVER_SYNCED
    else:
        state = State.HEALTHY
    streak = sync.get("consecutive_failures")
    return Tenant(
        uid=found.uid,
        email=_str(user.get("email")),
        onboarded=onboarded,
        configured=configured,
        trading_enabled=enabled,
        failing=failing,
        error_class=_str(error.get("error_class")) if failing else None,
        error=_str(error.get("error")) if failing else None,
        last_failed_at=_datetime(error.get("timestamp")) if failing else None,
        final=error.get("final") is True if failing else None,
        consecutive_failures=streak if isinstance(streak, int) and streak > 0 else 0,
        last_sync=last_sync,
        equity=_str(snapshot.get("equity")) if real_snapshot else None,
        sync_outcome=_str(snapshot.get(OUTCOME_FIELD)) if real_snapshot else None,
        state=state,
    )


def candidates(
    db: firestore.Client, state_filter: StateFilter
) -> tuple[Any, tuple[str, str] | None]:
    """The query finding the tenants of ``state_filter`` (ordered by document path, nothing
    but the paths selected) and the ``(collection, doc_id)`` it returns under each user
    (``None``: the user documents themselves)."""
    from google.cloud.firestore_v1.base_query import FieldFilter
    from google.cloud.firestore_v1.field_path import FieldPath

    query: Any
    kind: tuple[str, str] | None
    if state_filter is StateFilter.FAILING:
        query = db.collection_group(STATUS_GROUP).where(
            filter=FieldFilter("final", "in", [True, False])
        )
        kind = paths.STATUS_LAST_SYNC_ERROR
    elif state_filter is StateFilter.KILL_SWITCH_OFF:
        query = db.collection_group(STATUS_GROUP).where(filter=FieldFilter("enabled", "==", False))
        kind = paths.STATUS_TRADING
    elif state_filter is StateFilter.NOT_CONFIGURED:
        query = db.collection_group(CONFIG_GROUP).where(
            filter=FieldFilter("configured", "==", False)
        )
        kind = paths.CONFIG_ALPACA
    elif state_filter is StateFilter.HEALTHY:
        query = db.collection_group(SNAPSHOT_GROUP).where(
            filter=FieldFilter(OUTCOME_FIELD, "==", Outcome.SUCCESS.value)
        )
        kind = paths.DATA_SNAPSHOT
    else:
        query, kind = db.collection(paths.USERS), None
    return query.order_by(FieldPath.document_id()).select([]), kind


@dataclass(frozen=True)
class TenantPage:
    tenants: tuple[Tenant, ...]
    scanned: int
    """Candidate documents the query returned for this page."""
    next_cursor: str | None
    """Where the next page starts (a document path); ``None``: this was the last page."""
    state_filter: StateFilter | None
    search: str | None
    truncated: bool = False
    """A search matched more than one page: a longer prefix narrows it."""


def list_tenants(
    db: firestore.Client,
    state_filter: StateFilter = StateFilter.ALL,
    *,
    cursor: str | None = None,
    page_size: int = PAGE_SIZE,
) -> TenantPage:
    """One page of the tenants matching ``state_filter``, in uid order, after ``cursor``."""
    from google.cloud.firestore_v1.field_path import FieldPath

    query, kind = candidates(db, state_filter)
    query = query.limit(page_size)
    if cursor:
        query = query.start_after({FieldPath.document_id(): db.document(cursor)})
    refs = [doc.reference for doc in query.stream()]
    rows = [t for t in read_tenants(db, _owners(refs, kind)) if t.matches(state_filter)]
    last = refs[-1].path if len(refs) == page_size else None
    return TenantPage(tuple(rows), len(refs), last, state_filter, None)


def search_tenants(db: firestore.Client, text: str, *, page_size: int = PAGE_SIZE) -> TenantPage:
    """Tenants whose uid starts with ``text``, or whose email does (compared in lower case):
    two prefix-range queries of at most ``page_size`` each; one page, no cursor (a longer
    prefix narrows it: ``truncated`` says when to)."""
    from google.cloud.firestore_v1.base_query import FieldFilter
    from google.cloud.firestore_v1.field_path import FieldPath

    text = text.strip()
    users = db.collection(paths.USERS)
    batches: list[list[str]] = []
    if paths.valid_uid(text) is not None:
        by_id = (
            users.where(filter=FieldFilter(FieldPath.document_id(), ">=", users.document(text)))
            .where(filter=FieldFilter(FieldPath.document_id(), "<", users.document(text + _HIGH)))
            .select([])
            .limit(page_size)
        )
        batches.append([doc.id for doc in by_id.stream()])
    email = text.lower()
    by_email = (
        users.where(filter=FieldFilter("email", ">=", email))
        .where(filter=FieldFilter("email", "<", email + _HIGH))
        .select([])
        .limit(page_size)
    )
    batches.append([doc.id for doc in by_email.stream()])
    found = sorted({uid for batch in batches for uid in batch})
    truncated = len(found) > page_size or any(len(batch) == page_size for batch in batches)
    rows = read_tenants(db, found[:page_size])
    return TenantPage(tuple(rows), sum(map(len, batches)), None, None, text, truncated)


def read_tenants(db: firestore.Client, uids: Sequence[str]) -> list[Tenant]:
    """The rows of ``uids`` (in that order), from one batched read of their documents."""
    return [classify(docs) for docs in _read_docs(db, uids, FIELD_MASK)]


def _read_docs(db: firestore.Client, uids: Sequence[str], mask: Sequence[str]) -> list[TenantDocs]:
    """The :data:`TENANT_DOCS` of ``uids`` (in that order), ``mask``'s fields, one batched read."""
    if not uids:
        return []
    refs = {
        (uid, name): db.document(path(uid)) for uid in uids for name, path in TENANT_DOCS.items()
    }
    by_path = {
        snap.reference.path: (snap.to_dict() or {}) if snap.exists else None
        for snap in db.get_all(list(refs.values()), field_paths=list(dict.fromkeys(mask)))
    }
    return [
        TenantDocs(uid, {name: by_path.get(refs[(uid, name)].path) for name in TENANT_DOCS})
        for uid in uids
    ]


@dataclass(frozen=True)
class AuditEntry:
    entry_id: str
    action: str
    actor: str
    at: datetime | None
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TenantDetail:
    tenant: Tenant
    snapshot: Mapping[str, Any]
    """The snapshot's summary fields (no positions list, no account map)."""
    audit: tuple[AuditEntry, ...]
    """Newest first, at most :data:`AUDIT_ENTRIES`."""


SNAPSHOT_SUMMARY = (
    "syncedAt",
    "equity",
    "buying_power",
    "cash",
    "positions_count",
    "reason",
    OUTCOME_FIELD,
    FAILING_FIELD,
    "pulseId",
    PLACEHOLDER_FIELD,
)


def tenant_detail(db: firestore.Client, uid: str) -> TenantDetail | None:
    """One tenant's row, snapshot summary and audit trail; ``None`` when no document of the
    tenant exists at all."""
    from google.cloud import firestore

    (docs,) = _read_docs(db, [uid], (*FIELD_MASK, *SNAPSHOT_SUMMARY))  # the snapshot read once
    tenant = classify(docs)
    snapshot = docs.docs["snapshot"]
    entries = (
        db.collection(paths.audit_collection(uid))
        .order_by("at", direction=firestore.Query.DESCENDING)
        .limit(AUDIT_ENTRIES)
        .stream()
    )
    audit = tuple(
        AuditEntry(
            entry_id=doc.id,
            action=str(data.get("action") or "unknown"),
            actor=str(data.get("actor") or "unknown"),
            at=_datetime(data.get("at")),
            details=_mapping(data.get("details")),
        )
        for doc in entries
        for data in [doc.to_dict() or {}]
    )
    if tenant.state is State.NOT_ONBOARDED and snapshot is None and not audit:
        return None
    stored = snapshot or {}
    summary = {name: stored[name] for name in SNAPSHOT_SUMMARY if name in stored}
    return TenantDetail(tenant, summary, audit)


def _owners(refs: Sequence[Any], kind: tuple[str, str] | None) -> list[str]:
    """The uids owning ``refs`` (user documents, or documents of ``kind`` under a user)."""
    if kind is None:
        return [ref.id for ref in refs]
    return [uid for ref in refs if (uid := paths.owner_of(ref.path, kind)) is not None]


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _datetime(value: Any) -> datetime | None:
    return value if isinstance(value, datetime) else None
