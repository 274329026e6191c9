"""Counting one piece of code's Firestore operations in tests: reads and writes as
``benchmarks.metering.metered`` counts them (billing's units), deletes told apart."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from benchmarks.metering import metered


@dataclass
class Ops:
    reads: int = 0
    writes: int = 0
    """Writes other than deletes."""
    deletes: int = 0


@contextmanager
def counted() -> Iterator[Ops]:
    """Operations of the ``with`` block (this process, every thread)."""
    from google.cloud.firestore_v1 import batch

    ops = Ops()
    deletes = [0]
    with metered() as meter:
        metered_commit = batch.WriteBatch.commit  # counts every write, deletes included

        def commit(self: Any, *args: Any, **kwargs: Any) -> Any:
            deletes[0] += sum(
                1
                for pb in self._write_pbs
                if getattr(pb, "_pb", pb).WhichOneof("operation") == "delete"
            )
            return metered_commit(self, *args, **kwargs)

        batch.WriteBatch.commit = commit  # type: ignore[method-assign]
        try:
            yield ops
        finally:
            batch.WriteBatch.commit = metered_commit  # type: ignore[method-assign]
            ops.reads = meter.reads
            ops.deletes = deletes[0]
            ops.writes = meter.writes - deletes[0]
