"""The stream gateway on the emulators, against the simulator's ``/stream``: updates become
order documents and coalesced syncs, a kill-switch or refused keys close the stream, a stream
held elsewhere is retried while polled, dropped streams come back with a reconciliation, and
instances share and hand over the buckets — never two connections for one account."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from google.cloud import firestore

from agenttrader import paths, streams
from agenttrader.deps import Deps
from devtools.localstack.gateways import GatewayThread, spawn
from devtools.localstack.seed import seed_user
from devtools.simulator import AlpacaSimulator, SimTenant
from publisher import reconcile, roster
from stream_gateway.orders import OrderWriter
from stream_gateway.protocol import TradeUpdate
from tests.pipeline_fixtures import doc, pull, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def db(pipeline_deps: Deps) -> firestore.Client:
    return pipeline_deps.firestore


def seed(
    sim: AlpacaSimulator, db: firestore.Client, count: int, prefix: str = "s"
) -> dict[str, SimTenant]:
    """``count`` eligible tenants with simulator accounts, and a built roster."""
    tenants = {}
    for n in range(count):
        account = sim.add_tenant()
        uid = f"{prefix}{n}"
        keys = {
            "key_id": account.key_id,
            "secret_key": account.secret_key,
            "base_url": sim.base_url,
        }
        seed_user(db, uid, keys=keys)
        tenants[uid] = account
    roster.load(db)
    return tenants


def flip(db: firestore.Client, uid: str, enabled: bool) -> None:
    """The tenant toggles the kill-switch; the roster's trigger refreshes its entry."""
    db.document(paths.trading_status_doc(uid)).update({"enabled": enabled})
    roster.refresh(db, uid)


def streaming(gateway: GatewayThread) -> set[str]:
    return set(gateway.health()["tenants"])


def place(sim: AlpacaSimulator, account: SimTenant, **plan: Any) -> str:
    body = {"symbol": "AAPL", "qty": 50, **plan}
    reply = requests.post(
        f"{sim.base_url}/_sim/tenants/{account.key_id}/orders", json=body, timeout=5
    )
    order_id: str = reply.json()["id"]
    return order_id


def syncs(project: str) -> Counter[tuple[str, str]]:
    messages = pull(project, "tap", timeout=4, until_quiet=True)
    return Counter((json.loads(m.data)["uid"], json.loads(m.data)["reason"]) for m in messages)


def test_updates_become_orders_and_a_burst_one_or_two_syncs(
    pipeline_deps: Deps, db: firestore.Client, simulator: AlpacaSimulator, project: str
) -> None:
    tenants = seed(simulator, db, 3)
    with GatewayThread(pipeline_deps) as gateway:
        wait_for(lambda: streaming(gateway) == set(tenants), timeout=15)
        wait_for(lambda: syncs(project)[("s0", "reconcile")] == 1, timeout=10)  # after the listen
        order_id = place(
            simulator, tenants["s0"], partial_fills=50, fill_delay_ms=20, fill_interval_ms=5
        )
        stored = wait_for(
            lambda: (d := doc(db, paths.order_doc("s0", order_id))) and d["event"] == "fill" and d,
            timeout=10,
        )
        got = syncs(project)
        live = wait_for(lambda: (found := streams.read_live(db)).uids == set(tenants) and found)
    assert stored["order"]["status"] == "filled" and stored["filledQty"] == "50"
    assert stored["updatedAt"] is not None and stored["source"] == "stream"
    assert 1 <= got[("s0", "trade_update")] <= 2, got  # 51 updates
    assert live.uids == frozenset(tenants) and live.sessions == 1
    chosen = reconcile.select(dict.fromkeys(tenants), live.uids, index=0, every=5)
    assert chosen.deferred + len(chosen.users) == 3 and chosen.streaming == 3


def test_the_kill_switch_closes_the_stream_within_seconds(
    pipeline_deps: Deps, db: firestore.Client, simulator: AlpacaSimulator
) -> None:
    tenants = seed(simulator, db, 2)
    with GatewayThread(pipeline_deps) as gateway:
        wait_for(lambda: streaming(gateway) == set(tenants), timeout=15)
        flipped = time.monotonic()
        flip(db, "s1", False)
        wait_for(lambda: simulator.stream.open_accounts() == [tenants["s0"].key_id], timeout=5)
        closed_after = time.monotonic() - flipped
        wait_for(lambda: streams.read_live(db).uids == frozenset({"s0"}), timeout=5)
        flip(db, "s1", True)
        wait_for(lambda: streaming(gateway) == set(tenants), timeout=10)
    assert closed_after < 3.0
    assert simulator.stream.stats()["refused_second"] == 0


def test_refused_credentials_are_recorded_and_not_retried(
    pipeline_deps: Deps, db: firestore.Client, simulator: AlpacaSimulator, project: str
) -> None:
    tenants = seed(simulator, db, 1)
    simulator.stream.refuse_auth = True
    with GatewayThread(pipeline_deps) as gateway:
        status = wait_for(lambda: doc(db, paths.stream_status_doc("s0")), timeout=10)
        attempts = simulator.stream.stats()["handshakes"]
        time.sleep(3)
        assert simulator.stream.stats()["handshakes"] == attempts  # no retry loop
        assert gateway.health()["refused"] == 1
    assert status["state"] == "refused" and status["error_class"] == "AlpacaAuthError"
    assert tenants["s0"].key_id not in json.dumps(status, default=str)
    assert syncs(project)[("s0", "reconcile")] == 1  # the worker checks the keys with REST
    assert doc(db, paths.alpaca_config_doc("s0"))["configured"] is True


def test_a_stream_held_elsewhere_is_retried_and_the_tenant_polled(
    pipeline_deps: Deps, db: firestore.Client, simulator: AlpacaSimulator
) -> None:
    tenants = seed(simulator, db, 2)
    simulator.stream.hold_elsewhere(tenants["s1"].key_id, True)
    with GatewayThread(pipeline_deps) as gateway:
        wait_for(lambda: streaming(gateway) == {"s0"}, timeout=15)
        status = wait_for(lambda: doc(db, paths.stream_status_doc("s1")), timeout=10)
        # s1 stays out of the live map: polled every tick
        wait_for(lambda: streams.read_live(db).uids == frozenset({"s0"}), timeout=5)
        simulator.stream.hold_elsewhere(tenants["s1"].key_id, False)
    assert status["state"] == "held_elsewhere"
    assert doc(db, paths.alpaca_config_doc("s1"))["configured"] is True
    assert simulator.stream.stats()["refused_held_elsewhere"] >= 1
    assert simulator.stream.stats()["refused_second"] == 0


def test_dropped_streams_come_back_with_a_reconciliation(
    pipeline_deps: Deps, db: firestore.Client, simulator: AlpacaSimulator, project: str
) -> None:
    tenants = seed(simulator, db, 3)
    with GatewayThread(pipeline_deps) as gateway:
        wait_for(lambda: streaming(gateway) == set(tenants), timeout=15)
        wait_for(lambda: sum(n for (_, r), n in syncs(project).items() if r == "reconcile") == 3)
        simulator.stream.drop_all()
        wait_for(lambda: len(simulator.stream.open_accounts()) == 3, timeout=10)
        again = Counter()
        wait_for(lambda: (again.update(syncs(project)), sum(again.values()) >= 3)[1], timeout=10)
    assert set(again) == {(uid, "reconcile") for uid in tenants}
    assert simulator.stream.stats()["refused_second"] == 0


def test_two_instances_share_the_buckets_and_hand_them_over(
    pipeline_deps: Deps, db: firestore.Client, simulator: AlpacaSimulator
) -> None:
    tenants = seed(simulator, db, 12)
    first = GatewayThread(pipeline_deps).start()
    try:
        wait_for(lambda: streaming(first) == set(tenants), timeout=15)
        with GatewayThread(pipeline_deps) as second:
            wait_for(
                lambda: len(first.health()["buckets"]) == len(second.health()["buckets"]) == 32,
                timeout=30,
            )
            wait_for(lambda: streaming(first) | streaming(second) == set(tenants), timeout=15)
            assert not streaming(first) & streaming(second)
        # The second stopped: its buckets were released, the first takes them at once.
        wait_for(lambda: streaming(first) == set(tenants), timeout=15)
        assert len(first.health()["buckets"]) == 64
    finally:
        first.stop()
    assert simulator.stream.stats()["refused_second"] == 0


def test_a_sigkilled_instance_is_taken_over_within_the_lease(
    pipeline_deps: Deps, db: firestore.Client, simulator: AlpacaSimulator
) -> None:
    tenants = seed(simulator, db, 8)
    doomed = spawn({})
    try:
        wait_for(lambda: len(doomed.health()["tenants"]) == len(tenants), timeout=20)
        with GatewayThread(pipeline_deps) as survivor:
            wait_for(lambda: len(survivor.health()["buckets"]) == 32, timeout=30)
            held = set(doomed.health()["tenants"])
            assert held
            doomed.kill()
            killed = time.monotonic()
            wait_for(lambda: streaming(survivor) == set(tenants), timeout=40)
            took = time.monotonic() - killed
    finally:
        doomed.stop()
    assert took < streams.LEASE_SECONDS + 3 * 3.0, took
    assert simulator.stream.stats()["refused_second"] == 0


def _update(event: str, at: int, filled: str) -> TradeUpdate:
    order = {"id": "order-1", "filled_qty": filled, "status": event}
    return TradeUpdate(event, "order-1", order, at, str(at))


def test_an_order_never_goes_backwards_whoever_writes(
    pipeline_deps: Deps, db: firestore.Client
) -> None:
    seed_user(db, "o1")
    ours, theirs = OrderWriter(db), OrderWriter(db)
    assert ours.write("o1", [_update("new", 1, "0"), _update("partial_fill", 2, "1")]) == 1
    assert theirs.write("o1", [_update("fill", 4, "3")]) == 1  # another instance, newer
    assert ours.write("o1", [_update("partial_fill", 3, "2")]) == 0  # ours is stale: re-read
    assert ours.write("o1", [_update("fill", 4, "3")]) == 0  # the same state again
    # A first event is written without a read: when the order exists, the create loses and
    # the writer reads and decides again.
    assert OrderWriter(db).write("o1", [_update("new", 0, "0")]) == 0
    stored = doc(db, paths.order_doc("o1", "order-1"))
    assert stored is not None and stored["event"] == "fill" and stored["eventNanos"] == 4


@pytest.fixture
def oauth_tenant(simulator: AlpacaSimulator, db: firestore.Client) -> Iterator[SimTenant]:
    """A tenant connected with Alpaca OAuth, its token stored sealed (as connect_alpaca does)."""
    from agenttrader.credentials import OAuthToken, Vault
    from agenttrader.settings import Settings

    account = simulator.add_tenant()
    redirect = "http://127.0.0.1:1/cb"
    app = simulator.add_oauth_app([redirect])
    token = simulator.access_token(app, redirect, tenant=account.key_id)
    seed_user(db, "oauth0")
    path = paths.alpaca_secret_doc("oauth0")
    sealed = Vault.from_settings(Settings.from_env()).seal(
        OAuthToken(token, simulator.base_url), "oauth0", path, None
    )
    db.document(path).set(sealed)
    roster.load(db)
    yield account


def test_sealed_oauth_credentials_open_the_stream(
    pipeline_deps: Deps, db: firestore.Client, simulator: AlpacaSimulator, oauth_tenant: SimTenant
) -> None:
    with GatewayThread(pipeline_deps) as gateway:
        wait_for(lambda: streaming(gateway) == {"oauth0"}, timeout=15)
    assert simulator.stream.stats()["authorized"] == 1


def test_the_tick_reconciles_a_streaming_tenant_once_in_every_five(
    pipeline_deps: Deps, db: firestore.Client, simulator: AlpacaSimulator, project: str
) -> None:
    from datetime import UTC, datetime, timedelta

    from agenttrader.events import PubsubDelivery
    from publisher.tick import fan_out

    tenants = seed(simulator, db, 4)
    simulator.stream.hold_elsewhere(tenants["s3"].key_id, True)  # s3 cannot stream
    with GatewayThread(pipeline_deps) as gateway:
        wait_for(lambda: streaming(gateway) == {"s0", "s1", "s2"}, timeout=15)
        wait_for(lambda: len(streams.read_live(db).uids) == 3, timeout=5)
        pull(project, "tap", timeout=3, until_quiet=True)  # the reconcile syncs of the listens
        minute = datetime.now(UTC).replace(second=0, microsecond=0)
        deferred = 0
        for k in range(5):
            now = minute + timedelta(minutes=k, seconds=1)
            delivery = PubsubDelivery(f"tick-{k}", b"{}", {}, now)
            deferred += fan_out(pipeline_deps, delivery, now=now).deferred
        got = syncs(project)
    assert got[("s3", "schedule")] == 5  # no live stream: every tick
    assert all(got[(uid, "schedule")] == 1 for uid in ("s0", "s1", "s2")), got
    assert deferred == 3 * 4


def test_refusal_is_remembered_by_the_next_instance_and_a_stale_state_made_live(
    pipeline_deps: Deps, db: firestore.Client, simulator: AlpacaSimulator, project: str
) -> None:
    seed(simulator, db, 2)
    for uid in ("s0", "s1"):  # keys with a version, as the trigger stamps them
        configure(db, uid)
    simulator.stream.refuse_auth = True
    with GatewayThread(pipeline_deps) as gateway:
        wait_for(lambda: gateway.health()["refused"] == 2, timeout=10)
    simulator.stream.refuse_auth = False
    assert syncs(project)[("s0", "reconcile")] == 1
    attempts = simulator.stream.stats()["handshakes"]
    # s1's keys are rotated meanwhile (a new keys version): it is tried again, s0 is not.
    time.sleep(0.01)
    configure(db, "s1")
    with GatewayThread(pipeline_deps) as successor:
        wait_for(lambda: streaming(successor) == {"s1"}, timeout=10)
        wait_for(lambda: doc(db, paths.stream_status_doc("s1"))["state"] == "live", timeout=5)
        time.sleep(2)
        assert streaming(successor) == {"s1"}
    assert simulator.stream.stats()["handshakes"] == attempts + 1  # s1 only
    assert doc(db, paths.stream_status_doc("s0"))["state"] == "refused"
    assert syncs(project)[("s0", "reconcile")] == 0  # not recorded nor reconciled again


def configure(db: firestore.Client, uid: str) -> None:
    """New keys for ``uid`` as far as the roster can tell: a new ``configuredAt``."""
    db.document(paths.alpaca_config_doc(uid)).update({"configuredAt": firestore.SERVER_TIMESTAMP})
    roster.refresh(db, uid)


FRAGMENT = 10
"""Characters of a credential that must not show anywhere in a row."""


def test_no_credential_in_logs_health_documents_or_messages(
    pipeline_deps: Deps, db: firestore.Client, simulator: AlpacaSimulator, project: str
) -> None:
    from tests.database_scan import every_document
    from tests.log_capture import json_log_lines

    # DEBUG: websockets logs its frames there, the auth one too.
    with json_log_lines() as captured:
        tenants = seed(simulator, db, 2)
        seen: list[str] = []
        with GatewayThread(pipeline_deps) as gateway:
            wait_for(lambda: streaming(gateway) == {"s0", "s1"}, timeout=10)
            place(simulator, tenants["s0"], fill_delay_ms=100)
            orders = db.collection(paths.orders_collection("s0"))
            wait_for(lambda: list(orders.stream()), timeout=5)
            seen.append(json.dumps(gateway.health()))
            simulator.stream.refuse_auth = True
            requests.post(f"{simulator.base_url}/_sim/stream/drop", timeout=5)
            wait_for(lambda: gateway.health()["refused"] == 2, timeout=15)
            seen.append(json.dumps(gateway.health()))
            healthz = f"http://127.0.0.1:{gateway.config.port}/healthz"
            seen.append(requests.get(healthz, timeout=5).text)
    seen.append(captured.getvalue())
    # Every document but the secrets themselves (seeded in plain text here, as a client
    # writes them before the trigger seals them), every message the gateway published.
    documents = every_document(db)
    seen += [json.dumps(data, default=str) for path, data in documents if "/secrets/" not in path]
    messages = pull(project, "tap", timeout=3, until_quiet=True)
    seen += [m.data.decode() + json.dumps(dict(m.attributes)) for m in messages]
    logged = captured.getvalue()
    assert '"severity": "DEBUG"' in logged  # captured at DEBUG: the libraries' lines too
    assert "> TEXT" not in logged and "< TEXT" not in logged  # no frame logged, either side
    text = "\n".join(seen).lower()
    for account in tenants.values():
        for secret in (account.key_id, account.secret_key):
            # Nor any part of one: a log line cut in the middle would leave its tail.
            for start in range(len(secret) - FRAGMENT + 1):
                assert secret[start : start + FRAGMENT].lower() not in text, "a secret's part"
