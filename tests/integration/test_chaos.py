"""The fault-injection suite (``make chaos`` runs it at 300 tenants), small: 40 tenants through
the local stack with the publisher and ``sync_user`` as processes of their own, every fault
kind injected at least once (the emulators paused 5 s instead of 20, to keep it quick), every
invariant must hold."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agenttrader.messages import Reason, SyncRequest
from chaos.faults import Fault
from chaos.invariants import Evidence, Message, TenantState, check
from chaos.run import ChaosConfig, run_chaos
from devtools.simulator import AlpacaSimulator

pytestmark = pytest.mark.integration


@pytest.mark.timeout(180)
def test_chaos_pulse_keeps_every_invariant(
    stack_env: dict[str, str], project: str, simulator: AlpacaSimulator, tmp_path: Path
) -> None:
    config = ChaosConfig(tenants=40, log_dir=tmp_path, firestore_pause=5.0, pubsub_pause=5.0)
    result = run_chaos(stack_env, project, simulator, config)
    report = result.report()
    print(report)

    plan, evidence = result.plan, result.evidence
    for fault in Fault:
        assert plan.with_fault(fault), f"no tenant with fault {fault}"
    assert plan.flip_early and plan.flip_late and plan.racing_replays
    kinds = evidence.published_by_kind()
    assert kinds["duplicate"] and kinds["racing_replay"], report
    assert result.kill is not None and result.kill.restarted_pid != result.kill.killed_pid
    killed = result.publisher_kill
    assert killed is not None and killed.kill.restarted_pid != killed.kill.killed_pid, report
    assert result.firestore_pause is not None and result.firestore_pause.seconds >= 5.0
    assert result.replay.pause is not None and result.replay.pause.seconds >= 5.0
    assert evidence.dead_letters, report
    assert result.ok, report


def _evidence(*, broken: bool) -> Evidence:
    """Two tenants after a pulse: consistent, or with one fault per invariant."""
    at = datetime(2026, 1, 5, 15, 30, tzinfo=UTC)
    pulse = "20260105T153000Z-1"
    messages = {
        f"m-{uid}": Message(
            f"m-{uid}",
            SyncRequest(uid, Reason.SCHEDULE, at, pulse_id=pulse).to_bytes(),
            {"uid": uid},
            at,
        )
        for uid in ("a", "b")
    }
    shown = {"a": "acct-a", "b": "acct-a" if broken else "acct-b"}
    tenants = {
        uid: TenantState(
            uid=uid,
            account_id=f"acct-{uid}",
            fault=Fault.NONE,
            configured=True,
            enabled=True,
            snapshot={
                "requestedAt": at - timedelta(minutes=1) if broken and uid == "a" else at,
                "account": {"id": shown[uid]},
                "pulseId": pulse,
                "syncOutcome": "success",
                "syncFailing": False,
            },
            last_error=None,
            # Broken: an error beside a success of the same pulse (it would count twice).
            sync_state={
                "pulse_id": pulse,
                "outcome": "error" if broken and uid == "b" else "success",
            },
        )
        for uid in ("a", "b")
    }
    return Evidence(
        pulse_id=pulse,
        pulse_requested_at=at,
        # Broken: a tenant eligible at the tick never got the pulse's message.
        eligible_at_tick=frozenset({"a", "b", "c"} if broken else {"a", "b"}),
        tenants=tenants,
        last_pulse={
            "pulse_id": pulse,
            "success_count": 1 if broken else 2,
            "error_count": 0,
            "skipped_count": 0,
            "published_count": 2,
        },
        published=messages,
        dead_letters={},
        injected={},
        acked=1 if broken else 2,
        nacked=0,
        snapshot_history={"b": [at, at - timedelta(seconds=1), at] if broken else [at]},
    )


def test_every_invariant_can_fail() -> None:
    """The checks are not vacuous: each flags its own kind of damage, and only then."""
    assert all(not found for _name, found in check(_evidence(broken=False)))
    assert all(found for _name, found in check(_evidence(broken=True)))
