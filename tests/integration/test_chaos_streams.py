"""Stream chaos, small (``make bench`` runs it at 1,000 tenants): 30 tenants over 3 gateway
instances, one SIGKILLed, every stream dropped at once, kill-switches flipping, a trader
filling orders; every invariant must hold."""

from __future__ import annotations

import pytest

from chaos.streams import Timeline, report, run

pytestmark = pytest.mark.integration


@pytest.mark.timeout(300)
def test_stream_chaos_keeps_every_invariant() -> None:
    result = run(tenants=30, instances=3, timeline=Timeline(kill_at=8.0, drop_at=30.0, end_at=36.0))
    text, ok = report(result)
    print(text)
    assert result["killed_held"] > 0, text  # the SIGKILLed instance held tenants
    assert result["flips"] > 0 and result["orders"], text
    assert ok, text
