"""Where a user's roster entry lives: shard ``crc32(uid) mod shards``, over a number of shard
documents that is a power of two and only grows.

The marker ``ops/roster`` holds the number (``shards``). It doubles when the roster holds more
than ``SHARD_CAPACITY`` users a shard on average, so a shard document holds about 1,000
entries (~75 KB of the 1 MiB a document may hold; its maps are exempt from indexing) and takes
about a thousandth of the eligibility changes: at 1,000,000 users in 1,024 shards and 1,000
changes a second, about one write a second each. When the number doubles from ``n``, a user of
shard ``s`` stays there or belongs in ``s + n``; until its entry is moved there
(:mod:`publisher.roster_upkeep`) it is still read, because a reader takes a user's greatest
entry over every shard document — where an entry sits never decides what it says.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Any

from agenttrader.paths import ROSTER_MAX_SHARDS

SHARD_CAPACITY = 1_000
"""Users a shard holds on average before the shard count doubles."""


def hash_of(uid: str) -> int:
    return zlib.crc32(uid.encode())


def shard_of(uid: str, shards: int) -> int:
    """The shard document ``uid``'s entry belongs in, with ``shards`` shards."""
    return hash_of(uid) % shards


def shards_in(marker: Mapping[str, Any] | None) -> int:
    """The shard count the marker says (1 without a marker or a usable number)."""
    value = (marker or {}).get("shards")
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= ROSTER_MAX_SHARDS:
        return value
    return 1


def shards_for(users: int, current: int = 1) -> int:
    """The shard count for ``users`` entries: the power of two at least ``current``, doubled
    until the average shard holds at most ``SHARD_CAPACITY`` (never more than the maximum)."""
    shards = 1
    while shards < current and shards * 2 <= ROSTER_MAX_SHARDS:
        shards *= 2
    while users > shards * SHARD_CAPACITY and shards * 2 <= ROSTER_MAX_SHARDS:
        shards *= 2
    return shards
