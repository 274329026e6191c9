"""The instance's worker: built on first use, rebuilt only when the dependency container was
replaced (tests), so its key cache and rollup scheduler live as long as the instance."""

from __future__ import annotations

import threading

from agenttrader import runtime
from agenttrader.deps import Deps
from agenttrader.pulses import RollupScheduler
from sync_worker.worker import SyncWorker

_lock = threading.Lock()
_worker: tuple[Deps, SyncWorker] | None = None


def worker() -> SyncWorker:
    global _worker  # noqa: PLW0603 - one worker per instance, by design
    current = runtime.deps()
    with _lock:
        if _worker is None or _worker[0] is not current:
            rollups = RollupScheduler(
                lambda: current.firestore, current.settings.pulse_rollup_delay_seconds
            )
            _worker = (current, SyncWorker(current, rollups))
        return _worker[1]
