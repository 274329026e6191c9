"""``sync_user``: sync one tenant's Alpaca account into Firestore, under the retry contract.

One place decides what a failure means (:meth:`SyncWorker.handle`):
- ``RetryableError`` (429, 5xx, timeouts, Firestore hiccups) is raised, so Pub/Sub redelivers
  with backoff and dead-letters after the delivery limit; the error is recorded meanwhile.
- ``PermanentError`` (bad or missing keys, 401/403, disallowed base URL, unknown user,
  malformed message) is recorded and published to ``user-sync-dead-letter``; the message is
  acknowledged.
Snapshots are ordered by ``requestedAt`` with an optimistic precondition on the snapshot's
update time: an older message never overwrites a newer snapshot, a duplicate writes nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from google.api_core import exceptions as gexc

from agenttrader import topology
from agenttrader.alpaca import AlpacaKeys, fetch_account_state
from agenttrader.deadletter import dead_letter_attributes, publish_dead_letter
from agenttrader.errors import (
    AgentTraderError,
    AlpacaAuthError,
    DependencyUnavailable,
    MalformedMessage,
    MissingKeys,
    PermanentError,
    RetryableError,
    UnknownUser,
)
from agenttrader.events import PubsubDelivery
from agenttrader.firestore_codec import add_set_fields
from agenttrader.key_cache import KeyCache
from agenttrader.logs import get_logger, redact
from agenttrader.messages import Reason, SyncRequest
from agenttrader.paths import (
    alpaca_secret_doc,
    last_sync_error_doc,
    snapshot_doc,
    sync_state_doc,
    trading_status_doc,
    user_doc,
    validate_uid,
)
from agenttrader.pulses import Outcome, RollupScheduler

if TYPE_CHECKING:
    from google.cloud import firestore

    from agenttrader.deps import Deps

log = get_logger(__name__)

_DEAD_LETTER = topology.subscription(topology.USER_SYNC_WORKER).dead_letter
MAX_DELIVERY_ATTEMPTS = _DEAD_LETTER.max_delivery_attempts if _DEAD_LETTER else 5
"""The delivery on which Pub/Sub gives up: a transient failure then counts as an error."""
PRECONDITION_RETRIES = 3
KILL_SWITCH_REASONS = frozenset({Reason.SCHEDULE})
"""Reasons a disabled kill-switch skips; first syncs, manual syncs and replays run anyway."""


class Result(StrEnum):
    """What :meth:`SyncWorker.handle` did with a message it acknowledged."""

    SYNCED = "synced"
    SKIPPED = "skipped"
    DUPLICATE = "duplicate"
    SUPERSEDED = "superseded"
    DEAD_LETTERED = "dead_lettered"


@dataclass(frozen=True)
class _Loaded:
    trading: Any
    secret: Any
    snapshot: Any


class SyncWorker:
    """Handles ``user-sync`` deliveries; one instance per process, safe across threads."""

    def __init__(
        self,
        deps: Deps,
        rollups: RollupScheduler | None = None,
        keys: KeyCache | None = None,
    ) -> None:
        self._deps = deps
        self._rollups = rollups
        self._keys = keys if keys is not None else KeyCache()

    def handle(self, delivery: PubsubDelivery) -> Result:
        """Sync the user named by ``delivery``; raises ``RetryableError`` to be redelivered."""
        try:
            request = SyncRequest.from_bytes(delivery.data, delivery.attributes)
        except ValueError as err:
            return self._dead_letter_malformed(delivery, MalformedMessage(str(err)))
        labels: dict[str, Any] = {
            "uid": request.uid,
            "message_id": delivery.message_id,
            "pulse_id": request.pulse_id,
            "reason": request.reason.value,
        }
        started = time.monotonic()
        try:
            result = self._sync(request)
        except PermanentError as err:
            self._record_failure(request, delivery, err, final=True)
            publish_dead_letter(
                self._deps,
                delivery.data,
                dead_letter_attributes(
                    err,
                    uid=request.uid,
                    reason=request.reason.value,
                    message_id=delivery.message_id,
                    delivery_attempt=delivery.delivery_attempt,
                    pulse_id=request.pulse_id,
                ),
            )
            log.warning(
                f"sync failed permanently, dead-lettered: {err}",
                error_class=err.error_class,
                **labels,
            )
            return Result.DEAD_LETTERED
        except RetryableError as err:
            final = (delivery.delivery_attempt or 0) >= MAX_DELIVERY_ATTEMPTS
            self._record_failure(request, delivery, err, final=final)
            log.warning(
                f"sync failed, will be retried: {err}",
                error_class=err.error_class,
                delivery_attempt=delivery.delivery_attempt,
                **labels,
            )
            raise
        log.info(
            f"sync {result.value}",
            fields={"duration_ms": round((time.monotonic() - started) * 1000, 1)},
            **labels,
        )
        return result

    # --- the sync itself -------------------------------------------------------------------

    def _sync(self, request: SyncRequest, *, use_cache: bool = True) -> Result:
        db = self._deps.firestore
        cached = self._keys.get(request.uid, request.keys_version) if use_cache else None
        loaded = self._load(db, request.uid, with_secret=cached is None)
        if request.effective_reason in KILL_SWITCH_REASONS and not _enabled(loaded.trading):
            self._commit_outcome(db, request, Outcome.SKIPPED)
            return Result.SKIPPED
        keys = cached or self._keys_from(db, request, loaded)
        client = self._deps.alpaca.for_user(keys)
        snapshot = loaded.snapshot
        stale = _staleness(snapshot, request)
        if stale:
            return stale
        try:
            state = fetch_account_state(client, keys)
        except AlpacaAuthError:
            if cached is None:
                raise
            # Rotated since the message was published: read the keys once more.
            self._keys.drop(request.uid)
            return self._sync(request, use_cache=False)
        for _ in range(PRECONDITION_RETRIES):
            try:
                self._write_snapshot(db, request, snapshot, state)
                return Result.SYNCED
            except (gexc.FailedPrecondition, gexc.AlreadyExists, gexc.Conflict):
                # Another delivery wrote the snapshot since we read it: decide again.
                snapshot = _call(db.document(snapshot_doc(request.uid)).get)
                stale = _staleness(snapshot, request)
                if stale:
                    return stale
        raise DependencyUnavailable("snapshot kept changing while it was written")

    def _keys_from(self, db: firestore.Client, request: SyncRequest, loaded: _Loaded) -> AlpacaKeys:
        """The keys read with the snapshot, validated and cached under the message's version."""
        if not loaded.secret.exists:
            if (
                not loaded.trading.exists
                and not _call(db.document(user_doc(request.uid)).get).exists
            ):
                raise UnknownUser("no such user")
            raise MissingKeys("no Alpaca keys stored")
        keys = AlpacaKeys.from_document(loaded.secret.to_dict())
        self._keys.put(request.uid, request.keys_version, keys)
        return keys

    def _load(self, db: firestore.Client, uid: str, *, with_secret: bool) -> _Loaded:
        """The kill-switch, the current snapshot and (unless cached) the keys, in one read."""
        paths = [trading_status_doc(uid), snapshot_doc(uid)]
        if with_secret:
            paths.append(alpaca_secret_doc(uid))
        refs = [db.document(p) for p in paths]
        found = {s.reference.path: s for s in _call(lambda: list(db.get_all(refs)))}
        return _Loaded(
            trading=found[paths[0]],
            snapshot=found[paths[1]],
            secret=found[paths[2]] if with_secret else None,
        )

    def _write_snapshot(
        self, db: firestore.Client, request: SyncRequest, current: Any, state: dict[str, Any]
    ) -> None:
        account = state["account"]
        body: dict[str, Any] = {
            "syncedAt": datetime.now(UTC),
            "requestedAt": request.requested_at,
            "pulseId": request.pulse_id,
            "reason": request.reason.value,
            "account": account,
            "equity": _money(account.get("equity")),
            "buying_power": _money(account.get("buying_power")),
            "cash": _money(account.get("cash")),
            "positions": state["positions"],
            "positions_count": len(state["positions"]),
        }
        batch = db.batch()
        # Updated only if unchanged since read, or created only if still absent: a concurrent
        # delivery's write makes this one fail and decide again (see ``_sync``).
        add_set_fields(
            batch,
            db,
            snapshot_doc(request.uid),
            body,
            delete=("placeholder",) if current.exists else (),
            last_update_time=current.update_time if current.exists else None,
        )
        batch.delete(db.document(last_sync_error_doc(request.uid)))
        self._add_outcome(db, batch, request, Outcome.SUCCESS)
        _call(batch.commit)
        self._counted(request)

    # --- outcomes and failures -------------------------------------------------------------

    def _add_outcome(
        self,
        db: firestore.Client,
        batch: Any,
        request: SyncRequest,
        outcome: Outcome,
        error_class: str | None = None,
    ) -> None:
        from google.cloud import firestore

        body: dict[str, Any] = {
            "outcome": outcome.value,
            "reason": request.reason.value,
            "requested_at": request.requested_at,
            "at": datetime.now(UTC),
            "error_class": error_class,
        }
        # A sync outside a pulse (first sync, manual, replay) keeps the stored pulse id: the
        # user's latest outcome then counts for the last pulse they were in, so a replay that
        # fixes a dead-lettered user turns that pulse's error into a success.
        if request.pulse_id is not None:
            body["pulse_id"] = request.pulse_id
        # Final failures in a row (the operator's alert); a skip neither breaks nor extends it.
        if outcome is Outcome.ERROR:
            body["consecutive_failures"] = firestore.Increment(1)
        elif outcome is Outcome.SUCCESS:
            body["consecutive_failures"] = 0
        # merge: every other field is written each time; the counter must survive to increment.
        batch.set(db.document(sync_state_doc(request.uid)), body, merge=True)

    def _commit_outcome(self, db: firestore.Client, request: SyncRequest, outcome: Outcome) -> None:
        batch = db.batch()
        self._add_outcome(db, batch, request, outcome)
        _call(batch.commit)
        self._counted(request)

    def _counted(self, request: SyncRequest) -> None:
        if self._rollups is not None:
            self._rollups.request(request.pulse_id)

    def _record_failure(
        self,
        request: SyncRequest,
        delivery: PubsubDelivery,
        error: AgentTraderError,
        *,
        final: bool,
    ) -> None:
        """Write ``status/last_sync_error`` (and the pulse outcome once the failure is final).

        Nothing is written for an unknown user: that would create a tenant out of thin air.
        """
        if isinstance(error, UnknownUser):
            return
        db = self._deps.firestore
        batch = db.batch()
        batch.set(
            db.document(last_sync_error_doc(request.uid)),
            {
                "error": redact(str(error)),
                "timestamp": datetime.now(UTC),
                "error_class": error.error_class,
                "permanent": isinstance(error, PermanentError),
                "final": final,
                "reason": request.reason.value,
                "pulse_id": request.pulse_id,
                "message_id": delivery.message_id,
                "delivery_attempt": delivery.delivery_attempt,
            },
        )
        if final:
            self._add_outcome(db, batch, request, Outcome.ERROR, error.error_class)
        try:
            batch.commit()
        except gexc.GoogleAPICallError as err:
            # The failure itself stands; losing its record must not turn it into a retry loop.
            log.error(
                f"could not record a sync failure ({type(err).__name__})",
                uid=request.uid,
                message_id=delivery.message_id,
            )
            return
        if final:
            self._counted(request)

    def _dead_letter_malformed(self, delivery: PubsubDelivery, error: MalformedMessage) -> Result:
        uid = delivery.attributes.get("uid")
        try:
            uid = validate_uid(uid) if uid else None
        except ValueError:
            uid = None
        publish_dead_letter(
            self._deps,
            delivery.data,
            dead_letter_attributes(
                error,
                uid=uid,
                reason=None,
                message_id=delivery.message_id,
                delivery_attempt=delivery.delivery_attempt,
                pulse_id=None,
            ),
        )
        log.warning(
            f"malformed message dead-lettered: {error}",
            message_id=delivery.message_id,
            uid=uid,
            error_class=error.error_class,
        )
        return Result.DEAD_LETTERED


def _enabled(trading: Any) -> bool:
    return bool(trading.exists and (trading.to_dict() or {}).get("enabled") is True)


def _staleness(snapshot: Any, request: SyncRequest) -> Result | None:
    """``DUPLICATE`` / ``SUPERSEDED`` when the stored snapshot is as new or newer."""
    if not snapshot.exists:
        return None
    stored = snapshot.to_dict() or {}
    stored_at = stored.get("requestedAt")
    if not isinstance(stored_at, datetime):
        return None  # placeholder or migrated legacy data: any real sync is newer
    if stored_at > request.requested_at:
        return Result.SUPERSEDED
    if stored_at == request.requested_at:
        return Result.DUPLICATE
    return None


def _money(value: Any) -> str:
    """Amounts are strings, as Alpaca sends them and as the spec stores them."""
    return "0" if value is None else str(value)


def _call(fn: Any) -> Any:
    """Run a Firestore call; its transient failures become ``DependencyUnavailable``."""
    try:
        return fn()
    except (
        gexc.ServiceUnavailable,
        gexc.DeadlineExceeded,
        gexc.InternalServerError,
        gexc.TooManyRequests,
        gexc.Aborted,
    ) as err:
        raise DependencyUnavailable(f"Firestore is unavailable ({type(err).__name__})") from None
