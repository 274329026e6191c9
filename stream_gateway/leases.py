"""Exclusive ownership of the buckets across gateway instances: session leases in Firestore,
compare-and-set on documents, fencing by time. No consensus of our own: Firestore's
preconditions (``create`` / ``last_update_time``) decide every race.

**Sessions.** A running instance registers ``ops/streams/sessions/{id}`` and renews it every
:data:`RENEW_SECONDS` with a write conditioned on the update time of its own previous write;
``renewedAt`` is the commit time (Firestore's clock). Its buckets (``ops/streams/buckets/{n}``,
``holder`` = its id) are held exactly as long as the session is.

**Taking over.** Another instance may take a bucket when its holder's session is gone or
revoked, or is *dead*: at the read time of a read, more than :data:`LEASE_SECONDS` have passed
since its ``renewedAt``. It first revokes the dead session (``revoked: true``, conditioned on
the session document as read: a renewal that landed meanwhile makes the revocation fail and
the session live on), then writes the bucket, conditioned on the bucket as read.

**Fencing.** The holder stops streaming a bucket (aborts its connections) at ``s + LEASE -
MARGIN`` on its own monotonic clock, ``s`` being when it *sent* its last renewal that
succeeded — unless a later renewal succeeds first. Why that is before anyone else may open a
connection for the bucket's tenants: the renewal sent at ``s`` committed at ``c ≥ s`` (real
time); a revocation needs a read at ``r > c + LEASE`` on Firestore's clock, so it happens
after ``s + LEASE``; the holder stopped at ``s + LEASE - MARGIN``. Clocks only need to tick at
about the same *rate* (no comparison of wall clocks between machines): :data:`MARGIN_SECONDS`
covers the watchdog's period (0.25 s), aborting the connections (milliseconds), and a rate
error of far more than any real clock's over 15 s. A renewal whose answer was lost counts
only once a read shows it landed, and from its own send time.

A holder also loses its session when a renewal fails its precondition because the session was
revoked: it drops every bucket at once and registers a new session. A bucket write (the
``live`` map) that fails its precondition means the bucket was taken: it is dropped at once.

**Scaling.** Buckets are shared by ranks: with ``n`` live sessions (sorted by id) each one's
target is ``B // n`` (+1 for the first ``B % n``). An instance above its target releases
(closes the connections first, then writes ``holder: ""``) when another is below its own and
the set of sessions has been stable for a scan; an instance below its target takes free or
orphaned buckets. A new instance therefore gets its share within a couple of scans, and a
SIGKILLed one's buckets move within ``LEASE_SECONDS`` + a scan.
"""

from __future__ import annotations

import contextlib
import socket
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from google.api_core import exceptions as gexc

from agenttrader import streams
from agenttrader.paths import (
    STREAM_BUCKETS,
    STREAM_SESSIONS_COLLECTION,
    stream_bucket_doc,
    stream_session_doc,
)
from agenttrader.streams import SessionState, session_alive, session_from

if TYPE_CHECKING:
    from google.cloud import firestore

LEASE_SECONDS = streams.LEASE_SECONDS
RENEW_SECONDS = 3.0
MARGIN_SECONDS = 5.0
"""Stop streaming this long before anyone else may start (see the module docstring)."""
BUCKET_SCAN_SECONDS = 60.0
"""Buckets are read when sessions change, when this instance is short of its share, and at
least this often."""
STALE_SESSION_SECONDS = 3600.0
"""A dead session holding no bucket is deleted once it has been silent this long."""

_LOST = (gexc.FailedPrecondition, gexc.Conflict, gexc.NotFound, gexc.AlreadyExists)


class SessionLost(Exception):
    """The session was revoked (taken over): every bucket is gone."""


class BucketLost(Exception):
    """The bucket was taken by another session."""


@dataclass(frozen=True)
class BucketView:
    """A bucket document as read (without its ``live`` map)."""

    index: int
    holder: str
    token: int
    update_time: Any
    """``None`` when the document does not exist."""


@dataclass(frozen=True)
class Plan:
    """What one instance does after a scan."""

    acquire: tuple[int, ...] = ()
    release: tuple[int, ...] = ()
    revoke: tuple[str, ...] = ()
    """Dead sessions holding buckets to acquire: revoked first."""


def targets(alive: Sequence[str], buckets: int = STREAM_BUCKETS) -> dict[str, int]:
    """Each live session's share of the buckets, by rank of its id."""
    ranked = sorted(set(alive))
    if not ranked:
        return {}
    share, extra = divmod(buckets, len(ranked))
    return {sid: share + (1 if rank < extra else 0) for rank, sid in enumerate(ranked)}


def plan(
    me: str,
    buckets: Sequence[BucketView],
    sessions: Mapping[str, SessionState],
    read_time: datetime,
    *,
    rebalance: bool,
    lease: float = LEASE_SECONDS,
) -> Plan:
    """What ``me`` (a live session) acquires, releases and revokes, from a scan.

    ``rebalance``: the live sessions have not changed since the previous scan, so releasing
    to an instance short of its share cannot be undone by a flapping one.
    """
    alive = {sid for sid, s in sessions.items() if session_alive(s, read_time, lease)} | {me}
    share = targets(sorted(alive), len(buckets))
    held = Counter(b.holder for b in buckets if b.holder in alive)
    mine = sorted(b.index for b in buckets if b.holder == me)
    release: list[int] = []
    if rebalance and len(mine) > share[me]:
        short = any(held[sid] < share[sid] for sid in alive if sid != me)
        if short:
            release = mine[share[me] :]
    orphans = [b for b in buckets if b.holder not in alive]
    ranked = sorted(alive)
    start = ranked.index(me) * len(buckets) // len(ranked)
    orphans.sort(key=lambda b: (b.index - start) % len(buckets))
    acquire = orphans[: max(share[me] - len(mine), 0)]
    revoke = sorted(
        {
            b.holder
            for b in acquire
            if b.holder and b.holder in sessions and not sessions[b.holder].revoked
        }
    )
    return Plan(tuple(b.index for b in acquire), tuple(release), tuple(revoke))


def new_session_id() -> str:
    return uuid.uuid4().hex[:16]


class LeaseStore:
    """The Firestore side: every write conditioned on what was read or last written.
    Blocking calls (the gateway runs them on its executor)."""

    def __init__(self, db: firestore.Client, host: str | None = None) -> None:
        self._db = db
        self._host = host or socket.gethostname()

    # --- sessions ---------------------------------------------------------------------------

    def register(self, session_id: str) -> Any:
        """Create the session; returns its update time."""
        from google.cloud import firestore

        result = self._db.document(stream_session_doc(session_id)).create(
            {
                streams.RENEWED_AT: firestore.SERVER_TIMESTAMP,
                "startedAt": firestore.SERVER_TIMESTAMP,
                streams.REVOKED: False,
                "host": self._host[:200],
                "leaseSeconds": LEASE_SECONDS,
            }
        )
        return result.update_time

    def renew(self, session_id: str, update_time: Any, info: Mapping[str, Any]) -> tuple[Any, bool]:
        """Renew the session: its new update time, and whether this renewal landed (then its
        send time starts the lease). ``SessionLost`` when it was revoked or deleted. When the
        precondition fails because an earlier renewal of ours landed unseen, that one's
        update time is adopted and ``False`` returned: the next renewal extends the lease."""
        from google.cloud import firestore

        ref = self._db.document(stream_session_doc(session_id))
        try:
            result = ref.update(
                {streams.RENEWED_AT: firestore.SERVER_TIMESTAMP, **info},
                option=self._db.write_option(last_update_time=update_time),
            )
        except _LOST:
            return self.confirm(session_id), False
        return result.update_time, True

    def confirm(self, session_id: str) -> Any:
        """The session's update time when it is still ours (not revoked): a renewal whose
        answer was lost landed. ``SessionLost`` otherwise."""
        snap = self._db.document(stream_session_doc(session_id)).get()
        if not snap.exists or (snap.to_dict() or {}).get(streams.REVOKED) is True:
            raise SessionLost(session_id)
        return snap.update_time

    def sessions(self) -> tuple[dict[str, SessionState], dict[str, Any], datetime | None]:
        """Every session, their update times, and the read time."""
        states: dict[str, SessionState] = {}
        times: dict[str, Any] = {}
        read_time: datetime | None = None
        for snap in self._db.collection(STREAM_SESSIONS_COLLECTION).stream():
            states[snap.id] = session_from(snap.id, snap.to_dict())
            times[snap.id] = snap.update_time
            read_time = snap.read_time if read_time is None else max(read_time, snap.read_time)
        return states, times, read_time

    def revoke(self, session_id: str, update_time: Any, by: str) -> bool:
        """Revoke a dead session as read; ``False`` if it changed since (it renewed)."""
        from google.cloud import firestore

        try:
            self._db.document(stream_session_doc(session_id)).update(
                {
                    streams.REVOKED: True,
                    "revokedBy": by,
                    "revokedAt": firestore.SERVER_TIMESTAMP,
                },
                option=self._db.write_option(last_update_time=update_time),
            )
        except _LOST:
            return False
        return True

    def retire(self, session_id: str, update_time: Any) -> None:
        """Delete the session (after its buckets were released)."""
        with contextlib.suppress(*_LOST):
            self._db.document(stream_session_doc(session_id)).delete(
                option=self._db.write_option(last_update_time=update_time)
            )

    def forget(self, session_id: str, update_time: Any) -> None:
        """Delete a long-dead session that holds nothing (housekeeping)."""
        self.retire(session_id, update_time)

    # --- buckets ----------------------------------------------------------------------------

    def buckets(self) -> tuple[list[BucketView], datetime | None]:
        """Every bucket (holder and token only), and the read time."""
        refs = [self._db.document(stream_bucket_doc(n)) for n in range(STREAM_BUCKETS)]
        views: dict[int, BucketView] = {}
        read_time: datetime | None = None
        for snap in self._db.get_all(refs, field_paths=[streams.HOLDER, streams.TOKEN]):
            index = int(snap.id)
            data = (snap.to_dict() or {}) if snap.exists else {}
            holder = data.get(streams.HOLDER)
            token = data.get(streams.TOKEN)
            views[index] = BucketView(
                index,
                holder if isinstance(holder, str) else "",
                token if isinstance(token, int) else 0,
                snap.update_time if snap.exists else None,
            )
            read_time = snap.read_time if read_time is None else max(read_time, snap.read_time)
        return [views.get(n, BucketView(n, "", 0, None)) for n in range(STREAM_BUCKETS)], read_time

    def acquire(self, view: BucketView, session_id: str) -> tuple[Any, int] | None:
        """Take the bucket as read (its ``live`` map emptied); ``(update time, token)``, or
        ``None`` when someone else changed it first."""
        from google.cloud import firestore

        token = view.token + 1
        body = {
            streams.HOLDER: session_id,
            streams.TOKEN: token,
            "acquiredAt": firestore.SERVER_TIMESTAMP,
            streams.LIVE: {},
            "liveAt": firestore.SERVER_TIMESTAMP,
        }
        ref = self._db.document(stream_bucket_doc(view.index))
        try:
            if view.update_time is None:
                result = ref.create(body)
            else:
                result = ref.update(
                    body, option=self._db.write_option(last_update_time=view.update_time)
                )
        except _LOST:
            return None
        return result.update_time, token

    def write_live(self, index: int, update_time: Any, changes: Mapping[str, int | None]) -> Any:
        """Record which of the bucket's tenants stream (``None``: no longer); returns the
        new update time, ``BucketLost`` when the bucket is not ours any more."""
        from google.cloud import firestore
        from google.cloud.firestore_v1.field_path import FieldPath

        body: dict[str, Any] = {
            FieldPath(streams.LIVE, uid).to_api_repr(): (
                firestore.DELETE_FIELD if since is None else since
            )
            for uid, since in changes.items()
        }
        body["liveAt"] = firestore.SERVER_TIMESTAMP
        try:
            result = self._db.document(stream_bucket_doc(index)).update(
                body, option=self._db.write_option(last_update_time=update_time)
            )
        except _LOST:
            raise BucketLost(index) from None
        return result.update_time

    def release(self, index: int, update_time: Any) -> bool:
        """Give the bucket up (its connections already closed); ``False`` if it was not ours."""
        from google.cloud import firestore

        try:
            self._db.document(stream_bucket_doc(index)).update(
                {
                    streams.HOLDER: "",
                    streams.LIVE: {},
                    "releasedAt": firestore.SERVER_TIMESTAMP,
                },
                option=self._db.write_option(last_update_time=update_time),
            )
        except _LOST:
            return False
        return True
