"""The admin callables' arguments, validated into the use cases' types.

Each parser takes the callable's ``data`` and returns a frozen value, or raises
``INVALID_ARGUMENT`` naming the field (:func:`agenttrader.callable.invalid_argument`). The
defaults and limits are the command line's (``agenttrader dlq …``): the same filters, dry run,
replay rate and replay limit, so a replay from the page behaves as one from a terminal.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from agenttrader import paths
from agenttrader.callable import CallableError, Status, fields_of, invalid_argument, require_string
from console import deadletters as dlq
from console import status, tenants

MAX_LIST = 2_000
"""Dead letters listed per call at most (the page shows them grouped)."""
DEFAULT_REPLAY_LIMIT = 100
MAX_REPLAY_LIMIT = 1_000
REPLAY_BUDGET_SECONDS = 240.0
"""A paced replay must end within this (the function's timeout is 300 s): ``limit / rate``
above it is refused, so a call never stops halfway because its time ran out."""
MAX_FILTER_VALUES = 50
MAX_SEARCH_LENGTH = 320
"""An email address is at most 320 characters."""

_FILTER_FIELDS = ("uids", "errorClasses", "sources", "olderThan", "newerThan")


def _bool(data: Mapping[str, Any], name: str, default: bool = False) -> bool:
    value = data.get(name, default)
    if not isinstance(value, bool):
        raise invalid_argument(name, "must be true or false")
    return value


def _int(data: Mapping[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = data.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise invalid_argument(name, f"must be a whole number from {low} to {high}")
    return value


def _strings(data: Mapping[str, Any], name: str) -> frozenset[str]:
    value = data.get(name) or []
    if not isinstance(value, list) or len(value) > MAX_FILTER_VALUES:
        raise invalid_argument(name, f"must be a list of at most {MAX_FILTER_VALUES} strings")
    return frozenset(require_string(v, name, max_length=128) for v in value)


def _duration(data: Mapping[str, Any], name: str) -> timedelta | None:
    value = data.get(name)
    if value is None or value == "":
        return None
    text = require_string(value, name, max_length=32)
    try:
        return dlq.parse_duration(text)
    except ValueError as err:
        raise invalid_argument(name, str(err)) from None


def filters_of(data: Mapping[str, Any]) -> dlq.Filters:
    """The dead-letter filters of a call (``--uid``, ``--error-class``, ``--source``,
    ``--older-than``, ``--newer-than`` on the command line)."""
    uids = _strings(data, "uids")
    for uid in uids:
        try:
            paths.validate_uid(uid)
        except ValueError:
            raise invalid_argument("uids", f"{uid[:40]!r} is not a valid user id") from None
    try:
        return dlq.Filters(
            uids=uids,
            error_classes=_strings(data, "errorClasses"),
            sources=_strings(data, "sources"),
            older_than=_duration(data, "olderThan"),
            newer_than=_duration(data, "newerThan"),
        )
    except ValueError as err:
        raise CallableError(Status.INVALID_ARGUMENT, str(err)) from None


@dataclass(frozen=True)
class StatusRequest:
    hours: int
    pulses: int
    dead_letters: bool


def status_request(data: Any) -> StatusRequest:
    fields = fields_of(data, allowed=("hours", "pulses", "deadLetters"))
    return StatusRequest(
        hours=_int(fields, "hours", status.HISTORY_HOURS, 1, 7 * 24),
        pulses=_int(fields, "pulses", status.DEFAULT_PULSES, 1, 100),
        dead_letters=_bool(fields, "deadLetters", True),
    )


@dataclass(frozen=True)
class TenantsRequest:
    state_filter: tenants.StateFilter
    search: str | None
    cursor: str | None
    page_size: int


def tenants_request(data: Any) -> TenantsRequest:
    fields = fields_of(data, allowed=("filter", "search", "cursor", "pageSize"))
    raw_filter = fields.get("filter") or tenants.StateFilter.ALL.value
    try:
        state_filter = tenants.StateFilter(raw_filter)
    except ValueError:
        known = ", ".join(f.value for f in tenants.StateFilter)
        raise invalid_argument("filter", f"must be one of {known}") from None
    search = fields.get("search")
    if search is not None:
        search = require_string(search, "search", max_length=MAX_SEARCH_LENGTH).strip() or None
    cursor = fields.get("cursor")
    if cursor is not None:
        cursor = require_string(cursor, "cursor", max_length=1_500)
        if not _is_cursor(cursor):
            raise invalid_argument("cursor", "is not a cursor this callable returned")
    if search is not None and (cursor is not None or state_filter is not tenants.StateFilter.ALL):
        raise CallableError(
            Status.INVALID_ARGUMENT, "search takes no filter and no cursor: one page of matches"
        )
    return TenantsRequest(
        state_filter=state_filter,
        search=search,
        cursor=cursor,
        page_size=_int(fields, "pageSize", tenants.PAGE_SIZE, 1, tenants.MAX_PAGE_SIZE),
    )


def _is_cursor(text: str) -> bool:
    """A document path under a user, as :func:`console.tenants.list_tenants` returns."""
    parts = text.split("/")
    if len(parts) % 2 or not all(parts):
        return False
    try:
        paths.uid_of(text)
    except ValueError:
        return False
    return True


def tenant_uid(data: Any) -> str:
    uid = fields_of(data, allowed=("uid",), required=("uid",))["uid"]
    try:
        return paths.validate_uid(uid)
    except ValueError:
        raise invalid_argument("uid", "is not a valid user id") from None


@dataclass(frozen=True)
class ListRequest:
    filters: dlq.Filters
    limit: int


def list_request(data: Any) -> ListRequest:
    fields = fields_of(data, allowed=(*_FILTER_FIELDS, "limit"))
    return ListRequest(filters_of(fields), _int(fields, "limit", MAX_LIST, 1, MAX_LIST))


@dataclass(frozen=True)
class ReplayRequest:
    filters: dlq.Filters
    limit: int
    rate: float
    """Republishes per second; 0: no limit (as ``--rate 0``)."""
    max_replays: int
    force: bool
    dry_run: bool


def replay_request(data: Any) -> ReplayRequest:
    fields = fields_of(
        data, allowed=(*_FILTER_FIELDS, "limit", "rate", "maxReplays", "force", "dryRun")
    )
    limit = _int(fields, "limit", DEFAULT_REPLAY_LIMIT, 1, MAX_REPLAY_LIMIT)
    rate = fields.get("rate", dlq.DEFAULT_RATE)
    if (
        isinstance(rate, bool)
        or not isinstance(rate, int | float)
        or not math.isfinite(rate)
        or rate < 0
    ):
        raise invalid_argument("rate", "must be a finite number ≥ 0 (0: no limit)")
    if rate and limit / rate > REPLAY_BUDGET_SECONDS:
        raise invalid_argument(
            "rate",
            f"{limit} replays at {rate:g}/s take longer than {REPLAY_BUDGET_SECONDS:.0f} s:"
            " raise the rate or lower the limit",
        )
    return ReplayRequest(
        filters=filters_of(fields),
        limit=limit,
        rate=float(rate),
        max_replays=_int(fields, "maxReplays", dlq.DEFAULT_MAX_REPLAYS, 0, 1_000),
        force=_bool(fields, "force"),
        dry_run=_bool(fields, "dryRun"),
    )


@dataclass(frozen=True)
class PurgeRequest:
    filters: dlq.Filters
    limit: int
    dry_run: bool


def purge_request(data: Any) -> PurgeRequest:
    fields = fields_of(data, allowed=(*_FILTER_FIELDS, "limit", "dryRun", "confirm"))
    dry_run = _bool(fields, "dryRun")
    if not dry_run and not _bool(fields, "confirm"):
        raise CallableError(
            Status.FAILED_PRECONDITION,
            "a purge deletes for good: send confirm: true (the command line's --yes),"
            " or dryRun: true to see what would go",
        )
    return PurgeRequest(
        filters_of(fields), _int(fields, "limit", MAX_REPLAY_LIMIT, 1, MAX_REPLAY_LIMIT), dry_run
    )
