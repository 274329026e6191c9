"""``agenttrader status`` against the real emulators: numbers and alerts from seeded pulse
records and failures, and the worker's ``consecutive_failures`` counter that feeds the
consecutive-failures alert."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.cloud import firestore

from agenttrader import paths, topology
from agenttrader.deps import Deps
from agenttrader.events import PubsubDelivery
from agenttrader.messages import Reason, SyncRequest
from devtools.simulator import AlpacaSimulator, Scenario
from operations import cli
from sync_worker.worker import Result, SyncWorker
from tests.firestore_ops import counted
from tests.pipeline_fixtures import doc, seed_user, sim_tenant

pytestmark = pytest.mark.integration


@pytest.fixture
def db(pipeline_deps: Deps) -> firestore.Client:
    return pipeline_deps.firestore


def status_json(capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, dict[str, Any]]:
    code = cli.main(["status", "--json", *extra])
    status: dict[str, Any] = json.loads(capsys.readouterr().out)
    return code, status


def test_status_after_a_pulse_with_mixed_outcomes(
    pipeline_deps: Deps, db: firestore.Client, capsys: pytest.CaptureFixture[str]
) -> None:
    now = datetime.now(UTC)
    newest = now - timedelta(minutes=1)
    history = {
        "p3": {
            "timestamp": newest,
            "completed_at": newest + timedelta(seconds=50),
            "complete": True,
            "published_count": 10,
            "success_count": 7,
            "error_count": 3,
            "skipped_count": 2,
        },
        "p2": {
            "timestamp": now - timedelta(minutes=2),
            "completed_at": now - timedelta(minutes=2) + timedelta(seconds=4),
            "complete": True,
            "published_count": 10,
            "success_count": 10,
            "error_count": 0,
            "skipped_count": 2,
        },
        "p1": {"timestamp": now - timedelta(minutes=3), "complete": True, "publish_seconds": 0.5},
        "p0": {"timestamp": now - timedelta(minutes=9), "complete": True},
    }
    for pulse_id, record in history.items():
        db.document(paths.pulse_doc(pulse_id)).set({"pulse_id": pulse_id, **record})
    failed_at = now - timedelta(seconds=30)
    db.document(paths.last_sync_error_doc("alice")).set(
        {"error": "Alpaca refused the keys (401)", "timestamp": failed_at,
         "error_class": "AlpacaAuthError", "permanent": True, "final": True}
    )  # fmt: skip
    db.document(paths.sync_state_doc("alice")).set(
        {"outcome": "error", "pulse_id": "p3", "consecutive_failures": 4}
    )
    db.document(paths.last_sync_error_doc("bob")).set(
        {"error": "Alpaca answered 503", "timestamp": failed_at,
         "error_class": "AlpacaUnavailable", "permanent": False, "final": False}
    )  # fmt: skip
    # Other status documents are not failures.
    seed_user(db, "carol")
    db.document(paths.sync_state_doc("carol")).set({"outcome": "success", "pulse_id": "p3"})
    for uid in ("alice", "alice"):
        pipeline_deps.publisher.publish(
            pipeline_deps.topic_path(topology.USER_SYNC_DEAD_LETTER),
            SyncRequest.now(uid, Reason.SCHEDULE).to_bytes(),
            uid=uid,
            source="worker",
            error_class="AlpacaAuthError",
        ).result(timeout=30)

    code, status = status_json(capsys, "--pulses", "3")
    assert code == 0
    assert [p["pulse_id"] for p in status["pulses"]] == ["p3", "p2", "p1"]
    p3, p2, p1 = status["pulses"]
    assert (p3["published"], p3["success"], p3["error"], p3["skipped"]) == (10, 7, 3, 2)
    assert p3["duration_seconds"] == pytest.approx(50.0) and p3["slow"]
    assert p3["error_rate"] == pytest.approx(0.3)
    assert p2["duration_seconds"] == pytest.approx(4.0) and not p2["slow"]
    assert p1["duration_seconds"] == 0.5
    failing = {t["uid"]: t for t in status["failing_tenants"]}
    assert set(failing) == {"alice", "bob"}
    assert failing["alice"]["error_class"] == "AlpacaAuthError"
    assert failing["alice"]["consecutive_failures"] == 4 and failing["alice"]["final"]
    assert failing["alice"]["last_failed_at"].startswith(failed_at.strftime("%Y-%m-%dT%H:%M:%S"))
    assert failing["bob"]["consecutive_failures"] is None and not failing["bob"]["final"]
    assert status["dead_letters"]["held"] == 2
    assert {a["kind"] for a in status["alerts"]} == {
        "error_rate",
        "slow_pulse",
        "consecutive_failures",
    }

    assert cli.main(["status", "--check", "--no-dead-letters"]) == 2
    text = capsys.readouterr().out
    assert "! error_rate: pulse p3: 30% of syncs failed" in text
    assert "alice" in text and "retrying" in text and "not measured" in text


def test_worker_counts_consecutive_failures(
    pipeline_deps: Deps,
    db: firestore.Client,
    simulator: AlpacaSimulator,
    capsys: pytest.CaptureFixture[str],
) -> None:
    worker = SyncWorker(pipeline_deps)
    tenant = sim_tenant(simulator, db, "alice", Scenario(kind="bad_keys"))

    def sync(reason: Reason = Reason.SCHEDULE) -> Result:
        request = SyncRequest.now("alice", reason)
        return worker.handle(
            PubsubDelivery(
                message_id=f"m-{request.requested_at.timestamp()}",
                data=request.to_bytes(),
                attributes=request.attributes(),
                publish_time=request.requested_at,
                delivery_attempt=1,
            )
        )

    def streak() -> object:
        return (doc(db, paths.sync_state_doc("alice")) or {}).get("consecutive_failures")

    for expected in (1, 2, 3):
        assert sync() is Result.DEAD_LETTERED
        assert streak() == expected
    code, status = status_json(capsys, "--check", "--no-dead-letters")
    assert code == 2
    (alice,) = status["failing_tenants"]
    assert alice["uid"] == "alice" and alice["consecutive_failures"] == 3
    assert [a["kind"] for a in status["alerts"]] == ["consecutive_failures"]

    simulator.set_scenario(tenant.key_id, Scenario(kind="normal"))
    assert sync(Reason.MANUAL) is Result.SYNCED
    assert streak() == 0
    code, status = status_json(capsys, "--check", "--no-dead-letters")
    assert code == 0 and status["failing_tenants"] == [] and status["alerts"] == []

    # A healthy tenant's sync writes its snapshot alone; the reset and the empty list hold.
    with counted() as healthy:
        assert sync() is Result.SYNCED
    assert (healthy.writes, healthy.deletes) == (1, 0)
    code, status = status_json(capsys, "--check", "--no-dead-letters")
    assert code == 0 and status["failing_tenants"] == []
    simulator.set_scenario(tenant.key_id, Scenario(kind="bad_keys"))
    assert sync() is Result.DEAD_LETTERED
    assert streak() == 1
    code, status = status_json(capsys, "--no-dead-letters")
    (alice,) = status["failing_tenants"]
    assert (alice["uid"], alice["error_class"], alice["consecutive_failures"]) == (
        "alice",
        "AlpacaAuthError",
        1,
    )
    assert alice["final"] and alice["last_failed_at"]
