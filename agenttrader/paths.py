"""Every Firestore path the backend touches; ``firestore.rules`` mirrors this module.

Paths are plain strings (``client.document(path)`` takes them), so the rules, the tests and the
code all spell a document the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

USERS = "users"
OPS = "ops"

SECRETS_ALPACA = ("secrets", "alpaca")
CONFIG_ALPACA = ("config", "alpaca")
STATUS_TRADING = ("status", "trading")
STATUS_LAST_SYNC_ERROR = ("status", "last_sync_error")
STATUS_SYNC = ("status", "sync")
STATUS_STREAM = ("status", "stream")
DATA_SNAPSHOT = ("data", "snapshot")
"""``(collection, doc_id)`` of the documents directly under a user that the code reacts to."""

_UID = re.compile(r"^[A-Za-z0-9_\-:.@]{1,128}$")
"""Firebase uids are at most 128 characters; ``/`` would escape the user's subtree."""

_RESERVED_ID = re.compile(r"^__.*__$", re.DOTALL)
"""Document ids Firestore reserves (refused with ``InvalidArgument``, whatever the request)."""


def is_reserved_id(value: str) -> bool:
    """Whether Firestore refuses ``value`` as a document id whatever its characters: ``.``,
    ``..`` and ``__.*__``. Its other rules (valid UTF-8, at most 1,500 bytes, no ``/``) are
    within every id pattern of this module."""
    return value in {".", ".."} or _RESERVED_ID.fullmatch(value) is not None


def validate_uid(uid: object) -> str:
    """Return ``uid`` if it can name a user document, else raise ``ValueError``."""
    if not isinstance(uid, str) or not _UID.fullmatch(uid) or is_reserved_id(uid):
        raise ValueError(
            f"invalid uid {str(uid)[:40]!r}: 1-128 characters of [A-Za-z0-9_-:.@],"
            " not . or .. or __…__ (reserved by Firestore)"
        )
    return uid


def valid_uid(value: object) -> str | None:
    """``value`` if it can name a user document (:func:`validate_uid`), else ``None``."""
    if not isinstance(value, str) or not _UID.fullmatch(value) or is_reserved_id(value):
        return None
    return value


def user_doc(uid: str) -> str:
    return f"{USERS}/{validate_uid(uid)}"


def _under(uid: str, kind: tuple[str, str]) -> str:
    return f"{user_doc(uid)}/{kind[0]}/{kind[1]}"


def alpaca_config_doc(uid: str) -> str:
    """``configured: bool`` is set by the server once valid keys were written."""
    return _under(uid, CONFIG_ALPACA)


def alpaca_secret_doc(uid: str) -> str:
    """Write-only for the owner; only the server ever reads it."""
    return _under(uid, SECRETS_ALPACA)


def trading_status_doc(uid: str) -> str:
    """The kill-switch: ``enabled: bool``."""
    return _under(uid, STATUS_TRADING)


def last_sync_error_doc(uid: str) -> str:
    return _under(uid, STATUS_LAST_SYNC_ERROR)


def sync_state_doc(uid: str) -> str:
    """Outcome of the user's latest sync (``pulse_id``, ``outcome``): pulses are counted from
    these documents with aggregation queries, so no counter document takes every write."""
    return _under(uid, STATUS_SYNC)


def snapshot_doc(uid: str) -> str:
    return _under(uid, DATA_SNAPSHOT)


def trading_signals_collection(uid: str) -> str:
    return f"{user_doc(uid)}/trading_signals"


def trading_signal_doc(uid: str, signal_id: str) -> str:
    return f"{trading_signals_collection(uid)}/{signal_id}"


def audit_collection(uid: str) -> str:
    """Server-written, owner-readable trail of key changes, kill-switch toggles, admin actions."""
    return f"{user_doc(uid)}/audit"


ORDERS = "orders"

_ORDER_ID = re.compile(r"^[A-Za-z0-9_\-]{1,128}$")
"""Alpaca order ids are UUIDs; anything else that could change a path is refused."""


def validate_order_id(order_id: object) -> str:
    """Return ``order_id`` if it can name an order document, else raise ``ValueError``."""
    if not isinstance(order_id, str) or not _ORDER_ID.fullmatch(order_id):
        raise ValueError("order id must be 1-128 characters of [A-Za-z0-9_-]")
    if is_reserved_id(order_id):
        raise ValueError("order id must not be __…__ (reserved by Firestore)")
    return order_id


def orders_collection(uid: str) -> str:
    """The tenant's orders as the trade-update stream last reported them (owner-readable,
    server-written)."""
    return f"{user_doc(uid)}/{ORDERS}"


def order_doc(uid: str, order_id: str) -> str:
    return f"{orders_collection(uid)}/{validate_order_id(order_id)}"


def stream_status_doc(uid: str) -> str:
    """Why the tenant's trade-update stream is not live, when it is refused (credentials
    refused, the account's one stream held elsewhere); written by the stream gateway."""
    return _under(uid, STATUS_STREAM)


def usage_doc(uid: str, day: str) -> str:
    """Per-user daily usage counters (``day`` is ``YYYY-MM-DD`` in UTC)."""
    return f"{user_doc(uid)}/usage/{day}"


LAST_PULSE_DOC = f"{OPS}/last_pulse"
"""Timestamp and success / error / skipped counts of the latest pulse."""

PULSES_COLLECTION = f"{OPS}/pulses/history"
"""One document per pulse (``ops/pulses/history/{pulse_id}``): published, skipped, totals."""


def pulse_doc(pulse_id: str) -> str:
    return f"{PULSES_COLLECTION}/{pulse_id}"


def pulse_shard_doc(pulse_id: str, shard: int) -> str:
    """Workers count results into one of several shards, so no document takes every write."""
    return f"{pulse_doc(pulse_id)}/shards/{shard}"


ROSTER_DOC = f"{OPS}/roster"
"""The roster's marker: ``shards`` (how many shard documents hold it, a power of two that only
grows) and ``built_at``; without it the next tick rebuilds the roster from a scan."""

ROSTER_COLLECTION = f"{ROSTER_DOC}/shards"
"""Who is eligible for the scheduled sync, kept by the triggers on ``config/alpaca`` and
``status/trading`` so that a tick reads the shard documents instead of scanning. Its
collection id, ``shards``, is what ``firestore.indexes.json`` exempts the maps of."""

ROSTER_MAX_SHARDS = 1 << 16
"""Bound of a shard number: at ~1,000 users a shard, 65 million users."""


def roster_shard_doc(shard: int) -> str:
    if not 0 <= shard < ROSTER_MAX_SHARDS:
        raise ValueError(f"roster shard {shard} out of range 0..{ROSTER_MAX_SHARDS - 1}")
    return f"{ROSTER_COLLECTION}/{shard}"


DELETIONS_COLLECTION = f"{OPS}/deletions/entries"
"""The account-deletion log: one entry per deletion of a tenant's data (``delete_account``,
``agenttrader tenants prune``): uid, when, who, why and what was deleted (counts per
collection); never an email or a secret. Operators only."""


def deletion_doc(entry_id: str) -> str:
    return f"{DELETIONS_COLLECTION}/{entry_id}"


MARKET_CLOCK_DOC = f"{OPS}/market_clock"
"""The latest answer of Alpaca's ``/v2/clock`` (``is_open``, ``next_open``, ``next_close``):
the publisher's schedule when ``SYNC_SCHEDULE=market-hours``."""

STREAMS_ROOT = f"{OPS}/streams"
"""Where the stream gateways keep their shared state (a path, no document of its own):
sessions (one per running instance) and buckets."""

STREAM_BUCKETS = 64
"""How many buckets the eligible tenants are spread over for streaming
(:func:`agenttrader.streams.bucket_of`: a crc32 of the uid, mod this):
the unit a gateway instance leases and hands over. Each bucket document lists the tenants
whose stream is live (~45 bytes an entry), so 64 serve ~1,000,000 tenants before one nears
1 MiB; and up to 64 gateway instances share the work."""

STREAM_BUCKETS_COLLECTION = f"{STREAMS_ROOT}/buckets"
STREAM_SESSIONS_COLLECTION = f"{STREAMS_ROOT}/sessions"


def stream_bucket_doc(bucket: int) -> str:
    """Who holds bucket ``bucket`` (a gateway session) and which of its tenants stream."""
    if not 0 <= bucket < STREAM_BUCKETS:
        raise ValueError(f"stream bucket {bucket} out of range 0..{STREAM_BUCKETS - 1}")
    return f"{STREAM_BUCKETS_COLLECTION}/{bucket}"


_SESSION_ID = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")


def stream_session_doc(session_id: str) -> str:
    """A running gateway instance's lease: renewed every few seconds while it lives."""
    if not isinstance(session_id, str) or not _SESSION_ID.fullmatch(session_id):
        raise ValueError("a stream session id is 1-64 characters of [A-Za-z0-9_-]")
    return f"{STREAM_SESSIONS_COLLECTION}/{session_id}"


LEGACY_SNAPSHOT_DOC = "alpacaAccounts/snapshot"
"""The original single-user snapshot, source of ``migrate_legacy_data``."""


def uid_of(path: str) -> str:
    """The uid of any document under ``users/{uid}/``; ``ValueError`` for other paths."""
    parts = path.split("/")
    if len(parts) < 2 or parts[0] != USERS:
        raise ValueError(f"not a user path: {path!r}")
    return validate_uid(parts[1])


@dataclass(frozen=True)
class UserDoc:
    """A document directly under a user, ``users/{uid}/{collection}/{doc_id}``."""

    uid: str
    collection: str
    doc_id: str

    @property
    def kind(self) -> tuple[str, str]:
        """``(collection, doc_id)``, comparable with ``SECRETS_ALPACA`` and the others."""
        return (self.collection, self.doc_id)


def parse_user_document(path: str) -> UserDoc | None:
    """The parts of ``users/{uid}/{collection}/{doc_id}``; ``None`` for any other path (a
    deeper or shallower one, another root, an invalid uid). The one parser of user document
    paths: triggers, listeners and scans all split paths here."""
    parts = path.split("/")
    if len(parts) != 4 or parts[0] != USERS:
        return None
    try:
        uid = validate_uid(parts[1])
    except ValueError:
        return None
    return UserDoc(uid, parts[2], parts[3])


def owner_of(path: str, *kinds: tuple[str, str]) -> str | None:
    """The uid when ``path`` is ``users/{uid}/{collection}/{doc_id}`` of one of ``kinds``."""
    doc = parse_user_document(path)
    return doc.uid if doc is not None and doc.kind in kinds else None
