"""The recovery an operator performs, through the whole local stack: a tenant with bad keys is
dead-lettered by a pulse, ``agenttrader status`` shows it, the tenant fixes their keys,
``agenttrader dlq replay --uid`` brings a fresh snapshot."""

from __future__ import annotations

import json
from typing import Any

import pytest
from google.cloud import firestore

from agenttrader import paths, topology
from devtools.localstack.stack import LocalStack
from devtools.simulator import AlpacaSimulator, Scenario
from operations import cli
from tests.pipeline_fixtures import doc, sim_tenant, wait_for

pytestmark = pytest.mark.integration


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    assert cli.main([*argv, "--json"]) == 0
    document: dict[str, Any] = json.loads(capsys.readouterr().out)
    return document


def test_replay_after_the_tenant_fixed_their_keys(
    stack_env: dict[str, str],
    project: str,
    simulator: AlpacaSimulator,
    capsys: pytest.CaptureFixture[str],
) -> None:
    db = firestore.Client(project=project)
    broken = sim_tenant(simulator, db, "bad-keys", Scenario(kind="bad_keys"))
    sim_tenant(simulator, db, "healthy", Scenario(kind="normal"))

    with LocalStack(project, stack_env, retry_override=topology.RetryPolicy(1, 2)) as stack:
        assert stack.ticker is not None
        stack.ticker.tick()
        wait_for(lambda: (d := doc(db, paths.LAST_PULSE_DOC)) and d.get("complete"), timeout=60)

        status = run_json(capsys, "status")
        pulse = status["pulses"][0]
        assert (pulse["published"], pulse["success"], pulse["error"]) == (2, 1, 1)
        (failing,) = status["failing_tenants"]
        assert failing["uid"] == "bad-keys" and failing["error_class"] == "AlpacaAuthError"
        assert failing["consecutive_failures"] == 1
        assert status["dead_letters"]["held"] == 1
        (letter,) = run_json(capsys, "dlq", "list", "--uid", "bad-keys")["dead_letters"]
        assert letter["source"] == "worker" and letter["reason"] == "schedule"
        assert doc(db, paths.snapshot_doc("bad-keys")) is None

        simulator.set_scenario(broken.key_id, Scenario(kind="normal"))
        replay = run_json(capsys, "dlq", "replay", "--uid", "bad-keys")
        assert replay["counts"] == {"replayed": 1}

        def replayed_snapshot() -> dict[str, Any] | None:
            snapshot = doc(db, paths.snapshot_doc("bad-keys"))
            return snapshot if snapshot and snapshot["reason"] == "replay" else None

        snapshot = wait_for(replayed_snapshot, timeout=30)
        assert snapshot is not None and snapshot["account"]["account_number"]
        wait_for(lambda: doc(db, paths.last_sync_error_doc("bad-keys")) is None, timeout=10)
        status = run_json(capsys, "status")
        assert status["failing_tenants"] == [] and status["dead_letters"]["held"] == 0
        outcome = doc(db, paths.sync_state_doc("bad-keys"))
        assert outcome is not None and outcome["outcome"] == "success"
        assert outcome["consecutive_failures"] == 0
