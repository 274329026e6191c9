"""One pulse through the whole local stack: ticker → sync-tick (emulator push) →
publish_user_syncs → user-sync (push bridge) → sync_user → Alpaca simulator → Firestore,
with dead letters on the real emulator."""

from __future__ import annotations

import pytest
from google.cloud import firestore

from agenttrader import paths, topology
from devtools.localstack.stack import LocalStack
from devtools.simulator import AlpacaSimulator, Scenario
from tests.pipeline_fixtures import doc, drain_dead_letters, seed_user, sim_tenant, wait_for

pytestmark = pytest.mark.integration


def test_one_pulse_with_mixed_tenants(
    stack_env: dict[str, str], project: str, simulator: AlpacaSimulator
) -> None:
    db = firestore.Client(project=project)
    healthy = [sim_tenant(simulator, db, f"healthy-{i}", Scenario(kind="normal")) for i in range(3)]
    slow = sim_tenant(simulator, db, "slow", Scenario(kind="latency", latency_ms=300))
    bad_keys = sim_tenant(simulator, db, "bad-keys", Scenario(kind="bad_keys"))
    forbidden = sim_tenant(simulator, db, "forbidden", Scenario(kind="forbidden"))
    limited = sim_tenant(
        simulator,
        db,
        "limited-then-ok",
        Scenario(kind="fail_then_ok", fail_count=1, fail_status=429),
    )
    broken = sim_tenant(simulator, db, "server-error", Scenario(kind="server_error", status=503))
    hanging = sim_tenant(simulator, db, "timeout", Scenario(kind="timeout", hang_seconds=5))
    disabled = sim_tenant(simulator, db, "kill-switch-off", Scenario(kind="normal"), enabled=False)
    seed_user(db, "keys-missing")
    seed_user(
        db,
        "bad-base-url",
        keys={
            "key_id": "PKAAAAAAAAAAAAAAAAAA",
            "secret_key": "s" * 40,
            "base_url": "https://evil.example",
        },
    )
    seed_user(db, "not-configured", configured=False)

    with LocalStack(project, stack_env, retry_override=topology.RetryPolicy(1, 2)) as stack:
        assert stack.ticker is not None
        stack.ticker.tick()
        last_pulse = wait_for(
            lambda: (d := doc(db, paths.LAST_PULSE_DOC)) and d.get("complete") and d,
            timeout=120,
        )

    synced = [*healthy, slow, limited]
    for tenant in synced:
        snapshot = doc(db, paths.snapshot_doc(tenant.uid))
        assert snapshot is not None, tenant.uid
        assert snapshot["pulseId"] == last_pulse["pulse_id"]
        assert snapshot["account"]["account_number"]
        assert isinstance(snapshot["equity"], str) and float(snapshot["equity"]) > 0
        assert isinstance(snapshot["cash"], str) and isinstance(snapshot["buying_power"], str)
        assert snapshot["positions"] and all("symbol" in p for p in snapshot["positions"])
        assert doc(db, paths.last_sync_error_doc(tenant.uid)) is None
    # No tenant's snapshot holds another tenant's account.
    accounts = {doc(db, paths.snapshot_doc(t.uid))["account"]["id"] for t in synced}  # type: ignore[index]
    assert len(accounts) == len(synced)

    expected_errors = {
        bad_keys.uid: "AlpacaAuthError",
        forbidden.uid: "AlpacaAuthError",
        broken.uid: "AlpacaUnavailable",
        hanging.uid: "AlpacaTimeout",
        "keys-missing": "MissingKeys",
        "bad-base-url": "DisallowedBaseUrl",
    }
    for uid, error_class in expected_errors.items():
        error = doc(db, paths.last_sync_error_doc(uid))
        assert error is not None, uid
        assert error["error_class"] == error_class, uid
        assert error["error"] and error["timestamp"]
        assert doc(db, paths.snapshot_doc(uid)) is None, uid
    for uid in (disabled.uid, "not-configured"):
        assert doc(db, paths.snapshot_doc(uid)) is None
        assert doc(db, paths.last_sync_error_doc(uid)) is None

    assert last_pulse["published_count"] == len(synced) + len(expected_errors)
    assert last_pulse["success_count"] == len(synced)
    assert last_pulse["error_count"] == len(expected_errors)
    assert last_pulse["skipped_count"] == 2  # kill-switch off, keys never configured

    letters = drain_dead_letters(project, expect=len(expected_errors))
    by_uid = {m.attributes["uid"]: m for m in letters}
    assert set(by_uid) == set(expected_errors)
    for uid in ("bad-keys", "forbidden", "keys-missing", "bad-base-url"):
        attributes = by_uid[uid].attributes
        assert attributes["source"] == "worker"
        assert attributes["error_class"] == expected_errors[uid]
        assert attributes["reason"] == "schedule"
        assert attributes["error"] and attributes["failed_at"]
    for uid in (broken.uid, hanging.uid):
        # Exhausted retries: Pub/Sub itself forwarded these after the delivery limit.
        attributes = by_uid[uid].attributes
        assert "source" not in attributes
        assert int(attributes["CloudPubSubDeadLetterSourceDeliveryCount"]) >= 5
    blob = repr([(m.data, dict(m.attributes)) for m in letters])
    for tenant in [*synced, bad_keys, forbidden, broken, hanging]:
        assert tenant.key_id not in blob and tenant.secret_key not in blob
