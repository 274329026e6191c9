"""A user's roster verdict and how an entry encodes it so that the one read last wins.

An entry (``members.{uid}`` in a shard document) is ``read time in µs × 4 + state``, written
with Firestore's ``maximum`` transform: whatever order the writes land in, the entry ends at
the verdict read last. States: ``ELIGIBLE`` (onboarded, keys configured, trading enabled),
``MEMBER`` (onboarded, not eligible: a tick counts it as skipped) and ``GONE`` (not onboarded:
deleted, or never was). A ``GONE`` entry is a tombstone: it keeps any older verdict from
winning, and is dropped once older than ``TOMBSTONE_HORIZON`` (:mod:`publisher.roster_upkeep`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from agenttrader.keys_version import version_of

ELIGIBLE = 3
MEMBER = 2
"""Bit of an onboarded user (eligible or not)."""
GONE = 0

TOMBSTONE_HORIZON = timedelta(days=1)
"""How long a ``GONE`` entry is kept. Dropping it is safe once no verdict read before it can
still land: a trigger's write lands within its 60 s timeout of its read and a writer whose
write landed later than ``LATE_WRITE`` after its read writes again (``roster.refresh``); a
rebuild stops before half of this horizon."""

LATE_WRITE = timedelta(seconds=30)
"""A verdict written longer than this after it was read is read and written again."""


def micros(moment: datetime) -> int:
    return int(moment.timestamp()) * 1_000_000 + moment.microsecond


def entry(read_time: datetime, state: int) -> int:
    """The ``members`` value of a verdict read at ``read_time``: later reads compare greater."""
    return micros(read_time) * 4 + state


def state_of(value: int) -> int:
    return value & 3


def read_micros(value: int) -> int:
    """When the verdict of an entry was read (µs since the epoch)."""
    return value >> 2


_HORIZON_MICROS = int(TOMBSTONE_HORIZON.total_seconds()) * 1_000_000


def expired(value: int, now_micros: int) -> bool:
    """Whether ``value`` is a tombstone older than ``TOMBSTONE_HORIZON`` at ``now_micros``."""
    return state_of(value) == GONE and read_micros(value) < now_micros - _HORIZON_MICROS


@dataclass(frozen=True)
class Verdict:
    uid: str
    eligible: bool
    keys_version: str | None
    member: bool = True
    """Whether the user is onboarded (``users/{uid}.onboarded == true``)."""

    @property
    def state(self) -> int:
        return ELIGIBLE if self.eligible else MEMBER if self.member else GONE


def is_onboarded(user: Mapping[str, Any] | None) -> bool:
    """Whether ``users/{uid}`` (``None``: missing) makes its user a tenant: onboarded."""
    return (user or {}).get("onboarded") is True


def verdict(
    uid: str,
    user: dict[str, Any] | None,
    config: dict[str, Any] | None,
    trading: dict[str, Any] | None,
) -> Verdict:
    """The verdict from ``users/{uid}``, ``config/alpaca`` and ``status/trading`` (``None``:
    missing). Eligible as docs/DESIGN.md defines it — ``configured`` and ``enabled`` both
    true — and only for an onboarded user: anyone else is no member of the roster."""
    member = is_onboarded(user)
    configured = member and (config or {}).get("configured") is True
    enabled = (trading or {}).get("enabled") is True
    keys_version = version_of((config or {}).get("configuredAt")) if configured else None
    return Verdict(uid, configured and enabled, keys_version, member)
