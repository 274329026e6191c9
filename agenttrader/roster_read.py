"""Reading the roster: the shard documents at one read time, merged into what a tick needs.

A user's verdict is its greatest entry over every shard document (an entry may sit in a shard
it no longer belongs in until the upkeep moves it; see :mod:`agenttrader.roster_layout`). The
shards are read at the marker's read time, so the whole roster is one consistent snapshot
however many requests it takes, and the same snapshot can be read again later (Firestore
keeps an hour of versions): a fan-out that stopped midway resumes shard by shard over exactly
the users it started with.

What is kept is the shards' entries as read and the keys versions of eligible entries only;
the list of eligible users is derived from them, shard by shard or whole, when asked for.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from itertools import chain
from typing import TYPE_CHECKING, Any, TypeVar

from agenttrader.paths import ROSTER_DOC, roster_shard_doc
from agenttrader.roster_layout import shards_in
from agenttrader.roster_verdict import ELIGIBLE, MEMBER

if TYPE_CHECKING:
    from google.cloud import firestore

READ_CHUNK = 64
"""Documents per batched read: ~5 MB of full shards per response."""
READ_THREADS = 4
"""Batched reads in flight at once (a roster of 1,024 shards takes 16)."""

MAP_FIELDS = ("members", "keys")
"""A shard document's fields: maps uid → integer (the entry, the keys version)."""
Maps = dict[str, dict[str, int]]
"""A shard document's maps by field."""
Shard = tuple[dict[str, int], dict[str, int]]
"""A shard as a tick keeps it: every entry, and the keys version of its eligible entries."""

T = TypeVar("T")


def batch_get(
    db: firestore.Client,
    names: Sequence[str],
    read_time: datetime | None,
    decode: Callable[[Any], T],
) -> dict[str, T]:
    """``decode(fields)`` of each document of ``names`` (``fields``: its protobuf fields, or
    ``None`` for a missing one), at ``read_time`` if given, ``READ_CHUNK`` documents a request
    from ``READ_THREADS`` threads; each chunk is decoded as it arrives, so only the decoded
    form of the whole is ever held. Reads the protobuf directly rather than through the
    client's generic decoding (``to_dict``), which costs several times the CPU on large maps,
    through the client's own transport, retry settings and emulator switch."""
    from google.cloud.firestore_v1.types import BatchGetDocumentsRequest

    client: Any = db
    prefix = f"{client._database_string}/documents/"

    def chunk(start: int) -> dict[str, T]:
        request = BatchGetDocumentsRequest(
            database=client._database_string,
            documents=[prefix + name for name in names[start : start + READ_CHUNK]],
            read_time=read_time,
        )
        responses = client._firestore_api.batch_get_documents(
            request=request, metadata=client._rpc_metadata
        )
        found: dict[str, T] = {}
        for response in responses:
            pb = response._pb
            if pb.HasField("found"):
                found[pb.found.name.removeprefix(prefix)] = decode(pb.found.fields)
            else:
                found[pb.missing.removeprefix(prefix)] = decode(None)
        return found

    starts = range(0, len(names), READ_CHUNK)
    if len(starts) <= 1:
        return chunk(0) if names else {}
    merged: dict[str, T] = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=READ_THREADS) as pool:
        for found in pool.map(chunk, starts):
            merged.update(found)
    return merged


def _ints(fields: Any, name: str) -> dict[str, int]:
    if name not in fields:
        return {}
    return {k: v.integer_value for k, v in fields[name].map_value.fields.items()}


def _maps(fields: Any) -> Maps | None:
    if fields is None:
        return None
    return {name: _ints(fields, name) for name in MAP_FIELDS if name in fields}


def _shard(fields: Any) -> Shard:
    if fields is None:
        return {}, {}
    members, keys = _ints(fields, "members"), _ints(fields, "keys")
    return members, {
        uid: keys[uid] for uid, value in members.items() if value & 3 == ELIGIBLE and uid in keys
    }


def get_maps(
    db: firestore.Client, names: Sequence[str], read_time: datetime | None = None
) -> dict[str, Maps | None]:
    """The ``members`` and ``keys`` maps of the documents ``names`` (``None``: missing)."""
    return batch_get(db, names, read_time, _maps)


def get_shards(db: firestore.Client, shards: int, read_time: datetime | None) -> list[Shard]:
    """Shards ``0 .. shards - 1`` as a tick keeps them (a missing one is empty)."""
    names = [roster_shard_doc(k) for k in range(shards)]
    found = batch_get(db, names, read_time, _shard)
    return [found.get(name) or ({}, {}) for name in names]


@dataclass(frozen=True)
class Roster:
    """What one tick needs: the eligible users with their keys' version, shard by shard."""

    members: int
    """Onboarded users, eligible or not: the others are a tick's skipped count."""
    entries: int
    """Users with an entry, tombstones included (what the shard count is sized for)."""
    read_time: datetime | None
    """The snapshot it was read at: ``roster.read(db, read_time=...)`` reads it again."""
    held: tuple[dict[str, int], ...] = field(repr=False, compare=False)
    """Every shard's entries as read (uid → entry; empty for a missing document)."""
    versions: tuple[dict[str, int], ...] = field(repr=False, compare=False)
    """Every shard's eligible entries' keys versions."""
    winners: dict[str, int] = field(repr=False, compare=False)
    """Users held in several shards → the shard of their winning entry."""
    best_keys: dict[str, int] = field(repr=False, compare=False)
    """Users held in several shards → their greatest keys version (of an eligible entry)."""

    @property
    def shards(self) -> int:
        """How many shard documents it was read from (the marker's count)."""
        return len(self.held)

    @property
    def fullest_shard(self) -> int:
        """Entries of the fullest shard document (what its size and write rate follow)."""
        return max((len(entries) for entries in self.held), default=0)

    def shard(self, index: int) -> list[tuple[str, str | None]]:
        """The eligible users of shard ``index`` (where their winning entry sits), by uid, with
        their keys' version."""
        entries, versions = self.held[index], self.versions[index]
        found = sorted(uid for uid, value in entries.items() if value & 3 == ELIGIBLE)
        if self.winners:
            found = [uid for uid in found if self.winners.get(uid, index) == index]
        listed: list[tuple[str, str | None]] = []
        for uid in found:
            version = self.best_keys.get(uid) if uid in self.winners else versions.get(uid)
            listed.append((uid, str(version) if version is not None else None))
        return listed

    @cached_property
    def eligible(self) -> dict[str, str | None]:
        """uid → keys version of every eligible user: shard by shard, by uid within one."""
        return dict(chain.from_iterable(self.shard(k) for k in range(self.shards)))

    @cached_property
    def shard_starts(self) -> tuple[int, ...]:
        """Where each shard's users begin in ``eligible``."""
        starts, position = [], 0
        for k in range(self.shards):
            starts.append(position)
            position += len(self.shard(k))
        return tuple(starts)


def merge(shards: Sequence[Shard], read_time: datetime | None = None) -> Roster:
    """The roster from every shard (index = shard number): a user's greatest entry wins, and
    so does its greatest keys version (keys only move forward). A user with entries in several
    shards is listed with the shard holding the winning one (the lowest such shard on a
    tie)."""
    held = tuple(entries for entries, _ in shards)
    versions = tuple(keys for _, keys in shards)
    seen: set[str] = set()
    duplicated: set[str] = set()
    for entries in held:
        duplicated.update(seen.intersection(entries))
        seen.update(entries)
    winners: dict[str, int] = {}
    best_keys: dict[str, int] = {}
    members = 0
    for index, entries in enumerate(held):
        members += sum(1 for value in entries.values() if value & MEMBER)
        for uid in duplicated.intersection(entries):
            members -= bool(entries[uid] & MEMBER)  # counted once below, by its winner
            if uid not in winners or entries[uid] > held[winners[uid]][uid]:
                winners[uid] = index
            version = versions[index].get(uid)
            if version is not None and version > best_keys.get(uid, -1):
                best_keys[uid] = version
    members += sum(1 for uid, index in winners.items() if held[index][uid] & MEMBER)
    return Roster(members, len(seen), read_time, held, versions, winners, best_keys)


def read(db: firestore.Client, read_time: datetime | None = None) -> Roster | None:
    """The roster (at ``read_time`` if given: within the last hour), or ``None`` when it was
    never built (``ops/roster`` missing)."""
    marker = db.document(ROSTER_DOC).get(read_time=read_time)
    if not marker.exists:
        return None
    at = read_time or marker.read_time
    return merge(get_shards(db, shards_in(marker.to_dict() or {}), at), at)
