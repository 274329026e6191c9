"""``users/{uid}/data/snapshot``: the one owner of the snapshot document's schema.

The fields of docs/DESIGN.md (``syncedAt``, ``account``, ``equity``, ``buying_power``,
``cash``) plus ours: ``requestedAt`` (the message a snapshot answers: snapshots are ordered by
it), ``reason``, ``positions``, ``positions_count``, ``placeholder`` (written by onboarding
until the first sync) and the tenant's latest sync result, so a healthy tenant's sync is one
write:

- ``syncOutcome``: ``success`` | ``error`` | ``skipped`` (:class:`Outcome`), always equal to
  ``status/sync.outcome``;
- ``pulseId``: the pulse that outcome counts for;
- ``syncFailing``: ``status/last_sync_error`` exists.

:class:`Stored` is the document as a worker reads it (what deciding and guarding a write
need); :func:`synced_body` and :func:`placeholder` are the two bodies the backend writes.

:data:`DATA` is the allowlist of what a snapshot's data may hold, recursively: the top-level
fields above and the fields of Alpaca's account object and positions as the worker stores them
(``GET /v2/account`` and ``GET /v2/positions``, verbatim). :func:`allowed_fields` reduces any
document to it; whatever comes from outside a sync (the legacy migration) passes through it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from agenttrader.firestore_io import call
from agenttrader.messages import MAX_CLOCK_SKEW
from agenttrader.paths import snapshot_doc

if TYPE_CHECKING:
    from google.cloud import firestore

COLLECTION_GROUP = "data"
"""Collection group of ``users/{uid}/data/snapshot``, where a pulse's successes are counted."""
PULSE_FIELD = "pulseId"
"""The snapshot's pulse: the one its tenant's latest outcome counts for."""
OUTCOME_FIELD = "syncOutcome"
"""The snapshot's copy of ``status/sync.outcome``: the tenant's latest outcome."""
FAILING_FIELD = "syncFailing"
"""``status/last_sync_error`` exists: a failure was recorded since the last success."""
REQUESTED_AT_FIELD = "requestedAt"
"""When the message this snapshot answers was requested: the order of snapshots."""
PLACEHOLDER_FIELD = "placeholder"
"""``true`` on the document onboarding writes, until a sync replaces it."""


class Outcome(StrEnum):
    """How one user's sync in a pulse ended (``syncOutcome``, ``status/sync.outcome``)."""

    SUCCESS = "success"
    ERROR = "error"
    SKIPPED = "skipped"


_OUTCOMES = frozenset(o.value for o in Outcome)


class Stale(StrEnum):
    """Why a result wrote nothing: the stored snapshot is as new as its message, or newer."""

    DUPLICATE = "duplicate"
    SUPERSEDED = "superseded"


@dataclass(frozen=True)
class Stored:
    """``users/{uid}/data/snapshot`` as read: what deciding and guarding a write needs."""

    exists: bool
    update_time: datetime | None = None
    data: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, snapshot: Any) -> Stored:
        """From a ``DocumentSnapshot``."""
        if not snapshot.exists:
            return cls(exists=False)
        return cls(exists=True, update_time=snapshot.update_time, data=snapshot.to_dict() or {})

    @classmethod
    def read(cls, db: firestore.Client, uid: str) -> Stored:
        return cls.of(call(db.document(snapshot_doc(uid)).get))

    @property
    def outcome(self) -> str | None:
        """``syncOutcome``; ``None`` on a snapshot that never carried one."""
        value = self.data.get(OUTCOME_FIELD)
        return value if isinstance(value, str) and value in _OUTCOMES else None

    @property
    def pulse_id(self) -> str | None:
        value = self.data.get(PULSE_FIELD)
        return value if isinstance(value, str) else None

    @property
    def failing(self) -> bool | None:
        """``syncFailing``; ``None`` when unknown (no snapshot, or one that never carried it)."""
        value = self.data.get(FAILING_FIELD)
        return value if isinstance(value, bool) else None

    @property
    def clean(self) -> bool:
        """The latest outcome was a success and no failure was recorded since: ``status/sync``
        and ``status/last_sync_error`` need no write."""
        return self.outcome == Outcome.SUCCESS and self.failing is False

    def staleness(self, requested_at: datetime, *, now: datetime) -> Stale | None:
        """``DUPLICATE`` / ``SUPERSEDED`` when the stored snapshot is as new or newer.

        A stored ``requestedAt`` more than :data:`~agenttrader.messages.MAX_CLOCK_SKEW` after
        ``now`` is not trusted (the worker bounds what it stores, so only data written before
        it did, or by hand, holds one): any message is newer, so such a tenant is not frozen
        until that time."""
        stored_at = self.data.get(REQUESTED_AT_FIELD)
        if not isinstance(stored_at, datetime):
            return None  # none, a placeholder or migrated legacy data: any real sync is newer
        if stored_at > now + MAX_CLOCK_SKEW:
            return None
        if stored_at > requested_at:
            return Stale.SUPERSEDED
        if stored_at == requested_at:
            return Stale.DUPLICATE
        return None


def synced_body(
    requested_at: datetime, reason: str, state: Mapping[str, Any], synced_at: datetime
) -> dict[str, Any]:
    """The data of a snapshot synced from Alpaca's ``state`` (``account`` and ``positions``, as
    Alpaca sends them); the worker's result recording adds the outcome fields."""
    account = state["account"]
    return {
        "syncedAt": synced_at,
        REQUESTED_AT_FIELD: requested_at,
        "reason": reason,
        "account": account,
        "equity": money(account.get("equity")),
        "buying_power": money(account.get("buying_power")),
        "cash": money(account.get("cash")),
        "positions": state["positions"],
        "positions_count": len(state["positions"]),
    }


def money(value: Any) -> str:
    """Amounts are strings, as Alpaca sends them and as the spec stores them."""
    return "0" if value is None else str(value)


def placeholder() -> dict[str, Any]:
    """Shaped like a real snapshot so clients can render it; ``placeholder`` marks it."""
    return {
        "syncedAt": None,
        PLACEHOLDER_FIELD: True,
        "account": {},
        "equity": "0",
        "buying_power": "0",
        "cash": "0",
        "positions": [],
    }


def is_placeholder(snapshot: Mapping[str, Any]) -> bool:
    """Whether a snapshot is still :func:`placeholder` (no sync has written it)."""
    return snapshot.get(PLACEHOLDER_FIELD) is True or snapshot.get("syncedAt") is None


# --- the allowlist of a snapshot's data ------------------------------------------------------


@dataclass(frozen=True)
class Fields:
    """A map holding at most these keys; each names the shape of its value (``None``: a
    scalar, i.e. a string, number, boolean, timestamp or null)."""

    names: Mapping[str, Fields | ListOf | None]


@dataclass(frozen=True)
class ListOf:
    """A list whose items all have this shape."""

    item: Fields


def _scalars(*names: str) -> dict[str, None]:
    return dict.fromkeys(names)


ADMIN_CONFIGURATION = Fields(
    _scalars(
        "allow_instant_ach",
        "disable_shorting",
        "max_margin_multiplier",
        "max_options_trading_level",
        "pdt_check",
    )
)
"""``account.admin_configurations``: the limits Alpaca set on the account."""
USER_CONFIGURATION = Fields(
    _scalars(
        "dtbp_check",
        "fractional_trading",
        "max_margin_multiplier",
        "max_options_trading_level",
        "no_shorting",
        "pdt_check",
        "ptp_no_exception_entry",
        "suspend_trade",
        "trade_confirm_email",
    )
)
"""``account.user_configurations``: alpaca-py's ``AccountConfiguration``."""
ACCOUNT = Fields(
    {
        **_scalars(
            "id",
            "account_number",
            "status",
            "crypto_status",
            "crypto_tier",
            "currency",
            "buying_power",
            "regt_buying_power",
            "daytrading_buying_power",
            "effective_buying_power",
            "non_marginable_buying_power",
            "options_buying_power",
            "bod_dtbp",
            "cash",
            "accrued_fees",
            "pending_transfer_in",
            "pending_transfer_out",
            "portfolio_value",
            "pattern_day_trader",
            "trading_blocked",
            "transfers_blocked",
            "account_blocked",
            "created_at",
            "trade_suspended_by_user",
            "multiplier",
            "shorting_enabled",
            "equity",
            "last_equity",
            "long_market_value",
            "short_market_value",
            "position_market_value",
            "initial_margin",
            "maintenance_margin",
            "last_maintenance_margin",
            "sma",
            "daytrade_count",
            "balance_asof",
            "options_approved_level",
            "options_trading_level",
            "intraday_adjustments",
            "pending_reg_taf_fees",
        ),
        "admin_configurations": ADMIN_CONFIGURATION,
        "user_configurations": USER_CONFIGURATION,
    }
)
"""``account``: Alpaca's account object (alpaca-py ``TradeAccount`` and the raw
``GET /v2/account`` body)."""
_POSITION_AMOUNTS = (
    "avg_entry_price",
    "market_value",
    "cost_basis",
    "unrealized_pl",
    "unrealized_plpc",
    "unrealized_intraday_pl",
    "unrealized_intraday_plpc",
    "current_price",
    "lastday_price",
    "change_today",
)
POSITION = Fields(
    {
        **_scalars(
            "asset_id",
            "symbol",
            "exchange",
            "asset_class",
            "asset_marginable",
            "qty",
            "qty_available",
            "side",
            "swap_rate",
            "avg_entry_swap_rate",
            *_POSITION_AMOUNTS,
        ),
        "usd": Fields(_scalars(*_POSITION_AMOUNTS)),
    }
)
"""One item of ``positions``: Alpaca's position object (alpaca-py ``Position``)."""
DATA = Fields(
    {
        **_scalars("syncedAt", "equity", "buying_power", "cash", "positions_count"),
        "account": ACCOUNT,
        "positions": ListOf(POSITION),
    }
)
"""What a snapshot's data may hold. The sync's own bookkeeping (``requestedAt``, ``reason``,
the outcome fields, ``placeholder``) is not data: it is written by the backend only."""

LIST_ITEM = "[]"
"""How a path names the items of a list: ``positions[].symbol``."""


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool | datetime)


def _never(_: Any) -> bool:
    return False


def allowed_fields(
    data: Mapping[str, Any], shape: Fields = DATA, *, refuse: Callable[[Any], bool] = _never
) -> tuple[dict[str, Any], list[str]]:
    """``data`` reduced to what ``shape`` names, recursively, and the sorted paths of what was
    left out (``APCA-API-KEY-ID``, ``account.secret_key``, ``positions[].auth``).

    A value of the wrong kind (a map where a scalar belongs, a list item that is not a map) is
    left out as well, and so is any scalar ``refuse`` rejects, whatever its name.
    """
    dropped: set[str] = set()
    kept = _fields(data, shape, "", refuse, dropped)
    return kept, sorted(dropped)


_DROP = object()
"""What :func:`_value` answers for a value that is not kept."""


def _fields(
    data: Mapping[str, Any],
    shape: Fields,
    prefix: str,
    refuse: Callable[[Any], bool],
    dropped: set[str],
) -> dict[str, Any]:
    kept: dict[str, Any] = {}
    for name, value in data.items():
        path = f"{prefix}{name}"
        result = _DROP
        if name in shape.names:
            result = _value(value, shape.names[name], path, refuse, dropped)
        if result is _DROP:
            dropped.add(path)
        else:
            kept[name] = result
    return kept


def _value(
    value: Any,
    kind: Fields | ListOf | None,
    path: str,
    refuse: Callable[[Any], bool],
    dropped: set[str],
) -> Any:
    """``value`` reduced to ``kind``, or :data:`_DROP`."""
    if kind is None:
        return value if _is_scalar(value) and not refuse(value) else _DROP
    if isinstance(kind, Fields):
        if value is None:
            return None
        if isinstance(value, Mapping):
            return _fields(value, kind, f"{path}.", refuse, dropped)
        return _DROP
    if not isinstance(value, list):
        return _DROP
    items = []
    for item in value:
        if isinstance(item, Mapping):
            items.append(_fields(item, kind.item, f"{path}{LIST_ITEM}.", refuse, dropped))
        else:
            dropped.add(f"{path}{LIST_ITEM}")
    return items
