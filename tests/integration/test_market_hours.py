"""SYNC_SCHEDULE through the emulators and the Alpaca simulator: a closed market publishes
nothing, a stale clock makes one message ask and the worker store the simulator's clock, a
failing clock call leaves the sync successful, and ``always`` never reads the clock."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.cloud import firestore

from agenttrader import paths
from agenttrader.deps import Deps
from agenttrader.events import PubsubDelivery
from agenttrader.messages import Reason, SyncRequest
from agenttrader.settings import SyncSchedule
from devtools.simulator import REGULAR, AlpacaSimulator, ClockSetting, Scenario
from publisher.tick import fan_out
from sync_worker.worker import Result, SyncWorker
from tests.pipeline_fixtures import doc, pull, sim_tenant

pytestmark = pytest.mark.integration
CLOCK_CALLS = "GET /v2/clock"


def with_schedule(deps: Deps, schedule: SyncSchedule) -> Deps:
    settings = dataclasses.replace(deps.settings, sync_schedule=schedule)
    return Deps(settings, firestore_client=deps.firestore, publisher=deps.publisher)


@pytest.fixture
def market(pipeline_deps: Deps) -> Deps:
    return with_schedule(pipeline_deps, SyncSchedule.MARKET_HOURS)


@pytest.fixture
def db(pipeline_deps: Deps) -> firestore.Client:
    return pipeline_deps.firestore


@pytest.fixture
def sim(simulator: AlpacaSimulator) -> Iterator[AlpacaSimulator]:
    yield simulator
    simulator.set_clock(REGULAR)


def tick(message_id: str) -> PubsubDelivery:
    return PubsubDelivery(message_id, b"{}", {}, datetime.now(UTC))


def tapped(project: str, timeout: float = 5.0) -> list[Any]:
    return pull(project, "tap", timeout=timeout, until_quiet=True)


def as_delivery(message: Any) -> PubsubDelivery:
    return PubsubDelivery(
        message.message_id,
        bytes(message.data),
        dict(message.attributes),
        datetime.now(UTC),
        delivery_attempt=1,
    )


def store_clock(db: firestore.Client, *, is_open: bool, checked_ago: timedelta) -> dict[str, Any]:
    now = datetime.now(UTC)
    data = {
        "is_open": is_open,
        "next_open": now + timedelta(hours=1),
        "next_close": now + timedelta(hours=7),
        "checked_at": now - checked_ago,
        "pulse_id": "earlier",
    }
    db.document(paths.MARKET_CLOCK_DOC).set(data)
    return data


def test_a_closed_market_publishes_nothing(
    market: Deps, db: firestore.Client, sim: AlpacaSimulator, project: str
) -> None:
    for uid in ("u-1", "u-2"):
        sim_tenant(sim, db, uid, Scenario(kind="normal"))
    store_clock(db, is_open=False, checked_ago=timedelta(minutes=10))

    result = fan_out(market, tick("5001"))

    assert result.skipped_tick == "market_closed" and result.published == 0
    assert tapped(project, timeout=2) == []
    assert doc(db, paths.LAST_PULSE_DOC) is None
    assert doc(db, paths.pulse_doc(result.pulse_id)) is None
    assert sim.stats()["total"] == 0


def test_a_stale_clock_asks_one_tenant_and_the_worker_stores_the_simulators_clock(
    market: Deps, db: firestore.Client, sim: AlpacaSimulator, project: str
) -> None:
    tenants = [sim_tenant(sim, db, f"u-{i}", Scenario(kind="normal")) for i in range(3)]
    store_clock(db, is_open=False, checked_ago=timedelta(days=2))
    now = datetime.now(UTC).replace(microsecond=0)
    closes = now + timedelta(hours=5)
    sim.set_clock(ClockSetting(is_open=True, next_open=now + timedelta(days=1), next_close=closes))

    result = fan_out(market, tick("5002"))
    messages = tapped(project)

    assert result.published == 3 and result.skipped_tick is None
    bodies = [json.loads(m.data) for m in messages]
    assert sorted(b["uid"] for b in bodies) == [t.uid for t in tenants]
    asking = [b for b in bodies if b.get("check_clock") is True]
    assert len(asking) == 1 and asking[0]["pulse_id"] == result.pulse_id
    worker = SyncWorker(market)
    assert [worker.handle(as_delivery(m)) for m in messages] == [Result.SYNCED] * 3
    assert sim.stats()["by_endpoint"][CLOCK_CALLS] == 1
    stored = doc(db, paths.MARKET_CLOCK_DOC)
    assert stored is not None
    assert set(stored) == {"is_open", "next_open", "next_close", "checked_at", "pulse_id"}
    assert stored["is_open"] is True and stored["next_close"] == closes
    assert stored["pulse_id"] == result.pulse_id and stored["checked_at"] >= now

    # The fresh clock says open: the next tick publishes to everyone and asks nobody.
    again = fan_out(market, tick("5003"))
    assert again.published == 3
    assert not any(json.loads(m.data).get("check_clock") for m in tapped(project))


def test_no_clock_at_all_asks_and_the_answer_closes_the_next_tick(
    market: Deps, db: firestore.Client, sim: AlpacaSimulator, project: str
) -> None:
    sim_tenant(sim, db, "u-only", Scenario(kind="normal"))
    now = datetime.now(UTC)
    sim.set_clock(
        ClockSetting(
            is_open=False, next_open=now + timedelta(hours=2), next_close=now + timedelta(hours=8)
        )
    )

    first = fan_out(market, tick("5004"))
    (message,) = tapped(project)
    assert json.loads(message.data)["check_clock"] is True
    assert SyncWorker(market).handle(as_delivery(message)) is Result.SYNCED
    second = fan_out(market, tick("5005"))

    assert first.published == 1 and second.skipped_tick == "market_closed"
    assert tapped(project, timeout=2) == []


def test_a_failing_clock_call_leaves_the_sync_successful(
    market: Deps, db: firestore.Client, sim: AlpacaSimulator, project: str
) -> None:
    tenant = sim_tenant(sim, db, "u-clockless", Scenario(kind="normal"))
    sim.set_clock(ClockSetting(fail_status=503))
    request = SyncRequest.now("u-clockless", Reason.SCHEDULE, pulse_id="p-1", check_clock=True)
    delivery = PubsubDelivery("m-1", request.to_bytes(), request.attributes(), request.requested_at)

    assert SyncWorker(market).handle(delivery) is Result.SYNCED

    snapshot = doc(db, paths.snapshot_doc("u-clockless"))
    assert snapshot is not None and snapshot["pulseId"] == "p-1"
    assert doc(db, paths.last_sync_error_doc("u-clockless")) is None
    assert doc(db, paths.sync_state_doc("u-clockless"))["outcome"] == "success"  # type: ignore[index]
    assert doc(db, paths.MARKET_CLOCK_DOC) is None
    assert sim.requests_for(tenant.key_id) == 3  # account, positions, the failed clock
    # Still no clock: the next pulse asks again.
    fan_out(market, tick("5006"))
    assert [json.loads(m.data).get("check_clock") for m in tapped(project)] == [True]


class _Spy:
    """The Firestore client, recording every document path asked for."""

    def __init__(self, client: firestore.Client) -> None:
        self._client = client
        self.paths: list[str] = []

    def document(self, path: str) -> Any:
        self.paths.append(path)
        return self._client.document(path)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_always_never_reads_the_clock(
    pipeline_deps: Deps, db: firestore.Client, sim: AlpacaSimulator, project: str
) -> None:
    sim_tenant(sim, db, "u-always", Scenario(kind="normal"))
    store_clock(db, is_open=False, checked_ago=timedelta(minutes=1))
    spy = _Spy(db)
    deps = Deps(pipeline_deps.settings, firestore_client=spy, publisher=pipeline_deps.publisher)  # type: ignore[arg-type]
    assert deps.settings.sync_schedule is SyncSchedule.ALWAYS

    result = fan_out(deps, tick("5007"))
    (message,) = tapped(project)

    assert result.published == 1
    assert "check_clock" not in json.loads(message.data)
    assert paths.MARKET_CLOCK_DOC not in spy.paths and spy.paths  # the spy did see the tick
    assert SyncWorker(deps).handle(as_delivery(message)) is Result.SYNCED
    assert CLOCK_CALLS not in sim.stats()["by_endpoint"]
