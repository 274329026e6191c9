"""The ``user-sync`` message: one typed, frozen schema with strict codecs.

Wire format (docs/DESIGN.md): UTF-8 JSON ``{"uid", "reason", "requested_at"}`` plus this project's
optional fields, and the attribute ``uid``. A message never carries a secret.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from agenttrader.paths import is_reserved_id, validate_uid


class Reason(StrEnum):
    """Why a sync was requested."""

    SCHEDULE = "schedule"
    FIRST_SYNC = "first_sync"
    REPLAY = "replay"
    MANUAL = "manual"
    TRADE_UPDATE = "trade_update"
    """The tenant's trade-update stream delivered an update (coalesced per tenant)."""
    RECONCILE = "reconcile"
    """A stream (re)connected: events missed while it was down are recovered by a sync."""


_encode_json = json.JSONEncoder(separators=(",", ":")).encode
"""One compact encoder for every message (``json.dumps`` with options builds one per call)."""

MAX_MESSAGE_BYTES = 4096
"""Far above any valid message; larger payloads are refused before parsing."""

MAX_CLOCK_SKEW = timedelta(seconds=10)
"""How far ahead of the receiving server's clock a timestamp another machine wrote (a tick's
publish time, a message's ``requested_at``, a stored pulse or snapshot time) is still trusted.
Beyond it the value is bounded (:func:`requested_at_bound`) or refused, never stored as is: a
time in the future would make every message until then look older than what it stamped."""


def requested_at_bound(published_at: datetime, now: datetime) -> datetime:
    """The latest ``requested_at`` a delivered message is trusted with: when Pub/Sub received
    it (its publish time, set by Pub/Sub) or the receiving server's ``now`` if earlier, plus
    :data:`MAX_CLOCK_SKEW`. A request cannot be made after its message was published, so only
    a clock running ahead (an operator's machine) or a forged value exceeds it."""
    return min(published_at, now) + MAX_CLOCK_SKEW


@functools.lru_cache(maxsize=64)
def format_timestamp(value: datetime) -> str:
    """RFC 3339 in UTC with microseconds and a ``Z`` (cached: a pulse's 100,000 messages share
    one ``requested_at``)."""
    if value.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_timestamp(value: object, field: str) -> datetime:
    """Parse an RFC 3339 timestamp that carries a timezone."""
    if not isinstance(value, str):
        raise ValueError(f"{field} must be an RFC 3339 string, got {type(value).__name__}")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as err:
        raise ValueError(f"{field} is not an RFC 3339 timestamp: {value[:40]!r}") from err
    if parsed.tzinfo is None:
        raise ValueError(f"{field} must carry a timezone: {value[:40]!r}")
    try:
        return parsed.astimezone(UTC)
    except OverflowError as err:  # e.g. 0001-01-01T00:00:00+01:00 is before datetime.min in UTC
        raise ValueError(f"{field} is out of range: {value[:40]!r}") from err


@dataclass(frozen=True)
class SyncRequest:
    """One request to sync one user."""

    uid: str
    """The Firebase uid of the tenant to sync."""
    reason: Reason
    """Why; a ``schedule`` sync of a user whose kill-switch is off is skipped."""
    requested_at: datetime
    """When the sync was requested; orders snapshots (an older request never overwrites)."""
    pulse_id: str | None = None
    """The scheduler pulse that asked for it, for counting results per pulse."""
    replay_count: int = 0
    """How many times an operator replayed this request from the dead-letter topic."""
    original_reason: Reason | None = None
    """For replays: the reason of the message that was dead-lettered."""
    keys_version: str | None = None
    """Version of the user's keys when the sync was requested (see ``key_cache``)."""
    check_clock: bool = False
    """After a successful sync, also read Alpaca's ``/v2/clock`` with this user's keys and
    store it in ``ops/market_clock`` (one message of a pulse asks; see ``market_clock``)."""

    def __post_init__(self) -> None:
        validate_uid(self.uid)
        if self.requested_at.tzinfo is None:
            raise ValueError("requested_at must be timezone-aware")
        if self.replay_count < 0:
            raise ValueError("replay_count must not be negative")
        _pulse_id(self.pulse_id)
        _keys_version(self.keys_version)
        _check_clock(self.check_clock)

    def not_after(self, latest: datetime) -> SyncRequest:
        """This request with ``requested_at`` no later than ``latest`` (see
        :func:`requested_at_bound`): what the worker orders snapshots by."""
        return self if self.requested_at <= latest else replace(self, requested_at=latest)

    @property
    def effective_reason(self) -> Reason:
        """The reason that decides kill-switch handling: a replayed schedule is a schedule."""
        return self.original_reason or self.reason

    def to_dict(self) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "uid": self.uid,
            "reason": self.reason.value,
            "requested_at": format_timestamp(self.requested_at),
        }
        if self.pulse_id is not None:
            payload["pulse_id"] = self.pulse_id
        if self.replay_count:
            payload["replay_count"] = self.replay_count
        if self.original_reason is not None:
            payload["original_reason"] = self.original_reason.value
        if self.keys_version is not None:
            payload["keys_version"] = self.keys_version
        if self.check_clock:
            payload["check_clock"] = True
        return payload

    def to_bytes(self) -> bytes:
        return _encode_json(self.to_dict()).encode()

    def attributes(self) -> dict[str, str]:
        """Pub/Sub attributes: ``uid`` lets operators filter without decoding the body."""
        return {"uid": self.uid}

    @classmethod
    def from_dict(cls, payload: object) -> SyncRequest:
        """Decode a parsed JSON payload.

        Unknown extra fields are ignored, so a newer publisher can add fields during a rollout.
        """
        if not isinstance(payload, dict):
            raise ValueError(f"message must be a JSON object, got {type(payload).__name__}")
        missing = [f for f in ("uid", "reason", "requested_at") if f not in payload]
        if missing:
            raise ValueError(f"message is missing required field(s): {', '.join(missing)}")
        uid = payload["uid"]
        if not isinstance(uid, str):
            raise ValueError(f"uid must be a string, got {type(uid).__name__}")
        validate_uid(uid)
        reason = _reason(payload["reason"], "reason")
        original = payload.get("original_reason")
        replay_count = payload.get("replay_count", 0)
        if isinstance(replay_count, bool) or not isinstance(replay_count, int) or replay_count < 0:
            raise ValueError("replay_count must be a non-negative integer")
        return cls(
            uid=uid,
            reason=reason,
            requested_at=parse_timestamp(payload["requested_at"], "requested_at"),
            pulse_id=_pulse_id(payload.get("pulse_id")),
            replay_count=replay_count,
            original_reason=None if original is None else _reason(original, "original_reason"),
            keys_version=_keys_version(payload.get("keys_version")),
            check_clock=_check_clock(payload.get("check_clock", False)),
        )

    @classmethod
    def from_bytes(cls, data: bytes, attributes: dict[str, str] | None = None) -> SyncRequest:
        """Decode a message body; ``ValueError`` with a clear reason for anything malformed.

        A ``uid`` attribute that disagrees with the body is refused: one of them was tampered
        with, and syncing either user could be wrong.
        """
        if len(data) > MAX_MESSAGE_BYTES:
            raise ValueError(f"message is {len(data)} bytes, more than {MAX_MESSAGE_BYTES}")
        try:
            payload = json.loads(data.decode("utf-8"))
        except UnicodeDecodeError as err:
            raise ValueError("message is not UTF-8") from err
        except json.JSONDecodeError as err:
            raise ValueError(f"message is not JSON: {err.msg} at position {err.pos}") from err
        except RecursionError as err:  # ``[[[[…`` fits in MAX_MESSAGE_BYTES and nests too deep
            raise ValueError("message is not JSON: nested too deeply") from err
        request = cls.from_dict(payload)
        attr_uid = (attributes or {}).get("uid")
        if attr_uid is not None and attr_uid != request.uid:
            raise ValueError("attribute uid does not match the uid in the message body")
        return request

    @classmethod
    def now(cls, uid: str, reason: Reason, **fields: Any) -> SyncRequest:
        return cls(uid=uid, reason=reason, requested_at=datetime.now(UTC), **fields)


def _reason(value: object, field: str) -> Reason:
    if isinstance(value, str) and value in Reason.__members__.values():
        return Reason(value)
    allowed = ", ".join(r.value for r in Reason)
    raise ValueError(f"{field} must be one of {allowed}; got {str(value)[:40]!r}")


_PULSE_ID = re.compile(r"^[A-Za-z0-9_\-]{1,128}$")


def _pulse_id(value: object) -> str | None:
    """A pulse id names a Firestore document: no ``/`` or anything else that changes a path."""
    if value is None:
        return None
    if not isinstance(value, str) or not _PULSE_ID.fullmatch(value) or is_reserved_id(value):
        raise ValueError("pulse_id must be 1-128 characters of [A-Za-z0-9_-], not __…__")
    return value


def _keys_version(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.isdigit() or len(value) > 32:
        raise ValueError("keys_version must be a string of at most 32 digits")
    return value


def _check_clock(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"check_clock must be true or false, got {type(value).__name__}")
    return value
