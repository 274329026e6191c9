"""Alpaca's trade-update stream on the simulator: ``GET /stream`` upgraded to a websocket.

The protocol of Alpaca's paper endpoint: the client authenticates with
``{"action":"auth","key","secret"}``, ``{"action":"authenticate","data":{"key_id","secret_key"}}``
or ``{"action":"authenticate","data":{"oauth_token"}}`` and is answered
``{"stream":"authorization","data":{"action":"authenticate","status":"authorized"}}`` (or
``"unauthorized"``, then closed); ``{"action":"listen","data":{"streams":["trade_updates"]}}``
is answered ``{"stream":"listening",…}``; then every trade update of the account arrives as
``{"stream":"trade_updates","data":{…}}``. The server's frames are binary, as the paper
endpoint's are (``frames="text"`` or ``"mixed"`` for clients that must take both).

**One stream per account**, as Alpaca enforces it: an authentication for an account whose
stream is already open is answered ``unauthorized`` with ``"message": "connection limit
exceeded"``, closed and counted (``refused_second``: a client that never opens a second stream
keeps it at 0). An account can be marked held by an outside client
(:meth:`StreamHub.hold_elsewhere`: the tenant's own trading bot), refused the same way but
counted apart.

Scenarios (admin API under ``/_sim/stream``): drop every connection at once (no close frame:
what a network failure or a server restart looks like), refuse every authentication, and a
slow consumer per account (its updates wait ``delay_ms`` each; more than ``max_backlog``
waiting closes the connection with 1008 ``slow consumer``, as a server protects itself from
a client that does not keep up — what was waiting is lost).

Each connection is served on its HTTP handler thread (blocking reads with a short timeout);
updates are written from the order engine's thread under the connection's lock, with a send
timeout: a client that stops reading is cut off.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.server import ServerProtocol

from devtools.simulator.tenants import SimTenant

_LOG = logging.getLogger("devtools.simulator.stream")
_FRAMES_LOG = logging.getLogger("devtools.simulator.websocket")
_FRAMES_LOG.setLevel(logging.INFO)  # at DEBUG the protocol logs every frame: credentials too
STREAM_PATH = "/stream"
TRADE_UPDATES = "trade_updates"
_READ_TIMEOUT_S = 2.0
"""How often a connection's thread looks up from its read (to notice the simulator stop)."""
_SEND_TIMEOUT_S = 2.0
_AUTH_TIMEOUT_S = 10.0
_MAX_MESSAGE = 1 << 16
CONNECTION_LIMIT = "connection limit exceeded"

Frames = Literal["binary", "text", "mixed"]
Resolve = Callable[[Mapping[str, Any]], tuple[SimTenant | None, bool]]
"""An auth message's data → (the account it names, whether the credentials are right)."""


@dataclass(frozen=True)
class SlowConsumer:
    """A consumer that does not keep up: each update waits ``delay_ms``; more than
    ``max_backlog`` waiting closes the connection (1008), losing them."""

    delay_ms: float = 200.0
    max_backlog: int = 20

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SlowConsumer:
        unknown = sorted(set(data) - {"delay_ms", "max_backlog"})
        if unknown:
            raise ValueError(f"unknown slow consumer field(s): {', '.join(unknown)}")
        delay, backlog = data.get("delay_ms", 200.0), data.get("max_backlog", 20)
        if isinstance(delay, bool) or not isinstance(delay, int | float) or delay < 0:
            raise ValueError("delay_ms must be a non-negative number")
        if isinstance(backlog, bool) or not isinstance(backlog, int) or backlog < 0:
            raise ValueError("max_backlog must be a non-negative integer")
        return cls(float(delay), backlog)


@dataclass
class StreamStats:
    """What the stream endpoint saw; read as a whole under the hub's lock."""

    handshakes: int = 0
    authorized: int = 0
    auth_refused: int = 0
    refused_second: int = 0
    """Authentications refused because the account's stream was open: a second connection."""
    refused_held_elsewhere: int = 0
    """... because an outside client holds it (:meth:`StreamHub.hold_elsewhere`)."""
    events_sent: int = 0
    events_lost: int = 0
    """Updates for an account not listening, or dropped with a slow consumer's backlog."""
    dropped: int = 0
    """Connections cut by the drop-all scenario."""
    slow_consumer_closes: int = 0
    attempts: deque[float] = field(default_factory=lambda: deque(maxlen=100_000))
    """Monotonic times of the handshakes (for attempts per second)."""

    def attempts_per_second(self) -> tuple[int, float]:
        """The most handshakes in any one-second window, and over the last 10 s on average."""
        times = list(self.attempts)
        most, start = 0, 0
        for end, moment in enumerate(times):
            while moment - times[start] >= 1.0:
                start += 1
            most = max(most, end - start + 1)
        now = time.monotonic()
        recent = sum(1 for t in times if now - t <= 10.0) / 10.0
        return most, recent


class _Connection:
    """One client's websocket: the sans-I/O protocol and its socket, written under a lock."""

    def __init__(self, sock: socket.socket, protocol: ServerProtocol, frames: Frames) -> None:
        self.sock = sock
        self.protocol = protocol
        self.lock = threading.Lock()
        self.frames = frames
        self.tenant: SimTenant | None = None
        self.listening = False
        self.closed = False
        self.backlog: deque[tuple[float, bytes]] = deque()
        self._count = 0

    def flush(self) -> None:
        for chunk in self.protocol.data_to_send():
            if chunk:
                self.sock.sendall(chunk)
            else:
                with contextlib.suppress(OSError):
                    self.sock.shutdown(socket.SHUT_WR)

    def send(self, message: Mapping[str, Any]) -> None:
        """Send one JSON message (binary or text frame as configured); raises OSError."""
        data = json.dumps(message, separators=(",", ":")).encode()
        with self.lock:
            if self.closed:
                raise OSError("connection closed")
            self._count += 1
            text = self.frames == "text" or (self.frames == "mixed" and self._count % 2 == 0)
            if text:
                self.protocol.send_text(data)
            else:
                self.protocol.send_binary(data)
            self.flush()

    def close(self, code: int, reason: str) -> None:
        with self.lock:
            if self.closed:
                return
            self.closed = True
            with contextlib.suppress(Exception):
                self.protocol.send_close(code, reason)
                self.flush()

    def cut(self) -> None:
        """Drop the connection without a close frame."""
        with self.lock:
            self.closed = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)


class StreamHub:
    """Every open stream, by account; the scenarios; the counters."""

    def __init__(self, resolve: Resolve, stopping: threading.Event, frames: Frames = "binary"):
        self._resolve = resolve
        self._stopping = stopping
        self.frames: Frames = frames
        self._lock = threading.Lock()
        self._open: dict[str, _Connection] = {}
        self._held_elsewhere: set[str] = set()
        self._slow: dict[str, SlowConsumer] = {}
        self.refuse_auth = False
        self._stats = StreamStats()
        self._delivery: threading.Thread | None = None
        self._deliver_wake = threading.Condition()

    # --- admin ------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        with self._lock:
            s = self._stats
            most, recent = s.attempts_per_second()
            return {
                "open": len(self._open),
                "handshakes": s.handshakes,
                "authorized": s.authorized,
                "auth_refused": s.auth_refused,
                "refused_second": s.refused_second,
                "refused_held_elsewhere": s.refused_held_elsewhere,
                "events_sent": s.events_sent,
                "events_lost": s.events_lost,
                "dropped": s.dropped,
                "slow_consumer_closes": s.slow_consumer_closes,
                "attempts_per_second_max": most,
                "attempts_per_second_last_10s": recent,
                "refuse_auth": self.refuse_auth,
                "held_elsewhere": len(self._held_elsewhere),
                "slow_consumers": len(self._slow),
            }

    def reset_stats(self) -> None:
        with self._lock:
            self._stats = StreamStats()

    def open_accounts(self) -> list[str]:
        with self._lock:
            return sorted(self._open)

    def drop_all(self) -> int:
        """Cut every connection at once (no close frame); returns how many."""
        with self._lock:
            connections = list(self._open.values())
            self._open.clear()
            self._stats.dropped += len(connections)
        for connection in connections:
            connection.cut()
        return len(connections)

    def hold_elsewhere(self, key_id: str, held: bool) -> None:
        """Mark the account's stream held by an outside client (or free it again)."""
        with self._lock:
            if held:
                self._held_elsewhere.add(key_id)
            else:
                self._held_elsewhere.discard(key_id)

    def set_slow_consumer(self, key_id: str, slow: SlowConsumer | None) -> None:
        with self._lock:
            if slow is None:
                self._slow.pop(key_id, None)
            else:
                self._slow[key_id] = slow

    # --- events -----------------------------------------------------------------------------

    def publish(self, tenant: SimTenant, message: Mapping[str, Any]) -> None:
        """Send a trade update to the account's stream, if it listens."""
        with self._lock:
            connection = self._open.get(tenant.key_id)
            slow = self._slow.get(tenant.key_id)
            if connection is None or not connection.listening:
                self._stats.events_lost += 1
                return
        if slow is not None:
            self._enqueue_slow(connection, slow, message)
            return
        self._deliver(connection, message)

    def _deliver(self, connection: _Connection, message: Mapping[str, Any]) -> None:
        try:
            connection.send(message)
        except OSError:  # the client went away or stopped reading: what was sent is lost
            with self._lock:
                self._stats.events_lost += 1
            self._forget(connection)
            connection.cut()
            return
        with self._lock:
            self._stats.events_sent += 1

    def _enqueue_slow(
        self, connection: _Connection, slow: SlowConsumer, message: Mapping[str, Any]
    ) -> None:
        data = json.dumps(message, separators=(",", ":")).encode()
        with self._deliver_wake:
            if len(connection.backlog) >= slow.max_backlog:
                lost = len(connection.backlog) + 1
                connection.backlog.clear()
                with self._lock:
                    self._stats.events_lost += lost
                    self._stats.slow_consumer_closes += 1
                self._forget(connection)
                connection.close(1008, "slow consumer")
                return
            due = time.monotonic() + slow.delay_ms / 1000 * (len(connection.backlog) + 1)
            connection.backlog.append((due, data))
            self._deliver_wake.notify()
            if self._delivery is None:
                self._delivery = threading.Thread(
                    target=self._deliver_slow, name="simulator-slow-consumers", daemon=True
                )
                self._delivery.start()

    def _deliver_slow(self) -> None:
        while not self._stopping.is_set():
            with self._deliver_wake:
                with self._lock:
                    waiting = [c for c in self._open.values() if c.backlog]
                now = time.monotonic()
                ready = [(c, c.backlog.popleft()[1]) for c in waiting if c.backlog[0][0] <= now]
                if not ready:
                    self._deliver_wake.wait(0.02)
                    continue
            for connection, data in ready:
                self._deliver(connection, json.loads(data))

    # --- one connection -----------------------------------------------------------------------

    def serve(
        self, sock: socket.socket, read: Callable[[], bytes], path: str, headers: Any
    ) -> None:
        """Run the websocket on ``sock`` (its HTTP request already parsed: ``path``,
        ``headers``; ``read`` returns what arrives next, ``b""`` at the end) until it ends."""
        protocol = ServerProtocol(max_size=_MAX_MESSAGE, logger=_FRAMES_LOG)
        # The protocol parses the handshake itself: it is handed the request as it came.
        head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        protocol.receive_data(f"GET {path} HTTP/1.1\r\n{head}\r\n".encode("latin-1"))
        request = next(e for e in protocol.events_received() if isinstance(e, Request))
        response = protocol.accept(request)
        protocol.send_response(response)
        connection = _Connection(sock, protocol, self.frames)
        with self._lock:
            self._stats.handshakes += 1
            self._stats.attempts.append(time.monotonic())
        try:
            connection.flush()
            if response.status_code != 101:
                return
            sock.settimeout(_READ_TIMEOUT_S)
            self._read_loop(connection, read)
        except OSError:
            pass
        finally:
            self._forget(connection)
            connection.cut()

    def _read_loop(self, connection: _Connection, read: Callable[[], bytes]) -> None:
        opened = time.monotonic()
        while not self._stopping.is_set() and not connection.closed:
            if connection.tenant is None and time.monotonic() - opened > _AUTH_TIMEOUT_S:
                connection.close(1008, "authentication timeout")
                return
            try:
                data = read()
            except TimeoutError:
                continue
            if not data:
                connection.protocol.receive_eof()
                return
            with connection.lock:
                connection.protocol.receive_data(data)
                events = connection.protocol.events_received()
                closing = any(isinstance(e, Frame) and e.opcode is Opcode.CLOSE for e in events)
                if closing:  # unregistered before the close reply lets the client go on
                    self._forget(connection)
                connection.flush()  # pongs and the close reply
            if closing:
                return
            for event in events:
                if isinstance(event, Frame) and event.opcode in (Opcode.TEXT, Opcode.BINARY):
                    self._on_message(connection, event.data)

    def _on_message(self, connection: _Connection, data: bytes) -> None:
        try:
            message = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError):
            connection.send({"stream": "error", "data": {"error": "invalid syntax"}})
            return
        action = message.get("action") if isinstance(message, dict) else None
        payload = message.get("data") if isinstance(message, dict) else None
        if action == "auth" and isinstance(message, dict):
            self._authenticate(connection, message)
        elif action == "authenticate" and isinstance(payload, dict):
            self._authenticate(connection, payload)
        elif action == "listen" and connection.tenant is not None and isinstance(payload, dict):
            streams = [s for s in payload.get("streams") or [] if s == TRADE_UPDATES]
            connection.listening = bool(streams)
            connection.send({"stream": "listening", "data": {"streams": streams}})
        elif action == "listen":
            connection.send({"stream": "listening", "data": {"error": "not authenticated"}})
        else:
            connection.send({"stream": "error", "data": {"error": "invalid action"}})

    def _authenticate(self, connection: _Connection, data: Mapping[str, Any]) -> None:
        tenant, valid = self._resolve(data)
        refused = (
            self.refuse_auth
            or tenant is None
            or not valid
            or tenant.scenario.kind in ("bad_keys", "forbidden")
        )
        if refused or tenant is None:
            with self._lock:
                self._stats.auth_refused += 1
            connection.send(_authorization("unauthorized"))
            connection.close(1008, "unauthorized")
            return
        with self._lock:
            elsewhere = tenant.key_id in self._held_elsewhere
            current = self._open.get(tenant.key_id)
            if elsewhere or (current is not None and current is not connection):
                if elsewhere:
                    self._stats.refused_held_elsewhere += 1
                else:
                    self._stats.refused_second += 1
                limit = True
            else:
                self._open[tenant.key_id] = connection
                self._stats.authorized += 1
                connection.tenant = tenant
                limit = False
        if limit:
            connection.send(_authorization("unauthorized", CONNECTION_LIMIT))
            connection.close(1008, CONNECTION_LIMIT)
            return
        connection.send(_authorization("authorized"))

    def _forget(self, connection: _Connection) -> None:
        """Unregister ``connection`` (before it is closed: a client that saw its stream end
        may open the next one at once)."""
        tenant = connection.tenant
        if tenant is None:
            return
        with self._lock:
            if self._open.get(tenant.key_id) is connection:
                del self._open[tenant.key_id]


def _authorization(status: str, message: str | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"action": "authenticate", "status": status}
    if message is not None:
        data["message"] = message
    return {"stream": "authorization", "data": data}


def is_upgrade(headers: Any) -> bool:
    """Whether an HTTP request asks for a websocket."""
    return "websocket" in str(headers.get("Upgrade", "")).lower()
