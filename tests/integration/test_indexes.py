"""The collection-group queries of the code, run against the Firestore emulator, each covered
by a collection-group index in firestore.indexes.json.

The emulator serves any query without an index, so running the queries proves they are the
ones the code issues (recorded as they go to Firestore), and the declaration is checked
against what was recorded; production would refuse a collection-group query without one.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from google.cloud import firestore
from google.cloud.firestore_v1 import base_query
from google.cloud.firestore_v1.base_query import FieldFilter
from google.cloud.firestore_v1.types import StructuredQuery

from agenttrader import paths, pulses, snapshot
from console import tenants
from console.status import read_failing
from infra.indexes import REQUIRED_INDEXES, covers
from publisher.roster import eligible_uids

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
Shape = tuple[str, frozenset[str]]


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[StructuredQuery]:
    """Every structured query the client builds (plain and inside aggregations)."""
    seen: list[StructuredQuery] = []
    original = base_query.BaseQuery._to_protobuf

    def spy(self: base_query.BaseQuery) -> StructuredQuery:
        query = original(self)
        seen.append(query)
        return query

    monkeypatch.setattr(base_query.BaseQuery, "_to_protobuf", spy)
    return seen


def shape(query: StructuredQuery) -> Shape | None:
    """(collection group, equality-filtered fields) of a collection-group query, else None."""
    raw = StructuredQuery.pb(query)
    if len(raw.from_) != 1 or not raw.from_[0].all_descendants:
        return None
    kind = raw.where.WhichOneof("filter_type")
    if kind == "field_filter":
        filters = [raw.where.field_filter]
    elif kind == "composite_filter":
        filters = [f.field_filter for f in raw.where.composite_filter.filters]
    else:
        raise AssertionError(f"unexpected filter {kind!r}: extend infra.indexes.covers")
    # `in` is served like equality (one index range per value).
    equal = {StructuredQuery.FieldFilter.Operator.EQUAL, StructuredQuery.FieldFilter.Operator.IN}
    for f in filters:
        assert f.op in equal, "infra.indexes.covers models equality filters only: extend it"
    # Every index ends with the document path ascending: ordering by it alone needs nothing more.
    by_path = [o.field.field_path == "__name__" and o.direction != 2 for o in raw.order_by]
    assert all(by_path), "ordered collection-group query: extend infra.indexes.covers"
    return raw.from_[0].collection_id, frozenset(f.field.field_path for f in filters)


def seed(db: firestore.Client) -> None:
    now = firestore.SERVER_TIMESTAMP
    for uid, enabled, outcome in (("u-on", True, "success"), ("u-off", False, "error")):
        db.document(paths.alpaca_config_doc(uid)).set({"configured": True, "createdAt": now})
        db.document(paths.trading_status_doc(uid)).set({"enabled": enabled, "createdAt": now})
        db.document(paths.sync_state_doc(uid)).set({"pulse_id": "p1", "outcome": outcome})
        db.document(paths.snapshot_doc(uid)).set(
            {"pulseId": "p1", "syncOutcome": outcome, "syncedAt": now}
        )
    db.document(paths.last_sync_error_doc("u-off")).set(
        {"error": "401", "error_class": "InvalidKeys", "timestamp": now, "final": True}
    )


def test_code_queries_are_covered_by_declared_collection_group_indexes(
    emulator_env: dict[str, str], project: str, recorded: list[StructuredQuery]
) -> None:
    db = firestore.Client(project=project)
    seed(db)
    recorded.clear()

    # publisher.tick: configured and enabled users.
    assert eligible_uids(db) == ["u-on"]
    # agenttrader.pulses: outcome counts of one pulse (count aggregations: successes on the
    # snapshots, errors and skips on status/sync).
    counts = pulses.count_outcomes(db, "p1")
    assert counts == {
        snapshot.Outcome.SUCCESS: 1,
        snapshot.Outcome.ERROR: 1,
        snapshot.Outcome.SKIPPED: 0,
    }
    # agenttrader status (the operator CLI, against production too): failing tenants.
    failing, _capped = read_failing(db)
    assert [t.uid for t in failing] == ["u-off"]
    # The admin console's tenant filters (one page each, by document path).
    pages = {f: tenants.list_tenants(db, f) for f in tenants.StateFilter}
    assert [t.uid for t in pages[tenants.StateFilter.FAILING].tenants] == ["u-off"]
    assert [t.uid for t in pages[tenants.StateFilter.KILL_SWITCH_OFF].tenants] == ["u-off"]
    assert [t.uid for t in pages[tenants.StateFilter.HEALTHY].tenants] == ["u-on"]
    assert pages[tenants.StateFilter.NOT_CONFIGURED].tenants == ()
    # benchmarks/pipeline.py: the snapshots one pulse wrote.
    snapshots = list(
        db.collection_group("data").where(filter=FieldFilter("pulseId", "==", "p1")).stream()
    )
    assert len(snapshots) == 2

    shapes = {s for s in map(shape, recorded) if s is not None}
    declared = {(i.collection_group, frozenset(i.fields)) for i in REQUIRED_INDEXES}
    assert shapes == declared
    spec = json.loads((ROOT / "firestore.indexes.json").read_text())
    for group, fields in sorted(shapes, key=str):
        assert covers(spec, group, sorted(fields)), (
            f"no COLLECTION_GROUP index in firestore.indexes.json serves "
            f"{group} where {' and '.join(sorted(fields))}"
        )


def test_the_roster_never_queries_its_shards_so_their_maps_need_no_index(
    emulator_env: dict[str, str], project: str, recorded: list[StructuredQuery]
) -> None:
    """firestore.indexes.json exempts the shard maps from indexing: nothing may query them.
    The roster's every operation runs here; none may issue a query on its collection."""
    from publisher import roster
    from tests.pipeline_fixtures import seed_user

    db = firestore.Client(project=project)
    for uid in ("q1", "q2"):
        seed_user(db, uid)
    recorded.clear()
    roster.rebuild(db)
    roster.refresh(db, "q1")
    loaded = roster.load(db)
    roster.maintain(db, loaded)
    group = paths.ROSTER_COLLECTION.rsplit("/", 1)[-1]
    queried = {
        source.collection_id for query in recorded for source in StructuredQuery.pb(query).from_
    }
    assert queried and group not in queried
    spec = json.loads((ROOT / "firestore.indexes.json").read_text())
    assert {o["fieldPath"] for o in spec["fieldOverrides"] if o["collectionGroup"] == group} == {
        "members",
        "keys",
    }
