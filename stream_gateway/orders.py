"""A trade update stored as its order's latest state: ``users/{uid}/orders/{order_id}``.

The document (docs/DESIGN.md): ``event``, ``order`` (as Alpaca sent it), ``updatedAt`` (when
the gateway wrote it), and ours: ``eventAt`` (the update's timestamp), ``eventNanos`` (the same,
in nanoseconds: what orders the updates), ``filledQty``, ``executionId``, ``price``, ``qty``,
``positionQty`` when the update carries them, and ``source: "stream"``.

**Never backwards.** An update is written only when it is newer than the stored one:
later ``eventNanos``, or the same and more ``filled_qty`` (:func:`newer`). Each write is
conditioned on the document as this instance last read or wrote it (its update time, or that
it did not exist), so two writers — an instance that lost a bucket with a write in flight, and
the one that took it — cannot put an older state over a newer one: the loser re-reads and
decides again. What this instance wrote is remembered (update time and key), so a tenant's
stream of updates costs one write each and no read.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from google.api_core import exceptions as gexc

from agenttrader.errors import DependencyUnavailable
from agenttrader.firestore_io import add_set_fields
from agenttrader.paths import order_doc
from stream_gateway.protocol import TradeUpdate

if TYPE_CHECKING:
    from google.cloud import firestore

EVENT_NANOS = "eventNanos"
FILLED_QTY = "filledQty"
DETAIL_FIELDS = {
    "execution_id": "executionId",
    "price": "price",
    "qty": "qty",
    "position_qty": "positionQty",
}
ATTEMPTS = 3
"""Rounds of read-and-decide-again after a conditioned write lost a race."""
DEFAULT_MEMORY = 20_000
"""Orders whose stored state this instance remembers (~150 bytes each)."""
_RACES = (gexc.FailedPrecondition, gexc.AlreadyExists, gexc.NotFound, gexc.Conflict)

Key = tuple[int, Decimal]
"""What orders two states of one order: the event's nanoseconds, then the filled quantity."""


def _quantity(value: object) -> Decimal:
    try:
        return Decimal(str(value)) if value not in (None, "") else Decimal(0)
    except InvalidOperation:
        return Decimal(0)


def key_of(update: TradeUpdate) -> Key:
    return (update.at_nanos, _quantity(update.filled_qty))


def stored_key(data: Mapping[str, Any] | None) -> Key | None:
    """The key of a stored order document (``None``: none stored, or not ours to order)."""
    if not data or not isinstance(data.get(EVENT_NANOS), int):
        return None
    return (int(data[EVENT_NANOS]), _quantity(data.get(FILLED_QTY)))


def newer(incoming: Key, stored: Key | None) -> bool:
    """Whether a state with ``incoming`` replaces the one stored with ``stored``."""
    return stored is None or incoming > stored


def latest(updates: Sequence[TradeUpdate]) -> dict[str, TradeUpdate]:
    """The newest update of each order among ``updates`` (a burst, coalesced)."""
    found: dict[str, TradeUpdate] = {}
    for update in updates:
        current = found.get(update.order_id)
        if current is None or newer(key_of(update), key_of(current)):
            found[update.order_id] = update
    return found


FIRST_EVENTS = frozenset({"new", "pending_new", "accepted"})
"""An order's first update: its document most likely does not exist yet, so it is created
without reading first (a lost bet costs the read after all)."""


def document(update: TradeUpdate, now: datetime) -> dict[str, Any]:
    """The fields written for ``update`` (``updatedAt``: when this instance wrote it)."""
    body: dict[str, Any] = {
        "event": update.event,
        "order": update.order,
        "updatedAt": now,
        "eventAt": update.at,
        EVENT_NANOS: update.at_nanos,
        FILLED_QTY: update.filled_qty,
        "source": "stream",
    }
    for name, field in DETAIL_FIELDS.items():
        if name in update.details:
            body[field] = str(update.details[name])
    return body


class OrderWriter:
    """Writes each tenant's order updates in one commit; blocking (run on an executor)."""

    def __init__(self, db: firestore.Client, memory: int = DEFAULT_MEMORY) -> None:
        self._db = db
        self._memory = memory
        self._known: OrderedDict[str, tuple[Key | None, Any]] = OrderedDict()
        """order path → (stored key, update time); ``(None, None)``: known not to exist."""

    def write(self, uid: str, updates: Sequence[TradeUpdate]) -> int:
        """Store the newest state of each order of ``updates``; returns how many documents
        were written (older or equal states write nothing). Encoded as protobuf directly
        (:func:`agenttrader.firestore_io.add_set_fields`: the whole document a write, its
        precondition the update time known, or that it does not exist)."""
        pending = {order_doc(uid, oid): u for oid, u in latest(updates).items()}
        guess = {path for path, u in pending.items() if u.event in FIRST_EVENTS}
        for _ in range(ATTEMPTS):
            self._learn([p for p in pending if p not in self._known and p not in guess])
            batch = self._db.batch()
            chosen: list[tuple[str, Key]] = []
            now = datetime.now(UTC)
            for path, update in pending.items():
                stored, update_time = self._known.get(path, (None, None))
                incoming = key_of(update)
                if not newer(incoming, stored):
                    continue
                body = document(update, now)
                absent = [field for field in DETAIL_FIELDS.values() if field not in body]
                add_set_fields(
                    batch, self._db, path, body, delete=absent, last_update_time=update_time
                )
                chosen.append((path, incoming))
            if not chosen:
                return 0
            try:
                results = batch.commit()
            except _RACES:
                for path, _ in chosen:  # someone else wrote: read again, decide again
                    self._known.pop(path, None)
                guess.clear()
                continue
            for (path, incoming), result in zip(chosen, results, strict=True):
                self._remember(path, incoming, result.update_time)
            return len(chosen)
        raise DependencyUnavailable("order updates kept losing races to another writer")

    def _learn(self, paths: list[str]) -> None:
        if not paths:
            return
        refs = [self._db.document(path) for path in paths]
        for snap in self._db.get_all(refs, field_paths=[EVENT_NANOS, FILLED_QTY]):
            path = snap.reference.path
            if snap.exists:
                self._remember(path, stored_key(snap.to_dict()), snap.update_time)
            else:
                self._remember(path, None, None)

    def _remember(self, path: str, key: Key | None, update_time: Any) -> None:
        self._known[path] = (key, update_time)
        self._known.move_to_end(path)
        while len(self._known) > self._memory:
            self._known.popitem(last=False)
