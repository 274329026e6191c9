"""The JSON documents of dead letters, replay / purge reports and the pipeline status: one
encoding for ``agenttrader … --json`` and for the admin console's callables, so the terminal and
the page show the same data.

Every string passes :func:`agenttrader.logs.redact` as a last guard (the worker already redacts
what it records): no key value reaches a script or a browser. A dead letter's body is never
included, only the fields decoded from it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from agenttrader.logs import redact
from agenttrader.messages import format_timestamp
from console.deadletters import DeadLetter, ErrorClassGroup, Listing, Report, Status
from console.status import (
    ERROR_RATE_THRESHOLD,
    SLOW_PULSE_SECONDS,
    PipelineStatus,
    PulseStatus,
)
from console.tenants import StateFilter, Tenant, TenantDetail, TenantPage


def _redacted_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return redacted(value)
    if isinstance(value, list | tuple):
        return [_redacted_value(v) for v in value]
    return value


def redacted(document: dict[str, Any]) -> dict[str, Any]:
    return {key: _redacted_value(value) for key, value in document.items()}


def timestamp_text(value: datetime | None) -> str | None:
    return None if value is None else format_timestamp(value)


def letter_json(letter: DeadLetter, now: datetime) -> dict[str, Any]:
    request = letter.request
    return {
        "message_id": letter.message_id,
        "uid": letter.uid,
        "source": letter.source,
        "error_class": letter.error_class,
        "error": letter.error,
        "reason": letter.reason,
        "original_reason": (
            request.original_reason.value if request and request.original_reason else None
        ),
        "delivery_attempts": letter.delivery_attempts,
        "replay_count": letter.replay_count,
        "published_at": timestamp_text(letter.published_at),
        "age_seconds": round(letter.age(now).total_seconds(), 3),
        "decodable": request is not None,
        "decode_error": letter.decode_error,
    }


def listing_json(listing: Listing, now: datetime, subscription: str) -> dict[str, Any]:
    return redacted(
        {
            "subscription": subscription,
            "scanned": listing.scanned,
            "exhausted": listing.exhausted,
            "dead_letters": [letter_json(letter, now) for letter in listing.letters],
        }
    )


def report_json(report: Report, now: datetime, subscription: str) -> dict[str, Any]:
    counts = {status.value: report.count(status) for status in Status if report.count(status)}
    return redacted(
        {
            "subscription": subscription,
            "dry_run": report.dry_run,
            "interrupted": report.interrupted,
            "aborted": report.aborted,
            "cancelled": report.cancelled,
            "scanned": report.scanned,
            "exhausted": report.exhausted,
            "skipped": report.skipped,
            "counts": counts,
            "items": [
                {
                    **letter_json(item.letter, now),
                    "status": item.status.value,
                    "detail": item.detail,
                    "new_replay_count": item.replay_count,
                }
                for item in report.items
            ],
        }
    )


def pulse_json(pulse: PulseStatus) -> dict[str, Any]:
    return {
        "pulse_id": pulse.pulse_id,
        "timestamp": timestamp_text(pulse.timestamp),
        "published": pulse.published,
        "success": pulse.success,
        "error": pulse.error,
        "skipped": pulse.skipped,
        "complete": pulse.complete,
        "duration_seconds": pulse.duration_seconds,
        "error_rate": pulse.error_rate,
        "slow": pulse.slow,
    }


def history_json(pulses: Sequence[PulseStatus], hours: int) -> dict[str, Any]:
    """The pulse chart's data: every pulse of the last ``hours``, oldest first, and the line
    a pulse's duration is judged against."""
    return redacted(
        {
            "hours": hours,
            "slow_pulse_seconds": SLOW_PULSE_SECONDS,
            "error_rate_threshold": ERROR_RATE_THRESHOLD,
            "pulses": [pulse_json(p) for p in pulses],
        }
    )


def status_json(status: PipelineStatus, project: str, subscription: str) -> dict[str, Any]:
    depth = status.dead_letters
    return redacted(
        {
            "project": project,
            "now": timestamp_text(status.now),
            "pulses": [pulse_json(p) for p in status.pulses],
            "failing_tenants": [
                {
                    "uid": t.uid,
                    "error_class": t.error_class,
                    "error": t.error,
                    "last_failed_at": timestamp_text(t.last_failed_at),
                    "consecutive_failures": t.consecutive_failures,
                    "final": t.final,
                }
                for t in status.failing
            ],
            "failing_capped": status.failing_capped,
            "dead_letters": {
                "subscription": subscription,
                "held": None if depth is None else depth.scanned,
                "at_least": None if depth is None else not depth.exhausted,
                "problem": status.dead_letters_problem,
            },
            "alerts": [{"kind": a.kind.value, "message": a.message} for a in status.alerts],
        }
    )


def groups_json(groups: Sequence[ErrorClassGroup], now: datetime) -> list[dict[str, Any]]:
    return [
        {
            "error_class": g.error_class,
            "count": g.count,
            "tenants": g.tenants,
            "uids": list(g.uids),
            "oldest_age_seconds": round((now - g.oldest).total_seconds(), 3),
            "newest_age_seconds": round((now - g.newest).total_seconds(), 3),
        }
        for g in groups
    ]


def tenant_json(tenant: Tenant) -> dict[str, Any]:
    return {
        "uid": tenant.uid,
        "email": tenant.email,
        "state": tenant.state.value,
        "onboarded": tenant.onboarded,
        "configured": tenant.configured,
        "trading_enabled": tenant.trading_enabled,
        "failing": tenant.failing,
        "error_class": tenant.error_class,
        "error": tenant.error,
        "last_failed_at": timestamp_text(tenant.last_failed_at),
        "final": tenant.final,
        "consecutive_failures": tenant.consecutive_failures,
        "last_sync": timestamp_text(tenant.last_sync),
        "equity": tenant.equity,
        "sync_outcome": tenant.sync_outcome,
    }


def tenant_page_json(page: TenantPage) -> dict[str, Any]:
    return redacted(
        {
            "filter": None if page.state_filter is None else page.state_filter.value,
            "filters": [f.value for f in StateFilter],
            "search": page.search,
            "tenants": [tenant_json(t) for t in page.tenants],
            "scanned": page.scanned,
            "next_cursor": page.next_cursor,
            "truncated": page.truncated,
        }
    )


def _plain(value: Any) -> Any:
    """A Firestore value as JSON: timestamps as RFC 3339, maps and lists walked."""
    if isinstance(value, datetime):
        return format_timestamp(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def tenant_detail_json(detail: TenantDetail) -> dict[str, Any]:
    return redacted(
        {
            "tenant": tenant_json(detail.tenant),
            "snapshot": _plain(detail.snapshot),
            "audit": [
                {
                    "id": entry.entry_id,
                    "action": entry.action,
                    "actor": entry.actor,
                    "at": timestamp_text(entry.at),
                    "details": _plain(entry.details),
                }
                for entry in detail.audit
            ],
        }
    )
