"""Firestore helpers every role uses: one classification of transient failures
(:func:`call`), the optimistic compare-and-set loop (:func:`retry_on_conflict`) and writes
encoded as protobuf directly (:func:`add_set_fields`).

The encoder turns JSON-shaped data straight into ``google.firestore.v1`` protobuf, without the
client's generic proto-plus encoding, and hands the write to the batch, which commits it as
usual (same RPC, same preconditions, same atomicity).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from google.api_core import exceptions as gexc
from google.cloud.firestore_v1.types import common, document, write
from google.protobuf import timestamp_pb2

from agenttrader.errors import DependencyUnavailable

if TYPE_CHECKING:
    from google.cloud import firestore

T = TypeVar("T")

TRANSIENT = (
    gexc.ServiceUnavailable,
    gexc.DeadlineExceeded,
    gexc.InternalServerError,
    gexc.TooManyRequests,
    gexc.Aborted,
    gexc.Unknown,
    gexc.Cancelled,
)
"""Firestore failures a retry may fix. ``Unknown`` is what gRPC reports for a connection lost
mid-call (``Stream removed``, a reset) and ``Cancelled`` a call cancelled under us (a channel
closed, an instance shutting down): neither says anything about the request. A write they
interrupt may or may not have landed; the redelivery reads again and decides again (the
worker's writes are guarded by what it read: one that landed makes the retry a duplicate)."""

CONFLICT_ATTEMPTS = 60
"""Enough for a burst of concurrent writers on one document to drain (each round, one wins)."""
_BACKOFF_BASE_SECONDS = 0.01
_BACKOFF_CAP_SECONDS = 0.25


def call(fn: Callable[[], T]) -> T:
    """Run a Firestore call; its transient failures become ``DependencyUnavailable``."""
    try:
        return fn()
    except TRANSIENT as err:
        raise DependencyUnavailable(f"Firestore is unavailable ({type(err).__name__})") from None


def retry_on_conflict(attempt: Callable[[], T], attempts: int = CONFLICT_ATTEMPTS) -> T:
    """Call ``attempt`` until its precondition-guarded write succeeds.

    ``attempt`` re-reads what it decides on, then writes with a precondition (``create``, or
    ``last_update_time``); a lost race raises ``Conflict`` (``AlreadyExists``, ``Aborted``) or
    ``FailedPrecondition``, and the next attempt starts over after a jittered backoff. As
    atomic as a transaction, but holding no lock: a burst of writers on one document converges
    in a few round trips. Sustained contention ends as ``DependencyUnavailable``.
    """
    for number in range(attempts):
        try:
            return attempt()
        except (gexc.Conflict, gexc.FailedPrecondition):
            cap = min(_BACKOFF_CAP_SECONDS, _BACKOFF_BASE_SECONDS * 2**number)
            time.sleep(random.uniform(0, cap))
    raise DependencyUnavailable("too many simultaneous writes to one document")


_Value = document.Value.pb()
_Document = document.Document.pb()
_Write = write.Write.pb()
_Precondition = common.Precondition.pb()


def encode(value: Any) -> Any:
    """A JSON-shaped Python value (and datetimes, bytes) as a raw ``google.firestore.v1.Value``."""
    if value is None:
        return _Value(null_value=0)
    if isinstance(value, bool):
        return _Value(boolean_value=value)
    if isinstance(value, int):
        return _Value(integer_value=value)
    if isinstance(value, float):
        return _Value(double_value=value)
    if isinstance(value, str):
        return _Value(string_value=value)
    if isinstance(value, bytes):
        return _Value(bytes_value=value)
    if isinstance(value, datetime):
        stamp = timestamp_pb2.Timestamp()
        stamp.FromDatetime(value)
        return _Value(timestamp_value=stamp)
    if isinstance(value, Mapping):
        encoded = _Value()
        encoded.map_value.SetInParent()  # an empty map is still a map
        fields = encoded.map_value.fields
        for key, item in value.items():
            fields[str(key)].CopyFrom(encode(item))
        return encoded
    if isinstance(value, list | tuple):
        encoded = _Value()
        encoded.array_value.SetInParent()
        encoded.array_value.values.extend(encode(item) for item in value)
        return encoded
    raise TypeError(f"cannot store a {type(value).__name__} in Firestore")


def add_set_fields(
    batch: firestore.WriteBatch,
    db: firestore.Client,
    path: str,
    data: Mapping[str, Any],
    *,
    delete: Iterable[str] = (),
    last_update_time: Any = None,
) -> None:
    """Add to ``batch`` a write that sets the top-level fields of ``data`` and deletes those in
    ``delete``, leaving other fields alone. With ``last_update_time`` the document must be
    unchanged since then; without it, it must not exist yet (a create).

    Top-level names must be plain identifiers (they go into the update mask unescaped).
    """
    raw = _Write()
    raw.update.CopyFrom(_Document(name=db.document(path)._document_path))
    for key, item in data.items():
        raw.update.fields[key].CopyFrom(encode(item))
    if last_update_time is None:
        raw.current_document.CopyFrom(_Precondition(exists=False))
    else:
        raw.update_mask.field_paths.extend([*data, *delete])
        stamp = timestamp_pb2.Timestamp()
        stamp.FromDatetime(last_update_time)
        raw.current_document.CopyFrom(_Precondition(update_time=stamp))
    batch._add_write_pbs([write.Write.wrap(raw)])
