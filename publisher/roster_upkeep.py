"""Keeping the roster small after a tick has read it: the shard count grows with the users,
entries move to the shard they belong in, tombstones older than the horizon are dropped.

What to do is decided from the roster the tick already read (:func:`survey`: no extra read
when there is nothing to do), then per shard from a fresh read of it (:func:`plan`). Every
change is safe against the triggers writing at the same time, without a transaction:

- growing rewrites the marker only if it is still the version read (``update_time``
  precondition), and only ever raises the count; writers that read the old count still write
  where a reader looks (a reader takes a user's greatest entry over every shard);
- a move copies the entry to its shard with the ``maximum`` transform and deletes it from
  where it was in the same atomic commit, on the precondition that the source document is
  still the version read: a verdict that landed meanwhile makes the commit fail (retried by a
  later tick), so nothing newer is ever deleted;
- a tombstone (``GONE``) is dropped the same way, once older than ``TOMBSTONE_HORIZON`` and
  only for a user with no entry in another shard: no verdict read before it can land any more
  (see :mod:`agenttrader.roster_verdict`), so no older "eligible" can win after it is gone.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast
from zlib import crc32

from agenttrader.logs import get_logger
from agenttrader.paths import ROSTER_DOC, roster_shard_doc
from agenttrader.roster_layout import shard_of, shards_for, shards_in
from agenttrader.roster_read import Maps, Roster
from agenttrader.roster_verdict import expired, micros

if TYPE_CHECKING:
    from google.cloud import firestore

log = get_logger(__name__)

SHARDS_PER_UPKEEP = 64
"""Shard documents one upkeep rewrites at most (a doubling at 1,000,000 users moves ~500,000
entries out of 512 shards: eight ticks)."""
UPKEEP_SECONDS = 10.0
"""No shard is started after this long: the upkeep never holds a tick much longer."""
USERS_PER_COMMIT = 200
"""Users moved or dropped per commit: two ``maximum`` transforms each on the destination,
under Firestore's 500 field transforms per document and commit."""


@dataclass(frozen=True)
class Survey:
    """What a roster as a tick read it needs done."""

    grow_to: int
    """The shard count it should have (its own when it needs no growth)."""
    misplaced: dict[int, tuple[str, ...]] = field(default_factory=dict)
    """Shard → users whose entry there belongs in another shard."""
    expired: dict[int, tuple[str, ...]] = field(default_factory=dict)
    """Shard → users whose tombstone there is past the horizon, held nowhere else."""
    moving: frozenset[str] = frozenset()
    """Every user of :attr:`misplaced`."""

    def shards_to_rewrite(self) -> list[int]:
        """Shards with moves first (they keep the others from dropping), then by number."""
        return sorted(self.misplaced) + sorted(set(self.expired) - set(self.misplaced))


def survey(held: Sequence[Mapping[str, int]], now_micros: int, entries: int) -> Survey:
    """The work on a roster of ``len(held)`` shards holding ``entries`` users, at
    ``now_micros`` (the server's time of the read)."""
    shards = len(held)
    misplaced: dict[int, tuple[str, ...]] = {}
    candidates: dict[int, list[str]] = {}
    for index, members in enumerate(held):  # one pass over every user of the roster
        wrong, old = [], []
        for uid, value in members.items():
            if crc32(uid.encode()) % shards != index:  # shard_of, inlined
                wrong.append(uid)
            elif expired(value, now_micros):
                old.append(uid)
        if wrong:
            misplaced[index] = tuple(wrong)
        if old:
            candidates[index] = old
    moving = frozenset(uid for uids in misplaced.values() for uid in uids)
    stale = {
        index: kept
        for index, old in candidates.items()
        if (kept := tuple(uid for uid in old if uid not in moving))
    }
    return Survey(shards_for(entries, shards), misplaced, stale, moving)


@dataclass(frozen=True)
class ShardPlan:
    """What to rewrite in one shard, from a fresh read of it."""

    moves: dict[int, dict[str, tuple[int, int | None]]]
    """Destination shard → uid → (entry, keys version or ``None``)."""
    drops: tuple[str, ...]


def plan(
    index: int, maps: Maps, shards: int, now_micros: int, moving: Iterable[str] = ()
) -> ShardPlan:
    """Moves and drops for shard ``index`` as just read (``maps``), with ``shards`` shards;
    ``moving``: users with an entry in another shard that belongs elsewhere (never dropped)."""
    members, keys = maps.get("members", {}), maps.get("keys", {})
    elsewhere = set(moving)
    moves: dict[int, dict[str, tuple[int, int | None]]] = {}
    drops = []
    for uid, value in members.items():
        home = shard_of(uid, shards)
        if home != index:
            moves.setdefault(home, {})[uid] = (value, keys.get(uid))
        elif expired(value, now_micros) and uid not in elsewhere:
            drops.append(uid)
    return ShardPlan(moves, tuple(sorted(drops)))


@dataclass
class Upkeep:
    """What one upkeep did."""

    grown_to: int | None = None
    moved: int = 0
    dropped: int = 0
    contended: int = 0
    """Shards left for a later upkeep: a verdict landed between the read and the rewrite."""


def maintain(db: firestore.Client, roster: Roster) -> Upkeep:
    """Grow, move and drop what the roster a tick read calls for; never raises (what fails is
    left for the next tick, and logged)."""
    from google.api_core import exceptions as gexc

    done = Upkeep()
    if roster.read_time is None or not roster.held:
        return done
    deadline = time.monotonic() + UPKEEP_SECONDS
    try:
        grow_to = shards_for(roster.entries, roster.shards)  # counts only: no scan
        if grow_to > roster.shards:
            if grow(db, roster.shards, grow_to):
                done.grown_to = grow_to
                log.info(
                    "roster grown",
                    fields={"from": roster.shards, "to": grow_to, "users": roster.entries},
                )
            return done  # entries move under the new count, from the next tick's read
        found = survey(roster.held, micros(roster.read_time), roster.entries)
        moving = found.moving
        for index in found.shards_to_rewrite()[:SHARDS_PER_UPKEEP]:
            if time.monotonic() > deadline:
                break
            _rewrite(db, index, roster.shards, moving, done)
    except (gexc.GoogleAPICallError, gexc.RetryError) as err:
        log.warning(f"roster upkeep stopped: {type(err).__name__}", fields=_fields(done))
        return done
    if done.moved or done.dropped or done.contended:
        log.info("roster upkeep", fields=_fields(done))
    return done


def _fields(done: Upkeep) -> dict[str, Any]:
    return {"moved": done.moved, "dropped": done.dropped, "contended": done.contended}


def grow(db: firestore.Client, read: int, to: int) -> bool:
    """Raise the marker's shard count from ``read`` to ``to``, unless it changed since."""
    from google.api_core import exceptions as gexc
    from google.cloud.firestore import SERVER_TIMESTAMP

    ref = db.document(ROSTER_DOC)
    snapshot = ref.get()
    if not snapshot.exists or shards_in(snapshot.to_dict()) != read:
        return False
    try:
        ref.update(
            {"shards": to, "grown_at": SERVER_TIMESTAMP},
            option=db.write_option(last_update_time=snapshot.update_time),
        )
    except gexc.FailedPrecondition:
        return False
    return True


def _rewrite(
    db: firestore.Client, index: int, shards: int, moving: frozenset[str], done: Upkeep
) -> None:
    """Apply :func:`plan` to shard ``index``, each commit conditional on the version read."""
    from google.api_core import exceptions as gexc

    ref = db.document(roster_shard_doc(index))
    snapshot = ref.get(field_paths=["members", "keys"])
    if not snapshot.exists or snapshot.read_time is None:
        return
    maps = {k: v for k, v in (snapshot.to_dict() or {}).items() if isinstance(v, dict)}
    work = plan(index, maps, shards, micros(snapshot.read_time), moving)
    version = snapshot.update_time
    try:
        for home, users in sorted(work.moves.items()):
            for chunk in _chunks(sorted(users.items())):
                version = _move(db, ref, home, chunk, version)
                done.moved += len(chunk)
        for uids in _chunks(list(work.drops)):
            version = _drop(db, ref, uids, version)
            done.dropped += len(uids)
    except gexc.FailedPrecondition:
        done.contended += 1


def _chunks(items: list[Any]) -> Iterable[list[Any]]:
    for start in range(0, len(items), USERS_PER_COMMIT):
        yield items[start : start + USERS_PER_COMMIT]


def _deleting(uids: Iterable[str]) -> dict[str, Any]:
    from google.cloud.firestore import DELETE_FIELD
    from google.cloud.firestore_v1.field_path import FieldPath

    return {
        FieldPath(name, uid).to_api_repr(): DELETE_FIELD
        for uid in uids
        for name in ("members", "keys")
    }


def _move(
    db: firestore.Client,
    source: Any,
    home: int,
    users: list[tuple[str, tuple[int, int | None]]],
    version: datetime | None,
) -> datetime | None:
    """Copy ``users``' entries to shard ``home`` and delete them from ``source``, atomically,
    if ``source`` is still at ``version``; returns its new version."""
    from google.cloud.firestore import Maximum

    copy: dict[str, Any] = {"members": {uid: Maximum(value) for uid, (value, _) in users}}
    keys = {uid: Maximum(key) for uid, (_, key) in users if key is not None}
    if keys:
        copy["keys"] = keys
    batch = db.batch()
    batch.set(db.document(roster_shard_doc(home)), copy, merge=True)
    batch.update(
        source,
        _deleting(uid for uid, _ in users),
        option=db.write_option(last_update_time=version),
    )
    results: list[Any] = batch.commit()
    return cast(datetime, results[-1].update_time)


def _drop(db: firestore.Client, source: Any, uids: list[str], version: datetime | None) -> datetime:
    result = source.update(_deleting(uids), option=db.write_option(last_update_time=version))
    return cast(datetime, result.update_time)
