"""The trade-update streams' shared state in Firestore: who streams which tenant, and whether
a tenant's stream is live — what the stream gateway writes and the publisher's tick reads.

Tenants are spread over :data:`~agenttrader.paths.STREAM_BUCKETS` buckets
(:func:`bucket_of`). A running gateway instance is a **session**
(``ops/streams/sessions/{id}``: ``renewedAt``, the commit time of its latest renewal, and
``revoked``); a session that has not renewed for :data:`LEASE_SECONDS` (judged on Firestore's
clock: the read time against ``renewedAt``) is dead. A **bucket** (``ops/streams/buckets/{n}``)
names the session that holds it (``holder``, ``token`` counting the acquisitions) and the
tenants of the bucket whose stream is live (``live``: uid → when, in µs; exempt from
indexing). A bucket's ``live`` map is believed only while its holder's session is alive:
an instance that died leaves a map nobody reads, so its tenants fall back to every-tick
polling within the lease time, before any other instance may take the bucket over.

:func:`read_live` is the tick's read: the sessions (one document per instance) and the bucket
documents, ``STREAM_BUCKETS + instances`` reads whatever the number of tenants, the maps
decoded from the protobuf directly.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from agenttrader.paths import (
    STREAM_BUCKETS,
    STREAM_SESSIONS_COLLECTION,
    stream_bucket_doc,
)
from agenttrader.roster_read import batch_get

if TYPE_CHECKING:
    from google.cloud import firestore

LEASE_SECONDS = 15.0
"""A session that has not renewed for this long (on Firestore's clock) is dead: its buckets
may be taken over once it is revoked, and its ``live`` maps are no longer believed. The
holder itself stops streaming a safety margin earlier (``stream_gateway.leases``)."""

HOLDER = "holder"
TOKEN = "token"
LIVE = "live"
RENEWED_AT = "renewedAt"
REVOKED = "revoked"


def bucket_of(uid: str) -> int:
    """The bucket of ``uid``'s stream (a hash of its own: independent of the roster's shards)."""
    return zlib.crc32(b"stream:" + uid.encode()) % STREAM_BUCKETS


@dataclass(frozen=True)
class SessionState:
    """A gateway session as read."""

    id: str
    renewed_at: datetime | None
    revoked: bool


def session_alive(session: SessionState | None, read_time: datetime, lease_seconds: float) -> bool:
    """Whether ``session`` (``None``: no such document) still holds what it holds, judged at
    ``read_time`` (Firestore's clock, as is ``renewed_at``)."""
    if session is None or session.revoked or session.renewed_at is None:
        return False
    return read_time - session.renewed_at <= timedelta(seconds=lease_seconds)


def session_from(doc_id: str, data: Mapping[str, Any] | None) -> SessionState:
    renewed = (data or {}).get(RENEWED_AT)
    return SessionState(
        doc_id,
        renewed if isinstance(renewed, datetime) else None,
        (data or {}).get(REVOKED) is True,
    )


@dataclass(frozen=True)
class LiveStreams:
    """Whose stream is live, as the tick believes it."""

    uids: frozenset[str]
    trusted_buckets: int
    """Buckets held by a live session (the others' maps were ignored)."""
    sessions: int
    """Live gateway sessions."""


def live_uids(
    buckets: Iterable[tuple[str, Iterable[str]]],
    sessions: Mapping[str, SessionState],
    read_time: datetime,
    lease_seconds: float = LEASE_SECONDS,
) -> LiveStreams:
    """The tenants of every bucket ``(holder, live uids)`` whose holder's session is alive."""
    alive = {sid for sid, s in sessions.items() if session_alive(s, read_time, lease_seconds)}
    uids: set[str] = set()
    trusted = 0
    for holder, live in buckets:
        if holder in alive:
            trusted += 1
            uids.update(live)
    return LiveStreams(frozenset(uids), trusted, len(alive))


def read_sessions(db: firestore.Client) -> tuple[dict[str, SessionState], datetime | None]:
    """Every gateway session, and the read time of the query (``None``: no session)."""
    sessions: dict[str, SessionState] = {}
    read_time: datetime | None = None
    for snap in db.collection(STREAM_SESSIONS_COLLECTION).stream():
        sessions[snap.id] = session_from(snap.id, snap.to_dict())
        read_time = snap.read_time if read_time is None else max(read_time, snap.read_time)
    return sessions, read_time


def read_live(db: firestore.Client) -> LiveStreams:
    """Whose stream is live now: the bucket documents (decoded from the protobuf: their maps
    hold every streaming tenant) and the sessions, read after them, so a session that renewed
    meanwhile is judged by its latest renewal."""
    buckets = _holders_and_live(db)
    sessions, read_time = read_sessions(db)
    if read_time is None:
        return LiveStreams(frozenset(), 0, 0)
    return live_uids(buckets, sessions, read_time)


def _holders_and_live(db: firestore.Client) -> list[tuple[str, list[str]]]:
    """``(holder, live uids)`` of every existing bucket document, decoded from the protobuf
    (the client's generic decoding costs several times the CPU on maps of 100,000 entries)."""

    def decode(fields: Any) -> tuple[str, list[str]] | None:
        if fields is None:
            return None
        holder = fields[HOLDER].string_value if HOLDER in fields else ""
        live = list(fields[LIVE].map_value.fields.keys()) if LIVE in fields else []
        return holder, live

    names = [stream_bucket_doc(n) for n in range(STREAM_BUCKETS)]
    found = batch_get(db, names, None, decode)
    return [bucket for bucket in found.values() if bucket is not None]
