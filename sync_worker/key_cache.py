"""Per-instance cache of tenants' Alpaca keys, invalidated by version rather than by time.

The secrets trigger stamps ``config/alpaca.configuredAt`` whenever keys are accepted; the
roster keeps that stamp beside each eligible user and the publisher puts it in each message as
``keys_version`` (:mod:`agenttrader.keys_version`). A worker that already holds the keys of
that version skips the secrets read; a new version (rotated keys) misses and reads them again.
Messages without a version (replays, manual syncs, users configured by a script) always read.
If cached keys are refused by Alpaca (rotated since the message was published), the worker
reads them again once.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from agenttrader.alpaca import AlpacaKeys

DEFAULT_CAPACITY = 20_000
"""About 10 MB at most; a worker instance rarely sees more tenants than this."""


class KeyCache:
    """uid → (version, keys), least recently used evicted first; safe across threads."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self._capacity = capacity
        self._entries: OrderedDict[str, tuple[str, AlpacaKeys]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, uid: str, version: str | None) -> AlpacaKeys | None:
        if version is None:
            return None
        with self._lock:
            entry = self._entries.get(uid)
            if entry is None or entry[0] != version:
                return None
            self._entries.move_to_end(uid)
            return entry[1]

    def put(self, uid: str, version: str | None, keys: AlpacaKeys) -> None:
        if version is None:
            return
        with self._lock:
            self._entries[uid] = (version, keys)
            self._entries.move_to_end(uid)
            while len(self._entries) > self._capacity:
                self._entries.popitem(last=False)

    def drop(self, uid: str) -> None:
        with self._lock:
            self._entries.pop(uid, None)

    def __len__(self) -> int:
        return len(self._entries)
