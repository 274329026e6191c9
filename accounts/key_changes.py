"""``on_alpaca_secret_written``: react to a tenant writing, rotating or deleting credentials,
and seal what a client wrote.

The event is only a signal. The trigger reads ``secrets/alpaca`` and ``config/alpaca`` as
they are now and acts on the stored credentials, never on the event's old or new values, so a
late, redelivered or out-of-order event cannot undo a newer change. Credentials are
identified by their version (:mod:`agenttrader.keys_version`: a plaintext document's update
time, a sealed one's ``keys_version``); ``config/alpaca`` records the version last handled
and what is known of it (:mod:`agenttrader.keys_state`). What a read comes to is
:func:`decide`:

- a version already handled: nothing (a redelivered, late or duplicated event, and the event
  of the trigger's own rewrite below, which keeps the version it sealed);
- new well-formed credentials a client wrote (plaintext): the document is **rewritten into
  its sealed form** (:mod:`agenttrader.credentials`: no plaintext field left, the
  credentials encrypted under a fresh data key wrapped by the KEK, bound to the tenant and the
  document, ``keys_version`` = the plaintext's version), ``configured: false``, ``keysState:
  "pending"``, audited as created or rotated, and a ``first_sync`` message carrying their
  version (synced whether or not trading is enabled). The worker sets ``configured: true``
  once a sync with exactly that version succeeded, or ``keysState: "rejected"`` when Alpaca
  refuses it. Any client write is new credentials (a changed secret alone included: the
  trigger may only encrypt, so it never compares with what was sealed before);
- new credentials of the wrong form or with a base URL off the allowlist: the document is
  deleted (no plaintext may rest, and these can never be used), ``keysState: "invalid"``,
  recorded in ``status/last_sync_error`` and audited, nothing synced;
- a sealed document of a version not handled here: written by the server, whose writer
  handled it (``connect_alpaca``, ``agenttrader credentials seal-existing`` / ``rewrap``):
  nothing;
- no document: ``configured: false``, ``keysState: "deleted"``, audited (unless the trigger
  deleted refused credentials itself, or the state already says so).

At most one new version per tenant is handled per ``KEYS_DEBOUNCE_SECONDS``. An event inside
the window raises :class:`KeysDebounced` (retryable): Eventarc redelivers it with backoff, and
the redelivery reads the credentials as they are by then. A client rewriting its keys in a
loop therefore costs one first sync per window, and the last keys written are the ones
synced; every other event of the loop ends as "already handled". A deletion is never delayed.

Every write carries a precondition on the update time read — the config's, and the secrets
document's for its rewrite or deletion — so a newer client write is never overwritten, and of
two racing events one wins and the other reads again. The sealed rewrite and the config are
one commit, before the first sync is published (the worker must find the version pending and
the credentials sealed); when the publish fails, the event raises, and its redelivery,
recognised by ``keysEventId``, publishes again. A KEK that cannot be used now
(``KmsUnavailable``) is retryable like any dependency: nothing is written, Eventarc
redelivers. The document's values are never logged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from accounts.first_sync import publish_first_sync
from agenttrader import audit, keys_state
from agenttrader.credentials import is_sealed, parse_plaintext
from agenttrader.errors import PermanentError, RetryableError
from agenttrader.events import DocumentChange
from agenttrader.firestore_io import add_set_fields, retry_on_conflict
from agenttrader.firestore_io import call as _call
from agenttrader.keys_state import (
    CONFIGURED,
    KEYS_DELETED_AT,
    KEYS_EVENT_ID,
    KEYS_HANDLED_AT,
    KEYS_REJECTED_AT,
    KEYS_STATE,
    PROVEN_AT,
    KeysState,
    handled_version,
    state_of,
)
from agenttrader.keys_version import stored_version
from agenttrader.logs import get_logger, redact
from agenttrader.messages import Reason
from agenttrader.paths import (
    SECRETS_ALPACA,
    alpaca_config_doc,
    alpaca_secret_doc,
    last_sync_error_doc,
    owner_of,
)

if TYPE_CHECKING:
    from google.cloud import firestore

    from agenttrader.deps import Deps

log = get_logger(__name__)


class KeyChange(StrEnum):
    """What the trigger did."""

    FIRST_SYNC = "first_sync"
    """New well-formed credentials: sealed, pending, first sync published."""
    REPUBLISHED = "republished"
    """This event had handled the version but may not have published: published again."""
    REJECTED = "rejected"
    """New credentials of the wrong form or base URL: deleted, recorded, nothing synced."""
    DELETED = "deleted"
    UNCHANGED = "unchanged"
    """The stored credentials were handled already (or there is nothing to unmark, or the
    server wrote them sealed)."""
    IGNORED = "ignored"


class Step(StrEnum):
    """What a read of the two documents calls for (:func:`decide`)."""

    NOTHING = "nothing"
    DELETE = "delete"
    NEW = "new"
    REPUBLISH = "republish"
    WAIT = "wait"


class KeysDebounced(RetryableError):
    """New credentials arrived inside the debounce window: Eventarc redelivers the event."""


def decide(
    version: str | None,
    config: Mapping[str, Any] | None,
    event_id: str,
    now: datetime,
    debounce: timedelta,
) -> Step:
    """What to do, given the stored credentials' version (``None``: no secrets document) and
    ``config/alpaca``'s data (``None``: no such document)."""
    state = state_of(config)
    if version is None:
        gone = config is None or state in (KeysState.DELETED, KeysState.INVALID)
        return Step.NOTHING if gone else Step.DELETE
    if version == handled_version(config):
        mine = state is KeysState.PENDING and (config or {}).get(KEYS_EVENT_ID) == event_id
        return Step.REPUBLISH if mine else Step.NOTHING
    handled_at = (config or {}).get(KEYS_HANDLED_AT)
    if isinstance(handled_at, datetime) and abs(now - handled_at) < debounce:
        return Step.WAIT
    return Step.NEW


def had_credentials(config: Mapping[str, Any] | None) -> bool:
    """Whether new credentials replace others (audited as a rotation, not a creation)."""
    state = state_of(config)
    if state is None:
        return (config or {}).get(CONFIGURED) is True
    return state is not KeysState.DELETED


def secret_owner(path: str) -> str | None:
    """The uid when ``path`` is ``users/{uid}/secrets/alpaca``, else ``None``."""
    return owner_of(path, SECRETS_ALPACA)


def _hint(data: Mapping[str, Any] | None) -> str | None:
    """The last 4 characters of the key id, from a plaintext or a sealed document (an OAuth
    token's are never recorded)."""
    if is_sealed(data):
        hint = (data or {}).get("key_id_hint")
        keys = (data or {}).get("auth") == "keys"
        return f"…{hint}" if keys and isinstance(hint, str) and len(hint) == 4 else None
    key_id = (data or {}).get("key_id")
    return f"…{key_id[-4:]}" if isinstance(key_id, str) and len(key_id) >= 8 else None


def _base_url_detail(deps: Deps, url: object) -> dict[str, Any]:
    """A base URL as an audit entry records it: its host only when it is on the allowlist."""
    host = deps.alpaca.allowed_host(url)
    return {"base_url_host": host} if host else {"base_url_allowed": False}


@dataclass(frozen=True)
class _Handled:
    change: KeyChange
    publish: str | None = None
    """The version whose first sync to publish once the config is committed."""
    action: audit.AuditAction | None = None


@dataclass(frozen=True)
class _Read:
    """Both documents as read at one time, with what the writes need of them."""

    uid: str
    secret: Any
    """``secrets/alpaca``'s snapshot."""
    config: Any
    """``config/alpaca``'s snapshot."""

    @property
    def config_data(self) -> dict[str, Any] | None:
        return (self.config.to_dict() or {}) if self.config.exists else None

    @property
    def guard(self) -> Any:
        """The precondition of a config write: unchanged since read (or still missing)."""
        return self.config.update_time if self.config.exists else None


def handle_key_change(deps: Deps, change: DocumentChange, event_id: str) -> KeyChange:
    """Act on the credentials stored for the event's user. Raises ``RetryableError`` to be
    redelivered (:class:`KeysDebounced` inside the debounce window)."""
    uid = secret_owner(change.path)
    if uid is None:
        log.warning("event for a document that is not users/{uid}/secrets/alpaca ignored")
        return KeyChange.IGNORED
    handled = retry_on_conflict(lambda: _handle(deps, uid, change, event_id))
    if handled.publish is not None:
        publish_first_sync(deps, uid, handled.publish)
    if handled.change is KeyChange.FIRST_SYNC:
        action = handled.action.value if handled.action else None
        log.info("Alpaca keys accepted; first sync requested", uid=uid, fields={"action": action})
    elif handled.change is KeyChange.REPUBLISHED:
        log.info("first sync of the pending Alpaca keys published again", uid=uid)
    elif handled.change is KeyChange.DELETED:
        log.info("Alpaca keys deleted; syncs stop", uid=uid)
    return handled.change


def _handle(deps: Deps, uid: str, change: DocumentChange, event_id: str) -> _Handled:
    """One read of both documents, the decision, and its precondition-guarded commit (a lost
    race raises ``FailedPrecondition`` / ``AlreadyExists`` and ``retry_on_conflict`` reads
    again)."""
    db = deps.firestore
    refs = [db.document(alpaca_secret_doc(uid)), db.document(alpaca_config_doc(uid))]
    found = {s.reference.path: s for s in _call(lambda: list(db.get_all(refs)))}
    read = _Read(uid, found[refs[0].path], found[refs[1].path])
    version = stored_version(read.secret)
    now = datetime.now(UTC)
    debounce = timedelta(seconds=deps.settings.keys_debounce_seconds)
    step = decide(version, read.config_data, event_id, now, debounce)
    if step in (Step.NEW, Step.WAIT) and is_sealed(read.secret.to_dict()):
        return _Handled(KeyChange.UNCHANGED)  # sealed by the server, which handled it
    match step:
        case Step.NOTHING:
            return _Handled(KeyChange.UNCHANGED)
        case Step.REPUBLISH:
            return _Handled(KeyChange.REPUBLISHED, publish=version)
        case Step.WAIT:  # logged once, by the entry point that asks for redelivery
            raise KeysDebounced("credentials changed within the debounce window")
        case Step.DELETE:
            _write_deleted(db, read, change, now=now, audit_id=_audit_id(event_id))
            return _Handled(KeyChange.DELETED)
        case Step.NEW:
            return _write_new(deps, read, event_id, now)


def _audit_id(event_id: str) -> str:
    """One audit entry per event, however often it is delivered."""
    return f"keys-{event_id}"[:1500]


def _write_deleted(
    db: firestore.Client, read: _Read, change: DocumentChange, *, now: datetime, audit_id: str
) -> None:
    batch = db.batch()
    fields = keys_state.deleted(now)
    add_set_fields(batch, db, read.config.reference.path, fields, last_update_time=read.guard)
    # The event's old value describes the deleted document only when the event is the delete.
    hint = _hint(change.old) if change.new is None else None
    audit.record(
        db,
        read.uid,
        audit.AuditAction.KEYS_DELETED,
        read.uid,
        {"key_id_hint": hint},
        batch=batch,
        entry_id=audit_id,
    )
    _call(batch.commit)


def _write_new(deps: Deps, read: _Read, event_id: str, now: datetime) -> _Handled:
    """New credentials a client wrote: sealed in place and pending (first sync to publish)
    when well-formed, else deleted and invalid. One commit, guarded by both update times."""
    db, uid = deps.firestore, read.uid
    stored = read.secret.to_dict() or {}
    version = stored_version(read.secret)
    secret = read.secret.reference
    unchanged = db.write_option(last_update_time=read.secret.update_time)
    config_path = read.config.reference.path
    batch = db.batch()
    try:
        keys = parse_plaintext(stored)
        deps.alpaca.origin_for(keys)
    except PermanentError as err:
        batch.delete(secret, option=unchanged)
        _record_invalid(
            db,
            batch,
            uid,
            err,
            now=now,
            audit_id=_audit_id(event_id),
            base_url_detail=_base_url_detail(deps, stored.get("base_url")),
        )
        fields = {
            **keys_state.pending(read.secret.update_time, now, event_id),
            KEYS_STATE: KeysState.INVALID.value,
            KEYS_REJECTED_AT: now,
        }
        add_set_fields(
            batch,
            db,
            config_path,
            fields,
            delete=(PROVEN_AT, KEYS_DELETED_AT),
            last_update_time=read.guard,
        )
        _call(batch.commit)
        log.warning(
            f"Alpaca keys rejected and deleted: {redact(str(err))}",
            uid=uid,
            error_class=err.error_class,
        )
        return _Handled(KeyChange.REJECTED)
    sealed = deps.vault.seal(keys, uid, secret.path, version)
    add_set_fields(
        batch,
        db,
        secret.path,
        sealed,
        delete=tuple(name for name in stored if name not in sealed),
        last_update_time=read.secret.update_time,
    )
    action = (
        audit.AuditAction.KEYS_ROTATED
        if had_credentials(read.config_data)
        else audit.AuditAction.KEYS_CREATED
    )
    add_set_fields(
        batch,
        db,
        config_path,
        keys_state.pending(read.secret.update_time, now, event_id),
        delete=keys_state.NEW_CREDENTIALS_CLEARS,
        last_update_time=read.guard,
    )
    audit.record(
        db,
        uid,
        action,
        uid,
        {"key_id_hint": keys.key_id_hint, **_base_url_detail(deps, keys.base_url)},
        batch=batch,
        entry_id=_audit_id(event_id),
    )
    _call(batch.commit)
    return _Handled(KeyChange.FIRST_SYNC, publish=version, action=action)


def _record_invalid(
    db: firestore.Client,
    batch: firestore.WriteBatch,
    uid: str,
    err: PermanentError,
    *,
    now: datetime,
    audit_id: str,
    base_url_detail: dict[str, Any],
) -> None:
    batch.set(
        db.document(last_sync_error_doc(uid)),
        {
            "error": redact(str(err)),
            "timestamp": now,
            "error_class": err.error_class,
            "permanent": True,
            "final": True,
            "reason": Reason.FIRST_SYNC.value,
        },
    )
    audit.record(
        db,
        uid,
        audit.AuditAction.KEYS_REJECTED,
        uid,
        {"error_class": err.error_class, **base_url_detail},
        batch=batch,
        entry_id=audit_id,
    )
