"""What the function adapters share: logging configured once, the instance's dependencies
and long-lived collaborators, built on first use (never at import)."""

from __future__ import annotations

import logging
import threading
from typing import Any

from agenttrader import logs
from agenttrader.deps import Deps, get_deps
from agenttrader.pulses import RollupScheduler
from sync_worker.worker import SyncWorker

_lock = threading.Lock()
_worker: tuple[Deps, SyncWorker] | None = None


def deps() -> Deps:
    current = get_deps()
    logs.configure(level=logging.getLevelName(current.settings.log_level))
    return current


def sync_worker() -> SyncWorker:
    """The instance's worker, rebuilt only if the dependency container was replaced."""
    global _worker  # noqa: PLW0603 - one worker per instance, by design
    current = deps()
    with _lock:
        if _worker is None or _worker[0] is not current:
            rollups = RollupScheduler(
                lambda: current.firestore, current.settings.pulse_rollup_delay_seconds
            )
            _worker = (current, SyncWorker(current, rollups))
        return _worker[1]


def raw_push_body() -> Any:
    """The JSON body of the push request being served (``None`` outside a request).

    functions-framework drops ``deliveryAttempt`` when it turns a push into a CloudEvent.
    """
    import flask

    if not flask.has_request_context():
        return None
    return flask.request.get_json(silent=True)
