"""The fault-injection suite (``make chaos`` runs it at 300 tenants), small: 40 tenants through
the local stack with ``sync_user`` as its own process, every fault kind injected at least once,
every invariant must hold."""

from __future__ import annotations

from pathlib import Path

import pytest

from agenttrader.simulator import AlpacaSimulator
from chaos.faults import Fault
from chaos.run import ChaosConfig, run_chaos

pytestmark = pytest.mark.integration


@pytest.mark.timeout(180)
def test_chaos_pulse_keeps_every_invariant(
    stack_env: dict[str, str], project: str, simulator: AlpacaSimulator, tmp_path: Path
) -> None:
    result = run_chaos(stack_env, project, simulator, ChaosConfig(tenants=40, log_dir=tmp_path))
    report = result.report()
    print(report)

    plan, evidence = result.plan, result.evidence
    for fault in Fault:
        assert plan.with_fault(fault), f"no tenant with fault {fault}"
    assert plan.flip_early and plan.flip_late and plan.racing_replays
    kinds = evidence.published_by_kind()
    assert kinds["duplicate"] and kinds["racing_replay"], report
    assert result.kill is not None and result.kill.restarted_pid != result.kill.killed_pid
    assert evidence.dead_letters, report
    assert result.ok, report
