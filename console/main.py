"""The admin console's entry points: Firebase callables for operators only.

Every one starts with ``ctx.require_admin()`` (the ``admin`` custom claim, ``true`` exactly), so
a signed-in tenant gets ``PERMISSION_DENIED`` and no data, whatever the page does. Each decodes
its arguments (:mod:`console.requests`), runs the use case the ``agenttrader`` command line runs
(:mod:`console.status`, :mod:`console.deadletters`, :mod:`console.tenants`) and answers with
the same JSON as ``--json`` (:mod:`console.documents`).

=========================== ============================================ =====================
callable                    does                                         the command line's
=========================== ============================================ =====================
admin_status                pulses of the last hours, failing tenants,   ``status --json``
                            dead-letter depth, the alert conditions
admin_tenants               one page of tenants by state, or a search    —
admin_tenant                one tenant's state, snapshot, audit trail    —
admin_dead_letters          held dead letters, grouped by error class    ``dlq list --json``
admin_replay_dead_letters   republish matching dead letters (dry run,    ``dlq replay``
                            rate limit, replay limit)
admin_purge_dead_letters    delete matching dead letters (``confirm``)   ``dlq purge --yes``
=========================== ============================================ =====================
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from agenttrader.callable import CallableError, CallContext, Status, https_callable
from agenttrader.logs import get_logger
from console import deadletters as dlq
from console import documents, requests, status, tenants
from console.wiring import console

log = get_logger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


@https_callable
def admin_status(ctx: CallContext, data: Any) -> dict[str, Any]:
    """``agenttrader status --json`` (with ``deadLetters: false``: ``--no-dead-letters``) and
    the pulses of the last ``hours`` for the chart."""
    ctx.require_admin()
    request = requests.status_request(data)
    clients = console()
    db = clients.deps.firestore
    now = _now()
    hold = clients.hold() if request.dead_letters else None
    current = status.read_status(
        db,
        now=now,
        peek=None if hold is None else lambda: dlq.dead_letter_depth(hold),
        pulses=request.pulses,
    )
    history = status.read_history(db, now=now, hours=request.hours)
    return {
        "status": documents.status_json(current, clients.project, clients.hold_path),
        "history": documents.history_json(history, request.hours),
    }


@https_callable
def admin_tenants(ctx: CallContext, data: Any) -> dict[str, Any]:
    """One page of tenants: ``{filter, cursor, pageSize}`` or ``{search}``."""
    ctx.require_admin()
    request = requests.tenants_request(data)
    db = console().deps.firestore
    if request.search is not None:
        page = tenants.search_tenants(db, request.search, page_size=request.page_size)
    else:
        page = tenants.list_tenants(
            db, request.state_filter, cursor=request.cursor, page_size=request.page_size
        )
    return documents.tenant_page_json(page)


@https_callable
def admin_tenant(ctx: CallContext, data: Any) -> dict[str, Any]:
    """One tenant: ``{uid}`` → its row, snapshot summary and audit trail."""
    ctx.require_admin()
    uid = requests.tenant_uid(data)
    detail = tenants.tenant_detail(console().deps.firestore, uid)
    if detail is None:
        raise CallableError(Status.NOT_FOUND, f"no tenant {uid}")
    return documents.tenant_detail_json(detail)


@https_callable
def admin_dead_letters(ctx: CallContext, data: Any) -> dict[str, Any]:
    """``agenttrader dlq list --json`` plus the letters grouped by error class; every message
    stays in place."""
    ctx.require_admin()
    request = requests.list_request(data)
    clients = console()
    now = _now()
    listing = dlq.list_dead_letters(clients.hold(), request.filters, now=now, limit=request.limit)
    return {
        **documents.listing_json(listing, now, clients.hold_path),
        "groups": documents.groups_json(dlq.group_by_error_class(listing.letters), now),
    }


@https_callable
def admin_replay_dead_letters(ctx: CallContext, data: Any) -> dict[str, Any]:
    """``agenttrader dlq replay``: the same filters, ``dryRun``, ``rate`` (per second, 0 for
    none), ``maxReplays`` and ``force``, at most ``limit`` letters."""
    ctx.require_admin()
    request = requests.replay_request(data)
    clients = console()
    report = dlq.replay(
        clients.hold(),
        # PublisherClient.publish's future is typed loosely; it is the Protocol's at run time.
        cast("dlq.Publisher", clients.deps.publisher),
        clients.user_sync_topic,
        request.filters,
        clock=_now,
        pacer=dlq.Pacer(request.rate),
        limit=request.limit,
        max_replays=request.max_replays,
        force=request.force,
        dry_run=request.dry_run,
    )
    _audit_log(ctx, "replay", report)
    return documents.report_json(report, _now(), clients.hold_path)


@https_callable
def admin_purge_dead_letters(ctx: CallContext, data: Any) -> dict[str, Any]:
    """``agenttrader dlq purge --yes`` (``confirm: true``) or ``--dry-run`` (``dryRun``)."""
    ctx.require_admin()
    request = requests.purge_request(data)
    clients = console()
    now = _now()
    report = dlq.purge(
        clients.hold(),
        request.filters,
        now=now,
        confirm=lambda _letters: True,  # confirmed by the request (requests.purge_request)
        limit=request.limit,
        dry_run=request.dry_run,
    )
    _audit_log(ctx, "purge", report)
    return documents.report_json(report, now, clients.hold_path)


def _audit_log(ctx: CallContext, action: str, report: dlq.Report) -> None:
    """Who changed the dead letters, and how many: one structured line (no message body)."""
    counts = {s.value: report.count(s) for s in dlq.Status if report.count(s)}
    log.info(
        f"admin {action} of dead letters{' (dry run)' if report.dry_run else ''}",
        fields={"counts": counts, "scanned": report.scanned, "dry_run": report.dry_run},
        admin_uid=ctx.uid,
        action=f"dead_letters_{action}",
    )
