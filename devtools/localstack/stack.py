"""The local stack in one object: functions, topology, push bridge, Eventarc bridge, ticker.

Used by ``make run`` (functions as ``functions-framework`` processes), the end-to-end tests and
the benchmarks (functions served in this process). The emulators and the Alpaca simulator are
started by the caller and passed in.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from google.cloud.firestore_v1.base_query import FieldFilter

from accounts.key_changes import secret_owner
from agenttrader import topology
from agenttrader.events import FIRESTORE_WRITTEN_WITH_AUTH
from devtools.localstack.eventarc_bridge import EventarcBridge
from devtools.localstack.functions import ServedFunction, serve_in_process, serve_in_thread
from devtools.localstack.push_bridge import PushBridge
from devtools.localstack.ticker import Ticker
from devtools.topology import apply_topology
from publisher import roster
from publisher.kill_switch import trading_owner

FUNCTIONS = (
    "publish_user_syncs",
    "sync_user",
    "on_alpaca_secret_written",
    "on_alpaca_config_written",
    "on_trading_status_written",
)


class LocalStack:
    """Starts in :meth:`start`, stops everything it started in :meth:`stop` (or ``with``)."""

    def __init__(
        self,
        project: str,
        env: dict[str, str],
        *,
        in_process: bool = True,
        tick_seconds: float | None = None,
        push_concurrency: int = 32,
        retry_override: topology.RetryPolicy | None = None,
        log_dir: Path | None = None,
        audit_kill_switch: bool = True,
    ) -> None:
        self.project = project
        self.env = {**env, "GOOGLE_CLOUD_PROJECT": project}
        self._in_process = in_process
        self._tick_seconds = tick_seconds
        self._push_concurrency = push_concurrency
        self._retry_override = retry_override
        self._log_dir = log_dir
        # The emulator serves a listener on the ``status`` group at a cost that grows with every
        # sync's status writes (in production Eventarc filters by path for free): benchmarks
        # of the pipeline leave this bridge out.
        self._audit_kill_switch = audit_kill_switch
        self.functions: dict[str, ServedFunction] = {}
        self.push_bridge: PushBridge | None = None
        self.eventarc_bridge: EventarcBridge | None = None
        self.kill_switch_bridge: EventarcBridge | None = None
        self.config_bridge: EventarcBridge | None = None
        self.ticker: Ticker | None = None
        self._stops: list[Any] = []

    def start(self) -> LocalStack:
        from google.cloud import firestore, pubsub_v1

        # The clients of this process (bridges, in-process functions) read the standard vars.
        os.environ.update(self.env)
        try:
            for target in FUNCTIONS:
                served = (
                    serve_in_thread(target)
                    if self._in_process
                    else serve_in_process(target, self.env, log_dir=self._log_dir)
                )
                self.functions[target] = served
                self._stops.append(served.stop)
            publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
            try:
                apply_topology(
                    self.project,
                    publisher,
                    subscriber,
                    # sync-tick goes through the emulator's own push; user-sync through the
                    # bridge (the emulator pushes at most 2 requests at a time).
                    push_endpoints={"publish_user_syncs": self.url("publish_user_syncs")},
                    retry_override=self._retry_override,
                )
            finally:
                subscriber.close()
            self.push_bridge = PushBridge(
                self.project,
                topology.USER_SYNC_WORKER,
                self.url("sync_user"),
                concurrency=self._push_concurrency,
            ).start()
            self._stops.append(self.push_bridge.stop)
            db = firestore.Client(project=self.project)
            self.eventarc_bridge = self._bridge(
                db, "secrets", "on_alpaca_secret_written", secret_owner
            )
            self.config_bridge = self._bridge(
                db,
                "config",
                "on_alpaca_config_written",
                roster.source_owner,
                narrow=FieldFilter("configured", "in", [True, False]),
            )
            if self._audit_kill_switch:
                self.kill_switch_bridge = self._bridge(
                    db,
                    "status",
                    "on_trading_status_written",
                    trading_owner,
                    event_type=FIRESTORE_WRITTEN_WITH_AUTH,
                    narrow=FieldFilter("enabled", "in", [True, False]),
                )
            self.ticker = Ticker(self.project, self._tick_seconds or 60.0)
            if self._tick_seconds:
                self.ticker.start()
            self._stops.append(self.ticker.stop)
        except BaseException:
            self.stop()
            raise
        return self

    def _bridge(
        self,
        db: Any,
        group: str,
        target: str,
        owner: Callable[[str], str | None],
        **options: Any,
    ) -> EventarcBridge:
        """Eventarc for ``target``: writes in ``group`` whose path ``owner`` accepts."""
        bridge = EventarcBridge(
            self.project,
            db,
            group,
            self.url(target),
            lambda path: owner(path) is not None,
            **options,
        ).start()
        self._stops.append(bridge.stop)
        return bridge

    def url(self, target: str) -> str:
        return self.functions[target].url

    def stop(self) -> None:
        while self._stops:
            stop = self._stops.pop()
            # Stop the rest whatever one of them did.
            with contextlib.suppress(Exception):
                stop()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
