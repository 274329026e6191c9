"""The Alpaca simulator, exercised through the real alpaca-py TradingClient.

The sync worker only ever sees the simulator through alpaca-py, so these tests assert what
alpaca-py makes of it: parsed models on success, and the exception types the worker
classifies (APIError with a status code, requests' Timeout) on each failure scenario.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest
import requests
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import AccountStatus, OrderStatus, QueryOrderStatus
from alpaca.trading.models import Clock, Order, Position, TradeAccount
from alpaca.trading.requests import GetOrdersRequest

from devtools.simulator import REGULAR, AlpacaSimulator, ClockSetting, Scenario, SimTenant
from devtools.simulator.responses import clock_body

CENT = Decimal("0.01")
Connect = Callable[..., TradingClient]


class _TimeoutSession(requests.Session):
    """alpaca-py has no timeout parameter; a session with a default one is how it gets one."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self._timeout = timeout

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self._timeout)
        return super().request(*args, **kwargs)


@pytest.fixture
def sim() -> Iterator[AlpacaSimulator]:
    with AlpacaSimulator(port=0) as simulator:
        yield simulator


@pytest.fixture
def connect(sim: AlpacaSimulator) -> Iterator[Connect]:
    """TradingClient factory as production builds it: no built-in retries, a read timeout."""
    sessions: list[requests.Session] = []

    def make(
        tenant: SimTenant,
        *,
        key_id: str | None = None,
        secret: str | None = None,
        timeout: float = 5.0,
    ) -> TradingClient:
        client = TradingClient(
            tenant.key_id if key_id is None else key_id,
            tenant.secret_key if secret is None else secret,
            paper=True,
            url_override=sim.base_url,
        )
        client._retry = 0
        client._session = _TimeoutSession(timeout)
        sessions.append(client._session)
        return client

    yield make
    for session in sessions:
        session.close()


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def _money(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def _positions(client: TradingClient) -> list[Position]:
    """get_all_positions, asserting alpaca-py parsed every entry into its Position model."""
    positions = client.get_all_positions()
    assert all(isinstance(p, Position) for p in positions)
    return [p for p in positions if isinstance(p, Position)]


POSITIONS: list[dict[str, Any]] = [
    {"symbol": "AAPL", "qty": "10", "avg_entry_price": "150.00", "current_price": "200.00"},
    {"symbol": "ZZZZ", "qty": 2.5, "avg_entry_price": 10},
]


# --- successful calls parse into alpaca-py models ------------------------------------------


def test_account_parses_and_equity_is_cash_plus_market_value(
    sim: AlpacaSimulator, connect: Connect
) -> None:
    tenant = sim.add_tenant(seed=1, cash="50000.00", positions=POSITIONS)
    account = connect(tenant).get_account()

    assert isinstance(account, TradeAccount)
    assert str(account.id) == tenant.account_id
    assert account.account_number == tenant.account_number
    assert account.status == AccountStatus.ACTIVE
    assert account.cash == "50000.00"
    assert account.equity is not None and account.long_market_value is not None
    assert Decimal(account.equity) == Decimal("50000.00") + Decimal(account.long_market_value)
    assert account.portfolio_value == account.equity
    assert Decimal(account.long_market_value) > Decimal("2000")  # 10 AAPL near 200


def test_positions_parse_and_values_match_prices(sim: AlpacaSimulator, connect: Connect) -> None:
    tenant = sim.add_tenant(seed=2, positions=POSITIONS)
    positions = _positions(connect(tenant))

    assert [p.symbol for p in positions] == ["AAPL", "ZZZZ"]
    assert (positions[0].qty, positions[0].avg_entry_price) == ("10", "150.00")
    assert positions[1].qty == "2.5"
    for p in positions:
        assert p.market_value is not None and p.current_price is not None
        value = Decimal(p.market_value)
        assert value == _money(Decimal(p.qty) * Decimal(p.current_price))
        assert Decimal(p.cost_basis) == _money(Decimal(p.qty) * Decimal(p.avg_entry_price))
        assert p.unrealized_pl is not None
        assert Decimal(p.unrealized_pl) == value - Decimal(p.cost_basis)


def test_orders_parse_and_filter_by_status_and_limit(
    sim: AlpacaSimulator, connect: Connect
) -> None:
    tenant = sim.add_tenant(seed=3, positions=POSITIONS)
    client = connect(tenant)

    open_orders = client.get_orders()
    every = client.get_orders(GetOrdersRequest(status=QueryOrderStatus.ALL))
    closed = client.get_orders(GetOrdersRequest(status=QueryOrderStatus.CLOSED, limit=1))

    assert isinstance(open_orders, list) and isinstance(every, list) and isinstance(closed, list)
    assert all(isinstance(o, Order) for o in every)
    assert [o.status for o in open_orders] == [OrderStatus.NEW]
    assert len(every) == len(POSITIONS) + 1
    assert {o.symbol for o in every if o.status == OrderStatus.FILLED} == {"AAPL", "ZZZZ"}
    assert len(closed) == 1 and closed[0].status == OrderStatus.FILLED


def test_clock_parses(sim: AlpacaSimulator, connect: Connect) -> None:
    clock = connect(sim.add_tenant()).get_clock()

    assert isinstance(clock, Clock)
    assert clock.next_open > clock.timestamp and clock.next_close > clock.timestamp


@pytest.mark.parametrize(
    ("now", "is_open", "next_open", "next_close"),
    [
        # Saturday: closed until Monday
        ("2026-11-28T15:00:00+00:00", False, "2026-11-30T09:30:00", "2026-11-30T16:00:00"),
        # Tuesday 10:00 New York: open, closes today, opens tomorrow
        ("2026-12-01T15:00:00+00:00", True, "2026-12-02T09:30:00", "2026-12-01T16:00:00"),
        # Tuesday 08:00 New York: opens and closes today
        ("2026-12-01T13:00:00+00:00", False, "2026-12-01T09:30:00", "2026-12-01T16:00:00"),
    ],
)
def test_clock_follows_the_regular_session(
    now: str, is_open: bool, next_open: str, next_close: str
) -> None:
    body = clock_body(datetime.fromisoformat(now))

    assert body["is_open"] is is_open
    assert body["next_open"] == f"{next_open}-05:00"
    assert body["next_close"] == f"{next_close}-05:00"


def test_pinned_clock_answers_as_pinned_through_the_python_api(
    sim: AlpacaSimulator, connect: Connect
) -> None:
    client = connect(sim.add_tenant())
    opens = datetime.fromisoformat("2030-01-02T14:30:00+00:00")
    closes = datetime.fromisoformat("2030-01-02T21:00:00+00:00")

    sim.set_clock(ClockSetting(is_open=False, next_open=opens, next_close=closes))
    pinned = client.get_clock()
    sim.set_clock(REGULAR)
    regular = client.get_clock()

    assert isinstance(pinned, Clock) and pinned.is_open is False
    assert pinned.next_open == opens and pinned.next_close == closes
    assert isinstance(regular, Clock) and regular.next_open != opens
    assert sim.clock is REGULAR


def test_clock_admin_api_pins_fails_and_restores(
    sim: AlpacaSimulator, connect: Connect, http: requests.Session
) -> None:
    client = connect(sim.add_tenant())
    base = f"{sim.base_url}/_sim/clock"
    pin = {
        "is_open": True,
        "next_open": "2030-01-03T09:30:00-05:00",
        "next_close": "2030-01-02T16:00:00-05:00",
    }

    assert http.get(base, timeout=5).json()["mode"] == "regular"
    pinned = http.put(base, json=pin, timeout=5)
    clock = client.get_clock()
    failing = http.put(base, json={"fail_status": 503}, timeout=5)
    with pytest.raises(APIError) as info:
        client.get_clock()
    restored = http.delete(base, timeout=5)

    assert pinned.status_code == 200 and pinned.json()["mode"] == "pinned"
    assert isinstance(clock, Clock) and clock.is_open is True
    assert clock.next_close == datetime.fromisoformat(pin["next_close"])  # type: ignore[arg-type]
    assert failing.json()["mode"] == "failing" and info.value.status_code == 503
    assert restored.json()["mode"] == "regular" and sim.clock == REGULAR
    assert isinstance(client.get_clock(), Clock)
    assert client.get_account() is not None  # the other endpoints never followed the clock


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"is_open": True}, "pinned together"),
        (
            {
                "is_open": "yes",
                "next_open": "2030-01-01T00:00:00Z",
                "next_close": "2030-01-01T01:00:00Z",
            },
            "is_open must be",
        ),
        (
            {"is_open": False, "next_open": "soon", "next_close": "2030-01-01T01:00:00Z"},
            "next_open is not",
        ),
        (
            {
                "is_open": False,
                "next_open": "2030-01-01T00:00:00",
                "next_close": "2030-01-01T01:00:00Z",
            },
            "timezone",
        ),
        ({"fail_status": 200}, "fail_status must be"),
        ({"fail_status": True}, "fail_status must be"),
        (
            {
                "fail_status": 500,
                "is_open": True,
                "next_open": "2030-01-01T00:00:00Z",
                "next_close": "2030-01-01T01:00:00Z",
            },
            "not both",
        ),
        ({"bogus": 1}, "unknown clock field(s): bogus"),
        ([], "request body must be a JSON object"),
    ],
)
def test_clock_admin_rejects_invalid_settings(
    sim: AlpacaSimulator, http: requests.Session, body: object, message: str
) -> None:
    response = http.put(f"{sim.base_url}/_sim/clock", json=body, timeout=5)

    assert response.status_code == 400
    assert message in response.json()["message"]
    assert sim.clock == REGULAR
    assert http.post(f"{sim.base_url}/_sim/clock", json={}, timeout=5).status_code == 405


def test_prices_move_between_calls_and_follow_the_seed(
    sim: AlpacaSimulator, connect: Connect
) -> None:
    first, twin = sim.add_tenant(seed=42), sim.add_tenant(seed=42)
    client, twin_client = connect(first), connect(twin)

    before = {p.symbol: p.current_price for p in _positions(client)}
    after = {p.symbol: p.current_price for p in _positions(client)}
    twin_before = {p.symbol: p.current_price for p in _positions(twin_client)}

    assert before.keys() == after.keys() and len(before) >= 2
    assert all(before[symbol] != after[symbol] for symbol in before)
    assert twin_before == before


def test_tenants_see_only_their_own_account(sim: AlpacaSimulator, connect: Connect) -> None:
    alice = sim.add_tenant(positions=[{"symbol": "AAPL", "qty": 1, "avg_entry_price": 100}])
    bob = sim.add_tenant(positions=[{"symbol": "MSFT", "qty": 1, "avg_entry_price": 100}])

    alice_account, bob_account = connect(alice).get_account(), connect(bob).get_account()

    assert isinstance(alice_account, TradeAccount) and isinstance(bob_account, TradeAccount)
    assert (str(alice_account.id), str(bob_account.id)) == (alice.account_id, bob.account_id)
    assert [p.symbol for p in _positions(connect(alice))] == ["AAPL"]
    assert [p.symbol for p in _positions(connect(bob))] == ["MSFT"]
    with pytest.raises(APIError) as crossed:
        connect(alice, secret=bob.secret_key).get_account()
    assert crossed.value.status_code == 401


def test_many_tenants_concurrently() -> None:
    with AlpacaSimulator(default_latency_ms=20) as sim:
        tenants = [sim.add_tenant() for _ in range(20)]
        clients = {
            t.key_id: TradingClient(t.key_id, t.secret_key, paper=True, url_override=sim.base_url)
            for t in tenants
        }

        def sync(tenant: SimTenant) -> str:
            account = clients[tenant.key_id].get_account()
            assert isinstance(account, TradeAccount)
            return str(account.id)

        with ThreadPoolExecutor(max_workers=20) as pool:
            ids = list(pool.map(sync, tenants * 3))
        for client in clients.values():
            client._session.close()

        assert ids == [t.account_id for t in tenants * 3]
        stats = sim.stats()
        assert stats["by_status"] == {"200": 60}
        assert stats["max_in_flight"] > 1
        assert all(sim.requests_for(t.key_id) == 3 for t in tenants)


# --- failure scenarios map to the errors the worker classifies --------------------------------


@pytest.mark.parametrize(
    ("scenario", "status", "code"),
    [
        (Scenario(kind="bad_keys"), 401, 40110000),
        (Scenario(kind="forbidden"), 403, 40310000),
        (Scenario(kind="rate_limited"), 429, 42910000),
        (Scenario(kind="server_error"), 500, 50010000),
        (Scenario(kind="server_error", status=502), 502, 50210000),
        (Scenario(kind="server_error", status=504), 504, 50410000),
        (Scenario(kind="flaky", failure_rate=1.0), 503, 50310000),
    ],
)
def test_failure_scenarios_raise_api_error(
    sim: AlpacaSimulator, connect: Connect, scenario: Scenario, status: int, code: int
) -> None:
    tenant = sim.add_tenant(scenario)

    with pytest.raises(APIError) as raised:
        connect(tenant).get_account()

    assert raised.value.status_code == status
    assert raised.value.code == code
    body = raised.value.response.text
    assert tenant.secret_key not in body and tenant.key_id not in body


def test_rate_limited_sends_alpaca_rate_limit_headers(
    sim: AlpacaSimulator, connect: Connect
) -> None:
    tenant = sim.add_tenant(Scenario(kind="rate_limited"))

    with pytest.raises(APIError) as raised:
        connect(tenant).get_all_positions()

    headers = raised.value.response.headers
    assert headers["X-Ratelimit-Remaining"] == "0"
    assert int(headers["X-Ratelimit-Limit"]) > 0
    assert int(headers["X-Ratelimit-Reset"]) > time.time()
    assert raised.value.message == "rate limit exceeded"


@pytest.mark.parametrize("wrong", ["secret", "key"])
def test_unknown_key_or_wrong_secret_is_401_without_echo(
    sim: AlpacaSimulator, connect: Connect, wrong: str
) -> None:
    tenant = sim.add_tenant()
    if wrong == "secret":
        client = connect(tenant, secret="W" * 40)
    else:
        client = connect(tenant, key_id="PKUNKNOWN0000000000X", secret="S" * 40)

    with pytest.raises(APIError) as raised:
        client.get_account()

    assert raised.value.status_code == 401
    assert raised.value.message == "request is not authorized"
    body = raised.value.response.text
    assert "W" * 40 not in body and "S" * 40 not in body and "PK" not in body


def test_timeout_scenario_times_out_without_blocking_other_tenants(
    sim: AlpacaSimulator, connect: Connect
) -> None:
    hanging = sim.add_tenant(Scenario(kind="timeout", hang_seconds=5))
    healthy = sim.add_tenant()

    started = time.monotonic()
    with pytest.raises(requests.exceptions.Timeout):
        connect(hanging, timeout=0.5).get_account()
    assert time.monotonic() - started < 2

    started = time.monotonic()  # the hang is still in progress on the server
    assert isinstance(connect(healthy).get_account(), TradeAccount)
    assert time.monotonic() - started < 1
    assert sim.stats()["in_flight"] == 1


def test_stop_returns_promptly_while_a_request_hangs() -> None:
    sim = AlpacaSimulator().start()
    tenant = sim.add_tenant(Scenario(kind="timeout", hang_seconds=30))
    outcome: list[BaseException] = []

    def call() -> None:
        headers = {"APCA-API-KEY-ID": tenant.key_id, "APCA-API-SECRET-KEY": tenant.secret_key}
        try:
            requests.get(f"{sim.base_url}/v2/account", headers=headers, timeout=10)
        except requests.RequestException as exc:
            outcome.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    deadline = time.monotonic() + 5
    while sim.stats()["in_flight"] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)

    started = time.monotonic()
    sim.stop()
    caller.join(timeout=5)

    assert time.monotonic() - started < 1.5
    assert not caller.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], requests.ConnectionError)


def test_flaky_never_failing_is_healthy(sim: AlpacaSimulator, connect: Connect) -> None:
    client = connect(sim.add_tenant(Scenario(kind="flaky", failure_rate=0.0)))

    assert all(isinstance(client.get_account(), TradeAccount) for _ in range(5))


def test_fail_then_ok_fails_first_then_recovers(sim: AlpacaSimulator, connect: Connect) -> None:
    tenant = sim.add_tenant(Scenario(kind="fail_then_ok", fail_count=2, fail_status=429))
    client = connect(tenant)

    for _ in range(2):
        with pytest.raises(APIError) as raised:
            client.get_account()
        assert raised.value.status_code == 429
    assert isinstance(client.get_account(), TradeAccount)
    assert isinstance(client.get_all_positions(), list)
    assert sim.requests_for(tenant.key_id) == 4


def test_latency_default_and_per_scenario(sim: AlpacaSimulator, connect: Connect) -> None:
    sim.default_latency_ms = 150
    inherits = connect(sim.add_tenant(Scenario(kind="normal")))
    overrides = connect(sim.add_tenant(Scenario(kind="normal", latency_ms=0)))
    slow = connect(sim.add_tenant(Scenario(kind="latency", latency_ms=250)))

    def elapsed(client: TradingClient) -> float:
        started = time.monotonic()
        client.get_clock()
        return time.monotonic() - started

    assert elapsed(inherits) >= 0.15
    assert elapsed(overrides) < 0.15
    assert elapsed(slow) >= 0.25


def test_scenario_changes_at_run_time(sim: AlpacaSimulator, connect: Connect) -> None:
    tenant = sim.add_tenant()
    client = connect(tenant)

    sim.set_scenario(tenant.key_id, Scenario(kind="forbidden"))
    with pytest.raises(APIError) as raised:
        client.get_account()
    sim.set_scenario(tenant.key_id, Scenario(kind="normal"))

    assert raised.value.status_code == 403
    assert isinstance(client.get_account(), TradeAccount)


# --- admin API ----------------------------------------------------------------------------------


def test_admin_api_creates_tenants_usable_by_alpaca_py(
    sim: AlpacaSimulator, connect: Connect, http: requests.Session
) -> None:
    base = f"{sim.base_url}/_sim"
    created = http.post(
        f"{base}/tenants", json={"cash": "1000.00", "positions": POSITIONS, "seed": 5}, timeout=5
    )
    assert created.status_code == 201
    info = created.json()
    key_id, secret = info["key_id"], info["secret_key"]
    assert re.fullmatch(r"PK[A-Z0-9]{18}", key_id) and re.fullmatch(r"[A-Za-z0-9]{40}", secret)

    client = connect(sim.tenant(key_id))
    account = client.get_account()
    assert isinstance(account, TradeAccount)
    assert (str(account.id), account.cash) == (info["account_id"], "1000.00")

    listing = http.get(f"{base}/tenants", timeout=5)
    one = http.get(f"{base}/tenants/{key_id}", timeout=5).json()
    assert [t["key_id"] for t in listing.json()] == [key_id]
    assert secret not in listing.text and "secret_key" not in one
    assert one["requests"] == 1 and one["symbols"] == ["AAPL", "ZZZZ"]

    put = http.put(f"{base}/tenants/{key_id}/scenario", json={"kind": "rate_limited"}, timeout=5)
    assert put.status_code == 200 and put.json()["scenario"]["kind"] == "rate_limited"
    with pytest.raises(APIError) as raised:
        client.get_account()
    assert raised.value.status_code == 429

    stats = http.get(f"{base}/stats", timeout=5).json()
    assert stats["total"] == 2 and stats["tenants"] == 1
    assert stats["by_endpoint"] == {"GET /v2/account": 2}
    assert stats["by_status"] == {"200": 1, "429": 1}
    reset = http.post(f"{base}/reset-stats", timeout=5)
    assert reset.status_code == 200 and reset.json()["total"] == 0
    assert sim.requests_for(key_id) == 0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"kind": "nope"}, "scenario kind must be one of"),
        ({"kind": "flaky", "failure_rate": 2}, "failure_rate must be between 0 and 1"),
        ({"kind": "server_error", "status": 404}, "status must be between 500 and 599"),
        ({"kind": "latency", "latency_ms": "slow"}, "latency_ms must be a number"),
        ({"kind": "normal", "bogus": 1}, "unknown scenario field(s): bogus"),
        ([], "request body must be a JSON object"),
    ],
)
def test_admin_rejects_invalid_scenarios(
    sim: AlpacaSimulator, http: requests.Session, body: object, message: str
) -> None:
    tenant = sim.add_tenant()

    response = http.put(f"{sim.base_url}/_sim/tenants/{tenant.key_id}/scenario", json=body)

    assert response.status_code == 400
    assert message in response.json()["message"]
    assert tenant.scenario == Scenario()


def test_admin_errors(sim: AlpacaSimulator, http: requests.Session) -> None:
    base = f"{sim.base_url}/_sim"
    taken = sim.add_tenant(key_id="PKTAKEN")

    duplicate = http.post(f"{base}/tenants", json={"key_id": taken.key_id}, timeout=5)
    bad_position = http.post(f"{base}/tenants", json={"positions": [{"symbol": "x"}]}, timeout=5)
    not_json = http.post(f"{base}/tenants", data=b"{", timeout=5)
    missing = http.put(f"{base}/tenants/PKNOPE/scenario", json={"kind": "normal"}, timeout=5)

    assert duplicate.status_code == 409
    assert bad_position.status_code == 400 and "symbol" in bad_position.json()["message"]
    assert not_json.status_code == 400 and "valid JSON" in not_json.json()["message"]
    assert missing.status_code == 404 and missing.json()["message"] == "tenant not found"
    assert http.delete(f"{base}/tenants", timeout=5).status_code == 405
    assert len(sim.tenants()) == 1


def test_unknown_paths_and_methods(sim: AlpacaSimulator, http: requests.Session) -> None:
    tenant = sim.add_tenant()
    headers = {"APCA-API-KEY-ID": tenant.key_id, "APCA-API-SECRET-KEY": tenant.secret_key}

    unknown = http.get(f"{sim.base_url}/v2/watchlists", headers=headers, timeout=5)
    post = http.post(f"{sim.base_url}/v2/account", headers=headers, timeout=5)

    assert unknown.status_code == 404
    assert unknown.json() == {"code": 40410000, "message": "endpoint not found"}
    assert post.status_code == 405
    assert tenant.secret_key not in post.text + unknown.text


# --- secrets and the Python API -----------------------------------------------------------------


def test_secrets_stay_out_of_repr_listings_and_logs(
    sim: AlpacaSimulator,
    connect: Connect,
    http: requests.Session,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG, logger="devtools.simulator")
    tenant = sim.add_tenant(Scenario(kind="forbidden"))
    with pytest.raises(APIError):
        connect(tenant).get_account()
    with pytest.raises(APIError):
        connect(tenant, secret="X" * 40).get_account()
    http.get(f"{sim.base_url}/_sim/tenants/{tenant.key_id}", timeout=5)

    captured = capfd.readouterr()
    output = caplog.text + captured.out + captured.err
    assert "GET /v2/account 403" in caplog.text  # the access log does run
    assert tenant.secret_key not in output and "X" * 40 not in output
    assert tenant.key_id not in output
    assert tenant.secret_key not in repr(tenant)
    assert tenant.secret_key not in http.get(f"{sim.base_url}/_sim/tenants", timeout=5).text


def test_generated_keys_have_alpaca_shape_and_are_unique(sim: AlpacaSimulator) -> None:
    tenants = [sim.add_tenant() for _ in range(50)]

    assert all(re.fullmatch(r"PK[A-Z0-9]{18}", t.key_id) for t in tenants)
    assert all(re.fullmatch(r"[A-Za-z0-9]{40}", t.secret_key) for t in tenants)
    assert len({t.key_id for t in tenants}) == len({t.account_id for t in tenants}) == 50


def test_scenario_round_trips_and_validates() -> None:
    scenario = Scenario(kind="fail_then_ok", fail_count=3, fail_status=503, latency_ms=5)

    assert Scenario.from_dict(scenario.to_dict()) == scenario
    assert Scenario.from_dict({}) == Scenario(kind="normal")
    with pytest.raises(ValueError, match="fail_status"):
        Scenario(kind="fail_then_ok", fail_status=200)
    with pytest.raises(ValueError, match="hang_seconds"):
        Scenario(kind="timeout", hang_seconds=-1)
    with pytest.raises(ValueError, match="fail_count must be an integer"):
        Scenario.from_dict({"kind": "fail_then_ok", "fail_count": True})
    with pytest.raises(ValueError, match="JSON object"):
        Scenario.from_dict(["normal"])


def test_python_api_rejects_bad_input(sim: AlpacaSimulator) -> None:
    with pytest.raises(ValueError, match="key_id"):
        sim.add_tenant(key_id="has space")
    with pytest.raises(ValueError, match="cash"):
        sim.add_tenant(cash="-1")
    with pytest.raises(KeyError):
        sim.set_scenario("PKNOBODY", Scenario())
    with pytest.raises(RuntimeError):
        sim.start()


def test_base_url_needs_a_running_simulator() -> None:
    sim = AlpacaSimulator()
    with pytest.raises(RuntimeError):
        _ = sim.base_url
    with sim:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", sim.base_url)
    sim.stop()  # idempotent
