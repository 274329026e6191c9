"""``generate_trading_signal`` (Firebase callable protocol): a signal from the caller's snapshot.

The entry point validates the call and wires the instance's collaborators (Firestore, the provider
chosen for this deployment, the daily quota) into :class:`SignalService`.
"""

from __future__ import annotations

from typing import Any

from agenttrader import runtime
from agenttrader.callable import CallContext, https_callable
from signal_worker.providers import provider_for
from signal_worker.quota import DailyQuota
from signal_worker.request import SignalRequest
from signal_worker.service import SignalService


@https_callable(tenant=True)
def generate_trading_signal(ctx: CallContext, data: Any) -> dict[str, Any]:
    """``{marketConditions?}`` → ``{id, response, snapshotPath}``."""
    request = SignalRequest.from_data(data)
    deps = runtime.deps()
    quota = DailyQuota(deps.firestore, deps.settings.signal_daily_quota)
    service = SignalService(deps.firestore, provider_for(deps.settings), quota)
    return service.generate(ctx.uid, request)
