"""HTTP front of the Alpaca simulator: routing, auth, scenarios, admin API and lifecycle.

One thread per connection (HTTP/1.1 keep-alive) lets a hanging or slow tenant stall only its
own requests. Every wait is on the stop event, so ``stop()`` returns promptly even while
``timeout`` scenarios are hanging, and open keep-alive connections are cut on stop.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import socketserver
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, cast
from urllib.parse import parse_qs, urlencode, urlsplit

from devtools.simulator.clock import REGULAR, ClockSetting
from devtools.simulator.oauth import Grant, OAuthApp, OAuthServer
from devtools.simulator.responses import (
    Reply,
    account_body,
    clock_reply,
    error_reply,
    orders_reply,
    positions_body,
    tenant_info,
)
from devtools.simulator.stream import STREAM_PATH, StreamHub, is_upgrade
from devtools.simulator.stream_admin import (
    cancel_order,
    place_order,
    resolver,
    stream_admin,
    tenant_admin,
)
from devtools.simulator.tenants import (
    DuplicateTenantError,
    Scenario,
    SimTenant,
    TenantRegistry,
    Verdict,
)
from devtools.simulator.trading import OrderEngine

_LOG = logging.getLogger("devtools.simulator")
_TRADING_PATHS = frozenset({"/v2/account", "/v2/positions", "/v2/orders", "/v2/clock"})
_ORDER_PREFIX = "/v2/orders/"
_OAUTH_PATHS = {"/oauth/authorize": "GET", "/oauth/token": "POST"}
_TENANT_FIELDS = frozenset({"key_id", "secret_key", "scenario", "cash", "positions", "seed"})
_APP_FIELDS = frozenset({"client_id", "client_secret", "redirect_uris"})
_REVOKE_FIELDS = frozenset({"tenant", "client_id", "token"})
_MAX_BODY_BYTES = 1 << 20


@dataclass(frozen=True)
class RequestAuth:
    """What a Trading API request authenticates with: an OAuth access token (``bearer``)
    if it sends one, else the key pair. ``repr`` shows none of them."""

    key_id: str | None = field(default=None, repr=False)
    secret: str | None = field(default=None, repr=False)
    bearer: str | None = field(default=None, repr=False)


class RequestStats:
    """Counts of Trading API requests (admin calls are not counted), safe across threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._total = 0
        self._by_endpoint: Counter[str] = Counter()
        self._by_status: Counter[str] = Counter()
        self._in_flight = 0
        self._max_in_flight = 0

    def begin(self, endpoint: str) -> None:
        with self._lock:
            self._total += 1
            self._by_endpoint[endpoint] += 1
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)

    def end(self, status: int | None) -> None:
        """Record the answer; ``None`` means the connection was dropped at shutdown."""
        with self._lock:
            self._in_flight -= 1
            self._by_status["aborted" if status is None else str(status)] += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "total": self._total,
                "by_endpoint": dict(self._by_endpoint),
                "by_status": dict(self._by_status),
                "in_flight": self._in_flight,
                "max_in_flight": self._max_in_flight,
            }

    def reset(self) -> None:
        with self._lock:
            self._total = 0
            self._by_endpoint.clear()
            self._by_status.clear()
            self._max_in_flight = self._in_flight


class SimulatorCore:
    """Request handling independent of sockets: ``(method, path, ...) -> Reply``."""

    def __init__(self, default_latency_ms: float) -> None:
        self.registry = TenantRegistry()
        self.stats = RequestStats()
        self.stopping = threading.Event()
        self.default_latency_ms = default_latency_ms
        self.clock: ClockSetting = REGULAR
        """What ``/v2/clock`` answers; replaced whole (one reference), so no lock."""
        self.oauth = OAuthServer(self.registry)
        self.stream = StreamHub(resolver(self.registry, self.oauth), self.stopping)
        """The trade-update stream (``/stream``): :mod:`devtools.simulator.stream`."""
        self.orders = OrderEngine(self.stream.publish, self.stopping)

    def stats_snapshot(self) -> dict[str, Any]:
        return {**self.stats.snapshot(), "tenants": len(self.registry)}

    def reset_stats(self) -> None:
        self.stats.reset()
        for tenant in self.registry.all():
            tenant.reset_requests()

    def trading(
        self, method: str, path: str, query: str, auth: RequestAuth, body: bytes = b""
    ) -> Reply | None:
        """Serve one Trading API request; ``None`` means drop the connection (shutting down)."""
        one_order = path.startswith(_ORDER_PREFIX) and len(path) > len(_ORDER_PREFIX)
        if path not in _TRADING_PATHS and not one_order:
            self.stats.begin("unknown")
            self.stats.end(404)
            return error_reply(404)
        self.stats.begin(f"{method} {_ORDER_PREFIX + '{id}' if one_order else path}")
        reply: Reply | None = None
        try:
            reply = self._serve(method, path, query, auth, body)
            return reply
        finally:
            self.stats.end(None if reply is None else reply.status)

    def _serve(
        self, method: str, path: str, query: str, auth: RequestAuth, body: bytes
    ) -> Reply | None:
        if not _method_allowed(method, path):
            return error_reply(405)
        if auth.bearer is not None:
            tenant = self.oauth.tenant_for(auth.bearer)
            authenticated = tenant is not None
        else:
            tenant = self.registry.get(auth.key_id) if auth.key_id else None
            authenticated = tenant is not None and tenant.secret_matches(auth.secret)
        if tenant is None:
            verdict = Verdict(self.default_latency_ms / 1000.0, 401)
        else:
            verdict = tenant.admit(authenticated, self.default_latency_ms)
        if verdict.delay_s > 0 and self.stopping.wait(verdict.delay_s):
            return None
        if tenant is None or verdict.fail_status is not None:
            return error_reply(verdict.fail_status or 401)
        now = datetime.now(UTC)
        match path:
            case "/v2/account":
                return Reply(200, account_body(tenant, tenant.tick(), now))
            case "/v2/positions":
                return Reply(200, positions_body(tenant.tick()))
            case "/v2/clock":
                return clock_reply(self.clock, now)
            case _:
                return self._orders_route(method, path, query, tenant, body)

    def _orders_route(
        self, method: str, path: str, query: str, tenant: SimTenant, body: bytes
    ) -> Reply:
        if method == "POST":
            return place_order(self.orders, tenant, body, admin=False)
        if method == "DELETE":
            return cancel_order(self.orders, tenant, path.removeprefix(_ORDER_PREFIX))
        return orders_reply(tenant.orders, query)

    def admin(self, method: str, path: str, body: bytes) -> Reply:  # noqa: PLR0912 - a case a route
        """The ``/_sim/`` API: manage tenants and scenarios at run time, read counters."""
        match method, path.strip("/").split("/")[1:]:
            case "GET", ["stats"]:
                return Reply(200, self.stats_snapshot())
            case "POST", ["reset-stats"]:
                self.reset_stats()
                return Reply(200, self.stats_snapshot())
            case "GET", ["tenants"]:
                return Reply(200, [tenant_info(t) for t in self.registry.all()])
            case "POST", ["tenants"]:
                return self._create_tenant(body)
            case "GET", ["tenants", key_id]:
                tenant = self.registry.get(key_id)
                return error_reply(404, "tenant not found") if tenant is None else _info(tenant)
            case "PUT", ["tenants", key_id, "scenario"]:
                return self._put_scenario(key_id, body)
            case "GET", ["clock"]:
                return Reply(200, self.clock.to_dict())
            case "PUT", ["clock"]:
                return self._put_clock(body)
            case "DELETE", ["clock"]:
                self.clock = REGULAR
                return Reply(200, self.clock.to_dict())
            case _, ["oauth", *route]:
                return self._oauth_admin(method, route, body)
            case _, ["stream", *route]:
                return stream_admin(self.stream, method, route, body)
            case _, ["tenants", key_id, ("orders" | "fills" | "stream") as what]:
                tenant = self.registry.get(key_id)
                if tenant is None:
                    return error_reply(404, "tenant not found")
                return tenant_admin(
                    self.stream, self.orders, tenant, method=method, what=what, body=body
                )
            case _, (
                ["stats"]
                | ["reset-stats"]
                | ["tenants"]
                | ["clock"]
                | ["tenants", _]
                | ["tenants", _, "scenario"]
            ):
                return error_reply(405)
            case _:
                return error_reply(404)

    def _create_tenant(self, body: bytes) -> Reply:
        try:
            data = _json_object(body or b"{}")
            unknown = sorted(set(data) - _TENANT_FIELDS)
            if unknown:
                raise ValueError(f"unknown tenant field(s): {', '.join(unknown)}")
            scenario = data.get("scenario")
            tenant = self.registry.create(
                scenario=None if scenario is None else Scenario.from_dict(scenario),
                key_id=data.get("key_id"),
                secret_key=data.get("secret_key"),
                seed=data.get("seed"),
                cash=data.get("cash"),
                positions=data.get("positions"),
            )
        except DuplicateTenantError as exc:
            return error_reply(409, str(exc))
        except ValueError as exc:
            return error_reply(400, str(exc))
        # The only response that ever carries a secret: the caller needs it to use the tenant.
        return Reply(201, {**tenant_info(tenant), "secret_key": tenant.secret_key})

    def _oauth_admin(self, method: str, route: list[str], body: bytes) -> Reply:
        """``/_sim/oauth/``: register apps, list grants, revoke tokens."""
        match method, route:
            case "GET", ["apps"]:
                return Reply(200, [app.info() for app in self.oauth.apps()])
            case "POST", ["apps"]:
                return self._create_app(body)
            case "GET", ["grants"]:
                return Reply(200, [grant.info() for grant in self.oauth.grants()])
            case "POST", ["revoke"]:
                return self._revoke(body)
            case _:
                return error_reply(405 if route in (["apps"], ["grants"], ["revoke"]) else 404)

    def _create_app(self, body: bytes) -> Reply:
        try:
            data = _json_object(body)
            unknown = sorted(set(data) - _APP_FIELDS)
            if unknown:
                raise ValueError(f"unknown app field(s): {', '.join(unknown)}")
            app = self.oauth.add_app(
                data.get("redirect_uris") or (),
                client_id=data.get("client_id"),
                client_secret=data.get("client_secret"),
            )
        except ValueError as exc:
            return error_reply(400, str(exc))
        # With the tenant creation, the only answers that carry a secret: the caller needs it.
        return Reply(201, {**app.info(), "client_secret": app.client_secret})

    def _revoke(self, body: bytes) -> Reply:
        try:
            data = _json_object(body)
            unknown = sorted(set(data) - _REVOKE_FIELDS)
            if unknown:
                raise ValueError(f"unknown revoke field(s): {', '.join(unknown)}")
            if not all(isinstance(value, str) for value in data.values()):
                raise ValueError("tenant, client_id and token must be strings")
            revoked = self.oauth.revoke(**data)
        except ValueError as exc:
            return error_reply(400, str(exc))
        return Reply(200, {"revoked": revoked})

    def _put_scenario(self, key_id: str, body: bytes) -> Reply:
        tenant = self.registry.get(key_id)
        if tenant is None:
            return error_reply(404, "tenant not found")
        try:
            scenario = Scenario.from_dict(_json_object(body))
        except ValueError as exc:
            return error_reply(400, str(exc))
        tenant.set_scenario(scenario)
        return _info(tenant)

    def _put_clock(self, body: bytes) -> Reply:
        try:
            setting = ClockSetting.from_dict(_json_object(body))
        except ValueError as exc:
            return error_reply(400, str(exc))
        self.clock = setting
        return Reply(200, setting.to_dict())


def _method_allowed(method: str, path: str) -> bool:
    if path.startswith(_ORDER_PREFIX):
        return method == "DELETE"
    if path == "/v2/orders":
        return method in ("GET", "POST")
    return method == "GET"


def _info(tenant: SimTenant) -> Reply:
    return Reply(200, tenant_info(tenant))


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError("request body must be valid JSON") from None
    if not isinstance(data, dict):
        raise ValueError("request body must be a JSON object")
    return data


class _SimHTTPServer(ThreadingHTTPServer):
    """Threaded server with a deep accept backlog and tracked connections (cut on stop)."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(
        self, address: tuple[str, int], core: SimulatorCore, idle_timeout_s: float
    ) -> None:
        self.core = core
        self.idle_timeout_s = idle_timeout_s
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN, which can stall on reverse DNS.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def track(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.add(connection)

    def untrack(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(connection)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by the client
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up (timeouts, shutdown) are routine; details stay at debug level.
        _LOG.debug("connection ended with an error", exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    """Parses HTTP, delegates to SimulatorCore, writes JSON. Logs no headers or queries."""

    protocol_version = "HTTP/1.1"
    server_version = "AlpacaSimulator/1.0"
    sys_version = ""
    disable_nagle_algorithm = True
    # Buffered writes: headers and body leave in one send (handle_one_request flushes), which
    # matters with hundreds of threads, where every blocking call means re-taking the GIL.
    wbufsize = -1
    _log_route = "(unparsed)"

    @property
    def _sim_server(self) -> _SimHTTPServer:
        return cast(_SimHTTPServer, self.server)

    def setup(self) -> None:
        super().setup()
        # Idle keep-alive connections give their thread back instead of holding it forever.
        self.connection.settimeout(self._sim_server.idle_timeout_s)
        self._sim_server.track(self.connection)

    def finish(self) -> None:
        self._sim_server.untrack(self.connection)
        super().finish()

    def _dispatch(self) -> None:
        core = self._sim_server.core
        url = urlsplit(self.path)
        if url.path == STREAM_PATH and self.command == "GET" and is_upgrade(self.headers):
            self._log_route = STREAM_PATH
            self.close_connection = True
            # The client sends nothing after its upgrade request before the 101 answer, so
            # nothing is left in rfile's buffer: the websocket reads the socket itself.
            sock = self.connection
            core.stream.serve(sock, lambda: sock.recv(65536), url.path, self.headers)
            return
        body = self._read_body()
        if body is None:
            return
        try:
            if url.path == "/_sim" or url.path.startswith("/_sim/"):
                self._log_route = _admin_route(url.path)
                reply: Reply | None = core.admin(self.command, url.path, body)
            elif url.path in _OAUTH_PATHS:
                self._log_route = url.path  # never the query: it holds the code and state
                if self.command != _OAUTH_PATHS[url.path]:
                    reply = error_reply(405)
                elif url.path == "/oauth/authorize":
                    reply = core.oauth.authorize(url.query)
                else:
                    reply = core.oauth.token(body, self.headers.get("Content-Type"))
            else:
                known = url.path in _TRADING_PATHS or url.path.startswith(_ORDER_PREFIX)
                self._log_route = url.path if known else "(unknown path)"
                auth = RequestAuth(
                    key_id=self.headers.get("APCA-API-KEY-ID"),
                    secret=self.headers.get("APCA-API-SECRET-KEY"),
                    bearer=_bearer(self.headers.get("Authorization")),
                )
                reply = core.trading(self.command, url.path, url.query, auth, body)
        except Exception:  # noqa: BLE001 - a simulator bug must still answer, as Alpaca would
            _LOG.exception("simulator failed to handle %s %s", self.command, self._log_route)
            reply = error_reply(500)
        if reply is None:
            self.close_connection = True
        else:
            self._send(reply)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch

    def _read_body(self) -> bytes | None:
        if self.headers.get("Transfer-Encoding"):
            self.send_error(411)
            return None
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= _MAX_BODY_BYTES:
            self.send_error(400 if length < 0 else 413)
            return None
        return self.rfile.read(length) if length else b""

    def _send(self, reply: Reply, *, close: bool = False) -> None:
        data = json.dumps(reply.body, separators=(",", ":")).encode()
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in reply.headers:
            self.send_header(name, value)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Protocol-level errors as Alpaca JSON; never echoes the request line or headers."""
        self._send(error_reply(code), close=True)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        _LOG.debug("%s %s %s", self.command, self._log_route, code)

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: the default would print request lines and errors to stderr."""


def _bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _admin_route(path: str) -> str:
    parts = path.strip("/").split("/")
    if len(parts) >= 3 and parts[1] == "tenants":
        parts[2] = "{key_id}"
    return "/" + "/".join(parts)


class AlpacaSimulator:
    """In-process Alpaca paper Trading API v2 stand-in; see the package docstring."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        default_latency_ms: float = 0.0,
        *,
        idle_timeout_s: float = 30.0,
    ) -> None:
        self._address = (host, port)
        self._idle_timeout_s = idle_timeout_s
        self._core = SimulatorCore(0.0)
        self.default_latency_ms = default_latency_ms
        self._server: _SimHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def default_latency_ms(self) -> float:
        """Latency for tenants whose scenario leaves ``latency_ms`` unset; settable live."""
        return self._core.default_latency_ms

    @default_latency_ms.setter
    def default_latency_ms(self, value: float) -> None:
        Scenario(latency_ms=value)  # same validation as a scenario's latency
        self._core.default_latency_ms = value

    def start(self) -> AlpacaSimulator:
        """Bind and serve in a background thread (port 0 picks a free port)."""
        if self._server is not None:
            raise RuntimeError("simulator already started")
        self._core.stopping.clear()
        self._server = _SimHTTPServer(self._address, self._core, self._idle_timeout_s)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="alpaca-simulator",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving: wakes hanging requests, cuts keep-alive connections, frees the port."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._core.stopping.set()
        self._core.orders.stop()
        self._core.stream.drop_all()
        server.shutdown()
        server.close_connections()
        server.server_close()
        thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> AlpacaSimulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("simulator is not running")
        return self._server.server_port

    @property
    def base_url(self) -> str:
        """What alpaca-py gets as ``url_override`` (it appends ``/v2/...`` itself)."""
        return f"http://{self._address[0]}:{self.port}"

    def add_tenant(
        self,
        scenario: Scenario | None = None,
        key_id: str | None = None,
        secret_key: str | None = None,
        seed: int | None = None,
        *,
        cash: str | float | None = None,
        positions: Sequence[Mapping[str, Any]] | None = None,
    ) -> SimTenant:
        """Create a tenant; absent keys are generated in Alpaca's shape (PK..., 40 chars)."""
        return self._core.registry.create(
            scenario=scenario,
            key_id=key_id,
            secret_key=secret_key,
            seed=seed,
            cash=cash,
            positions=positions,
        )

    def tenant(self, key_id: str) -> SimTenant:
        tenant = self._core.registry.get(key_id)
        if tenant is None:
            raise KeyError("unknown tenant")
        return tenant

    def tenants(self) -> list[SimTenant]:
        return self._core.registry.all()

    def set_scenario(self, key_id: str, scenario: Scenario) -> None:
        self.tenant(key_id).set_scenario(scenario)

    def stats(self) -> dict[str, Any]:
        """Trading API counters: total, by_endpoint, by_status, in_flight, tenants."""
        return self._core.stats_snapshot()

    def set_clock(self, setting: ClockSetting) -> None:
        """What ``/v2/clock`` answers from now on (:data:`REGULAR`: the regular session)."""
        self._core.clock = setting

    @property
    def clock(self) -> ClockSetting:
        return self._core.clock

    @property
    def stream(self) -> StreamHub:
        """The trade-update stream: counters, scenarios (:mod:`devtools.simulator.stream`)."""
        return self._core.stream

    @property
    def orders(self) -> OrderEngine:
        """Orders and their fills (:mod:`devtools.simulator.trading`)."""
        return self._core.orders

    def requests_for(self, key_id: str) -> int:
        return self.tenant(key_id).requests

    def reset_stats(self) -> None:
        self._core.reset_stats()

    def add_oauth_app(
        self,
        redirect_uris: Sequence[str],
        client_id: str | None = None,
        client_secret: str | None = None,
    ) -> OAuthApp:
        """Register an OAuth app (absent credentials are generated)."""
        return self._core.oauth.add_app(redirect_uris, client_id, client_secret)

    def oauth_grants(self) -> list[Grant]:
        """Every access token issued so far, revoked ones included."""
        return self._core.oauth.grants()

    def revoke_oauth_tokens(
        self, *, tenant: str | None = None, client_id: str | None = None, token: str | None = None
    ) -> int:
        """Revoke the live tokens matching every given filter; returns how many."""
        return self._core.oauth.revoke(tenant=tenant, client_id=client_id, token=token)

    def authorize(
        self,
        app: OAuthApp,
        redirect_uri: str,
        *,
        tenant: str | None = None,
        env: str = "paper",
        state: str = "state",
    ) -> str:
        """The tenant's browser at ``GET /oauth/authorize`` approving ``app`` for account
        ``tenant`` (a new one when ``None``): the code the redirect carries (``ValueError``
        naming the error when Alpaca would not redirect with one)."""
        params = {"response_type": "code", "client_id": app.client_id}
        params |= {"redirect_uri": redirect_uri, "state": state, "env": env}
        if tenant is not None:
            params["tenant"] = tenant
        reply = self._core.oauth.authorize(urlencode(params))
        location = dict(reply.headers).get("Location")
        query = parse_qs(urlsplit(location).query) if location else {}
        if reply.status != 302 or "code" not in query:
            error = query.get("error", [str(reply.body)])[0]
            raise ValueError(f"authorize refused: {error}")
        return query["code"][0]

    def access_token(self, app: OAuthApp, redirect_uri: str, *, tenant: str | None = None) -> str:
        """The whole grant as a tenant and the app would do it: :meth:`authorize`, then the
        code exchanged at ``POST /oauth/token``; the access token (``ValueError`` when
        refused)."""
        code = self.authorize(app, redirect_uri, tenant=tenant)
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
        form |= {"client_id": app.client_id, "client_secret": app.client_secret}
        reply = self._core.oauth.token(
            urlencode(form).encode(), "application/x-www-form-urlencoded"
        )
        body = reply.body if isinstance(reply.body, dict) else {}
        if reply.status != 200 or not isinstance(body.get("access_token"), str):
            raise ValueError(f"token refused: {body.get('error', reply.status)}")
        token: str = body["access_token"]
        return token
