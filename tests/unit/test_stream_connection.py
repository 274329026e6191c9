"""One tenant's stream round (:class:`stream_gateway.connection.TenantStream`) against a
hand-written websocket: what each answer of Alpaca comes to, and what the gateway is told."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import pytest
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosedOK, InvalidStatus
from websockets.frames import Close
from websockets.http11 import Response

from agenttrader.credentials import AlpacaKeys
from agenttrader.errors import DependencyUnavailable, InvalidKeys
from stream_gateway.backoff import RateLimiter
from stream_gateway.connection import Outcome, StillRefused, TenantStream
from stream_gateway.credentials import StreamCredentials
from stream_gateway.protocol import TradeUpdate

KEYS = AlpacaKeys("PKFAKE00000000000001", "fake-secret-000001", "http://127.0.0.1:1")
AUTHORIZED = {"stream": "authorization", "data": {"status": "authorized"}}
REFUSED = {"stream": "authorization", "data": {"status": "unauthorized"}}
LIMIT = {
    "stream": "authorization",
    "data": {"status": "unauthorized", "message": "connection limit exceeded"},
}
LISTENING = {"stream": "listening", "data": {"streams": ["trade_updates"]}}
FILL = {
    "stream": "trade_updates",
    "data": {
        "event": "fill",
        "order": {"id": "order-1", "filled_qty": "1"},
        "timestamp": "2026-11-27T15:00:00.000000001Z",
    },
}


class Transport:
    aborted = False

    def abort(self) -> None:
        self.aborted = True


class FakeWebsocket:
    """Answers each message sent with the next scripted frames; then serves ``tail``."""

    def __init__(self, answers: Sequence[Sequence[object]], tail: Sequence[object] = ()) -> None:
        self._answers = [list(a) for a in answers]
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self._tail = list(tail)
        self.sent: list[Any] = []
        self.closed = False
        self.transport = Transport()

    async def send(self, message: str) -> None:
        self.sent.append(json.loads(message))
        for frame in self._answers.pop(0) if self._answers else []:
            self._queue.put_nowait(frame)
        if not self._answers:
            for frame in self._tail:
                self._queue.put_nowait(frame)
            self._queue.put_nowait(StopAsyncIteration)

    async def recv(self) -> str | bytes:
        frame = await self._queue.get()
        if frame is StopAsyncIteration:
            raise ConnectionClosedOK(Close(1000, ""), Close(1000, ""))
        return json.dumps(frame).encode()

    def __aiter__(self) -> FakeWebsocket:
        return self

    async def __anext__(self) -> str | bytes:
        frame = await self._queue.get()
        if frame is StopAsyncIteration:
            raise StopAsyncIteration
        return json.dumps(frame)

    async def close(self) -> None:
        self.closed = True


class Hooks:
    def __init__(self, credentials: Exception | None = None) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.updates: list[TradeUpdate] = []
        self._credentials = credentials

    async def credentials(self, uid: str, keys_version: str | None) -> StreamCredentials:
        if self._credentials is not None:
            raise self._credentials
        return StreamCredentials(KEYS, "ws://127.0.0.1:1/stream")

    def live(self, uid: str, live: bool) -> None:
        self.calls.append(("live", str(live)))

    def listening(self, uid: str, keys_version: str | None) -> None:
        self.calls.append(("listening",))

    def update(self, uid: str, update: TradeUpdate) -> None:
        self.updates.append(update)

    def ended(self, uid: str, lasted: float) -> None:
        self.calls.append(("ended",))

    def refused(self, uid: str, keys_version: str | None, error_class: str) -> None:
        self.calls.append(("refused", error_class))

    def held_elsewhere(self, uid: str, keys_version: str | None) -> None:
        self.calls.append(("held_elsewhere",))

    def attempt(self, uid: str) -> None:
        self.calls.append(("attempt",))


def stream(hooks: Hooks, connect: Any) -> TenantStream:
    return TenantStream("u1", "v1", hooks, RateLimiter(1000, 1000), connect)


def run_round(hooks: Hooks, ws: FakeWebsocket | BaseException) -> Any:
    async def connect(url: str) -> Any:
        if isinstance(ws, BaseException):
            raise ws
        return ws

    return asyncio.run(stream(hooks, connect).round())


def test_a_live_stream_hands_on_updates_then_ends() -> None:
    hooks = Hooks()
    ws = FakeWebsocket([[AUTHORIZED], [LISTENING]], tail=[FILL, FILL])
    result = run_round(hooks, ws)
    assert result.outcome is Outcome.ENDED
    assert ws.sent[0] == {"action": "auth", "key": KEYS.key_id, "secret": KEYS.secret_key}
    assert ws.sent[1] == {"action": "listen", "data": {"streams": ["trade_updates"]}}
    assert [u.event for u in hooks.updates] == ["fill", "fill"]
    assert hooks.calls == [("live", "True"), ("listening",), ("ended",), ("live", "False")]
    assert ws.closed


def test_refused_credentials_end_the_stream_for_these_keys() -> None:
    hooks = Hooks()
    result = run_round(hooks, FakeWebsocket([[REFUSED]]))
    assert result.outcome is Outcome.REFUSED
    assert hooks.calls == [("refused", "AlpacaAuthError")]


def test_a_stream_held_elsewhere_is_not_a_refusal() -> None:
    hooks = Hooks()
    result = run_round(hooks, FakeWebsocket([[LIMIT]]))
    assert result.outcome is Outcome.HELD_ELSEWHERE
    assert hooks.calls == [("held_elsewhere",)]


def _status(code: int) -> InvalidStatus:
    return InvalidStatus(Response(code, "x", Headers()))


@pytest.mark.parametrize(
    ("error", "outcome", "calls"),
    [
        (_status(401), Outcome.REFUSED, [("refused", "AlpacaAuthError")]),
        (_status(403), Outcome.REFUSED, [("refused", "AlpacaAuthError")]),
        (_status(429), Outcome.HELD_ELSEWHERE, [("held_elsewhere",)]),
        (_status(503), Outcome.FAILED, []),
        (ConnectionRefusedError(), Outcome.FAILED, []),
        (TimeoutError(), Outcome.FAILED, []),
    ],
)
def test_what_a_failed_handshake_comes_to(
    error: BaseException, outcome: Outcome, calls: list[tuple[str, ...]]
) -> None:
    hooks = Hooks()
    assert run_round(hooks, error).outcome is outcome
    assert hooks.calls == calls


def test_unusable_credentials_are_refused_and_a_flaky_store_is_retried() -> None:
    refused = Hooks(InvalidKeys("bad shape"))
    assert run_round(refused, FakeWebsocket([])).outcome is Outcome.REFUSED
    assert refused.calls == [("refused", "InvalidKeys")]
    flaky = Hooks(DependencyUnavailable("Firestore"))
    assert run_round(flaky, FakeWebsocket([])).outcome is Outcome.FAILED
    assert flaky.calls == []


def test_credentials_refused_before_end_the_stream_without_a_new_record() -> None:
    remembered = Hooks(StillRefused("refused before"))
    got = run_round(remembered, FakeWebsocket([]))
    assert (got.outcome, got.error_class) == (Outcome.REFUSED, "StillRefused")
    assert remembered.calls == []  # no second record, no second reconcile sync


def test_a_stream_that_never_listens_failed() -> None:
    hooks = Hooks()
    result = run_round(
        hooks, FakeWebsocket([[AUTHORIZED], [{"stream": "listening", "data": {"streams": []}}]])
    )
    assert result.outcome is Outcome.FAILED
    assert ("live", "True") not in hooks.calls


def test_run_retries_with_backoff_and_stops_when_refused() -> None:
    hooks = Hooks()
    sockets = [OSError("down"), FakeWebsocket([[LIMIT]]), FakeWebsocket([[REFUSED]])]

    async def connect(url: str) -> Any:
        ws = sockets.pop(0)
        if isinstance(ws, BaseException):
            raise ws
        return ws

    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    async def main() -> Outcome:
        limiter = RateLimiter(1000, 1000)
        s = TenantStream("u1", "v1", hooks, limiter, connect, rand=lambda: 0.0, sleep=sleep)
        return await s.run()

    assert asyncio.run(main()) is Outcome.REFUSED
    assert slept == [0.5, 15.0]  # after a failure: the reconnect base; held: the long one
    assert [c for c in hooks.calls if c[0] != "attempt"] == [
        ("held_elsewhere",),
        ("refused", "AlpacaAuthError"),
    ]
    assert hooks.calls.count(("attempt",)) == 3


def test_abort_cuts_the_connection_without_a_handshake() -> None:
    ws = FakeWebsocket([])

    async def connect(url: str) -> Any:
        return ws

    s = stream(Hooks(), connect)
    s.abort()  # nothing open: nothing to cut
    s._ws = ws  # type: ignore[assignment]
    s.abort()
    assert ws.transport.aborted and not ws.closed
