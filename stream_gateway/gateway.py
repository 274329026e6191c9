"""One gateway instance: the buckets it holds, the streams of their eligible tenants, what an
update does.

Loops on one asyncio event loop (Firestore's blocking calls run on a thread pool):

- **renew** (every ``RENEW_SECONDS``, on threads of its own): renew the session;
- **scan** (every ``RENEW_SECONDS`` too, apart: a slow scan never delays a renewal): read the
  sessions; when they changed, when this instance is short of its share, or every
  ``BUCKET_SCAN_SECONDS``, read the buckets and act on :func:`stream_gateway.leases.plan`
  (release, revoke, acquire);
- **watchdog** (every 0.25 s): past the session's validity (``s + LEASE - MARGIN``), abort every
  stream at once — before anyone may take the buckets over;
- **roster**: the listener's signal (debounced) or every ``roster_refresh_seconds``: read who is
  eligible;
- **converge**: on any of those, stop the streams no longer wanted (not eligible any more,
  bucket gone, keys changed) and start the missing ones — a tenant's next connection only once
  its previous one has closed;
- **live**: every ``live_flush_seconds``, write the buckets' ``live`` maps that changed.

An update (:meth:`Gateway.update`) is gathered per tenant for ``order_flush_seconds`` and
written to ``users/{uid}/orders/{order_id}`` (:class:`~stream_gateway.orders.OrderWriter`);
it also asks :class:`~stream_gateway.syncs.Coalescer` whether a ``trade_update`` sync goes out
now or at the end of the tenant's interval. Every listen that succeeds publishes a
``reconcile`` sync. A refusal of the credentials is recorded in ``users/{uid}/status/stream``
and a ``reconcile`` sync lets the worker check the keys with Alpaca and record them as it
records bad keys; a stream held elsewhere is recorded there too (once). An instance that starts
streaming a tenant reads that record once: keys refused before (same keys version) are not
tried again, and a state another instance left is set back to ``live`` once the stream listens.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from google.api_core import exceptions as gexc

from agenttrader import streams
from agenttrader.errors import DependencyUnavailable
from agenttrader.firestore_io import call
from agenttrader.logs import get_logger
from agenttrader.messages import Reason
from agenttrader.paths import stream_status_doc
from agenttrader.streams import bucket_of, session_alive
from stream_gateway import leases
from stream_gateway.backoff import RateLimiter
from stream_gateway.config import GatewayConfig
from stream_gateway.connection import (
    Connect,
    Outcome,
    StillRefused,
    TenantStream,
    websocket_connect,
)
from stream_gateway.credentials import CredentialStore, StreamCredentials
from stream_gateway.leases import BucketLost, BucketView, LeaseStore, SessionLost
from stream_gateway.metrics import Metrics
from stream_gateway.orders import OrderWriter
from stream_gateway.protocol import TradeUpdate
from stream_gateway.syncs import Coalescer, SyncPublisher

if TYPE_CHECKING:
    from agenttrader.deps import Deps

log = get_logger(__name__)

T = TypeVar("T")

WATCHDOG_SECONDS = 0.25
FAILED_TASK_PAUSE_SECONDS = 30.0
"""A stream task that died of an unexpected error is not restarted before this."""
STOP_SECONDS = 5.0
"""How long stopping waits for streams to close and order writes to finish."""
ORDER_WRITE_ATTEMPTS = 3
_FIRESTORE_ERRORS = (gexc.GoogleAPICallError, DependencyUnavailable)
_MISSING = object()


class Eligibility(Protocol):
    def read(self) -> dict[str, str | None]: ...

    def watch(self, changed: Callable[[], None]) -> Callable[[], None]: ...


@dataclass
class Held:
    """A bucket this instance holds."""

    token: int
    update_time: Any
    live: dict[str, int] = field(default_factory=dict)
    """Its tenants whose stream is live (uid → since, µs), as last written or about to be."""
    dirty: dict[str, int | None] = field(default_factory=dict)
    """Changes of ``live`` not written yet (``None``: no longer live)."""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    """Serializes this instance's writes of the bucket (each is conditioned on the last)."""


@dataclass
class _Running:
    stream: TenantStream
    task: asyncio.Task[Outcome]


def _micros() -> int:
    return time.time_ns() // 1000


class Gateway:
    """One instance; :meth:`run` until the stop event is set."""

    def __init__(
        self,
        deps: Deps,
        eligibility: Eligibility,
        config: GatewayConfig | None = None,
        *,
        connector: Connect | None = None,
        workers: int = 32,
    ) -> None:
        self.config = config or GatewayConfig()
        self._deps = deps
        self._eligibility = eligibility
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="gateway-io")
        self._lease_executor = ThreadPoolExecutor(2, thread_name_prefix="gateway-lease")
        db = deps.firestore
        self._leases = LeaseStore(db)
        self._orders = OrderWriter(db)
        self._credentials = CredentialStore(
            db, deps.settings.allowed_alpaca_base_urls, lambda: deps.vault
        )
        self._syncs = SyncPublisher(deps, self._sync_result)
        self._coalescer = Coalescer(self.config.coalesce_seconds)
        self._limiter = RateLimiter(self.config.connects_per_second, self.config.connect_burst)
        self._connect = connector or websocket_connect(ping_interval=self.config.ping_seconds)
        self.metrics = Metrics()
        self.session_id: str | None = None
        self._session_time: Any = None
        self._valid_until = 0.0
        self.held: dict[int, Held] = {}
        self.eligible: dict[str, str | None] = {}
        self._eligible_by_bucket: dict[int, dict[str, str | None]] = {}
        """:attr:`eligible` grouped by bucket once per roster read (``desired`` runs often)."""
        self._streams: dict[str, _Running] = {}
        self._closing: dict[str, asyncio.Task[Outcome]] = {}
        self._refused: dict[str, str | None] = {}
        self._paused: dict[str, float] = {}
        self._noted: dict[str, str] = {}
        """Tenants whose ``status/stream`` says something other than live (uid → state)."""
        self._recorded_read: set[str] = set()
        """Tenants whose ``status/stream`` this instance read since it started streaming them
        (another instance may have written it: read once per start, not per reconnect)."""
        self._orders_pending: dict[str, list[TradeUpdate]] = {}
        self._order_tasks: dict[str, asyncio.Task[None]] = {}
        self._alive: frozenset[str] = frozenset()
        self._last_bucket_scan = -math.inf
        self._stopping = False
        self._wake = asyncio.Event()
        self._roster_changed = asyncio.Event()
        self._background: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    # --- running ------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Hold buckets and stream until ``stop`` is set; then hand everything back."""
        self._loop = asyncio.get_running_loop()
        self._roster_changed.set()  # read the roster at once, whatever the listener does
        unwatch = self._eligibility.watch(self._roster_signal)
        loops = [
            asyncio.create_task(coro)
            for coro in (
                self._renew_loop(),
                self._scan_loop(),
                self._watchdog_loop(),
                self._roster_loop(),
                self._converge_loop(),
                self._live_loop(),
            )
        ]
        try:
            await stop.wait()
        finally:
            unwatch()
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            await self._shutdown()

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        """A blocking call (credentials, orders, states) on the data threads."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args))

    async def _lease(self, fn: Callable[..., T], *args: Any) -> T:
        """A call of the leases on threads of their own: a renewal never waits behind a
        burst of credential reads or order writes."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._lease_executor, functools.partial(fn, *args))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    @property
    def valid(self) -> bool:
        """Whether the session's lease still covers this instance's buckets."""
        return time.monotonic() < self._valid_until

    # --- leases ---------------------------------------------------------------------------------

    async def _renew_loop(self) -> None:
        """Renew every ``RENEW_SECONDS`` from the start of the previous renewal, whatever the
        scans take (they run apart)."""
        while True:
            started = time.monotonic()
            try:
                await self._renew()
            except _FIRESTORE_ERRORS as err:
                log.warning(f"lease renewal failed ({type(err).__name__}); retrying")
            await asyncio.sleep(max(leases.RENEW_SECONDS - (time.monotonic() - started), 0.0))

    async def _renew(self) -> None:
        if self.session_id is None:
            await self._register()
            return
        sent = time.monotonic()
        try:
            self._session_time, landed = await self._lease(
                self._leases.renew, self.session_id, self._session_time, self._info()
            )
        except SessionLost:
            self._lose_session()
            return
        if landed:
            self._valid_until = sent + leases.LEASE_SECONDS - leases.MARGIN_SECONDS
            self._wake.set()

    async def _scan_loop(self) -> None:
        while True:
            await asyncio.sleep(leases.RENEW_SECONDS)
            try:
                await self._scan()
            except _FIRESTORE_ERRORS as err:
                log.warning(f"lease scan failed ({type(err).__name__}); retrying")

    async def _register(self) -> None:
        session_id = leases.new_session_id()
        sent = time.monotonic()
        self._session_time = await self._lease(self._leases.register, session_id)
        self.session_id = session_id
        self._valid_until = sent + leases.LEASE_SECONDS - leases.MARGIN_SECONDS
        log.info("gateway session registered", fields={"session": session_id})

    def _info(self) -> dict[str, Any]:
        """What the session document shows operators (``make run``'s view reads it)."""
        return {
            "buckets": len(self.held),
            "tenants": sum(len(h.live) for h in self.held.values()),
            "events": self.metrics.events,
            "eventsPerSecond": round(self.metrics.events_rate.per_second(), 2),
        }

    async def _scan(self) -> None:
        me = self.session_id
        if me is None or not self.valid:
            return
        sessions, times, read_time = await self._lease(self._leases.sessions)
        if read_time is None:
            return
        alive = frozenset(
            sid for sid, s in sessions.items() if session_alive(s, read_time, leases.LEASE_SECONDS)
        ) | {me}
        stable = alive == self._alive
        self._alive = alive
        share = leases.targets(sorted(alive))[me]
        now = time.monotonic()
        due = now - self._last_bucket_scan >= leases.BUCKET_SCAN_SECONDS
        if stable and len(self.held) == share and not due:
            return
        views, _ = await self._lease(self._leases.buckets)
        self._last_bucket_scan = now
        self._check_held(views)
        decided = leases.plan(me, views, sessions, read_time, rebalance=stable)
        for index in decided.release:
            await self._release(index)
        revoked = set()
        for sid in decided.revoke:
            if await self._lease(self._leases.revoke, sid, times[sid], me):
                revoked.add(sid)
                log.warning("revoked a dead gateway session", fields={"session": sid})
        for index in decided.acquire:
            view = views[index]
            holder = sessions.get(view.holder)
            if holder is not None and not holder.revoked and view.holder not in revoked:
                continue  # its dead holder renewed before it could be revoked
            if not self.valid:
                break
            taken = await self._lease(self._leases.acquire, view, me)
            if taken is not None:
                self.held[index] = Held(token=taken[1], update_time=taken[0])
                log.info("bucket acquired", fields={"bucket": index, "token": taken[1]})
        self._forget_old_sessions(sessions, times, views, read_time)
        self._wake.set()

    def _check_held(self, views: list[BucketView]) -> None:
        """Adopt buckets a lost answer left ours; drop those another session holds."""
        for view in views:
            if view.holder == self.session_id and view.index not in self.held:
                self.held[view.index] = Held(token=view.token, update_time=view.update_time)
            elif view.holder != self.session_id and view.index in self.held:
                self._drop_bucket(view.index)

    def _forget_old_sessions(
        self,
        sessions: dict[str, streams.SessionState],
        times: dict[str, Any],
        views: list[BucketView],
        read_time: datetime,
    ) -> None:
        holders = {view.holder for view in views}
        for sid, state in sessions.items():
            silent = state.renewed_at is None or (
                (read_time - state.renewed_at).total_seconds() > leases.STALE_SESSION_SECONDS
            )
            if sid not in holders and sid != self.session_id and silent:
                self._spawn(self._lease(self._leases.forget, sid, times[sid]))

    async def _release(self, index: int) -> None:
        """Hand a bucket over: its streams closed first, then the document released."""
        held = self.held.get(index)
        if held is None:
            return
        uids = [uid for uid in self._streams if bucket_of(uid) == index]
        for uid in uids:
            self._stop(uid)
        closing = [self._closing[uid] for uid in uids if uid in self._closing]
        if closing:
            await asyncio.wait(closing, timeout=STOP_SECONDS)
        async with held.lock:
            self.held.pop(index, None)
            await self._lease(self._leases.release, index, held.update_time)
        log.info("bucket released to another instance", fields={"bucket": index})

    def _drop_bucket(self, index: int) -> None:
        """The bucket is not ours any more: cut its streams now."""
        self.held.pop(index, None)
        self.metrics.lease_losses += 1
        for uid in [uid for uid in self._streams if bucket_of(uid) == index]:
            self._abort(uid)
        log.warning("bucket lost to another instance", fields={"bucket": index})
        self._wake.set()

    def _lose_session(self) -> None:
        log.warning(
            "gateway session revoked: every bucket dropped", fields={"session": self.session_id}
        )
        self.metrics.lease_losses += 1
        for uid in list(self._streams):
            self._abort(uid)
        self.held.clear()
        self.session_id = None
        self._valid_until = 0.0
        self._alive = frozenset()

    async def _watchdog_loop(self) -> None:
        was_valid = False
        while True:
            await asyncio.sleep(WATCHDOG_SECONDS)
            valid = self.valid
            if self._streams and not valid:
                self.metrics.watchdog_aborts += 1
                log.warning("lease not renewed in time: every stream cut")
                for uid in list(self._streams):
                    self._abort(uid)
            if valid != was_valid and self.session_id is not None:
                log.info(
                    "lease valid" if valid else "lease lapsed", fields={"held": len(self.held)}
                )
            was_valid = valid

    # --- who streams ----------------------------------------------------------------------------

    def _roster_signal(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._roster_changed.set)

    async def _roster_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.roster_refresh_seconds):
                    await self._roster_changed.wait()
            await asyncio.sleep(self.config.roster_debounce_seconds)
            self._roster_changed.clear()
            try:
                self.eligible, self._eligible_by_bucket = await self._call(self._read_eligible)
            except _FIRESTORE_ERRORS as err:
                log.warning(f"could not read the roster ({type(err).__name__})")
                continue
            self._refused = {
                uid: kv for uid, kv in self._refused.items() if self.eligible.get(uid, 0) == kv
            }
            self._wake.set()

    def _read_eligible(self) -> tuple[dict[str, str | None], dict[int, dict[str, str | None]]]:
        """Who is eligible, and the same by bucket (on a data thread: hashes every uid)."""
        eligible = self._eligibility.read()
        by_bucket: dict[int, dict[str, str | None]] = {}
        for uid, version in eligible.items():
            by_bucket.setdefault(bucket_of(uid), {})[uid] = version
        return eligible, by_bucket

    def desired(self) -> dict[str, str | None]:
        """The tenants this instance should stream now, with their keys' version."""
        if self._stopping or not self.valid:
            return {}
        now = time.monotonic()
        return {
            uid: version
            for index in self.held
            for uid, version in self._eligible_by_bucket.get(index, {}).items()
            if self._refused.get(uid, _MISSING) != version and self._paused.get(uid, 0.0) <= now
        }

    async def _converge_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._wake.wait()
            self._wake.clear()
            self._converge()

    def _converge(self) -> None:
        wanted = self.desired()
        for uid, running in list(self._streams.items()):
            version = wanted.get(uid, _MISSING)
            if version != running.stream.keys_version:
                self.metrics.stopped += 1
                log.debug(
                    "stream not wanted here any more",
                    uid=uid,
                    fields={"why": self._why_not(uid, version, running.stream.keys_version)},
                )
                self._stop(uid)
        for uid, version in wanted.items():
            if uid not in self._streams and uid not in self._closing:
                self._start(uid, version)

    def _why_not(self, uid: str, version: object, running: str | None) -> str:
        if not self.valid or self._stopping:
            return "lease not valid" if not self._stopping else "stopping"
        if bucket_of(uid) not in self.held:
            return "bucket not held"
        if uid not in self.eligible:
            return "not eligible"
        if version is _MISSING:
            return "refused or paused"
        return f"keys changed ({running} -> {version})"

    def _start(self, uid: str, version: str | None) -> None:
        stream = TenantStream(uid, version, self, self._limiter, self._connect)
        task = asyncio.get_running_loop().create_task(stream.run())
        self._streams[uid] = _Running(stream, task)
        task.add_done_callback(functools.partial(self._ended, uid, version))

    def _ended(self, uid: str, version: str | None, task: asyncio.Task[Outcome]) -> None:
        running = self._streams.get(uid)
        if running is not None and running.task is task:
            del self._streams[uid]
        if self._closing.get(uid) is task:
            del self._closing[uid]
        if not task.cancelled():
            error = task.exception()
            if error is not None:
                log.error(f"a stream task failed ({type(error).__name__})", uid=uid)
                self._paused[uid] = time.monotonic() + FAILED_TASK_PAUSE_SECONDS
            elif task.result() is Outcome.REFUSED:
                self._refused[uid] = version
        self._wake.set()

    def _stop(self, uid: str) -> None:
        """Close the tenant's stream (close handshake); its next one waits for the close. The
        opened credentials are forgotten: the tenant is not streamed here any more (or its
        keys changed)."""
        self._credentials.drop(uid)
        self._recorded_read.discard(uid)
        running = self._streams.pop(uid, None)
        if running is None:
            return
        self._closing[uid] = running.task
        running.task.cancel()

    def _abort(self, uid: str) -> None:
        """Cut the tenant's stream now (no close handshake)."""
        running = self._streams.get(uid)
        if running is not None:
            running.stream.abort()
        self._stop(uid)

    # --- what a stream tells ------------------------------------------------------------------

    async def credentials(self, uid: str, keys_version: str | None) -> StreamCredentials:
        if uid not in self._recorded_read:
            recorded = await self._call(self._read_recorded, uid)
            self._recorded_read.add(uid)
            if recorded is not None and recorded[0] != "live":
                self._noted[uid] = recorded[0]  # written "live" again once it listens
                if recorded == ("refused", keys_version) and keys_version is not None:
                    raise StillRefused("the credentials were refused before")
        return await self._call(self._credentials.get, uid, keys_version)

    def _read_recorded(self, uid: str) -> tuple[str, str | None] | None:
        """``status/stream``'s state and keys version, or ``None`` (never recorded)."""
        snap = call(self._deps.firestore.document(stream_status_doc(uid)).get)
        body = snap.to_dict() if snap.exists else None
        if not body or not isinstance(body.get("state"), str):
            return None
        version = body.get("keys_version")
        return body["state"], version if isinstance(version, str) else None

    def ended(self, uid: str, lasted: float) -> None:
        self.metrics.ended += 1
        log.debug("a stream ended", uid=uid, fields={"lasted_seconds": round(lasted, 1)})

    def attempt(self, uid: str) -> None:
        self.metrics.attempts += 1
        self.metrics.attempts_rate.add()

    def live(self, uid: str, live: bool) -> None:
        held = self.held.get(bucket_of(uid))
        if held is None:
            return
        if live:
            since = _micros()
            held.live[uid] = since
            held.dirty[uid] = since
        elif held.live.pop(uid, None) is not None:
            held.dirty[uid] = None

    def listening(self, uid: str, keys_version: str | None) -> None:
        self.metrics.connections += 1
        self._syncs.publish(uid, Reason.RECONCILE, keys_version)
        if self._noted.pop(uid, None) is not None:
            self._note(uid, "live", None, keys_version)

    def update(self, uid: str, update: TradeUpdate) -> None:
        self.metrics.events += 1
        self.metrics.events_rate.add()
        self._orders_pending.setdefault(uid, []).append(update)
        if uid not in self._order_tasks:
            task = asyncio.get_running_loop().create_task(self._flush_orders(uid))
            self._order_tasks[uid] = task
        delay = self._coalescer.request(uid, time.monotonic())
        if delay == 0.0:
            self._syncs.publish(uid, Reason.TRADE_UPDATE, self.eligible.get(uid))
        elif delay is not None:
            asyncio.get_running_loop().call_later(delay, self._trailing_sync, uid)

    def _trailing_sync(self, uid: str) -> None:
        self._coalescer.fired(uid, time.monotonic())
        self._syncs.publish(uid, Reason.TRADE_UPDATE, self.eligible.get(uid))

    def refused(self, uid: str, keys_version: str | None, error_class: str) -> None:
        self.metrics.refused += 1
        self._credentials.drop(uid)
        log.warning(
            "the stream's credentials were refused: closed until the keys change",
            uid=uid,
            error_class=error_class,
        )
        self._note(uid, "refused", error_class, keys_version)
        self._syncs.publish(uid, Reason.RECONCILE, keys_version)

    def held_elsewhere(self, uid: str, keys_version: str | None) -> None:
        self.metrics.held_elsewhere += 1
        if self._noted.get(uid) != "held_elsewhere":
            log.info(
                "the account's stream is open elsewhere: retried later, polled meanwhile", uid=uid
            )
            self._note(uid, "held_elsewhere", None, keys_version)

    def _note(
        self, uid: str, state: str, error_class: str | None, keys_version: str | None
    ) -> None:
        """Record the tenant's stream state in ``status/stream`` (on changes only)."""
        from google.cloud import firestore

        if state != "live":
            self._noted[uid] = state
        body = {
            "state": state,
            "error_class": error_class,
            "keys_version": keys_version,
            "since": firestore.SERVER_TIMESTAMP,
            "message": _STATE_MESSAGES[state],
        }
        ref = self._deps.firestore.document(stream_status_doc(uid))
        self._spawn(self._write_quietly(functools.partial(ref.set, body)))

    async def _write_quietly(self, write: Callable[[], Any]) -> None:
        try:
            await self._call(write)
        except _FIRESTORE_ERRORS as err:
            log.warning(f"could not record a stream state ({type(err).__name__})")

    def _sync_result(self, reason: Reason, ok: bool) -> None:
        if ok:
            self.metrics.syncs[reason.value] += 1
        else:
            self.metrics.sync_failures += 1

    async def _flush_orders(self, uid: str) -> None:
        try:
            await asyncio.sleep(self.config.order_flush_seconds)
            while batch := self._orders_pending.pop(uid, None):
                for attempt in range(ORDER_WRITE_ATTEMPTS):
                    try:
                        self.metrics.orders_written += await self._call(
                            self._orders.write, uid, batch
                        )
                        break
                    except _FIRESTORE_ERRORS as err:
                        if attempt == ORDER_WRITE_ATTEMPTS - 1:
                            self.metrics.order_write_failures += len(batch)
                            log.warning(
                                f"order updates not stored ({type(err).__name__}); the "
                                "reconciliation sync still reaches the snapshot",
                                uid=uid,
                            )
                        else:
                            await asyncio.sleep(0.5 * (attempt + 1))
        finally:
            self._order_tasks.pop(uid, None)

    # --- the live maps --------------------------------------------------------------------------

    async def _live_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.live_flush_seconds)
            for index, held in list(self.held.items()):
                if held.dirty:
                    await self._write_live(index, held)

    async def _write_live(self, index: int, held: Held) -> None:
        async with held.lock:
            if self.held.get(index) is not held or not held.dirty:
                return
            changes, held.dirty = held.dirty, {}
            try:
                held.update_time = await self._lease(
                    self._leases.write_live, index, held.update_time, changes
                )
            except BucketLost:
                self._drop_bucket(index)
            except _FIRESTORE_ERRORS as err:
                changes.update(held.dirty)
                held.dirty = changes
                log.warning(f"could not write a bucket's live streams ({type(err).__name__})")

    # --- stopping -------------------------------------------------------------------------------

    async def _shutdown(self) -> None:
        """Close every stream, finish the order writes, release the buckets, retire."""
        self._stopping = True
        for uid in list(self._streams):
            self._stop(uid)
        pending = [*self._closing.values(), *self._order_tasks.values()]
        if pending:
            await asyncio.wait(pending, timeout=STOP_SECONDS)
        for index, held in list(self.held.items()):
            with contextlib.suppress(*_FIRESTORE_ERRORS):
                await self._lease(self._leases.release, index, held.update_time)
        self.held.clear()
        if self.session_id is not None:
            with contextlib.suppress(*_FIRESTORE_ERRORS):
                await self._lease(self._leases.retire, self.session_id, self._session_time)
        if self._background:
            await asyncio.wait(list(self._background), timeout=STOP_SECONDS)
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._lease_executor.shutdown(wait=False, cancel_futures=True)
        log.info("gateway stopped: streams closed, buckets released")

    # --- health -----------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """What ``GET /healthz`` answers: the tenants this instance streams, and its state."""
        live = sorted(uid for held in self.held.values() for uid in held.live)
        return {
            "session": self.session_id,
            "valid": self.valid,
            "buckets": sorted(self.held),
            "tenants": live,
            "streaming": len(live),
            "connecting": len(self._streams) - len(live),
            "eligible_here": len(self.desired()),
            "at": datetime.now(UTC).isoformat(),
            **self.metrics.snapshot(),
        }


_STATE_MESSAGES = {
    "refused": (
        "Alpaca refused the stream's credentials: the stream stays closed until new keys are "
        "saved; a sync checks the keys."
    ),
    "held_elsewhere": (
        "Another client holds this account's one trade-update stream: retried with backoff; "
        "the account is synced every minute meanwhile."
    ),
    "live": "The trade-update stream is live.",
}
