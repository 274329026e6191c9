"""The JSON documents of dead letters, replay / purge reports and the pipeline status: one
encoding for ``agenttrader … --json`` and for the admin console's callables, so the terminal and
the page show the same data.

Every string passes :func:`agenttrader.logs.redact` as a last guard (the worker already redacts
what it records): no key value reaches a script or a browser. A dead letter's body is never
included, only the fields decoded from it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from agenttrader.logs import redact
from agenttrader.messages import format_timestamp
from console.deadletters import DeadLetter, Listing, Report, Status
from console.status import PipelineStatus


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


def status_json(status: PipelineStatus, project: str, subscription: str) -> dict[str, Any]:
    depth = status.dead_letters
    return redacted(
        {
            "project": project,
            "now": timestamp_text(status.now),
            "pulses": [
                {
                    "pulse_id": p.pulse_id,
                    "timestamp": timestamp_text(p.timestamp),
                    "published": p.published,
                    "success": p.success,
                    "error": p.error,
                    "skipped": p.skipped,
                    "complete": p.complete,
                    "duration_seconds": p.duration_seconds,
                    "error_rate": p.error_rate,
                    "slow": p.slow,
                }
                for p in status.pulses
            ],
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
