"""One tenant's stream: connect, authenticate, listen, hand every update on, reconnect.

:class:`TenantStream` runs as one asyncio task per tenant held by this instance. Each round
takes a token from the instance's :class:`~stream_gateway.backoff.RateLimiter`, loads the
credentials, opens the websocket (no compression: an idle connection keeps no zlib state),
authenticates and listens, then reads until the connection ends. What a round comes to
(:class:`Outcome`) decides what follows:

- ``REFUSED`` (Alpaca refused the credentials: ``unauthorized``, HTTP 401/403; or no usable
  credentials): recorded, and the task ends — not retried until the keys change;
- ``HELD_ELSEWHERE`` (``connection limit exceeded``, HTTP 429: the account's one stream is
  open somewhere else): retried with the long backoff; the tenant stays on every-tick polling
  and its keys stay valid;
- ``ENDED`` (the connection was up and dropped) and ``FAILED`` (could not connect, timed out,
  Firestore or the KEK unavailable): retried with jittered exponential backoff, from the first
  delay again when the connection had lasted ``reset_after``.

While the stream is live (authorized and listening) the tenant is marked live (the tick then
reconciles it every few ticks), and after every successful listen a ``reconcile`` sync is
requested: the stream has no replay, so what happened while it was down comes from the REST
sync. Cancelling the task closes the websocket (close handshake, bounded by
``close_timeout``); :meth:`TenantStream.abort` cuts it at once (the lease watchdog's path).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from agenttrader.errors import AlpacaAuthError, PermanentError, RetryableError
from agenttrader.logs import get_logger, secret_scope
from stream_gateway.backoff import HELD_ELSEWHERE, RECONNECT, Backoff, RateLimiter
from stream_gateway.credentials import StreamCredentials
from stream_gateway.protocol import (
    LISTEN,
    TRADE_UPDATES,
    Auth,
    Authorization,
    Listening,
    StreamError,
    TradeUpdate,
    auth_message,
    decode,
)

log = get_logger(__name__)

_FRAMES_LOG = logging.getLogger("stream_gateway.websocket")
_FRAMES_LOG.setLevel(logging.INFO)
"""The websocket library's logger for our connections: never at DEBUG, where it writes every
frame (the authentication one carries the credentials, and its elision of long frames would
leave their tail past any redaction)."""

HANDSHAKE_SECONDS = 10.0
"""For the TCP/TLS/HTTP handshake, and again for each of the authorization and listen
answers."""


class StillRefused(PermanentError):
    """The credentials were refused before (``status/stream`` says so, for these keys) and
    have not changed since: not tried again, not recorded again."""


class Outcome(StrEnum):
    REFUSED = "refused"
    HELD_ELSEWHERE = "held_elsewhere"
    ENDED = "ended"
    FAILED = "failed"


@dataclass(frozen=True)
class Round:
    outcome: Outcome
    lasted: float = 0.0
    """Seconds the stream was live (``ENDED``)."""
    error_class: str | None = None


class Hooks(Protocol):
    """What a stream tells the gateway."""

    def credentials(self, uid: str, keys_version: str | None) -> Awaitable[StreamCredentials]: ...

    def live(self, uid: str, live: bool) -> None: ...

    def listening(self, uid: str, keys_version: str | None) -> None: ...

    def update(self, uid: str, update: TradeUpdate) -> None: ...

    def ended(self, uid: str, lasted: float) -> None: ...

    def refused(self, uid: str, keys_version: str | None, error_class: str) -> None: ...

    def held_elsewhere(self, uid: str, keys_version: str | None) -> None: ...

    def attempt(self, uid: str) -> None: ...


Connect = Callable[[str], Awaitable[ClientConnection]]


def websocket_connect(*, ping_interval: float = 30.0, close_timeout: float = 2.0) -> Connect:
    """The websocket client: no compression, no proxy lookup, small queues (memory per idle
    connection), keepalive pings."""

    async def open_(url: str) -> ClientConnection:
        return await connect(
            url,
            compression=None,
            proxy=None,
            open_timeout=HANDSHAKE_SECONDS,
            ping_interval=ping_interval,
            ping_timeout=ping_interval,
            close_timeout=close_timeout,
            max_size=1 << 20,
            max_queue=8,
            write_limit=16 * 1024,
            user_agent_header="agenttrader-stream-gateway",
            logger=_FRAMES_LOG,
        )

    return open_


class TenantStream:
    """The task holding one tenant's stream; see the module docstring."""

    def __init__(
        self,
        uid: str,
        keys_version: str | None,
        hooks: Hooks,
        limiter: RateLimiter,
        connector: Connect,
        *,
        rand: Callable[[], float] = random.random,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        backoff: Backoff = RECONNECT,
        held_backoff: Backoff = HELD_ELSEWHERE,
    ) -> None:
        self.uid = uid
        self.keys_version = keys_version
        self._hooks = hooks
        self._limiter = limiter
        self._connect = connector
        self._rand = rand
        self._sleep = sleep
        self._backoff = backoff
        self._held_backoff = held_backoff
        self._ws: ClientConnection | None = None
        self.is_live = False
        self.rounds = 0

    async def run(self) -> Outcome:
        """Stream until refused (returns ``REFUSED``) or cancelled."""
        attempt, policy = 0, self._backoff
        while True:
            if attempt:
                await self._sleep(policy.delay(attempt, self._rand))
            await self._limiter.acquire()
            self._hooks.attempt(self.uid)
            self.rounds += 1
            result = await self.round()
            if result.outcome is Outcome.REFUSED:
                return result.outcome
            if result.outcome is Outcome.HELD_ELSEWHERE:
                if policy is not self._held_backoff:
                    attempt, policy = 0, self._held_backoff
                attempt += 1
            elif result.outcome is Outcome.ENDED and result.lasted >= self._backoff.reset_after:
                attempt, policy = 1, self._backoff
            else:
                if policy is not self._backoff:
                    attempt, policy = 0, self._backoff
                attempt += 1

    async def round(self) -> Round:
        """One connection, from loading the credentials to its end."""
        try:
            loaded = await self._hooks.credentials(self.uid, self.keys_version)
        except StillRefused as err:
            return Round(Outcome.REFUSED, error_class=err.error_class)
        except PermanentError as err:
            self._hooks.refused(self.uid, self.keys_version, err.error_class)
            return Round(Outcome.REFUSED, error_class=err.error_class)
        except RetryableError as err:
            return Round(Outcome.FAILED, error_class=err.error_class)
        with secret_scope(*loaded.credentials.secrets):
            return await self._session(loaded)

    async def _session(self, loaded: StreamCredentials) -> Round:
        try:
            ws = await self._connect(loaded.url)
        except InvalidStatus as err:
            return self._rejected(err.response.status_code)
        except (OSError, TimeoutError, InvalidHandshake) as err:
            return Round(Outcome.FAILED, error_class=type(err).__name__)
        self._ws = ws
        started: float | None = None
        try:
            await ws.send(auth_message(loaded.credentials))
            answer = await self._next(ws, Authorization)
            if not isinstance(answer, Authorization):
                return Round(Outcome.FAILED, error_class="StreamProtocolError")
            if answer.outcome is Auth.REFUSED:
                self._hooks.refused(self.uid, self.keys_version, AlpacaAuthError.__name__)
                return Round(Outcome.REFUSED, error_class=AlpacaAuthError.__name__)
            if answer.outcome is Auth.CONNECTION_LIMIT:
                self._hooks.held_elsewhere(self.uid, self.keys_version)
                return Round(Outcome.HELD_ELSEWHERE)
            await ws.send(LISTEN)
            listening = await self._next(ws, Listening)
            if not isinstance(listening, Listening) or TRADE_UPDATES not in listening.streams:
                return Round(Outcome.FAILED, error_class="StreamProtocolError")
            started = time.monotonic()
            self.is_live = True
            self._hooks.live(self.uid, True)
            self._hooks.listening(self.uid, self.keys_version)
            async for frame in ws:
                self._dispatch(frame)
            self._hooks.ended(self.uid, time.monotonic() - started)
            return Round(Outcome.ENDED, time.monotonic() - started)
        except ConnectionClosed:
            if started is None:
                return Round(Outcome.FAILED, error_class="ConnectionClosed")
            self._hooks.ended(self.uid, time.monotonic() - started)
            return Round(Outcome.ENDED, time.monotonic() - started, "ConnectionClosed")
        except TimeoutError:
            return Round(Outcome.FAILED, error_class="StreamTimeout")
        finally:
            if self.is_live:
                self.is_live = False
                self._hooks.live(self.uid, False)
            self._ws = None
            await self._close(ws)

    def _dispatch(self, frame: str | bytes) -> None:
        for message in decode(frame):
            if isinstance(message, TradeUpdate):
                self._hooks.update(self.uid, message)
            elif isinstance(message, StreamError):
                log.warning("the stream reported an error", uid=self.uid)

    async def _next(self, ws: ClientConnection, kind: type[Any]) -> object:
        """The next message of ``kind`` (others before it are handed on or ignored)."""
        async with asyncio.timeout(HANDSHAKE_SECONDS):
            while True:
                for message in decode(await ws.recv()):
                    if isinstance(message, kind):
                        return message
                    if isinstance(message, Authorization | StreamError):
                        return message
                    if isinstance(message, TradeUpdate):
                        self._hooks.update(self.uid, message)

    def _rejected(self, status: int) -> Round:
        """The HTTP answer to the upgrade was not 101."""
        if status in (401, 403):
            self._hooks.refused(self.uid, self.keys_version, AlpacaAuthError.__name__)
            return Round(Outcome.REFUSED, error_class=AlpacaAuthError.__name__)
        if status == 429:
            self._hooks.held_elsewhere(self.uid, self.keys_version)
            return Round(Outcome.HELD_ELSEWHERE)
        return Round(Outcome.FAILED, error_class=f"HTTP{status}")

    async def _close(self, ws: ClientConnection) -> None:
        try:
            await ws.close()
        except (OSError, ConnectionClosed):
            ws.transport.abort()

    def abort(self) -> None:
        """Cut the connection now, without a close handshake (the lease is about to lapse)."""
        ws = self._ws
        if ws is not None:
            ws.transport.abort()
