"""Counting Firestore operations in this process, for per-sync figures.

Patches the client's read and write entry points for the duration of a ``with`` block. Billing
counts a document read per document returned (or asked for by a batched get) and one read per
aggregation query (up to 1,000 index entries); a write per document written or deleted.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Meter:
    reads: int = 0
    writes: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, reads: int = 0, writes: int = 0) -> None:
        with self.lock:
            self.reads += reads
            self.writes += writes


@contextmanager
def metered() -> Iterator[Meter]:
    from google.cloud.firestore_v1 import aggregation, batch, client, document, query, transaction

    meter = Meter()
    originals: list[tuple[Any, str, Any]] = []

    def patch(owner: Any, name: str, wrapper: Any) -> None:
        original = getattr(owner, name)
        originals.append((owner, name, original))
        setattr(owner, name, wrapper(original))

    def get_all(original: Any) -> Any:
        def wrapped(self: Any, references: Any, *args: Any, **kwargs: Any) -> Any:
            references = list(references)
            meter.add(reads=len(references))
            return original(self, references, *args, **kwargs)

        return wrapped

    def doc_get(original: Any) -> Any:
        def wrapped(self: Any, *args: Any, **kwargs: Any) -> Any:
            if kwargs.get("transaction") is None:
                meter.add(reads=1)
            return original(self, *args, **kwargs)

        return wrapped

    def commit(original: Any) -> Any:
        def wrapped(self: Any, *args: Any, **kwargs: Any) -> Any:
            meter.add(writes=len(self._write_pbs))
            return original(self, *args, **kwargs)

        return wrapped

    def stream(original: Any) -> Any:
        def wrapped(self: Any, *args: Any, **kwargs: Any) -> Any:
            for item in original(self, *args, **kwargs):
                meter.add(reads=1)
                yield item

        return wrapped

    def aggregate(original: Any) -> Any:
        def wrapped(self: Any, *args: Any, **kwargs: Any) -> Any:
            meter.add(reads=1)
            return original(self, *args, **kwargs)

        return wrapped

    def txn_get(original: Any) -> Any:
        def wrapped(self: Any, ref_or_query: Any, *args: Any, **kwargs: Any) -> Any:
            meter.add(reads=1)
            return original(self, ref_or_query, *args, **kwargs)

        return wrapped

    def batch_get(original: Any) -> Any:
        def wrapped(db: Any, names: list[str], read_time: Any, decode: Any) -> Any:
            meter.add(reads=len(names))
            return original(db, names, read_time, decode)

        return wrapped

    from agenttrader import roster_read

    patch(client.Client, "get_all", get_all)
    # The roster's read goes through the client's transport, below ``get_all``.
    patch(roster_read, "batch_get", batch_get)
    patch(document.DocumentReference, "get", doc_get)
    patch(batch.WriteBatch, "commit", commit)
    patch(transaction.Transaction, "_commit", commit)
    patch(query.Query, "stream", stream)
    patch(aggregation.AggregationQuery, "get", aggregate)
    patch(transaction.Transaction, "get", txn_get)
    try:
        yield meter
    finally:
        for owner, name, original in reversed(originals):
            setattr(owner, name, original)
