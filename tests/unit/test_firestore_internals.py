"""The private parts of google-cloud-firestore that the roster's read
(``agenttrader/roster_read.py``, ``batch_get``: also the tick's read of the streams' buckets)
uses.

The roster decodes its batched read straight from protobuf through the client's own transport:
``_database_string``, ``_rpc_metadata``, ``_firestore_api.batch_get_documents`` and the
responses' ``_pb``. None of them is public API, so the library is pinned exactly in
pyproject.toml; these tests fail when a new version moves any of them. No network: the client
points at an emulator address and sends nothing.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from google.cloud import firestore
from google.cloud.firestore_v1.types import (
    BatchGetDocumentsRequest,
    BatchGetDocumentsResponse,
    Document,
    MapValue,
    Value,
)

from agenttrader import roster_read

PROJECT = "demo-internals"
DATABASE = f"projects/{PROJECT}/databases/(default)"


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> firestore.Client:
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", "127.0.0.1:9")  # never contacted
    return firestore.Client(project=PROJECT)


def test_the_client_still_has_the_attributes_the_roster_reads(client: firestore.Client) -> None:
    internals: Any = client
    assert internals._database_string == DATABASE
    assert ("google-cloud-resource-prefix", DATABASE) in list(internals._rpc_metadata)
    batch_get = internals._firestore_api.batch_get_documents
    assert {"request", "metadata"} <= inspect.signature(batch_get).parameters.keys()


def _ints(**entries: int) -> Value:
    return Value(map_value=MapValue(fields={k: Value(integer_value=v) for k, v in entries.items()}))


class _FakeApi:
    """``batch_get_documents`` answering with the pinned library's own response types."""

    def __init__(self, responses: list[BatchGetDocumentsResponse]) -> None:
        self.responses = responses
        self.calls: list[tuple[BatchGetDocumentsRequest, Any]] = []

    def batch_get_documents(
        self, *, request: BatchGetDocumentsRequest, metadata: Any
    ) -> Iterator[BatchGetDocumentsResponse]:
        self.calls.append((request, metadata))
        return iter(self.responses)


def _view(client: firestore.Client, api: _FakeApi) -> Any:
    """The client's attributes the roster reads, with ``api`` as its transport."""
    internals: Any = client
    return SimpleNamespace(
        _database_string=internals._database_string,
        _rpc_metadata=internals._rpc_metadata,
        _firestore_api=api,
    )


def test_get_maps_decodes_the_pinned_librarys_responses(client: firestore.Client) -> None:
    prefix = f"{DATABASE}/documents/"
    shard = Document(
        name=prefix + "ops/roster/shards/0",
        fields={"members": _ints(u1=7, u2=4), "keys": _ints(u1=12), "other": Value(null_value=0)},
    )
    api = _FakeApi(
        [
            BatchGetDocumentsResponse(found=shard),
            BatchGetDocumentsResponse(missing=prefix + "ops/roster"),
        ]
    )
    internals: Any = client
    view = _view(client, api)

    at = datetime(2026, 11, 27, 14, 30, tzinfo=UTC)
    found = roster_read.get_maps(view, ["ops/roster", "ops/roster/shards/0"], at)

    assert found == {
        "ops/roster/shards/0": {"members": {"u1": 7, "u2": 4}, "keys": {"u1": 12}},
        "ops/roster": None,
    }
    ((request, metadata),) = api.calls
    assert request.database == DATABASE
    assert list(request.documents) == [prefix + "ops/roster", prefix + "ops/roster/shards/0"]
    assert request.read_time == at  # one snapshot, however many requests
    assert metadata is internals._rpc_metadata


def test_get_maps_reads_a_large_roster_in_chunks_at_one_read_time(
    client: firestore.Client,
) -> None:
    internals: Any = client
    api = _FakeApi([])
    view = _view(client, api)
    names = [f"ops/roster/shards/{k}" for k in range(2 * roster_read.READ_CHUNK + 1)]
    at = datetime(2026, 11, 27, 14, 30, tzinfo=UTC)
    roster_read.get_maps(view, names, at)
    sizes = sorted(len(request.documents) for request, _ in api.calls)
    assert sizes == [1, roster_read.READ_CHUNK, roster_read.READ_CHUNK]
    asked = sorted(d for request, _ in api.calls for d in request.documents)
    assert asked == sorted(f"{internals._database_string}/documents/{n}" for n in names)
    assert {request.read_time for request, _ in api.calls} == {at}


def test_get_shards_keeps_every_entry_and_the_keys_of_eligible_ones(
    client: firestore.Client,
) -> None:
    prefix = f"{DATABASE}/documents/"
    shard = Document(
        name=prefix + "ops/roster/shards/0",
        fields={"members": _ints(u1=7, u2=4, u3=6), "keys": _ints(u1=12, u2=13, u3=14)},
    )
    api = _FakeApi(
        [
            BatchGetDocumentsResponse(found=shard),
            BatchGetDocumentsResponse(missing=prefix + "ops/roster/shards/1"),
        ]
    )
    view = _view(client, api)
    # 7 = eligible, 4 = gone, 6 = a member not eligible: only u1's keys version is kept.
    assert roster_read.get_shards(view, 2, None) == [
        ({"u1": 7, "u2": 4, "u3": 6}, {"u1": 12}),
        ({}, {}),
    ]
