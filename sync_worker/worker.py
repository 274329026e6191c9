"""``sync_user``: sync one tenant's Alpaca account into Firestore, under the retry contract.

One place decides what a failure means (:meth:`SyncWorker.handle`):
- ``RetryableError`` (429, 5xx, timeouts, Firestore hiccups) is raised, so Pub/Sub redelivers
  with backoff and dead-letters after the delivery limit; the error is recorded meanwhile.
- ``PermanentError`` (bad or missing keys, 401/403 — a revoked OAuth token included —,
  disallowed base URL, unknown user, malformed message, sealed credentials that do not open
  for this tenant) is recorded and published to ``user-sync-dead-letter``; the message is
  acknowledged. Credentials that fail to open are audited (``credentials_tampered``).
Sealed credentials are opened once per instance and ``keys_version`` (:mod:`.key_cache`);
a KEK that cannot be used now (``KmsUnavailable``) is transient: never a verdict on the keys.
Snapshots are ordered by ``requestedAt`` — bounded by the message's Pub/Sub publish time, so
a clock running ahead cannot stamp the future — with an optimistic precondition on the
snapshot's update time: an older message never overwrites a newer snapshot, a duplicate writes
nothing, a superseded message of a pulse still counts for its pulse.
What a result writes (one write for a healthy tenant's success) is :mod:`sync_worker.record`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from google.api_core import exceptions as gexc

from agenttrader import audit, market_clock, pulses, topology
from agenttrader.alpaca import fetch_account_state
from agenttrader.credentials import Credentials, open_stored
from agenttrader.deadletter import dead_letter_attributes, publish_dead_letter
from agenttrader.errors import (
    AgentTraderError,
    AlpacaAuthError,
    CredentialsTampered,
    DependencyUnavailable,
    MalformedMessage,
    MissingKeys,
    PermanentError,
    RetryableError,
    UnknownUser,
)
from agenttrader.events import PubsubDelivery
from agenttrader.firestore_io import call as _call
from agenttrader.keys_version import stored_version
from agenttrader.logs import get_logger, redact
from agenttrader.messages import Reason, SyncRequest, format_timestamp, requested_at_bound
from agenttrader.paths import (
    alpaca_secret_doc,
    snapshot_doc,
    trading_status_doc,
    user_doc,
    validate_uid,
)
from agenttrader.pulses import RollupScheduler
from agenttrader.snapshot import Stale, Stored, synced_body
from sync_worker import key_proof
from sync_worker.key_cache import HeldKeys, KeyCache
from sync_worker.record import Change, count_superseded, record

if TYPE_CHECKING:
    from alpaca.trading.client import TradingClient

    from agenttrader.deps import Deps

log = get_logger(__name__)

_DEAD_LETTER = topology.subscription(topology.USER_SYNC_WORKER).dead_letter
MAX_DELIVERY_ATTEMPTS = _DEAD_LETTER.max_delivery_attempts if _DEAD_LETTER else 5
"""The delivery on which Pub/Sub gives up: a transient failure then counts as an error."""
KILL_SWITCH_REASONS = frozenset({Reason.SCHEDULE, Reason.TRADE_UPDATE, Reason.RECONCILE})
"""Reasons a disabled kill-switch skips: the syncs nobody asked for by hand (the schedule and
the stream gateway's, whose stream closes when the switch goes off anyway); first syncs,
manual syncs and replays run anyway."""


def skips_for_kill_switch(reason: Reason, trading: Mapping[str, Any] | None) -> bool:
    """Whether a sync requested for ``reason`` (a replay's original one) is skipped, given the
    data of ``status/trading`` (``None``: no such document): a reason of
    :data:`KILL_SWITCH_REASONS` runs only while ``enabled`` is exactly ``true``."""
    return reason in KILL_SWITCH_REASONS and (trading or {}).get("enabled") is not True


class Result(StrEnum):
    """What :meth:`SyncWorker.handle` did with a message it acknowledged."""

    SYNCED = "synced"
    SKIPPED = "skipped"
    DUPLICATE = "duplicate"
    SUPERSEDED = "superseded"
    DEAD_LETTERED = "dead_lettered"


STALE_RESULTS: Mapping[Stale, Result] = {
    Stale.DUPLICATE: Result.DUPLICATE,
    Stale.SUPERSEDED: Result.SUPERSEDED,
}
"""What a message no newer than the stored snapshot comes to: nothing written."""


@dataclass(frozen=True)
class _Loaded:
    """What a sync reads first, in one batched get."""

    snapshot: Stored
    trading: Mapping[str, Any] | None
    """``status/trading``'s data (``None``: no such document)."""
    cached: HeldKeys | None
    """The keys of the message's version held by this instance (then ``secrets/alpaca`` is
    not read)."""
    secret: Mapping[str, Any] | None
    """``secrets/alpaca``'s data, read unless cached (``None``: cached, or no such document)."""
    secret_version: str | None = None
    """The version of ``secret`` (:func:`agenttrader.keys_version.stored_version`)."""


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
            sent = SyncRequest.from_bytes(delivery.data, delivery.attributes)
        except ValueError as err:
            return self._dead_letter_malformed(delivery, MalformedMessage(str(err)))
        # Snapshots are ordered by requested_at: bounded by when Pub/Sub received the message.
        request = sent.not_after(requested_at_bound(delivery.publish_time, datetime.now(UTC)))
        labels: dict[str, Any] = {
            "uid": request.uid,
            "message_id": delivery.message_id,
            "pulse_id": request.pulse_id,
            "reason": request.reason.value,
        }
        if request is not sent:
            log.warning(
                "requested_at is later than the message's publish time: bounded by it",
                fields={"requested_at": format_timestamp(sent.requested_at)},
                **labels,
            )
        started = time.monotonic()
        stored: Stored | None = None  # once read, it guards the record of a failure
        try:
            loaded = self._load(request)
            stored = loaded.snapshot
            result = self._sync(request, loaded, started)
        except PermanentError as err:
            self._record_failure(request, delivery, err, final=True, stored=stored)
            if isinstance(err, CredentialsTampered):
                self._audit_tampered(request, delivery)
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
            # Logged once, by the entry point that asks Pub/Sub for redelivery.
            final = (delivery.delivery_attempt or 0) >= MAX_DELIVERY_ATTEMPTS
            self._record_failure(request, delivery, err, final=final, stored=stored)
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

    def _sync(self, request: SyncRequest, loaded: _Loaded, started: float) -> Result:
        stale = loaded.snapshot.staleness(request.requested_at, now=datetime.now(UTC))
        if stale is not None:
            return self._stale(request, loaded.snapshot, stale)
        if loaded.trading is None:  # a tenant's kill-switch proves it exists: no extra read
            self._require_user(request.uid)
        if skips_for_kill_switch(request.effective_reason, loaded.trading):
            return self._record(request, loaded.snapshot, Change.skip(), Result.SKIPPED)
        state, client, keys = self._fetch(request, loaded)
        snapshot = synced_body(request.requested_at, request.reason.value, state, datetime.now(UTC))
        done = self._record(request, loaded.snapshot, Change.success(snapshot), Result.SYNCED)
        if done is Result.SYNCED:  # a ``check_clock`` message refreshes ops/market_clock
            market_clock.refresh_after_sync(self._deps, client, keys, request, started)
        return done

    def _fetch(
        self, request: SyncRequest, loaded: _Loaded
    ) -> tuple[dict[str, Any], TradingClient, Credentials]:
        """Alpaca's account state, the client and the keys that read it (see
        :mod:`sync_worker.key_proof` for what a success or a 401/403 records). A second
        attempt only when Alpaca refused cached keys and the stored ones are of another
        version (rotated since the cache was filled); refused keys that are still the
        stored ones are a rejection, without calling Alpaca again."""
        secret, version = loaded.secret, loaded.secret_version
        if loaded.cached is not None:
            try:
                return self._fetch_with(request, loaded.cached)
            except AlpacaAuthError as err:
                self._keys.drop(request.uid)
                stored = _call(self._deps.firestore.document(alpaca_secret_doc(request.uid)).get)
                secret, version = _data(stored), stored_version(stored)
                if version is not None and version == loaded.cached.version:
                    self._rejected(request, loaded.cached, err)
                    raise
        keys = self._keys_from(request, secret, version)
        try:
            return self._fetch_with(request, keys)
        except AlpacaAuthError as err:
            self._rejected(request, keys, err)
            raise

    def _fetch_with(
        self, request: SyncRequest, held: HeldKeys
    ) -> tuple[dict[str, Any], TradingClient, Credentials]:
        """One Alpaca attempt; a success proves the keys unless the message went only to the
        roster's tenants (the schedule's, the stream gateway's: :data:`KILL_SWITCH_REASONS`;
        they are proven or script-configured already: nothing to read on that hot path)."""
        client = self._deps.alpaca.for_user(held.credentials)
        state = fetch_account_state(client, held.credentials)
        if request.reason not in KILL_SWITCH_REASONS and held.version is not None:
            key_proof.prove(self._deps.firestore, request.uid, held.version)
        return state, client, held.credentials

    def _rejected(self, request: SyncRequest, held: HeldKeys, error: AlpacaAuthError) -> None:
        """Alpaca refused the keys stored now: unmark them (:func:`key_proof.reject`)."""
        if held.version is not None:
            key_proof.reject(
                self._deps.firestore,
                request.uid,
                held.version,
                held.credentials,
                error.error_class,
            )

    def _record(self, request: SyncRequest, stored: Stored, change: Change, done: Result) -> Result:
        """Write the result (see :mod:`sync_worker.record`); count it in its pulse."""
        stale = record(self._deps.firestore, request, stored, change)
        if stale is not None:
            return self._stale(request, None, stale)
        self._counted(request)
        return done

    def _stale(self, request: SyncRequest, stored: Stored | None, stale: Stale) -> Result:
        """A message no newer than the stored snapshot writes nothing of its own; a superseded
        one of a pulse still counts for it (:func:`~sync_worker.record.count_superseded`).
        ``stored``: the snapshot as read (``None``: read it again)."""
        if (
            stale is Stale.SUPERSEDED
            and request.pulse_id is not None
            and count_superseded(self._deps.firestore, request, stored)
        ):
            self._counted(request)
        return STALE_RESULTS[stale]

    def _keys_from(
        self, request: SyncRequest, secret: Mapping[str, Any] | None, version: str | None
    ) -> HeldKeys:
        """The credentials read from ``secret`` (``None``: none stored) at ``version``: opened
        when sealed (``CredentialsTampered`` when they do not open for this tenant,
        ``KmsUnavailable`` when the KEK cannot be asked now), validated when plaintext (left
        from before sealing); cached under the message's version."""
        if secret is None:
            raise MissingKeys("no Alpaca keys stored")
        credentials = open_stored(
            secret, request.uid, alpaca_secret_doc(request.uid), lambda: self._deps.vault
        )
        held = HeldKeys(credentials, version)
        self._keys.put(request.uid, request.keys_version, held)
        return held

    def _load(self, request: SyncRequest) -> _Loaded:
        """The current snapshot, the kill-switch and (unless cached) the keys, in one read."""
        db, uid = self._deps.firestore, request.uid
        cached = self._keys.get(uid, request.keys_version)
        paths = [snapshot_doc(uid), trading_status_doc(uid)]
        if cached is None:
            paths.append(alpaca_secret_doc(uid))
        refs = [db.document(p) for p in paths]
        found = {s.reference.path: s for s in _call(lambda: list(db.get_all(refs)))}
        secret = found[paths[2]] if cached is None else None
        return _Loaded(
            snapshot=Stored.of(found[paths[0]]),
            trading=_data(found[paths[1]]),
            cached=cached,
            secret=_data(secret) if secret is not None else None,
            secret_version=stored_version(secret) if secret is not None else None,
        )

    def _require_user(self, uid: str) -> None:
        """``UnknownUser`` unless ``users/{uid}`` exists (a deleted or made-up user), decided
        before anything is written for the user: nothing may create one out of thin air."""
        if self._read(user_doc(uid)) is None:
            raise UnknownUser("no such user")

    def _read(self, path: str) -> Mapping[str, Any] | None:
        """One document's data (``None``: no such document)."""
        return _data(_call(self._deps.firestore.document(path).get))

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

        Nothing is written under an unknown user (that would create a tenant out of thin air):
        a pulse's message to a user gone since the tick is counted on the pulse document
        instead, as an error. Nothing is written either for a message no newer than the stored
        snapshot (a copy of one that succeeded).
        """
        if isinstance(error, UnknownUser):
            if request.pulse_id is not None and pulses.count_gone(
                self._deps.firestore, request.pulse_id, request.uid
            ):
                self._counted(request)
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
            if stale is not None and final:
                self._stale(request, None, stale)
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

    def _audit_tampered(self, request: SyncRequest, delivery: PubsubDelivery) -> None:
        """Sealed credentials that do not open here (copied from another tenant, altered, or
        sealed under another KEK): one audit entry per message, however often delivered."""
        try:
            audit.record(
                self._deps.firestore,
                request.uid,
                audit.AuditAction.CREDENTIALS_TAMPERED,
                audit.SYSTEM_ACTOR,
                {"message_id": delivery.message_id, "reason": request.reason.value},
                entry_id=f"tampered-{delivery.message_id}"[:1500],
            )
        except (gexc.GoogleAPICallError, DependencyUnavailable) as err:
            log.error(
                f"could not audit credentials that do not open ({type(err).__name__})",
                uid=request.uid,
                message_id=delivery.message_id,
            )

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


def _data(snapshot: Any) -> Mapping[str, Any] | None:
    return (snapshot.to_dict() or {}) if snapshot.exists else None
