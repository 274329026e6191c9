"""The simulator's trade-update stream (``/stream``) and orders: Alpaca's protocol with both
auth forms and OAuth, binary frames, one stream per account (a second refused and counted),
``POST /v2/orders`` producing ``new`` / ``partial_fill`` / ``fill``, ``DELETE`` producing
``canceled``, and the scenarios (drop all, refuse auth, slow consumer, held elsewhere)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from devtools.simulator import AlpacaSimulator, SimTenant
from devtools.simulator.stream import SlowConsumer
from devtools.simulator.trading import FillPlan

REDIRECT = "http://127.0.0.1:5000/cb"


@pytest.fixture
def sim() -> Iterator[AlpacaSimulator]:
    with AlpacaSimulator() as simulator:
        yield simulator


def ws_url(sim: AlpacaSimulator) -> str:
    return sim.base_url.replace("http://", "ws://") + "/stream"


def recv(ws: ClientConnection, timeout: float = 5.0) -> tuple[dict[str, Any], bool]:
    frame = ws.recv(timeout)
    return json.loads(frame), isinstance(frame, bytes)


def listen(sim: AlpacaSimulator, auth: dict[str, Any]) -> ClientConnection:
    ws = connect(ws_url(sim), compression=None, legacy=True)
    ws.send(json.dumps(auth))
    answer, binary = recv(ws)
    assert binary, "the paper endpoint answers in binary frames"
    assert answer == {
        "stream": "authorization",
        "data": {"action": "authenticate", "status": "authorized"},
    }
    ws.send(json.dumps({"action": "listen", "data": {"streams": ["trade_updates"]}}))
    assert recv(ws)[0] == {"stream": "listening", "data": {"streams": ["trade_updates"]}}
    return ws


def keys_auth(tenant: SimTenant) -> dict[str, Any]:
    return {"action": "auth", "key": tenant.key_id, "secret": tenant.secret_key}


def oauth_token(sim: AlpacaSimulator, tenant: SimTenant) -> str:
    return sim.access_token(sim.add_oauth_app([REDIRECT]), REDIRECT, tenant=tenant.key_id)


@pytest.mark.parametrize("form", ["auth", "authenticate", "oauth"])
def test_every_auth_form_reaches_the_accounts_updates(sim: AlpacaSimulator, form: str) -> None:
    tenant = sim.add_tenant()
    auth = {
        "auth": keys_auth(tenant),
        "authenticate": {
            "action": "authenticate",
            "data": {"key_id": tenant.key_id, "secret_key": tenant.secret_key},
        },
        "oauth": {"action": "authenticate", "data": {"oauth_token": oauth_token(sim, tenant)}},
    }[form]
    with listen(sim, auth) as ws:
        placed = requests.post(
            f"{sim.base_url}/v2/orders",
            headers={"APCA-API-KEY-ID": tenant.key_id, "APCA-API-SECRET-KEY": tenant.secret_key},
            json={
                "symbol": "AAPL",
                "qty": "2",
                "side": "buy",
                "type": "market",
                "time_in_force": "day",
            },
            timeout=5,
        )
        assert placed.status_code == 200, placed.text
        new, binary = recv(ws)
        fill, _ = recv(ws)
    assert binary
    assert new["stream"] == "trade_updates" and new["data"]["event"] == "new"
    assert fill["data"]["event"] == "fill"
    assert fill["data"]["order"]["id"] == placed.json()["id"]
    assert fill["data"]["order"]["status"] == "filled" and fill["data"]["qty"] == "2"
    assert fill["data"]["timestamp"].endswith("Z") and len(fill["data"]["timestamp"]) == 30


def test_partial_fills_then_a_fill_and_the_account_follows(sim: AlpacaSimulator) -> None:
    tenant = sim.add_tenant(cash="10000", positions=[])
    sim.orders.set_plan(tenant, FillPlan(fill_delay_ms=0, partial_fills=5, fill_interval_ms=1))
    with listen(sim, keys_auth(tenant)) as ws:
        requests.post(
            f"{sim.base_url}/_sim/tenants/{tenant.key_id}/orders",
            json={"symbol": "KO", "qty": 10},
            timeout=5,
        )
        events = [recv(ws)[0]["data"] for _ in range(6)]
    assert [e["event"] for e in events] == ["new"] + ["partial_fill"] * 4 + ["fill"]
    assert [e["order"]["filled_qty"] for e in events] == ["0", "2", "4", "6", "8", "10"]
    assert events[-1]["position_qty"] == "10"
    assert [h.symbol for h in tenant.holdings] == ["KO"]
    assert tenant.cash < 10000


def test_a_resting_order_is_canceled_with_an_update(sim: AlpacaSimulator) -> None:
    tenant = sim.add_tenant()
    headers = {"APCA-API-KEY-ID": tenant.key_id, "APCA-API-SECRET-KEY": tenant.secret_key}
    with listen(sim, keys_auth(tenant)) as ws:
        order = requests.post(
            f"{sim.base_url}/v2/orders",
            headers=headers,
            json={"symbol": "MSFT", "qty": 1, "type": "limit", "limit_price": "100"},
            timeout=5,
        ).json()
        assert recv(ws)[0]["data"]["event"] == "new"
        gone = requests.delete(
            f"{sim.base_url}/v2/orders/{order['id']}", headers=headers, timeout=5
        )
        assert gone.status_code == 204
        canceled = recv(ws)[0]["data"]
    assert canceled["event"] == "canceled" and canceled["order"]["status"] == "canceled"
    again = requests.delete(f"{sim.base_url}/v2/orders/{order['id']}", headers=headers, timeout=5)
    assert again.status_code == 422


def test_a_second_stream_for_an_account_is_refused_and_counted(sim: AlpacaSimulator) -> None:
    tenant = sim.add_tenant()
    with listen(sim, keys_auth(tenant)), connect(ws_url(sim), compression=None) as second:
        second.send(json.dumps(keys_auth(tenant)))
        answer, _ = recv(second)
        with pytest.raises(ConnectionClosed):
            recv(second)
    assert answer["data"] == {
        "action": "authenticate",
        "status": "unauthorized",
        "message": "connection limit exceeded",
    }
    stats = sim.stream.stats()
    assert stats["refused_second"] == 1 and stats["authorized"] == 1
    # Closed, the account's stream may be opened again at once.
    with listen(sim, keys_auth(tenant)):
        pass
    assert sim.stream.stats()["refused_second"] == 1


def test_an_account_held_elsewhere_is_refused_but_not_counted_as_ours(sim: AlpacaSimulator) -> None:
    tenant = sim.add_tenant()
    requests.put(
        f"{sim.base_url}/_sim/tenants/{tenant.key_id}/stream",
        json={"held_elsewhere": True},
        timeout=5,
    )
    with connect(ws_url(sim), compression=None) as ws:
        ws.send(json.dumps(keys_auth(tenant)))
        assert recv(ws)[0]["data"]["message"] == "connection limit exceeded"
    stats = sim.stream.stats()
    assert stats["refused_held_elsewhere"] == 1 and stats["refused_second"] == 0


@pytest.mark.parametrize("bad", ["wrong-secret", "unknown-key", "refuse-all"])
def test_refused_authentication_closes_the_stream(sim: AlpacaSimulator, bad: str) -> None:
    tenant = sim.add_tenant()
    auth = keys_auth(tenant)
    if bad == "wrong-secret":
        auth["secret"] = "not-the-secret"
    elif bad == "unknown-key":
        auth["key"] = "PKNOBODY000000000000"
    else:
        requests.put(f"{sim.base_url}/_sim/stream/scenario", json={"refuse_auth": True}, timeout=5)
    with connect(ws_url(sim), compression=None) as ws:
        ws.send(json.dumps(auth))
        answer, _ = recv(ws)
        with pytest.raises(ConnectionClosed):
            recv(ws)
    assert answer["data"]["status"] == "unauthorized" and "message" not in answer["data"]
    assert sim.stream.stats()["auth_refused"] == 1


def test_drop_all_cuts_every_stream_at_once(sim: AlpacaSimulator) -> None:
    tenants = [sim.add_tenant() for _ in range(3)]
    streams = [listen(sim, keys_auth(t)) for t in tenants]
    dropped = requests.post(f"{sim.base_url}/_sim/stream/drop", timeout=5).json()
    assert dropped == {"dropped": 3}
    for ws in streams:
        with pytest.raises(ConnectionClosed):
            ws.recv(5)
    assert sim.stream.stats()["open"] == 0


def test_a_slow_consumer_is_cut_off_and_its_backlog_lost(sim: AlpacaSimulator) -> None:
    tenant = sim.add_tenant()
    sim.stream.set_slow_consumer(tenant.key_id, SlowConsumer(delay_ms=500, max_backlog=3))
    sim.orders.set_plan(tenant, FillPlan(fill_delay_ms=0, partial_fills=10, fill_interval_ms=1))
    with listen(sim, keys_auth(tenant)) as ws:
        requests.post(
            f"{sim.base_url}/_sim/tenants/{tenant.key_id}/orders",
            json={"symbol": "KO", "qty": 10},
            timeout=5,
        )
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                ws.recv(5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    assert closed.value.rcvd.reason == "slow consumer"
    stats = sim.stream.stats()
    assert stats["slow_consumer_closes"] == 1 and stats["events_lost"] >= 4


@pytest.mark.parametrize("frames", ["text", "mixed"])
def test_frames_can_be_text_or_mixed(sim: AlpacaSimulator, frames: str) -> None:
    requests.put(f"{sim.base_url}/_sim/stream/scenario", json={"frames": frames}, timeout=5)
    tenant = sim.add_tenant()
    with connect(ws_url(sim), compression=None) as ws:
        ws.send(json.dumps(keys_auth(tenant)))
        first = ws.recv(5)
        ws.send(json.dumps({"action": "listen", "data": {"streams": ["trade_updates"]}}))
        second = ws.recv(5)
    kinds = {type(first), type(second)}
    assert kinds == ({str} if frames == "text" else {str, bytes})


def test_the_stream_counts_attempts_per_second(sim: AlpacaSimulator) -> None:
    tenant = sim.add_tenant()
    for _ in range(3):
        with listen(sim, keys_auth(tenant)):
            pass
        time.sleep(0.01)
    stats = requests.get(f"{sim.base_url}/_sim/stream", timeout=5).json()
    assert stats["handshakes"] == 3 and stats["attempts_per_second_max"] == 3


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"symbol": "AAPL"}, 422),
        ({"symbol": "AAPL", "qty": 1, "side": "short"}, 422),
        ({"symbol": "AAPL", "qty": 1, "type": "limit"}, 422),
        ({"symbol": "AAPL", "qty": 1, "color": "blue"}, 422),
        ({"symbol": "AAPL", "qty": 1}, 200),
    ],
)
def test_order_requests_are_validated(
    sim: AlpacaSimulator, body: dict[str, Any], status: int
) -> None:
    tenant = sim.add_tenant()
    headers = {"APCA-API-KEY-ID": tenant.key_id, "APCA-API-SECRET-KEY": tenant.secret_key}
    assert (
        requests.post(
            f"{sim.base_url}/v2/orders", headers=headers, json=body, timeout=5
        ).status_code
        == status
    )
