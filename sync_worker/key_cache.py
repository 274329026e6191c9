"""Per-instance cache of tenants' Alpaca credentials (keys or an OAuth token, opened from
their sealed form), invalidated by version rather than by time: a worker instance asks the
KEK once per tenant and ``keys_version``, not once per sync.

The roster carries each eligible user's ``config/alpaca.configuredAt`` and the publisher puts
it in each message as ``keys_version`` (:mod:`agenttrader.keys_version`). A worker that read a
user's keys for a message of that ``keys_version`` keeps them under it and skips the secrets
read for the next message of the same ``keys_version``; a new one (rotated keys) misses and
reads them again. Messages without a version (replays, manual syncs, users configured by a
script) always read.

Each entry also holds the version the keys were read at (the secrets document's update time),
which can be newer than the message's when keys were rotated after it was published. When
Alpaca refuses cached keys, the worker compares that version with the stored one: only keys
replaced since are read again and tried once more; otherwise the refusal is final.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from agenttrader.credentials import Credentials

DEFAULT_CAPACITY = 20_000
"""About 10 MB at most; a worker instance rarely sees more tenants than this."""


@dataclass(frozen=True)
class HeldKeys:
    """Credentials and the version of the secrets document they were read from."""

    credentials: Credentials
    version: str | None


class KeyCache:
    """uid → (message ``keys_version``, held keys), least recently used evicted first; safe
    across threads."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self._capacity = capacity
        self._entries: OrderedDict[str, tuple[str, HeldKeys]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, uid: str, keys_version: str | None) -> HeldKeys | None:
        if keys_version is None:
            return None
        with self._lock:
            entry = self._entries.get(uid)
            if entry is None or entry[0] != keys_version:
                return None
            self._entries.move_to_end(uid)
            return entry[1]

    def put(self, uid: str, keys_version: str | None, held: HeldKeys) -> None:
        if keys_version is None:
            return
        with self._lock:
            self._entries[uid] = (keys_version, held)
            self._entries.move_to_end(uid)
            while len(self._entries) > self._capacity:
                self._entries.popitem(last=False)

    def drop(self, uid: str) -> None:
        with self._lock:
            self._entries.pop(uid, None)

    def __len__(self) -> int:
        return len(self._entries)
