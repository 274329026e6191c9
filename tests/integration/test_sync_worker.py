"""The worker against the real Firestore and Pub/Sub emulators and the Alpaca simulator:
ordering, duplicates, kill-switch, malformed and unknown messages, retry contract, and the
functions-framework adapter with a golden push body."""

from __future__ import annotations

import base64
import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import functions_framework
import pytest
from google.api_core import exceptions as gexc
from google.cloud import firestore

from agenttrader import errors, paths, pulses
from agenttrader.deps import Deps
from agenttrader.events import PubsubDelivery
from agenttrader.messages import MAX_CLOCK_SKEW, Reason, SyncRequest
from agenttrader.pulses import count_outcomes, pulse_id_for
from agenttrader.snapshot import Outcome, Stale, Stored
from devtools.simulator import AlpacaSimulator, Scenario
from sync_worker.record import Change, inconsistencies, record
from sync_worker.worker import MAX_DELIVERY_ATTEMPTS, Result, SyncWorker
from tests.firestore_ops import counted
from tests.pipeline_fixtures import Tenant, doc, drain_dead_letters, sim_tenant

pytestmark = pytest.mark.integration
GOLDEN_PUSH = Path(__file__).parent.parent / "data" / "user_sync_push.json"
REPO_ROOT = Path(__file__).parents[2]


@pytest.fixture
def deps(pipeline_deps: Deps) -> Deps:
    return pipeline_deps


@pytest.fixture
def db(deps: Deps) -> firestore.Client:
    return deps.firestore


def delivery(
    request: SyncRequest | bytes,
    attempt: int = 1,
    attributes: dict[str, str] | None = None,
    publish_time: datetime | None = None,
) -> PubsubDelivery:
    data = request if isinstance(request, bytes) else request.to_bytes()
    attrs = (
        attributes
        if attributes is not None
        else ({} if isinstance(request, bytes) else request.attributes())
    )
    return PubsubDelivery(
        message_id=f"m-{datetime.now(UTC).timestamp()}",
        data=data,
        attributes=attrs,
        publish_time=publish_time or datetime.now(UTC),
        delivery_attempt=attempt,
    )


def counts(db: firestore.Client, pulse_id: str) -> tuple[int, int, int]:
    """(success, error, skipped) of a pulse, as the rollup counts them."""
    found = count_outcomes(db, pulse_id)
    return found[Outcome.SUCCESS], found[Outcome.ERROR], found[Outcome.SKIPPED]


def assert_consistent(db: firestore.Client, uid: str) -> None:
    """The snapshot, status/sync and status/last_sync_error agree (sync_worker.record)."""
    found = inconsistencies(
        doc(db, paths.snapshot_doc(uid)),
        doc(db, paths.sync_state_doc(uid)),
        doc(db, paths.last_sync_error_doc(uid)),
    )
    assert found == []


def final_failure(worker: SyncWorker, request: SyncRequest) -> None:
    with pytest.raises(errors.RetryableError):
        worker.handle(delivery(request, attempt=MAX_DELIVERY_ATTEMPTS))


def test_sync_writes_snapshot_and_clears_error(
    deps: Deps, db: firestore.Client, simulator: AlpacaSimulator
) -> None:
    tenant = sim_tenant(simulator, db, "u-ok", Scenario(kind="normal"))
    db.document(paths.last_sync_error_doc("u-ok")).set(
        {"error": "old", "timestamp": datetime.now(UTC)}
    )
    result = SyncWorker(deps).handle(delivery(SyncRequest.now("u-ok", Reason.MANUAL)))
    assert result is Result.SYNCED
    snapshot = doc(db, paths.snapshot_doc("u-ok"))
    assert snapshot is not None
    assert snapshot["account"]["id"] and snapshot["equity"] == snapshot["account"]["equity"]
    assert snapshot["positions_count"] == len(snapshot["positions"])
    assert doc(db, paths.last_sync_error_doc("u-ok")) is None
    assert doc(db, paths.sync_state_doc("u-ok"))["outcome"] == "success"  # type: ignore[index]
    assert simulator.requests_for(tenant.key_id) == 2  # account + positions


def test_duplicate_message_does_no_harm(
    deps: Deps,
    db: firestore.Client,
    simulator: AlpacaSimulator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    tenant = sim_tenant(simulator, db, "u-dup", Scenario(kind="normal"))
    request = SyncRequest.now("u-dup", Reason.SCHEDULE, pulse_id="p1")
    worker = SyncWorker(deps)
    caplog.set_level(logging.DEBUG, logger="sync_worker.worker")
    assert worker.handle(delivery(request)) is Result.SYNCED
    # A success is the line a minute per tenant: DEBUG; anything unusual stays INFO or above.
    levels = {r.getMessage(): r.levelno for r in caplog.records if r.name == "sync_worker.worker"}
    assert levels == {"sync synced": logging.DEBUG}
    first = db.document(paths.snapshot_doc("u-dup")).get()
    assert worker.handle(delivery(request)) is Result.DUPLICATE
    second = db.document(paths.snapshot_doc("u-dup")).get()
    assert second.update_time == first.update_time
    assert simulator.requests_for(tenant.key_id) == 2  # the duplicate never called Alpaca
    last = [r for r in caplog.records if r.name == "sync_worker.worker"][-1]
    assert (last.getMessage(), last.levelno) == ("sync duplicate", logging.INFO)


def test_older_message_never_overwrites_newer_snapshot(
    deps: Deps, db: firestore.Client, simulator: AlpacaSimulator
) -> None:
    sim_tenant(simulator, db, "u-order", Scenario(kind="normal"))
    now = datetime.now(UTC)
    newer = SyncRequest("u-order", Reason.SCHEDULE, now, pulse_id="p2")
    older = SyncRequest("u-order", Reason.SCHEDULE, now - timedelta(minutes=1), pulse_id="p1")
    worker = SyncWorker(deps)
    assert worker.handle(delivery(newer)) is Result.SYNCED
    assert worker.handle(delivery(older)) is Result.SUPERSEDED
    snapshot = doc(db, paths.snapshot_doc("u-order"))
    assert snapshot is not None and snapshot["pulseId"] == "p2"
    assert snapshot["requestedAt"] == now


def test_kill_switch_off_skips_schedule_but_not_first_sync(
    deps: Deps, db: firestore.Client, simulator: AlpacaSimulator
) -> None:
    sim_tenant(simulator, db, "u-off", Scenario(kind="normal"), enabled=True)
    request = SyncRequest.now("u-off", Reason.SCHEDULE, pulse_id="p1")
    # Turned off between publish and delivery.
    db.document(paths.trading_status_doc("u-off")).update({"enabled": False})
    worker = SyncWorker(deps)
    assert worker.handle(delivery(request)) is Result.SKIPPED
    assert doc(db, paths.snapshot_doc("u-off")) is None
    assert doc(db, paths.last_sync_error_doc("u-off")) is None
    assert doc(db, paths.sync_state_doc("u-off"))["outcome"] == "skipped"  # type: ignore[index]
    assert counts(db, "p1") == (0, 0, 1)
    assert worker.handle(delivery(SyncRequest.now("u-off", Reason.FIRST_SYNC))) is Result.SYNCED
    # A sync outside a pulse keeps the pulse the user's outcome counts for: now a success.
    assert counts(db, "p1") == (1, 0, 0)
    assert doc(db, paths.snapshot_doc("u-off"))["pulseId"] == "p1"  # type: ignore[index]
    assert_consistent(db, "u-off")
    replayed_schedule = SyncRequest.now(
        "u-off", Reason.REPLAY, original_reason=Reason.SCHEDULE, replay_count=1
    )
    assert worker.handle(delivery(replayed_schedule)) is Result.SKIPPED
    assert counts(db, "p1") == (0, 0, 1)
    assert_consistent(db, "u-off")


@pytest.mark.parametrize(
    ("data", "attributes", "expected_uid"),
    [
        (b"not json", {"uid": "u-mal"}, "u-mal"),
        (b'{"uid": "u-mal", "reason": "sometimes"}', {}, None),
        (
            b'{"uid": "../etc", "reason": "manual", "requested_at": "2026-01-01T00:00:00Z"}',
            {"uid": "../x"},
            None,
        ),
        (b"\xff\xfe", {}, None),
        (
            # An id Firestore reserves: every read of it fails, retrying cannot help.
            b'{"uid": "__x__", "reason": "schedule", "requested_at": "2026-01-01T00:00:00Z"}',
            {"uid": "__x__"},
            None,
        ),
    ],
    ids=["not-json", "bad-fields", "bad-uid", "not-utf8", "firestore-reserved-uid"],
)
def test_malformed_message_is_dead_lettered_not_retried(
    deps: Deps, project: str, data: bytes, attributes: dict[str, str], expected_uid: str | None
) -> None:
    assert SyncWorker(deps).handle(delivery(data, attributes=attributes)) is Result.DEAD_LETTERED
    [letter] = drain_dead_letters(project, expect=1, timeout=20)
    assert letter.data == data
    assert letter.attributes["error_class"] == "MalformedMessage"
    assert letter.attributes.get("uid") == expected_uid
    assert letter.attributes["source"] == "worker"


def test_unknown_user_is_dead_lettered_and_creates_nothing(
    deps: Deps, db: firestore.Client, project: str
) -> None:
    result = SyncWorker(deps).handle(delivery(SyncRequest.now("nobody", Reason.MANUAL)))
    assert result is Result.DEAD_LETTERED
    [letter] = drain_dead_letters(project, expect=1, timeout=20)
    assert letter.attributes["error_class"] == "UnknownUser"
    assert letter.attributes["uid"] == "nobody"
    assert letter.attributes["reason"] == "manual"
    assert list(db.document(paths.user_doc("nobody")).collections()) == []


@pytest.mark.parametrize(
    ("deleted", "reason"),
    [(False, Reason.SCHEDULE), (True, Reason.SCHEDULE), (True, Reason.MANUAL)],
    ids=["never-existed-schedule", "deleted-schedule", "deleted-manual-keys-cached"],
)
def test_a_message_for_an_unknown_or_deleted_user_is_dead_lettered_and_writes_nothing(
    deps: Deps, simulator: AlpacaSimulator, project: str, deleted: bool, reason: Reason
) -> None:
    db, worker = deps.firestore, SyncWorker(deps)
    if deleted:  # synced before, so this instance still holds its keys (version "1")
        sim_tenant(simulator, db, "u-gone", Scenario(kind="normal"))
        synced = SyncRequest.now("u-gone", Reason.SCHEDULE, pulse_id="p1", keys_version="1")
        assert worker.handle(delivery(synced)) is Result.SYNCED
        db.recursive_delete(db.document(paths.user_doc("u-gone")))
    pulse = "p2" if reason is Reason.SCHEDULE else None
    request = SyncRequest.now("u-gone", reason, pulse_id=pulse, keys_version="1")

    assert worker.handle(delivery(request)) is Result.DEAD_LETTERED

    [letter] = drain_dead_letters(project, expect=1, timeout=20)
    assert letter.attributes["error_class"] == "UnknownUser"
    assert letter.attributes["reason"] == reason.value
    assert list(db.document(paths.user_doc("u-gone")).collections()) == []
    assert counts(db, "p2") == (0, 0, 0)


def test_a_pulse_whose_user_was_deleted_since_the_tick_completes_with_one_error(
    deps: Deps, db: firestore.Client, simulator: AlpacaSimulator
) -> None:
    now = datetime.now(UTC)
    pulse = pulse_id_for("tick-gone", now)
    pulses.begin(db, pulse, tick_message_id="tick-gone", tick_time=now, now=now, existing=None)
    pulses.mark_published(db, pulse, published=2, ineligible=0, seconds=0.1)
    sim_tenant(simulator, db, "u-stays", Scenario(kind="normal"))
    worker = SyncWorker(deps)
    stays = SyncRequest.now("u-stays", Reason.SCHEDULE, pulse_id=pulse)
    gone = SyncRequest.now("u-left", Reason.SCHEDULE, pulse_id=pulse)
    assert worker.handle(delivery(stays)) is Result.SYNCED
    assert worker.handle(delivery(gone)) is Result.DEAD_LETTERED
    assert worker.handle(delivery(gone)) is Result.DEAD_LETTERED  # redelivered: counted once

    totals = pulses.rollup(db, pulse)
    assert totals is not None
    assert (totals.success, totals.error, totals.complete) == (1, 1, True)
    assert list(db.document(paths.user_doc("u-left")).collections()) == []


def test_a_user_without_a_kill_switch_exists_by_its_user_document(
    deps: Deps, db: firestore.Client
) -> None:
    db.document(paths.user_doc("u-root")).set({"onboarded": True})
    request = SyncRequest.now("u-root", Reason.SCHEDULE, pulse_id="p1")
    assert SyncWorker(deps).handle(delivery(request)) is Result.SKIPPED
    assert counts(db, "p1") == (0, 0, 1)


def test_transient_failure_raises_and_records_until_final(
    deps: Deps, db: firestore.Client, simulator: AlpacaSimulator
) -> None:
    sim_tenant(simulator, db, "u-5xx", Scenario(kind="server_error", status=502))
    request = SyncRequest.now("u-5xx", Reason.SCHEDULE, pulse_id="p1")
    worker = SyncWorker(deps)
    with pytest.raises(errors.AlpacaUnavailable):
        worker.handle(delivery(request, attempt=1))
    error = doc(db, paths.last_sync_error_doc("u-5xx"))
    assert error is not None and error["error_class"] == "AlpacaUnavailable"
    assert error["final"] is False and error["delivery_attempt"] == 1
    assert doc(db, paths.sync_state_doc("u-5xx")) is None  # not counted while retries remain
    with pytest.raises(errors.AlpacaUnavailable):
        worker.handle(delivery(request, attempt=MAX_DELIVERY_ATTEMPTS))
    assert doc(db, paths.sync_state_doc("u-5xx"))["outcome"] == "error"  # type: ignore[index]


class _FirstReadFails:
    """The emulator's client, except that the worker's first batched read raises ``error``."""

    def __init__(self, db: firestore.Client, error: Exception) -> None:
        self._db = db
        self._error: Exception | None = error

    def get_all(self, *args: Any, **kwargs: Any) -> Any:
        error, self._error = self._error, None
        if error is not None:
            raise error
        return self._db.get_all(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)


@pytest.mark.parametrize(
    "error",
    [gexc.Unknown("Stream removed"), gexc.Cancelled("Locally cancelled by application")],
    ids=["unknown", "cancelled"],
)
def test_an_unknown_or_cancelled_firestore_call_is_retried_and_recorded(
    deps: Deps, db: firestore.Client, simulator: AlpacaSimulator, error: Exception
) -> None:
    sim_tenant(simulator, db, "u-grpc", Scenario(kind="normal"))
    failing = Deps(
        deps.settings,
        firestore_client=cast(Any, _FirstReadFails(db, error)),
        publisher=deps.publisher,
        alpaca_factory=deps.alpaca,
    )
    worker = SyncWorker(failing)
    request = SyncRequest.now("u-grpc", Reason.SCHEDULE, pulse_id="p1")
    with pytest.raises(errors.DependencyUnavailable):
        worker.handle(delivery(request, attempt=1))
    recorded = doc(db, paths.last_sync_error_doc("u-grpc"))
    assert recorded is not None and recorded["error_class"] == "DependencyUnavailable"
    assert recorded["final"] is False
    assert worker.handle(delivery(request, attempt=2)) is Result.SYNCED
    assert doc(db, paths.last_sync_error_doc("u-grpc")) is None


def test_permanent_failure_records_and_dead_letters(
    deps: Deps, db: firestore.Client, simulator: AlpacaSimulator, project: str
) -> None:
    tenant: Tenant = sim_tenant(simulator, db, "u-401", Scenario(kind="bad_keys"))
    assert (
        SyncWorker(deps).handle(delivery(SyncRequest.now("u-401", Reason.FIRST_SYNC)))
        is Result.DEAD_LETTERED
    )
    error = doc(db, paths.last_sync_error_doc("u-401"))
    assert error is not None and error["error_class"] == "AlpacaAuthError" and error["permanent"]
    [letter] = drain_dead_letters(project, expect=1, timeout=20)
    assert letter.attributes["reason"] == "first_sync"
    assert json.loads(letter.data)["uid"] == "u-401"
    for value in (tenant.key_id, tenant.secret_key):
        assert value not in repr(error) and value not in repr(dict(letter.attributes))


def _client() -> object:
    app = functions_framework.create_app(target="sync_user", source=str(REPO_ROOT / "main.py"))
    return app.test_client()


def test_adapter_golden_push_body(
    deps: Deps, db: firestore.Client, simulator: AlpacaSimulator
) -> None:
    sim_tenant(simulator, db, "golden-user", Scenario(kind="normal"))
    body = json.loads(GOLDEN_PUSH.read_text())
    response = _client().post("/", json=body)  # type: ignore[attr-defined]
    assert response.status_code == 200
    snapshot = doc(db, paths.snapshot_doc("golden-user"))
    assert snapshot is not None and snapshot["reason"] == "manual"


def test_adapter_answers_503_on_transient_failure_so_pubsub_retries(
    deps: Deps, db: firestore.Client, simulator: AlpacaSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    sim_tenant(simulator, db, "golden-user", Scenario(kind="rate_limited"))
    body = json.loads(GOLDEN_PUSH.read_text())
    body["deliveryAttempt"] = 2
    response = _client().post("/", json=body)  # type: ignore[attr-defined]
    assert response.status_code == 503
    # One line for the failure, without a traceback (tests/unit/test_redelivery.py).
    [line] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert line.exc_info is None and "AlpacaRateLimited" in str(line.__dict__["labels"])
    error = doc(db, paths.last_sync_error_doc("golden-user"))
    assert error is not None and error["error_class"] == "AlpacaRateLimited"
    assert error["delivery_attempt"] == 2


def test_adapter_acknowledges_a_message_without_data(deps: Deps) -> None:
    body = json.loads(GOLDEN_PUSH.read_text())
    body["message"]["data"] = base64.b64encode(b"{}").decode()
    response = _client().post("/", json=body)  # type: ignore[attr-defined]
    assert response.status_code == 200  # dead-lettered by the worker, not retried


def test_keys_are_cached_per_version_and_reread_when_it_changes(
    deps: Deps, db: firestore.Client, simulator: AlpacaSimulator
) -> None:
    sim_tenant(simulator, db, "u-cache", Scenario(kind="normal"))
    worker = SyncWorker(deps)
    first = SyncRequest.now("u-cache", Reason.SCHEDULE, pulse_id="p1", keys_version="100")
    assert worker.handle(delivery(first)) is Result.SYNCED
    # The keys of version 100 are held: the next sync of that version does not read them.
    db.document(paths.alpaca_secret_doc("u-cache")).delete()
    again = SyncRequest.now("u-cache", Reason.SCHEDULE, pulse_id="p2", keys_version="100")
    assert worker.handle(delivery(again)) is Result.SYNCED
    # A new version (keys rotated or deleted since) reads them again.
    rotated = SyncRequest.now("u-cache", Reason.SCHEDULE, pulse_id="p3", keys_version="200")
    assert worker.handle(delivery(rotated)) is Result.DEAD_LETTERED
    error = doc(db, paths.last_sync_error_doc("u-cache"))
    assert error is not None and error["error_class"] == "MissingKeys"


def test_cached_keys_refused_by_alpaca_are_read_again_once(
    deps: Deps, db: firestore.Client, simulator: AlpacaSimulator
) -> None:
    old = sim_tenant(simulator, db, "u-rot", Scenario(kind="normal"))
    worker = SyncWorker(deps)
    request = SyncRequest.now("u-rot", Reason.SCHEDULE, pulse_id="p1", keys_version="1")
    assert worker.handle(delivery(request)) is Result.SYNCED
    # Rotated at Alpaca and in Firestore, but this message still carries the old version.
    simulator.set_scenario(old.key_id, Scenario(kind="bad_keys"))
    new = simulator.add_tenant(scenario=Scenario(kind="normal"))
    db.document(paths.alpaca_secret_doc("u-rot")).set(
        {"key_id": new.key_id, "secret_key": new.secret_key, "base_url": simulator.base_url}
    )
    later = SyncRequest.now("u-rot", Reason.SCHEDULE, pulse_id="p2", keys_version="1")
    assert worker.handle(delivery(later)) is Result.SYNCED
    assert simulator.requests_for(new.key_id) == 2


def test_cached_keys_refused_while_still_stored_cost_one_alpaca_call_and_unmark_them(
    deps: Deps, db: firestore.Client, simulator: AlpacaSimulator, project: str
) -> None:
    tenant = sim_tenant(simulator, db, "u-revoked", Scenario(kind="normal"))
    worker = SyncWorker(deps)
    request = SyncRequest.now("u-revoked", Reason.SCHEDULE, pulse_id="p1", keys_version="1")
    assert worker.handle(delivery(request)) is Result.SYNCED  # the keys are now cached
    # Revoked at Alpaca, unchanged in Firestore: reading them again could not help.
    simulator.set_scenario(tenant.key_id, Scenario(kind="bad_keys"))
    before = simulator.requests_for(tenant.key_id)
    later = SyncRequest.now("u-revoked", Reason.SCHEDULE, pulse_id="p2", keys_version="1")
    assert worker.handle(delivery(later)) is Result.DEAD_LETTERED
    assert simulator.requests_for(tenant.key_id) - before == 1
    config = doc(db, paths.alpaca_config_doc("u-revoked"))
    assert config is not None
    assert (config["configured"], config["keysState"]) == (False, "rejected")
    [entry] = [d.to_dict() for d in db.collection(paths.audit_collection("u-revoked")).stream()]
    assert (entry["action"], entry["actor"]) == ("keys_rejected", "system")
    assert entry["details"] == {
        "error_class": "AlpacaAuthError",
        "key_id_hint": f"…{tenant.key_id[-4:]}",
    }
    [letter] = drain_dead_letters(project, expect=1, timeout=20)
    assert letter.attributes["error_class"] == "AlpacaAuthError"


def test_a_success_proves_only_the_version_the_config_waits_for(
    deps: Deps, db: firestore.Client, simulator: AlpacaSimulator
) -> None:
    sim_tenant(simulator, db, "u-prove", Scenario(kind="normal"), configured=False)
    stored = db.document(paths.alpaca_secret_doc("u-prove")).get().update_time
    config = db.document(paths.alpaca_config_doc("u-prove"))
    # Newer keys are pending than the ones this sync will read: it must not prove them.
    config.update({"keysState": "pending", "configuredAt": stored + timedelta(seconds=1)})
    worker = SyncWorker(deps)
    assert worker.handle(delivery(SyncRequest.now("u-prove", Reason.MANUAL))) is Result.SYNCED
    assert doc(db, config.path)["configured"] is False  # type: ignore[index]
    config.update({"configuredAt": stored})
    assert worker.handle(delivery(SyncRequest.now("u-prove", Reason.MANUAL))) is Result.SYNCED
    proven = doc(db, config.path)
    assert proven is not None
    assert (proven["configured"], proven["keysState"]) == (True, "proven")
    # A scheduled sync reads nothing more (only configured users are scheduled).
    schedule = SyncRequest.now("u-prove", Reason.SCHEDULE, pulse_id="p1")
    with counted() as cold:
        assert worker.handle(delivery(schedule)) is Result.SYNCED
    assert cold.reads == 3  # snapshot, kill-switch, keys: not config/alpaca


# --- what a result writes: one write for a healthy tenant, counts exact ------------------------


def test_warm_success_of_a_healthy_tenant_is_one_write(
    deps: Deps, db: firestore.Client, simulator: AlpacaSimulator
) -> None:
    sim_tenant(simulator, db, "u-warm", Scenario(kind="normal"))
    at = datetime.now(UTC)

    def scheduled(seconds: int, pulse_id: str) -> SyncRequest:
        return SyncRequest(
            "u-warm", Reason.SCHEDULE, at + timedelta(seconds=seconds), pulse_id=pulse_id,
            keys_version="7",
        )  # fmt: skip

    worker = SyncWorker(deps)
    with counted() as first:
        assert worker.handle(delivery(scheduled(0, "p1"))) is Result.SYNCED
    # No snapshot yet: status/sync is written and status/last_sync_error deleted as well.
    assert (first.reads, first.writes, first.deletes) == (3, 2, 1)
    with counted() as warm:
        assert worker.handle(delivery(scheduled(1, "p2"))) is Result.SYNCED
    # Kill-switch and snapshot in one batched get (keys cached); the snapshot alone written.
    assert (warm.reads, warm.writes, warm.deletes) == (2, 1, 0)
    with counted() as cold:
        assert SyncWorker(deps).handle(delivery(scheduled(2, "p3"))) is Result.SYNCED
    assert (cold.reads, cold.writes, cold.deletes) == (3, 1, 0)
    snapshot = doc(db, paths.snapshot_doc("u-warm"))
    assert snapshot is not None
    assert (snapshot["pulseId"], snapshot["syncOutcome"], snapshot["syncFailing"]) == (
        "p3",
        "success",
        False,
    )
    assert [counts(db, p) for p in ("p1", "p2", "p3")] == [(0, 0, 0), (0, 0, 0), (1, 0, 0)]
    state = doc(db, paths.sync_state_doc("u-warm"))
    assert state is not None and state["outcome"] == "success" and state["pulse_id"] == "p1"
    assert_consistent(db, "u-warm")


def test_failed_then_recovered_in_the_same_pulse_counts_once_as_success(
    deps: Deps, db: firestore.Client, simulator: AlpacaSimulator
) -> None:
    tenant = sim_tenant(simulator, db, "u-heal", Scenario(kind="normal"))
    worker = SyncWorker(deps)
    assert worker.handle(delivery(SyncRequest.now("u-heal", Reason.SCHEDULE, pulse_id="p0")))
    simulator.set_scenario(tenant.key_id, Scenario(kind="server_error", status=503))
    request = SyncRequest.now("u-heal", Reason.SCHEDULE, pulse_id="p1")
    with counted() as retried, pytest.raises(errors.AlpacaUnavailable):
        worker.handle(delivery(request, attempt=1))
    # Recorded for the operator, not counted while Pub/Sub retries.
    assert (retried.writes, retried.deletes) == (2, 0)  # last_sync_error, snapshot flag
    assert counts(db, "p1") == (0, 0, 0) and counts(db, "p0") == (1, 0, 0)
    assert_consistent(db, "u-heal")
    with counted() as final:
        final_failure(worker, request)
    assert (final.writes, final.deletes) == (3, 0)  # + status/sync
    assert counts(db, "p1") == (0, 1, 0)
    snapshot = doc(db, paths.snapshot_doc("u-heal"))
    assert snapshot is not None and snapshot["syncFailing"] and snapshot["syncOutcome"] == "error"
    assert_consistent(db, "u-heal")

    simulator.set_scenario(tenant.key_id, Scenario(kind="normal"))
    replay = SyncRequest.now("u-heal", Reason.REPLAY, original_reason=Reason.SCHEDULE)
    with counted() as recovered:
        assert worker.handle(delivery(replay)) is Result.SYNCED
    # The snapshot said failing: status/sync reset, last_sync_error deleted, in the same batch.
    assert (recovered.writes, recovered.deletes) == (2, 1)
    assert counts(db, "p1") == (1, 0, 0)
    assert doc(db, paths.last_sync_error_doc("u-heal")) is None
    state = doc(db, paths.sync_state_doc("u-heal"))
    assert state is not None and state["outcome"] == "success"
    assert state["consecutive_failures"] == 0 and state["pulse_id"] == "p1"
    assert_consistent(db, "u-heal")
    with counted() as healthy:
        assert worker.handle(delivery(SyncRequest.now("u-heal", Reason.SCHEDULE, pulse_id="p2")))
    assert (healthy.writes, healthy.deletes) == (1, 0)
    assert counts(db, "p1") == (0, 0, 0) and counts(db, "p2") == (1, 0, 0)


def test_succeeded_then_a_racing_replay_failed_counts_once_as_error(
    deps: Deps, db: firestore.Client, simulator: AlpacaSimulator
) -> None:
    tenant = sim_tenant(simulator, db, "u-race", Scenario(kind="normal"))
    worker = SyncWorker(deps)
    ok = SyncRequest.now("u-race", Reason.SCHEDULE, pulse_id="p1")
    assert worker.handle(delivery(ok)) is Result.SYNCED
    assert counts(db, "p1") == (1, 0, 0)
    simulator.set_scenario(tenant.key_id, Scenario(kind="bad_keys"))
    replay = SyncRequest.now("u-race", Reason.REPLAY, original_reason=Reason.SCHEDULE)
    assert worker.handle(delivery(replay)) is Result.DEAD_LETTERED
    assert counts(db, "p1") == (0, 1, 0)
    state = doc(db, paths.sync_state_doc("u-race"))
    assert state is not None and state["pulse_id"] == "p1" and state["consecutive_failures"] == 1
    assert_consistent(db, "u-race")


def test_a_copy_of_a_message_that_succeeded_records_neither_failure_nor_skip(
    deps: Deps, db: firestore.Client, simulator: AlpacaSimulator
) -> None:
    sim_tenant(simulator, db, "u-copy", Scenario(kind="normal"))
    worker = SyncWorker(deps)
    request = SyncRequest.now("u-copy", Reason.SCHEDULE, pulse_id="p1")
    before = Stored.read(db, "u-copy")  # what a copy in flight read, before the first commit
    assert worker.handle(delivery(request)) is Result.SYNCED
    # The copy's Alpaca call failed for good: its record loses the race, reads the snapshot
    # again and finds its own message already synced.
    error = {"error": "503", "timestamp": datetime.now(UTC), "error_class": "AlpacaUnavailable"}
    failure = Change.failure(error, "AlpacaUnavailable", final=True)
    assert record(db, request, before, failure) is Stale.DUPLICATE
    # A kill-switch turned off since: a copy is a duplicate, not a skip.
    db.document(paths.trading_status_doc("u-copy")).update({"enabled": False})
    assert worker.handle(delivery(request)) is Result.DUPLICATE
    assert counts(db, "p1") == (1, 0, 0)
    assert doc(db, paths.last_sync_error_doc("u-copy")) is None
    assert_consistent(db, "u-copy")
    # A newer message is skipped, and the skip replaces the success in its pulse.
    later = SyncRequest.now("u-copy", Reason.REPLAY, original_reason=Reason.SCHEDULE)
    assert worker.handle(delivery(later)) is Result.SKIPPED
    assert counts(db, "p1") == (0, 0, 1)
    assert_consistent(db, "u-copy")


def test_a_failure_recorded_between_read_and_commit_never_loses_the_success(
    deps: Deps, db: firestore.Client, simulator: AlpacaSimulator
) -> None:
    sim_tenant(simulator, db, "u-mid", Scenario(kind="normal"))
    worker = SyncWorker(deps)
    assert worker.handle(delivery(SyncRequest.now("u-mid", Reason.SCHEDULE, pulse_id="p1")))
    read_by_success = Stored.read(db, "u-mid")
    failing = SyncRequest.now("u-mid", Reason.MANUAL)
    error = {"error": "429", "timestamp": datetime.now(UTC), "error_class": "AlpacaRateLimited"}
    retrying = Change.failure(error, "AlpacaRateLimited", final=False)
    assert record(db, failing, None, retrying) is None
    assert doc(db, paths.snapshot_doc("u-mid"))["syncFailing"] is True  # type: ignore[index]
    newer = SyncRequest.now("u-mid", Reason.SCHEDULE, pulse_id="p2")
    body = {"syncedAt": datetime.now(UTC), "requestedAt": newer.requested_at, "account": {}}
    # Guarded by the snapshot as read before the failure: fails once, decides again, writes.
    assert record(db, newer, read_by_success, Change.success(body)) is None
    snapshot = doc(db, paths.snapshot_doc("u-mid"))
    assert snapshot is not None and snapshot["requestedAt"] == newer.requested_at
    assert snapshot["syncFailing"] is False and snapshot["pulseId"] == "p2"
    assert doc(db, paths.last_sync_error_doc("u-mid")) is None  # cleared: it was flagged
    assert counts(db, "p2") == (1, 0, 0)
    assert_consistent(db, "u-mid")
    # An older message's failure never marks the newer snapshot.
    older = SyncRequest("u-mid", Reason.SCHEDULE, failing.requested_at, pulse_id="p1")
    final = Change.failure(error, "AlpacaRateLimited", final=True)
    assert record(db, older, None, final) is Stale.SUPERSEDED
    assert counts(db, "p2") == (1, 0, 0) and counts(db, "p1") == (0, 0, 0)


def test_a_failure_that_read_no_snapshot_marks_the_one_written_meanwhile(
    deps: Deps, db: firestore.Client, simulator: AlpacaSimulator
) -> None:
    sim_tenant(simulator, db, "u-new", Scenario(kind="normal"))
    absent = Stored.read(db, "u-new")
    assert not absent.exists
    assert SyncWorker(deps).handle(
        delivery(SyncRequest.now("u-new", Reason.SCHEDULE, pulse_id="p1"))
    )
    replay = SyncRequest.now("u-new", Reason.REPLAY)
    error = {"error": "401", "timestamp": datetime.now(UTC), "error_class": "AlpacaAuthError"}
    assert record(db, replay, absent, Change.failure(error, "AlpacaAuthError", final=True)) is None
    # Not a status/sync write beside a clean snapshot: the snapshot is marked too, same pulse.
    assert counts(db, "p1") == (0, 1, 0)
    snapshot = doc(db, paths.snapshot_doc("u-new"))
    assert snapshot is not None and snapshot["syncOutcome"] == "error"
    assert snapshot["account"]["id"]  # the data stays
    assert_consistent(db, "u-new")


def test_a_placeholder_snapshot_takes_the_pulse_from_status_sync(
    deps: Deps, db: firestore.Client, simulator: AlpacaSimulator
) -> None:
    from agenttrader.snapshot import placeholder as placeholder_snapshot

    tenant = sim_tenant(simulator, db, "u-ph", Scenario(kind="bad_keys"))
    db.document(paths.snapshot_doc("u-ph")).set(placeholder_snapshot())
    worker = SyncWorker(deps)
    request = SyncRequest.now("u-ph", Reason.SCHEDULE, pulse_id="p1")
    assert worker.handle(delivery(request)) is Result.DEAD_LETTERED
    assert counts(db, "p1") == (0, 1, 0)
    simulator.set_scenario(tenant.key_id, Scenario(kind="normal"))
    assert worker.handle(delivery(SyncRequest.now("u-ph", Reason.MANUAL))) is Result.SYNCED
    assert counts(db, "p1") == (1, 0, 0)
    snapshot = doc(db, paths.snapshot_doc("u-ph"))
    assert snapshot is not None and "placeholder" not in snapshot
    assert_consistent(db, "u-ph")


FAR_FUTURE = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)


def test_a_requested_at_in_the_future_is_bounded_by_the_publish_time(
    deps: Deps, db: firestore.Client, simulator: AlpacaSimulator
) -> None:
    sim_tenant(simulator, db, "u-9999", Scenario(kind="normal"))
    worker = SyncWorker(deps)
    forged = SyncRequest("u-9999", Reason.MANUAL, FAR_FUTURE)
    published = datetime.now(UTC)
    assert worker.handle(delivery(forged)) is Result.SYNCED
    stored = doc(db, paths.snapshot_doc("u-9999"))
    assert stored is not None
    assert stored["requestedAt"] <= published + MAX_CLOCK_SKEW + timedelta(seconds=5)
    # The next pulse's message is not superseded by it.
    later = SyncRequest("u-9999", Reason.SCHEDULE, stored["requestedAt"] + timedelta(seconds=1))
    assert worker.handle(delivery(later, publish_time=later.requested_at)) is Result.SYNCED


def test_a_snapshot_stamped_in_the_future_does_not_freeze_the_tenant(
    deps: Deps, db: firestore.Client, simulator: AlpacaSimulator
) -> None:
    sim_tenant(simulator, db, "u-frozen", Scenario(kind="normal"))
    worker = SyncWorker(deps)
    assert worker.handle(delivery(SyncRequest.now("u-frozen", Reason.MANUAL))) is Result.SYNCED
    # Stamped by a release that did not bound requested_at (or by hand).
    db.document(paths.snapshot_doc("u-frozen")).update({"requestedAt": FAR_FUTURE})
    scheduled = SyncRequest.now("u-frozen", Reason.SCHEDULE, pulse_id="p1")
    assert worker.handle(delivery(scheduled)) is Result.SYNCED
    stored = doc(db, paths.snapshot_doc("u-frozen"))
    assert stored is not None and stored["requestedAt"] == scheduled.requested_at


def test_a_replay_from_a_clock_an_hour_ahead_does_not_freeze_the_tenant(
    deps: Deps, db: firestore.Client, simulator: AlpacaSimulator
) -> None:
    sim_tenant(simulator, db, "u-ahead", Scenario(kind="normal"))
    worker = SyncWorker(deps)
    ahead = datetime.now(UTC) + timedelta(hours=1)
    replay = SyncRequest(
        "u-ahead", Reason.REPLAY, ahead, original_reason=Reason.SCHEDULE, replay_count=1
    )
    assert worker.handle(delivery(replay)) is Result.SYNCED
    stored = doc(db, paths.snapshot_doc("u-ahead"))
    assert stored is not None and stored["requestedAt"] < ahead - timedelta(minutes=59)
    # The next tick, a minute later, syncs.
    tick_at = datetime.now(UTC) + timedelta(minutes=1)
    scheduled = SyncRequest("u-ahead", Reason.SCHEDULE, tick_at, pulse_id="p2")
    assert worker.handle(delivery(scheduled, publish_time=tick_at)) is Result.SYNCED


def test_a_superseded_message_of_a_pulse_counts_for_its_pulse(
    deps: Deps, db: firestore.Client, simulator: AlpacaSimulator
) -> None:
    sim_tenant(simulator, db, "u-sup", Scenario(kind="normal"))
    worker = SyncWorker(deps)
    before = datetime.now(UTC) - timedelta(minutes=3)
    previous = pulse_id_for("1", before)
    assert worker.handle(delivery(SyncRequest("u-sup", Reason.SCHEDULE, before, pulse_id=previous)))
    tick_at = datetime.now(UTC) - timedelta(seconds=30)
    pulse = pulse_id_for("2", tick_at)
    # A replay (no pulse) syncs the tenant after the tick, before the pulse's message arrives:
    # its success keeps counting for the previous pulse.
    replay = SyncRequest.now("u-sup", Reason.REPLAY, original_reason=Reason.SCHEDULE)
    assert worker.handle(delivery(replay)) is Result.SYNCED
    assert counts(db, previous) == (1, 0, 0) and counts(db, pulse) == (0, 0, 0)
    scheduled = SyncRequest("u-sup", Reason.SCHEDULE, tick_at, pulse_id=pulse)
    assert worker.handle(delivery(scheduled)) is Result.SUPERSEDED
    # The tenant's success, newer than the message, now counts for the message's pulse.
    assert counts(db, pulse) == (1, 0, 0) and counts(db, previous) == (0, 0, 0)
    snapshot = doc(db, paths.snapshot_doc("u-sup"))
    assert snapshot is not None and snapshot["requestedAt"] == replay.requested_at
    assert_consistent(db, "u-sup")
    # A copy changes nothing; an older pulse's late message takes nothing from it.
    assert worker.handle(delivery(scheduled)) is Result.SUPERSEDED
    late = SyncRequest("u-sup", Reason.SCHEDULE, before, pulse_id=previous)
    assert worker.handle(delivery(late)) is Result.SUPERSEDED
    assert counts(db, pulse) == (1, 0, 0)


def test_a_superseded_error_moves_to_the_pulse_with_its_status(
    deps: Deps, db: firestore.Client, simulator: AlpacaSimulator
) -> None:
    tenant = sim_tenant(simulator, db, "u-sup-err", Scenario(kind="normal"))
    worker = SyncWorker(deps)
    tick_at = datetime.now(UTC) - timedelta(seconds=30)
    pulse = pulse_id_for("3", tick_at)
    assert worker.handle(delivery(SyncRequest.now("u-sup-err", Reason.MANUAL)))
    simulator.set_scenario(tenant.key_id, Scenario(kind="bad_keys"))
    replay = SyncRequest.now("u-sup-err", Reason.REPLAY, original_reason=Reason.SCHEDULE)
    assert worker.handle(delivery(replay)) is Result.DEAD_LETTERED
    drain_dead_letters(deps.settings.project, expect=1, timeout=10)
    # The pulse's message was requested before the stored snapshot: superseded, and the
    # tenant's latest outcome (the replay's error) is its outcome in the pulse.
    scheduled = SyncRequest(
        "u-sup-err", Reason.SCHEDULE, tick_at - timedelta(minutes=5), pulse_id=pulse
    )
    assert worker.handle(delivery(scheduled)) is Result.SUPERSEDED
    assert counts(db, pulse) == (0, 1, 0)
    assert_consistent(db, "u-sup-err")
