"""``sync_user``: sync one tenant's Alpaca account into Firestore, under the retry contract.

One place decides what a failure means (:meth:`SyncWorker.handle`):
- ``RetryableError`` (429, 5xx, timeouts, Firestore hiccups) is raised, so Pub/Sub redelivers
  with backoff and dead-letters after the delivery limit; the error is recorded meanwhile.
- ``PermanentError`` (bad or missing keys, 401/403, disallowed base URL, unknown user,
  malformed message) is recorded and published to ``user-sync-dead-letter``; the message is
  acknowledged.
Snapshots are ordered by ``requestedAt`` with an optimistic precondition on the snapshot's
update time: an older message never overwrites a newer snapshot, a duplicate writes nothing.
What a result writes (one write for a healthy tenant's success) is :mod:`sync_worker.record`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from google.api_core import exceptions as gexc

from agenttrader import market_clock, topology
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
from agenttrader.firestore_io import call as _call
from agenttrader.logs import get_logger, redact
from agenttrader.messages import Reason, SyncRequest
from agenttrader.paths import (
    alpaca_secret_doc,
    snapshot_doc,
    trading_status_doc,
    user_doc,
    validate_uid,
)
from agenttrader.pulses import RollupScheduler
from agenttrader.snapshot import Stored, synced_body
from sync_worker.key_cache import KeyCache
from sync_worker.record import Change, record

if TYPE_CHECKING:
    from google.cloud import firestore

    from agenttrader.deps import Deps

log = get_logger(__name__)

_DEAD_LETTER = topology.subscription(topology.USER_SYNC_WORKER).dead_letter
MAX_DELIVERY_ATTEMPTS = _DEAD_LETTER.max_delivery_attempts if _DEAD_LETTER else 5
"""The delivery on which Pub/Sub gives up: a transient failure then counts as an error."""
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
    snapshot: Stored


@dataclass
class _Seen:
    """The snapshot a sync read last: it guards the record of the sync's failure."""

    snapshot: Stored | None = None
    started: float = field(default_factory=time.monotonic)
    """When handling began (the market-clock call starts only if it fits the ack deadline)."""


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
        seen = _Seen()
        try:
            result = self._sync(request, seen)
        except PermanentError as err:
            self._record_failure(request, delivery, err, final=True, stored=seen.snapshot)
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
            self._record_failure(request, delivery, err, final=final, stored=seen.snapshot)
            log.warning(
                f"sync failed, will be retried: {err}",
                error_class=err.error_class,
                delivery_attempt=delivery.delivery_attempt,
                **labels,
            )
            raise
        # A success is the one line a minute per tenant: DEBUG (see ``Settings.log_level``).
        log.log(
            logging.DEBUG if result is Result.SYNCED else logging.INFO,
            f"sync {result.value}",
            fields={"duration_ms": round((time.monotonic() - started) * 1000, 1)},
            **labels,
        )
        return result

    # --- the sync itself -------------------------------------------------------------------

    def _sync(self, request: SyncRequest, seen: _Seen, *, use_cache: bool = True) -> Result:
        db = self._deps.firestore
        cached = self._keys.get(request.uid, request.keys_version) if use_cache else None
        loaded = self._load(db, request.uid, with_secret=cached is None)
        seen.snapshot = loaded.snapshot
        stale = loaded.snapshot.staleness(request.requested_at)
        if stale is not None:
            return Result(stale.value)
        if request.effective_reason in KILL_SWITCH_REASONS and not _enabled(loaded.trading):
            return self._record(request, loaded.snapshot, Change.skip(), Result.SKIPPED)
        keys = cached or self._keys_from(db, request, loaded)
        client = self._deps.alpaca.for_user(keys)
        try:
            state = fetch_account_state(client, keys)
        except AlpacaAuthError:
            if cached is None:
                raise
            # Rotated since the message was published: read the keys once more.
            self._keys.drop(request.uid)
            return self._sync(request, seen, use_cache=False)
        snapshot = synced_body(request.requested_at, request.reason.value, state, datetime.now(UTC))
        done = self._record(request, loaded.snapshot, Change.success(snapshot), Result.SYNCED)
        if done is Result.SYNCED:  # a ``check_clock`` message refreshes ops/market_clock
            market_clock.refresh_after_sync(self._deps, client, keys, request, seen.started)
        return done

    def _record(self, request: SyncRequest, stored: Stored, change: Change, done: Result) -> Result:
        """Write the result (see :mod:`sync_worker.record`); count it in its pulse."""
        stale = record(self._deps.firestore, request, stored, change)
        if stale is not None:
            return Result(stale.value)
        self._counted(request)
        return done

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
            snapshot=Stored.of(found[paths[1]]),
            secret=found[paths[2]] if with_secret else None,
        )

    # --- outcomes and failures -------------------------------------------------------------

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
        stored: Stored | None,
    ) -> None:
        """Write ``status/last_sync_error`` (and the pulse outcome once the failure is final).

        Nothing is written for an unknown user (that would create a tenant out of thin air),
        nor for a message no newer than the stored snapshot (a copy of one that succeeded).
        """
        if isinstance(error, UnknownUser):
            return
        body = {
            "error": redact(str(error)),
            "timestamp": datetime.now(UTC),
            "error_class": error.error_class,
            "permanent": isinstance(error, PermanentError),
            "final": final,
            "reason": request.reason.value,
            "pulse_id": request.pulse_id,
            "message_id": delivery.message_id,
            "delivery_attempt": delivery.delivery_attempt,
        }
        change = Change.failure(body, error.error_class, final=final)
        try:
            stale = record(self._deps.firestore, request, stored, change)
        except (gexc.GoogleAPICallError, DependencyUnavailable) as err:
            # The failure itself stands; losing its record must not turn it into a retry loop.
            log.error(
                f"could not record a sync failure ({type(err).__name__})",
                uid=request.uid,
                message_id=delivery.message_id,
            )
            return
        if stale is not None:
            log.info(
                f"failure not recorded: the message is {stale.value} by the stored snapshot",
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
