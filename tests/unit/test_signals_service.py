"""The ``generate_trading_signal`` use case against the Firestore emulator, with fake providers."""

from __future__ import annotations

import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.cloud import firestore

from agenttrader import paths
from agenttrader.callable import CallableError, Status
from agenttrader.snapshot import placeholder as placeholder_snapshot
from signal_worker.heuristic import NOTICE, HeuristicProvider
from signal_worker.model import ModelFailed, ModelReply, ModelUnavailable, SignalInput
from signal_worker.quota import COUNTER, DailyQuota, Reservation
from signal_worker.request import SignalRequest
from signal_worker.service import NO_SNAPSHOT, SignalService
from tests.callable_fixtures import synced_snapshot

UID = "trader-1"
GOOD = json.dumps(
    {"action": "SELL", "symbol": "msft", "confidence": 0.8, "rationale": "Trim.", "risks": ["x"]}
)


class FakeProvider:
    name = "fake"

    def __init__(self, outcome: str | BaseException = GOOD) -> None:
        self.outcome = outcome
        self.inputs: list[SignalInput] = []

    def generate(self, signal_input: SignalInput) -> ModelReply:
        self.inputs.append(signal_input)
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return ModelReply(
            text=self.outcome,
            model="fake-model",
            provider="fake",
            prompt_tokens=10,
            candidates_tokens=5,
            total_tokens=15,
            latency_ms=12.5,
        )


@pytest.fixture
def db(emulator_env: dict[str, str]) -> firestore.Client:
    return firestore.Client(project=emulator_env["GOOGLE_CLOUD_PROJECT"])


@pytest.fixture
def snapshot(db: firestore.Client) -> dict[str, Any]:
    data = synced_snapshot()
    db.document(paths.snapshot_doc(UID)).set(data)
    return data


def service(db: firestore.Client, provider: Any, limit: int = 20, **quota: Any) -> SignalService:
    return SignalService(db, provider, DailyQuota(db, limit, **quota))


def stored(db: firestore.Client) -> list[dict[str, Any]]:
    return [
        d.to_dict() or {} for d in db.collection(paths.trading_signals_collection(UID)).stream()
    ]


def used_today(db: firestore.Client) -> int:
    day = datetime.now(UTC).date().isoformat()
    usage = db.document(paths.usage_doc(UID, day)).get().to_dict() or {}
    return int(usage.get(COUNTER, 0))


@pytest.mark.parametrize("existing", [None, placeholder_snapshot()])
def test_no_snapshot_is_a_failed_precondition(db: firestore.Client, existing: Any) -> None:
    if existing is not None:
        db.document(paths.snapshot_doc(UID)).set(existing)
    provider = FakeProvider()
    with pytest.raises(CallableError) as raised:
        service(db, provider).generate(UID, SignalRequest())
    assert (raised.value.status, raised.value.message) == (Status.FAILED_PRECONDITION, NO_SNAPSHOT)
    assert provider.inputs == [] and used_today(db) == 0


def test_a_signal_is_stored_and_returned(db: firestore.Client, snapshot: dict[str, Any]) -> None:
    provider = FakeProvider()
    result = service(db, provider).generate(UID, SignalRequest({"vix": 30}))

    assert set(result) == {"id", "response", "snapshotPath"}
    assert result["snapshotPath"] == f"users/{UID}/data/snapshot"
    assert json.loads(result["response"]) == {
        "action": "SELL",
        "symbol": "MSFT",
        "confidence": 0.8,
        "rationale": "Trim.",
        "risks": ["x"],
        "provider": "fake",
    }
    doc = db.document(paths.trading_signal_doc(UID, result["id"])).get().to_dict() or {}
    assert set(doc) == {"createdAt", "userId", "response", "prompt", "vertex"}
    assert isinstance(doc["createdAt"], datetime)
    assert doc["userId"] == UID
    assert doc["response"] == result["response"]
    assert doc["prompt"] == provider.inputs[0].prompt
    assert '"market_conditions": {"vix": 30}' in doc["prompt"]
    assert '"symbol": "MSFT"' in doc["prompt"]
    assert doc["vertex"] == {
        "model": "fake-model",
        "provider": "fake",
        "prompt_tokens": 10,
        "candidates_tokens": 5,
        "total_tokens": 15,
        "latency_ms": 12.5,
        "finish_reason": "STOP",
        "model_version": None,
    }
    assert used_today(db) == 1


def test_the_heuristic_answer_carries_its_notice(
    db: firestore.Client, snapshot: dict[str, Any]
) -> None:
    result = service(db, HeuristicProvider()).generate(UID, SignalRequest())
    response = json.loads(result["response"])
    assert response["provider"] == "local-heuristic"
    assert response["notice"] == NOTICE
    # What is stored says who answered: the rules, not Gemini.
    doc = db.document(paths.trading_signal_doc(UID, result["id"])).get().to_dict() or {}
    assert (doc["vertex"]["provider"], doc["vertex"]["model"]) == (
        "local-heuristic",
        "local-heuristic-v1",
    )
    assert "gemini" not in json.dumps(doc["vertex"]).lower()


@pytest.mark.parametrize(
    ("failure", "status"),
    [
        (ModelUnavailable("HTTP 503"), Status.UNAVAILABLE),
        (ModelFailed("HTTP 400"), Status.INTERNAL),
        ("this is not JSON", Status.INTERNAL),
        (json.dumps({"action": "YOLO"}), Status.INTERNAL),
        # An answer naming no ticker fails validation; no fallback answers in its place.
        (json.dumps({**json.loads(GOOD), "symbol": 'AAPL"}]'}), Status.INTERNAL),
    ],
)
def test_model_failures_store_nothing_and_give_the_slot_back(
    db: firestore.Client, snapshot: dict[str, Any], failure: Any, status: Status
) -> None:
    with pytest.raises(CallableError) as raised:
        service(db, FakeProvider(failure)).generate(UID, SignalRequest())
    assert raised.value.status is status
    assert "HTTP" not in raised.value.message and "JSON" not in raised.value.message
    assert stored(db) == []
    assert used_today(db) == 0


def test_an_unexpected_error_propagates_and_gives_the_slot_back(
    db: firestore.Client, snapshot: dict[str, Any]
) -> None:
    with pytest.raises(RuntimeError):
        service(db, FakeProvider(RuntimeError("boom"))).generate(UID, SignalRequest())
    assert used_today(db) == 0


def test_a_failing_release_does_not_hide_the_error(
    db: firestore.Client, snapshot: dict[str, Any]
) -> None:
    class BrokenRelease(DailyQuota):
        def release(self, reservation: Reservation) -> None:
            raise RuntimeError("firestore down")

    svc = SignalService(db, FakeProvider(ModelUnavailable("x")), BrokenRelease(db, 5))
    with pytest.raises(CallableError) as raised:
        svc.generate(UID, SignalRequest())
    assert raised.value.status is Status.UNAVAILABLE


def test_the_daily_quota_is_enforced_and_resets_the_next_day(
    db: firestore.Client, snapshot: dict[str, Any]
) -> None:
    now = [datetime(2025, 3, 1, 23, 59, tzinfo=UTC)]
    provider = FakeProvider()
    svc = service(db, provider, limit=2, clock=lambda: now[0])
    svc.generate(UID, SignalRequest())
    svc.generate(UID, SignalRequest())
    with pytest.raises(CallableError) as raised:
        svc.generate(UID, SignalRequest())
    assert raised.value.status is Status.RESOURCE_EXHAUSTED
    assert raised.value.message.startswith("daily limit of 2 trading signals reached")
    assert len(provider.inputs) == 2 and len(stored(db)) == 2

    now[0] += timedelta(minutes=2)  # a new UTC day
    svc.generate(UID, SignalRequest())
    days = {d.id: d.get(COUNTER) for d in db.collection(f"users/{UID}/usage").stream()}
    assert days == {"2025-03-01": 2, "2025-03-02": 1}


def test_a_zero_quota_disables_signals(db: firestore.Client, snapshot: dict[str, Any]) -> None:
    with pytest.raises(CallableError) as raised:
        service(db, FakeProvider(), limit=0).generate(UID, SignalRequest())
    assert raised.value.status is Status.RESOURCE_EXHAUSTED


def test_the_quota_holds_under_concurrency(db: firestore.Client, snapshot: dict[str, Any]) -> None:
    svc = service(db, FakeProvider(), limit=5)

    def attempt(_: int) -> str:
        try:
            svc.generate(UID, SignalRequest())
        except CallableError as err:
            return err.status.value
        return "OK"

    with ThreadPoolExecutor(20) as pool:
        outcomes = Counter(pool.map(attempt, range(20)))
    assert outcomes == {"OK": 5, "RESOURCE_EXHAUSTED": 15}
    assert len(stored(db)) == 5 and used_today(db) == 5
