"""publish_user_syncs against the emulators: eligibility from the documents, one message per
eligible user, a redelivered tick publishes nothing, stale ticks are dropped, pulse records."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from google.cloud import firestore

from agenttrader import paths, pulses, snapshot
from agenttrader.deps import Deps
from agenttrader.events import PubsubDelivery
from publisher import roster
from publisher.roster import eligible_uids
from publisher.tick import fan_out
from tests.pipeline_fixtures import doc, pull, seed_user

pytestmark = pytest.mark.integration


@pytest.fixture
def deps(pipeline_deps: Deps) -> Deps:
    return pipeline_deps


def published(project: str, timeout: float = 5.0) -> list[dict[str, object]]:
    messages = pull(project, "tap", timeout=timeout, until_quiet=True)
    assert all(m.attributes["uid"] == json.loads(m.data)["uid"] for m in messages)
    return [json.loads(m.data) for m in messages]


def tick(message_id: str = "1001", age: timedelta = timedelta(0)) -> PubsubDelivery:
    return PubsubDelivery(message_id, b"{}", {}, datetime.now(UTC) - age)


def seed_population(db: firestore.Client) -> None:
    seed_user(db, "a-eligible")
    db.document(paths.alpaca_config_doc("a-eligible")).update(
        {"configuredAt": datetime.fromtimestamp(1_700_000_000, UTC)}
    )
    seed_user(db, "b-eligible")
    seed_user(db, "c-disabled", enabled=False)
    seed_user(db, "d-unconfigured", configured=False)
    seed_user(db, "e-bare")
    db.document(paths.alpaca_config_doc("e-bare")).delete()
    db.document(paths.trading_status_doc("e-bare")).delete()
    # Documents named like ours elsewhere are not users.
    db.document("other/x/config/alpaca").set({"configured": True})
    db.document("other/x/status/trading").set({"enabled": True})
    # Truthy but not true is not eligible.
    seed_user(db, "f-string-true")
    db.document(paths.trading_status_doc("f-string-true")).update({"enabled": "true"})
    # What the triggers on config/alpaca and status/trading do after those writes.
    for uid in ("a-eligible", "e-bare", "f-string-true"):
        roster.refresh(db, uid)


def test_eligibility_is_read_from_the_documents(deps: Deps) -> None:
    seed_population(deps.firestore)
    assert eligible_uids(deps.firestore) == ["a-eligible", "b-eligible"]
    loaded = roster.read(deps.firestore)
    assert loaded is None  # never built: the first tick builds it from the same scan
    assert list(roster.load(deps.firestore).eligible) == ["a-eligible", "b-eligible"]


def test_one_message_per_eligible_user_and_pulse_recorded(deps: Deps, project: str) -> None:
    db = deps.firestore
    seed_population(db)
    result = fan_out(deps, tick())
    assert result.published == 2 and result.ineligible == 4
    messages = published(project)
    assert sorted(m["uid"] for m in messages) == ["a-eligible", "b-eligible"]
    assert {m["reason"] for m in messages} == {"schedule"}
    assert {m["pulse_id"] for m in messages} == {result.pulse_id}
    # The keys' version rides along (configuredAt of the eligible users), for the worker cache.
    versions = {m["uid"]: m.get("keys_version") for m in messages}
    assert versions == {"a-eligible": "1700000000000000", "b-eligible": None}
    record = doc(db, paths.pulse_doc(result.pulse_id))
    assert record is not None and record["state"] == "published"
    assert record["published_count"] == 2 and record["ineligible_count"] == 4
    last = doc(db, paths.LAST_PULSE_DOC)
    assert last is not None and last["pulse_id"] == result.pulse_id
    assert (last["success_count"], last["error_count"], last["skipped_count"]) == (0, 0, 4)
    assert last["complete"] is False


def test_redelivered_tick_does_not_publish_the_pulse_twice(deps: Deps, project: str) -> None:
    seed_population(deps.firestore)
    redelivered = tick("2002")
    first = fan_out(deps, redelivered)
    again = fan_out(deps, redelivered)
    assert again.pulse_id == first.pulse_id and again.skipped_tick == "duplicate"
    assert len(published(project)) == 2


def test_stale_tick_is_dropped(deps: Deps, project: str) -> None:
    seed_population(deps.firestore)
    result = fan_out(deps, tick("3003", age=timedelta(minutes=10)))
    assert result.skipped_tick == "stale" and result.published == 0
    assert published(project, timeout=2) == []


def test_rollup_counts_outcomes_and_last_pulse_never_goes_back(deps: Deps) -> None:
    db = deps.firestore
    seed_population(db)
    old = fan_out(deps, tick("4004", age=timedelta(minutes=2)))
    new = fan_out(deps, tick("4005"))
    # A success is counted on the snapshot, an error on status/sync (as sync_user writes them).
    db.document(paths.snapshot_doc("a-eligible")).set(
        {snapshot.PULSE_FIELD: new.pulse_id, snapshot.OUTCOME_FIELD: "success"}
    )
    db.document(paths.sync_state_doc("b-eligible")).set(
        {"pulse_id": new.pulse_id, "outcome": "error"}
    )
    totals = pulses.rollup(db, new.pulse_id)
    assert totals is not None and totals.complete
    assert (totals.success, totals.error, totals.skipped) == (1, 1, 4)
    pulses.rollup(db, old.pulse_id)  # an older pulse never replaces the latest
    last = doc(db, paths.LAST_PULSE_DOC)
    assert last is not None and last["pulse_id"] == new.pulse_id and last["complete"] is True
    assert doc(db, paths.pulse_doc(new.pulse_id))["completed_at"]  # type: ignore[index]
