"""Which tenant suffers what, and the injectors that make it happen.

A :class:`FaultPlan` is drawn from a seed, so a failing run can be repeated exactly. Alpaca
faults are simulator scenarios set before the tick (flaky 503s, 429s that clear, persistent 5xx,
hangs longer than the worker's timeout); the others act on the running pipeline: keys that break
and kill-switches that flip around the tick, copies of the pulse's messages, replays racing the
scheduled syncs, the publisher and ``sync_user`` processes killed (``SIGKILL`` to their process
group) and restarted on the same port, and the emulators paused (``SIGSTOP`` then ``SIGCONT``
to the process group listening on their port).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import math
import os
import random
import signal
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agenttrader import paths
from agenttrader.messages import Reason, SyncRequest
from devtools.simulator import Scenario

if TYPE_CHECKING:
    from google.cloud import firestore

    from devtools.localstack.functions import ServedFunction
    from devtools.simulator import AlpacaSimulator

PUBLISH_TIMEOUT_SECONDS = 30.0
HANG_SECONDS = 2.0
"""A ``timeout`` tenant's Alpaca hangs this long: longer than ``ALPACA_TIMEOUT_SECONDS=1``."""


class Fault(StrEnum):
    """What a tenant's Alpaca account does during the pulse."""

    NONE = "none"
    FLAKY = "flaky_503"
    """503 on a share of requests (``failure_rate``); retries usually get through."""
    RATE_LIMITED = "429_then_ok"
    """429 on the first 1-3 requests, then healthy: retries get through."""
    SERVER_ERROR = "5xx"
    """5xx on every request until healed: exhausts its retries, dead-lettered by Pub/Sub."""
    TIMEOUT = "timeout"
    """Hangs longer than the worker's timeout until healed: dead-lettered by Pub/Sub."""
    BAD_KEYS = "keys_break_mid_run"
    """Healthy at the tick, 401 right after it: a permanent failure the worker dead-letters."""


TRANSIENT = frozenset(
    {Fault.NONE, Fault.FLAKY, Fault.RATE_LIMITED, Fault.SERVER_ERROR, Fault.TIMEOUT}
)
"""Faults that end (healed before the replay); a healthy tenant's dead letter comes from the
killed worker. Their dead letters are replayed; those of broken keys are not."""


@dataclass(frozen=True)
class FaultRates:
    """Shares of the tenants (each at least one tenant when the share is not zero)."""

    flaky: float = 0.10
    flaky_failure_rate: float = 0.35
    rate_limited: float = 0.10
    server_error: float = 0.03
    timeout: float = 0.03
    bad_keys: float = 0.02
    kill_switch_flips: float = 0.04
    """Half flipped just before the tick (through their documents, as a client would), half
    once the pulse is published (racing the workers)."""
    duplicates: float = 0.05
    """Share of the pulse's messages published a second time, same body."""
    racing_replays: float = 0.05
    not_configured: float = 0.02
    disabled: float = 0.02
    """Kill-switch off from the start: skipped by the publisher."""


@dataclass(frozen=True)
class FaultPlan:
    """Every tenant's fate in one run."""

    seed: int
    faults: dict[str, Fault]
    """Alpaca fault of every configured tenant, by uid."""
    scenarios: dict[str, Scenario]
    """Initial simulator scenario, by uid."""
    not_configured: tuple[str, ...]
    disabled: tuple[str, ...]
    flip_early: tuple[str, ...]
    flip_late: tuple[str, ...]
    racing_replays: tuple[str, ...]
    duplicate_share: float

    @property
    def eligible_at_tick(self) -> frozenset[str]:
        """Configured, trading enabled, not flipped before the tick."""
        return frozenset(self.faults) - set(self.disabled) - set(self.flip_early)

    def with_fault(self, *faults: Fault) -> list[str]:
        return sorted(uid for uid, fault in self.faults.items() if fault in faults)


def count_of(share: float, total: int) -> int:
    return 0 if share <= 0 else max(1, math.floor(share * total))


def plan_faults(uids: Sequence[str], rates: FaultRates, seed: int) -> FaultPlan:
    """Draw disjoint Alpaca faults over ``uids``; flips and racing replays are drawn among the
    tenants eligible at the tick, whatever their Alpaca fault."""
    rng = random.Random(seed)
    pool = list(uids)
    rng.shuffle(pool)

    def take(share: float) -> list[str]:
        taken = pool[: count_of(share, len(uids))]
        del pool[: len(taken)]
        return taken

    not_configured = take(rates.not_configured)
    disabled = take(rates.disabled)
    faults: dict[str, Fault] = {}
    scenarios: dict[str, Scenario] = {}
    for uid in take(rates.flaky):
        faults[uid] = Fault.FLAKY
        scenarios[uid] = Scenario(kind="flaky", failure_rate=rates.flaky_failure_rate)
    for uid in take(rates.rate_limited):
        faults[uid] = Fault.RATE_LIMITED
        scenarios[uid] = Scenario(
            kind="fail_then_ok", fail_count=rng.randint(1, 3), fail_status=429
        )
    for uid in take(rates.server_error):
        faults[uid] = Fault.SERVER_ERROR
        scenarios[uid] = Scenario(kind="server_error", status=rng.choice((500, 502, 503, 504)))
    for uid in take(rates.timeout):
        faults[uid] = Fault.TIMEOUT
        scenarios[uid] = Scenario(kind="timeout", hang_seconds=HANG_SECONDS)
    for uid in take(rates.bad_keys):
        faults[uid] = Fault.BAD_KEYS
    for uid in [*pool, *disabled]:
        faults[uid] = Fault.NONE
    for uid in faults:
        scenarios.setdefault(uid, Scenario())
    eligible = sorted(set(uids) - set(not_configured) - set(disabled))
    flip_count = (
        max(2, count_of(rates.kill_switch_flips, len(uids))) if rates.kill_switch_flips else 0
    )
    flips = rng.sample(eligible, min(flip_count, len(eligible)))
    replays = rng.sample(eligible, min(count_of(rates.racing_replays, len(uids)), len(eligible)))
    half = (len(flips) + 1) // 2
    return FaultPlan(
        seed=seed,
        faults=faults,
        scenarios=scenarios,
        not_configured=tuple(sorted(not_configured)),
        disabled=tuple(sorted(disabled)),
        flip_early=tuple(sorted(flips[:half])),
        flip_late=tuple(sorted(flips[half:])),
        racing_replays=tuple(sorted(replays)),
        duplicate_share=rates.duplicates,
    )


# --- injectors ------------------------------------------------------------------------------


def flip_kill_switches(db: firestore.Client, uids: Iterable[str]) -> None:
    """Turn trading off, as the tenant's client would (``status/trading.enabled=false``)."""
    batch = db.batch()
    for uid in uids:
        batch.update(db.document(paths.trading_status_doc(uid)), {"enabled": False})
    batch.commit()


def set_scenarios(sim: AlpacaSimulator, key_ids: Iterable[str], scenario: Scenario) -> None:
    for key_id in key_ids:
        sim.set_scenario(key_id, scenario)


def _published(futures: Sequence[concurrent.futures.Future[str]]) -> list[str]:
    return [str(f.result(timeout=PUBLISH_TIMEOUT_SECONDS)) for f in futures]


def publish_copies(
    publisher: Any, topic: str, messages: Iterable[tuple[bytes, dict[str, str]]]
) -> list[str]:
    """Publish each ``(data, attributes)`` again, byte for byte: a duplicated delivery as
    at-least-once Pub/Sub (or a publisher retrying) produces it. Returns the new message ids."""
    return _published([publisher.publish(topic, data, **attrs) for data, attrs in messages])


def publish_racing_replays(
    publisher: Any, topic: str, uids: Iterable[str], now: datetime
) -> list[str]:
    """Operator replays of scheduled syncs, published while the pulse runs."""
    requests = [
        SyncRequest(uid, Reason.REPLAY, now, original_reason=Reason.SCHEDULE, replay_count=1)
        for uid in uids
    ]
    return _published([publisher.publish(topic, r.to_bytes(), **r.attributes()) for r in requests])


@dataclass(frozen=True)
class Kill:
    """One kill -9 of a function's process and its restart on the same port."""

    target: str
    killed_pid: int
    restarted_pid: int
    down_seconds: float
    """From the kill until the new process answered."""


def kill_and_restart(served: ServedFunction, pause: float) -> Kill:
    """``SIGKILL`` the process group serving ``served`` (the gunicorn master and its worker,
    mid-request), wait ``pause`` seconds, start it again on the same port. Call it from the
    main thread (see :attr:`ServedFunction.restart`)."""
    process, restart = served.process, served.restart
    if process is None or restart is None:
        raise RuntimeError(f"{served.target} is not served by a process of its own")
    started = time.monotonic()
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
    time.sleep(pause)
    restart()
    assert served.process is not None
    return Kill(served.target, process.pid, served.process.pid, time.monotonic() - started)


# --- processes paused: an emulator that stops answering for a while --------------------------


def listener_pid(port: int) -> int:
    """The process listening on ``port`` on this machine (Linux: ``/proc``)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                local, state, inode = fields[1], fields[3], fields[9]
                if state == _LISTEN and int(local.rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{inode}]")
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (proc / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in inodes:
                        return int(proc.name)
    raise LookupError(f"no process of this user listens on port {port}")


_LISTEN = "0A"
"""``st`` of a listening socket in ``/proc/net/tcp``."""


@dataclass(frozen=True)
class Pause:
    """One process group stopped (``SIGSTOP``) and continued (``SIGCONT``)."""

    target: str
    pgid: int
    seconds: float
    """How long it was stopped."""


def pause_group_of(host_port: str, target: str, seconds: float) -> Pause:
    """``SIGSTOP`` the process group of whatever listens on ``host_port`` (an emulator: every
    process of it, gcloud's wrapper included), wait ``seconds``, ``SIGCONT`` it. Never this
    process's own group."""
    pgid = os.getpgid(listener_pid(int(host_port.rsplit(":", 1)[1])))
    if pgid == os.getpgrp():
        raise RuntimeError(f"{target} shares this process's group: not pausing it")
    started = time.monotonic()
    os.killpg(pgid, signal.SIGSTOP)
    try:
        time.sleep(seconds)
    finally:
        os.killpg(pgid, signal.SIGCONT)
    return Pause(target, pgid, time.monotonic() - started)


class PauseInBackground:
    """:func:`pause_group_of` on a thread of its own, started once by :meth:`start` (safe to
    call from a callback, any number of times); :meth:`result` waits for the end."""

    def __init__(self, host_port: str, target: str, seconds: float) -> None:
        self._args = (host_port, target, seconds)
        self._started = threading.Event()
        self._done: concurrent.futures.Future[Pause] = concurrent.futures.Future()

    def start(self) -> None:
        if self._started.is_set():
            return
        self._started.set()
        threading.Thread(target=self._run, name="chaos-pause", daemon=True).start()

    def _run(self) -> None:
        try:
            self._done.set_result(pause_group_of(*self._args))
        except BaseException as err:  # noqa: BLE001 - handed to whoever waits for the result
            self._done.set_exception(err)

    @property
    def started(self) -> bool:
        return self._started.is_set()

    def result(self, timeout: float) -> Pause:
        return self._done.result(timeout=timeout)
