"""The snapshot's hand-built protobuf write stores exactly what the client library would."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from google.api_core import exceptions as gexc
from google.cloud import firestore

from agenttrader.firestore_io import add_set_fields, encode

pytestmark = pytest.mark.integration

DATA = {
    "syncedAt": datetime(2026, 11, 27, 9, 30, 0, 123456, tzinfo=UTC),
    "account": {"id": "a-1", "equity": "100.5", "nested": {"list": [1, 2.5, True, None, "x"]}},
    "positions": [{"symbol": "AAPL", "qty": "3"}, {"symbol": "MSFT", "qty": "-1"}],
    "count": 2,
    "empty": {},
    "none": None,
    "ciphertext": b"\x00\x01sealed\xff",
}


def test_create_then_update_round_trips_and_deletes(
    emulator_env: dict[str, str], project: str
) -> None:
    db = firestore.Client(project=project)
    ref = db.document("codec/doc")
    batch = db.batch()
    add_set_fields(batch, db, ref.path, {**DATA, "placeholder": True})
    batch.commit()
    stored = ref.get()
    assert stored.to_dict() == {**DATA, "placeholder": True}
    batch = db.batch()
    add_set_fields(
        batch,
        db,
        ref.path,
        {"count": 3},
        delete=("placeholder",),
        last_update_time=stored.update_time,
    )
    batch.commit()
    assert ref.get().to_dict() == {**DATA, "count": 3}


def test_preconditions_refuse_a_stale_or_existing_document(
    emulator_env: dict[str, str], project: str
) -> None:
    db = firestore.Client(project=project)
    ref = db.document("codec/pre")
    ref.set({"count": 1})
    stale = ref.get().update_time
    ref.set({"count": 2})
    batch = db.batch()
    add_set_fields(batch, db, ref.path, {"count": 3}, last_update_time=stale)
    with pytest.raises(gexc.FailedPrecondition):
        batch.commit()
    batch = db.batch()
    add_set_fields(batch, db, ref.path, {"count": 3})  # create: must not exist
    with pytest.raises((gexc.AlreadyExists, gexc.Conflict)):
        batch.commit()
    assert ref.get().to_dict() == {"count": 2}


def test_unsupported_values_are_refused() -> None:
    with pytest.raises(TypeError, match="set"):
        encode({1, 2})
