"""Reading the roster: the shard documents at one read time, merged into what a tick needs.

A user's verdict is its greatest entry over every shard document (an entry may sit in a shard
it no longer belongs in until the upkeep moves it; see :mod:`publisher.roster_layout`). The
shards are read at the marker's read time, so the whole roster is one consistent snapshot
however many requests it takes, and the same snapshot can be read again later (Firestore
keeps an hour of versions): a fan-out that stopped midway resumes shard by shard over exactly
the users it started with.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from publisher.roster_verdict import ELIGIBLE, MEMBER

if TYPE_CHECKING:
    from google.cloud import firestore

READ_CHUNK = 100
"""Documents per batched read: ~7.5 MB of a full roster's shards per response."""

MAP_FIELDS = ("members", "keys")
"""A shard document's fields: maps uid → integer (the entry, the keys version)."""
Maps = dict[str, dict[str, int]]
"""A shard document's maps by field."""


def get_maps(
    db: firestore.Client, names: Sequence[str], read_time: datetime | None = None
) -> dict[str, Maps | None]:
    """The ``members`` and ``keys`` maps of the documents ``names`` (``None``: missing), at
    ``read_time`` if given, decoded from the protobuf directly rather than through the client's
    generic decoding (``to_dict``), which costs several times the CPU on large maps. Uses the
    client's own transport, retry settings and emulator switch."""
    from google.cloud.firestore_v1.types import BatchGetDocumentsRequest

    client: Any = db
    prefix = f"{client._database_string}/documents/"
    found: dict[str, Maps | None] = {}
    for start in range(0, len(names), READ_CHUNK):
        request = BatchGetDocumentsRequest(
            database=client._database_string,
            documents=[prefix + name for name in names[start : start + READ_CHUNK]],
            read_time=read_time,
        )
        responses = client._firestore_api.batch_get_documents(
            request=request, metadata=client._rpc_metadata
        )
        for response in responses:
            pb = response._pb
            if pb.HasField("found"):
                fields = pb.found.fields
                found[pb.found.name.removeprefix(prefix)] = {
                    name: {k: v.integer_value for k, v in fields[name].map_value.fields.items()}
                    for name in MAP_FIELDS
                    if name in fields
                }
            else:
                found[pb.missing.removeprefix(prefix)] = None
    return found


@dataclass(frozen=True)
class Roster:
    """What one tick needs: the eligible users with their keys' version, shard by shard."""

    eligible: dict[str, str | None]
    """uid → keys version of every eligible user: shard by shard (see ``shard_starts``), by
    uid within a shard."""
    members: int
    """Onboarded users, eligible or not: the others are a tick's skipped count."""
    shards: int = 1
    """How many shard documents it was read from (the marker's count)."""
    read_time: datetime | None = None
    """The snapshot it was read at: ``roster.read(db, read_time=...)`` reads it again."""
    shard_starts: tuple[int, ...] = ()
    """Where each shard's users begin in ``eligible`` (one position per shard)."""
    entries: int = 0
    """Users with an entry, tombstones included (what the shard count is sized for)."""
    held: tuple[dict[str, int], ...] = field(default=(), repr=False, compare=False)
    """Every shard document's ``members`` map as read (empty for a missing one), for the
    upkeep."""

    @property
    def fullest_shard(self) -> int:
        """Entries of the fullest shard document (what its size and write rate follow)."""
        return max((len(entries) for entries in self.held), default=0)

    def shard(self, index: int) -> Iterator[tuple[str, str | None]]:
        """The eligible users of shard ``index`` (where their winning entry sits), in order."""
        starts = (*self.shard_starts, len(self.eligible))
        items = iter(self.eligible.items())
        for _ in range(starts[index]):
            next(items)
        for _ in range(starts[index + 1] - starts[index]):
            yield next(items)


def merge(
    held: Sequence[dict[str, int]],
    keys: Sequence[Mapping[str, int]],
    read_time: datetime | None = None,
) -> Roster:
    """The roster from every shard document's ``members`` and ``keys`` (index = shard): a
    user's greatest entry wins, and so does its greatest keys version (keys only move
    forward). A user with entries in several documents is listed with the shard holding the
    winning one (the lowest such shard on a tie)."""
    seen: set[str] = set()
    duplicated: set[str] = set()
    for entries in held:
        duplicated.update(seen.intersection(entries))
        seen.update(entries)
    winner: dict[str, int] = {}
    best_keys: dict[str, int] = {}
    for index, entries in enumerate(held):
        for uid in duplicated.intersection(entries):
            if uid not in winner or entries[uid] > held[winner[uid]][uid]:
                winner[uid] = index
            version = keys[index].get(uid)
            if version is not None and version > best_keys.get(uid, -1):
                best_keys[uid] = version
    eligible: dict[str, str | None] = {}
    starts: list[int] = []
    members = 0
    for index, entries in enumerate(held):
        starts.append(len(eligible))
        own = entries
        if winner:
            own = {u: v for u, v in entries.items() if winner.get(u, index) == index}
        members += sum(1 for value in own.values() if value & MEMBER)
        versions = keys[index]
        for uid in sorted(u for u, v in own.items() if v & 3 == ELIGIBLE):
            version = best_keys.get(uid) if uid in duplicated else versions.get(uid)
            eligible[uid] = str(version) if version is not None else None
    return Roster(
        eligible,
        members,
        shards=len(held),
        read_time=read_time,
        shard_starts=tuple(starts),
        entries=len(seen),
        held=tuple(held),
    )
