"""What the simulator's ``GET /v2/clock`` answers: the regular session, a pinned answer, or an
error, switchable at run time (``PUT /_sim/clock``) so tests can close or open the market.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

_FIELDS = frozenset({"is_open", "next_open", "next_close", "fail_status"})


@dataclass(frozen=True)
class ClockSetting:
    """``GET /v2/clock`` for every tenant.

    - nothing set: the regular session (weekdays 09:30-16:00 New York, no holidays);
    - ``is_open``, ``next_open`` and ``next_close`` set together: that answer, with the current
      time as ``timestamp`` (the market as a test wants it, whatever the real time);
    - ``fail_status``: that HTTP error instead (after authentication and the tenant's own
      scenario, which still apply), e.g. 503 to see a sync survive a failing clock call.
    """

    is_open: bool | None = None
    next_open: datetime | None = None
    next_close: datetime | None = None
    fail_status: int | None = None

    def __post_init__(self) -> None:
        pinned = (self.is_open, self.next_open, self.next_close)
        if any(v is not None for v in pinned) and any(v is None for v in pinned):
            raise ValueError("is_open, next_open and next_close are pinned together")
        if self.is_open is not None and not isinstance(self.is_open, bool):
            raise ValueError("is_open must be true or false")
        for name in ("next_open", "next_close"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, datetime) or value.tzinfo is None):
                raise ValueError(f"{name} must be a timestamp with a timezone")
        status = self.fail_status
        if status is not None and (
            isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599
        ):
            raise ValueError("fail_status must be an integer between 400 and 599")
        if status is not None and self.is_open is not None:
            raise ValueError("a clock either fails or is pinned, not both")

    @property
    def mode(self) -> str:
        if self.fail_status is not None:
            return "failing"
        return "regular" if self.is_open is None else "pinned"

    @classmethod
    def from_dict(cls, data: object) -> ClockSetting:
        """From the admin API's JSON (timestamps as RFC 3339); ``ValueError`` names the field."""
        if not isinstance(data, Mapping):
            raise ValueError("clock must be a JSON object")
        unknown = sorted(set(map(str, data)) - _FIELDS)
        if unknown:
            raise ValueError(f"unknown clock field(s): {', '.join(unknown)}")
        return cls(
            is_open=data.get("is_open"),
            next_open=_timestamp(data.get("next_open"), "next_open"),
            next_close=_timestamp(data.get("next_close"), "next_close"),
            fail_status=data.get("fail_status"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "is_open": self.is_open,
            "next_open": None if self.next_open is None else self.next_open.isoformat(),
            "next_close": None if self.next_close is None else self.next_close.isoformat(),
            "fail_status": self.fail_status,
        }


def _timestamp(value: object, name: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{name} must be an RFC 3339 string")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{name} is not an RFC 3339 timestamp") from None
    if parsed.tzinfo is None:
        raise ValueError(f"{name} must be a timestamp with a timezone")
    return parsed


REGULAR = ClockSetting()
