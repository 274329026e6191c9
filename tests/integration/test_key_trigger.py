"""on_alpaca_secret_written against the emulators: directly, with golden CloudEvents through the
functions-framework test client (the document is written first, as a client would, then its
event delivered as Eventarc would: once, again, late or out of order), and through the local
Eventarc bridge (a real Firestore write fires it). The trigger seals what a client wrote (no
plaintext left, a newer write never overwritten); keys become configured only once the
worker's first sync succeeded with them, and a 401 takes them off the roster."""

from __future__ import annotations

import dataclasses
import json
import math
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import functions_framework
import pytest
from google.cloud import firestore, pubsub_v1

from accounts import deletion
from accounts.key_changes import KeyChange, handle_key_change
from agenttrader import paths, topology
from agenttrader.credentials import local_kek
from agenttrader.deps import Deps
from agenttrader.events import FIRESTORE_WRITTEN_WITH_AUTH, DocumentChange, PubsubDelivery
from agenttrader.keys_version import stored_version, version_of
from devtools.eventarc import encode_document_event, firestore_event_headers
from devtools.localstack.stack import LocalStack
from devtools.simulator import AlpacaSimulator, Scenario
from publisher.tick import fan_out
from sync_worker.worker import Result, SyncWorker
from tests.callable_fixtures import documents_under
from tests.pipeline_fixtures import doc, pull, seed_user, wait_for

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).parents[2]
KEYS = {
    "key_id": "PKTESTKEY00000000001",
    "secret_key": "S" * 40,
    "base_url": "https://paper-api.alpaca.markets",
}
WINDOW = 0.5
"""``KEYS_DEBOUNCE_SECONDS`` of these tests (10 s by default)."""


@pytest.fixture
def deps(pipeline_deps: Deps) -> Deps:
    """The functions' dependencies, with a short debounce window."""
    pipeline_deps.settings = dataclasses.replace(
        pipeline_deps.settings, keys_debounce_seconds=WINDOW
    )
    return pipeline_deps


def after_window() -> None:
    time.sleep(WINDOW + 0.1)


def tapped(project: str, wait: float = 3.0) -> list[Any]:
    """The messages published to ``user-sync`` since the last call (pulled and acked)."""
    return list(pull(project, "tap", timeout=wait, until_quiet=True))


def post_event(
    project: str,
    path: str,
    old: dict[str, Any] | None,
    new: dict[str, Any] | None,
    event_id: str,
    *,
    target: str = "on_alpaca_secret_written",
) -> int:
    """Deliver a Firestore event to ``target`` as Eventarc does; the HTTP status it answers."""
    now = datetime.now(UTC)
    app = functions_framework.create_app(target=target, source=str(REPO_ROOT / "main.py"))
    response = app.test_client().post(
        "/",
        data=encode_document_event(project, path, old, new, now),
        headers=firestore_event_headers(project, path, event_id, now),
    )
    return int(response.status_code)


def secret_event(
    project: str,
    uid: str,
    event_id: str,
    old: dict[str, Any] | None = None,
    new: dict[str, Any] | None = None,
) -> int:
    return post_event(project, paths.alpaca_secret_doc(uid), old, new, event_id)


def write_keys(
    project: str, db: firestore.Client, uid: str, keys: dict[str, str], event_id: str
) -> int:
    """The client writes its keys, then Eventarc delivers the write."""
    db.document(paths.alpaca_secret_doc(uid)).set(keys)
    return secret_event(project, uid, event_id, None, keys)


def stored(db: firestore.Client, uid: str) -> dict[str, Any] | None:
    return doc(db, paths.alpaca_secret_doc(uid))


def assert_sealed(db: firestore.Client, uid: str, keys: dict[str, str]) -> dict[str, Any]:
    """``uid``'s secrets document is in the sealed form of ``keys``, no plaintext left."""
    found = stored(db, uid)
    assert found is not None
    assert set(found) == {
        "sealed", "auth", "ciphertext", "key_id_hint", "base_url", "sealedAt", "keys_version",
    }  # fmt: skip
    assert found["sealed"] is True and found["auth"] == "keys"
    assert found["key_id_hint"] == keys["key_id"][-4:] and found["base_url"] == keys["base_url"]
    assert keys["key_id"].encode() not in found["ciphertext"]
    assert keys["secret_key"].encode() not in found["ciphertext"]
    return found


def version(db: firestore.Client, uid: str) -> str | None:
    """The version of the keys stored for ``uid`` now."""
    return stored_version(db.document(paths.alpaca_secret_doc(uid)).get())


def config_of(db: firestore.Client, uid: str) -> dict[str, Any]:
    found = doc(db, paths.alpaca_config_doc(uid))
    assert found is not None
    return found


def handled(db: firestore.Client, uid: str) -> tuple[bool, str | None, str | None]:
    """``configured``, ``keysState`` and the version config/alpaca refers to."""
    config = config_of(db, uid)
    return config["configured"], config.get("keysState"), version_of(config.get("configuredAt"))


def audit_actions(db: firestore.Client, uid: str) -> list[str]:
    return sorted(
        d.to_dict()["action"] for d in db.collection(paths.audit_collection(uid)).stream()
    )


def sim_keys(sim: AlpacaSimulator, scenario: str = "normal") -> dict[str, str]:
    account = sim.add_tenant(scenario=Scenario(kind=scenario))
    return {"key_id": account.key_id, "secret_key": account.secret_key, "base_url": sim.base_url}


def deliver(worker: SyncWorker, message: Any) -> Result:
    """One ``user-sync`` message, as the push subscription delivers it."""
    delivery = PubsubDelivery(
        message.message_id, message.data, dict(message.attributes), datetime.now(UTC), 1
    )
    return worker.handle(delivery)


def first_sync(project: str, uid: str) -> Any:
    """The one message published since the last pull: ``uid``'s first sync."""
    [message] = tapped(project)
    body = json.loads(message.data)
    assert (body["uid"], body["reason"]) == (uid, "first_sync")
    return message


def connect(
    project: str, db: firestore.Client, worker: SyncWorker, uid: str, keys: dict[str, str]
) -> None:
    """The keys written, their event delivered, their first sync run: proven."""
    assert write_keys(project, db, uid, keys, f"ev-{keys['key_id']}") == 200
    assert deliver(worker, first_sync(project, uid)) is Result.SYNCED


def roster_trigger(project: str, uid: str, event_id: str) -> None:
    """``on_alpaca_config_written``, as Eventarc delivers a write of ``config/alpaca`` (by the
    secrets trigger or the worker): the roster entry follows the document."""
    path = paths.alpaca_config_doc(uid)
    assert post_event(project, path, None, {}, event_id, target="on_alpaca_config_written") == 200


def scheduled(project: str, deps: Deps, tick_id: str) -> list[str]:
    """The uids one tick publishes to."""
    fan_out(deps, PubsubDelivery(tick_id, b"{}", {}, datetime.now(UTC)))
    messages = [json.loads(m.data) for m in tapped(project)]
    return sorted(m["uid"] for m in messages if m["reason"] == "schedule")


# --- proven keys ------------------------------------------------------------------------------


def test_valid_keys_become_configured_only_once_the_first_sync_succeeded(
    deps: Deps, project: str, simulator: AlpacaSimulator
) -> None:
    db = deps.firestore
    seed_user(db, "u1", configured=False, enabled=False)
    keys = sim_keys(simulator)
    db.document(paths.alpaca_secret_doc("u1")).set(keys)
    written = version(db, "u1")
    assert secret_event(project, "u1", "ev-1", None, keys) == 200
    # Sealed in place, keeping the version of what the client wrote.
    sealed = assert_sealed(db, "u1", keys)
    assert sealed["keys_version"] == written == version(db, "u1")
    # Well-formed is not proven: not eligible until a sync with exactly these keys succeeded.
    assert handled(db, "u1") == (False, "pending", written)
    message = first_sync(project, "u1")
    assert json.loads(message.data)["keys_version"] == version(db, "u1")
    assert keys["key_id"] not in message.data.decode()
    assert keys["secret_key"] not in message.data.decode()
    [entry] = [d.to_dict() for d in db.collection(paths.audit_collection("u1")).stream()]
    assert entry["action"] == "keys_created"
    assert entry["details"] == {
        "key_id_hint": f"…{keys['key_id'][-4:]}",
        "base_url_host": "127.0.0.1",
    }
    assert deliver(SyncWorker(deps), message) is Result.SYNCED  # trading off: first syncs run
    assert handled(db, "u1") == (True, "proven", version(db, "u1"))
    assert config_of(db, "u1")["provenAt"]


def test_made_up_keys_are_never_eligible_and_one_401_takes_the_tenant_off_the_roster(
    deps: Deps, project: str, simulator: AlpacaSimulator
) -> None:
    db = deps.firestore
    worker = SyncWorker(deps)
    seed_user(db, "ok", keys=sim_keys(simulator))  # configured by a script, healthy
    seed_user(db, "fake", configured=False, enabled=True)
    made_up = {**KEYS, "base_url": simulator.base_url}  # well-formed, unknown to Alpaca
    assert write_keys(project, db, "fake", made_up, "ev-fake") == 200
    roster_trigger(project, "fake", "cfg-1")
    message = first_sync(project, "fake")
    assert scheduled(project, deps, "9001") == ["ok"]  # pending keys are not polled
    calls = simulator.stats()["total"]
    assert deliver(worker, message) is Result.DEAD_LETTERED
    assert simulator.stats()["total"] - calls == 1  # one Alpaca call, not two
    assert handled(db, "fake") == (False, "rejected", version(db, "fake"))
    assert config_of(db, "fake")["keysRejectedAt"]
    assert audit_actions(db, "fake") == ["keys_created", "keys_rejected"]
    roster_trigger(project, "fake", "cfg-2")
    assert scheduled(project, deps, "9002") == ["ok"]
    assert deliver(worker, message) is Result.DEAD_LETTERED  # a redelivery changes nothing
    assert audit_actions(db, "fake") == ["keys_created", "keys_rejected"]
    # New keys make the tenant eligible again, once a sync proved them.
    after_window()
    connect(project, db, worker, "fake", sim_keys(simulator))
    roster_trigger(project, "fake", "cfg-3")
    assert scheduled(project, deps, "9003") == ["fake", "ok"]


def test_script_configured_keys_refused_by_alpaca_are_polled_once_not_every_tick(
    deps: Deps, project: str, simulator: AlpacaSimulator
) -> None:
    db = deps.firestore
    # configured: true written by a script (or a migration, or the trigger of before): a 401
    # unmarks it all the same.
    seed_user(db, "scripted", keys=sim_keys(simulator, "bad_keys"))
    fan_out(deps, PubsubDelivery("9101", b"{}", {}, datetime.now(UTC)))
    [message] = tapped(project)
    calls = simulator.stats()["total"]
    assert deliver(SyncWorker(deps), message) is Result.DEAD_LETTERED
    assert simulator.stats()["total"] - calls == 1
    roster_trigger(project, "scripted", "cfg-1")
    assert scheduled(project, deps, "9102") == []
    assert handled(db, "scripted")[:2] == (False, "rejected")


# --- late, redelivered and out-of-order events ------------------------------------------------


def test_a_late_or_redelivered_old_event_does_not_unmark_valid_keys(
    deps: Deps, project: str, simulator: AlpacaSimulator
) -> None:
    db = deps.firestore
    worker = SyncWorker(deps)
    seed_user(db, "late", configured=False)
    old_keys, new_keys = sim_keys(simulator), sim_keys(simulator)
    connect(project, db, worker, "late", old_keys)
    after_window()
    connect(project, db, worker, "late", new_keys)
    proven = handled(db, "late")
    assert proven[0] is True
    after_window()
    # The first write's event again (a redelivery), the same write under another id (late),
    # and a delete event for the old keys that never happened as the document stands.
    redelivered = f"ev-{old_keys['key_id']}"  # the id the first write's event had
    assert secret_event(project, "late", redelivered, None, old_keys) == 200
    assert secret_event(project, "late", "ev-late", None, old_keys) == 200
    assert secret_event(project, "late", "ev-del-late", old_keys, None) == 200
    assert handled(db, "late") == proven
    assert tapped(project, wait=2) == []  # no first sync requested again
    assert audit_actions(db, "late") == ["keys_created", "keys_rotated"]
    assert proven == (True, "proven", version(db, "late"))


def test_a_redelivered_delete_after_a_re_create_does_not_unmark(
    deps: Deps, project: str, simulator: AlpacaSimulator
) -> None:
    db = deps.firestore
    worker = SyncWorker(deps)
    seed_user(db, "again", configured=False)
    keys = sim_keys(simulator)
    connect(project, db, worker, "again", keys)
    db.document(paths.alpaca_secret_doc("again")).delete()
    assert secret_event(project, "again", "ev-del", keys, None) == 200
    assert config_of(db, "again")["configured"] is False
    after_window()
    connect(project, db, worker, "again", sim_keys(simulator))
    proven = handled(db, "again")
    assert proven[0] is True
    assert secret_event(project, "again", "ev-del", keys, None) == 200  # redelivered
    assert handled(db, "again") == proven
    assert tapped(project, wait=2) == []
    assert audit_actions(db, "again") == ["keys_created", "keys_created", "keys_deleted"]
    assert proven == (True, "proven", version(db, "again"))


def test_the_event_of_the_sealing_rewrite_and_a_late_one_request_nothing(
    deps: Deps, project: str, simulator: AlpacaSimulator
) -> None:
    db = deps.firestore
    seed_user(db, "same", configured=False)
    keys = sim_keys(simulator)
    assert write_keys(project, db, "same", keys, "ev-1") == 200
    first_sync(project, "same")
    sealed = assert_sealed(db, "same", keys)
    # The trigger's own rewrite fires it again: the sealed document of the version handled.
    assert secret_event(project, "same", "ev-rewrite", keys, sealed) == 200
    assert secret_event(project, "same", "ev-late", None, keys) == 200  # the write, late
    assert tapped(project, wait=2) == []
    assert stored(db, "same") == sealed
    assert audit_actions(db, "same") == ["keys_created"]


def test_any_client_write_over_the_sealed_form_is_new_credentials(
    deps: Deps, project: str, simulator: AlpacaSimulator
) -> None:
    """The trigger may only encrypt: it cannot compare a write with what it sealed, so keys
    written again, even the same, are sealed again, first-synced and audited as a rotation; a
    changed secret alone is new credentials too."""
    db = deps.firestore
    seed_user(db, "again", configured=False)
    keys = sim_keys(simulator)
    assert write_keys(project, db, "again", keys, "ev-1") == 200
    first = json.loads(first_sync(project, "again").data)["keys_version"]
    for number, rewrite in enumerate(({**keys}, {**keys, "secret_key": "T" * 40}), 2):
        after_window()
        assert write_keys(project, db, "again", rewrite, f"ev-{number}") == 200
        assert_sealed(db, "again", rewrite)
        assert json.loads(first_sync(project, "again").data)["keys_version"] == version(db, "again")
    assert version(db, "again") != first
    assert audit_actions(db, "again") == ["keys_created", "keys_rotated", "keys_rotated"]


class _RacingVault:
    """The KEK, slow enough for the client to write newer keys while a seal is under way."""

    def __init__(self, vault: Any, db: firestore.Client, uid: str, newer: dict[str, str]) -> None:
        self._vault, self._db, self._uid, self._newer = vault, db, uid, newer
        self.seals = 0

    def seal(self, *args: Any, **kwargs: Any) -> Any:
        self.seals += 1
        if self.seals == 1:
            self._db.document(paths.alpaca_secret_doc(self._uid)).set(self._newer)
        return self._vault.seal(*args, **kwargs)


def test_a_client_write_during_the_seal_wins_and_is_the_one_sealed(
    deps: Deps, project: str, simulator: AlpacaSimulator
) -> None:
    db = deps.firestore
    seed_user(db, "race", configured=False)
    older, newer = sim_keys(simulator), sim_keys(simulator)
    db.document(paths.alpaca_secret_doc("race")).set(older)
    racing = _RacingVault(deps.vault, db, "race", newer)
    racy = Deps(deps.settings, firestore_client=db, publisher=deps.publisher, vault=racing)  # type: ignore[arg-type]
    change = DocumentChange(paths.alpaca_secret_doc("race"), None, older)

    assert handle_key_change(racy, change, "ev-old") is KeyChange.FIRST_SYNC

    # The rewrite of the older keys lost its precondition; the newer ones were read and sealed.
    assert racing.seals == 2
    assert_sealed(db, "race", newer)
    message = first_sync(project, "race")
    assert json.loads(message.data)["keys_version"] == version(db, "race")
    assert deliver(SyncWorker(deps), message) is Result.SYNCED
    assert simulator.requests_for(newer["key_id"]) == 2
    assert simulator.requests_for(older["key_id"]) == 0


def test_while_the_kek_is_down_the_event_is_retried_and_nothing_is_written(
    deps: Deps, project: str, simulator: AlpacaSimulator
) -> None:
    db = deps.firestore
    seed_user(db, "kms", configured=False)
    keys = sim_keys(simulator)
    local_kek.set_outage(project, True)
    try:
        assert write_keys(project, db, "kms", keys, "ev-1") == 503  # Eventarc redelivers
        assert stored(db, "kms") == keys  # not yet sealed; nothing else written either
        assert config_of(db, "kms")["configured"] is False
        assert "keysState" not in config_of(db, "kms")
        assert tapped(project, wait=1) == []
    finally:
        local_kek.set_outage(project, False)
    assert secret_event(project, "kms", "ev-1", None, keys) == 200  # the redelivery
    assert_sealed(db, "kms", keys)
    assert first_sync(project, "kms")


def test_a_redelivered_event_writes_one_audit_entry(deps: Deps, project: str) -> None:
    db = deps.firestore
    seed_user(db, "u4", configured=False)
    assert write_keys(project, db, "u4", KEYS, "same") == 200
    assert secret_event(project, "u4", "same", None, KEYS) == 200
    assert len(list(db.collection(paths.audit_collection("u4")).stream())) == 1


def test_deleting_unmarks_and_requests_no_sync(
    deps: Deps, project: str, simulator: AlpacaSimulator
) -> None:
    db = deps.firestore
    seed_user(db, "u2", keys=sim_keys(simulator))  # configured by a script
    db.document(paths.alpaca_secret_doc("u2")).delete()
    assert secret_event(project, "u2", "ev-del", KEYS, None) == 200
    assert secret_event(project, "u2", "ev-del", KEYS, None) == 200  # redelivered
    assert tapped(project, wait=2) == []
    assert handled(db, "u2")[:2] == (False, "deleted")
    assert config_of(db, "u2")["keysDeletedAt"]
    assert audit_actions(db, "u2") == ["keys_deleted"]


def test_the_delete_event_of_a_deleted_account_writes_nothing(
    deps: Deps, project: str, simulator: AlpacaSimulator
) -> None:
    db = deps.firestore
    seed_user(db, "leaver", keys=sim_keys(simulator))
    deletion.delete_tenant(db, "leaver", actor="leaver", reason=deletion.Reason.SELF_SERVICE)
    # Eventarc delivers the secrets document's delete after the whole subtree is gone.
    assert secret_event(project, "leaver", "ev-del", KEYS, None) == 200
    assert documents_under(db, "leaver") == []


@pytest.mark.parametrize(
    ("keys", "error_class"),
    [
        (
            {**KEYS, "base_url": "https://paper-api.alpaca.markets.evil.example"},
            "DisallowedBaseUrl",
        ),
        ({**KEYS, "base_url": "http://169.254.169.254"}, "DisallowedBaseUrl"),
        ({**KEYS, "secret_key": "has space in it"}, "InvalidKeys"),
        ({"key_id": KEYS["key_id"], "base_url": KEYS["base_url"]}, "MissingKeys"),
    ],
    ids=["look-alike", "metadata", "bad-secret", "missing-secret"],
)
def test_invalid_keys_are_recorded_and_not_synced(
    deps: Deps, project: str, keys: dict[str, str], error_class: str
) -> None:
    db = deps.firestore
    seed_user(db, "u3")  # configured by a script: invalid keys unmark it
    db.document(paths.alpaca_secret_doc("u3")).set(keys)
    written = version(db, "u3")
    assert secret_event(project, "u3", "ev-1", None, keys) == 200
    error = doc(db, paths.last_sync_error_doc("u3"))
    assert error is not None and error["error_class"] == error_class
    assert handled(db, "u3") == (False, "invalid", written)
    # Never usable, never sealed: no plaintext may rest, so the trigger deleted them, and the
    # event of that delete changes nothing.
    assert stored(db, "u3") is None
    assert secret_event(project, "u3", "ev-2", keys, None) == 200
    assert handled(db, "u3") == (False, "invalid", written)
    assert tapped(project, wait=2) == []
    assert KEYS["secret_key"] not in json.dumps(error, default=str)
    # The audit names a host only when it is on the allowlist.
    [entry] = [d.to_dict() for d in db.collection(paths.audit_collection("u3")).stream()]
    assert entry["action"] == "keys_rejected"
    allowed = keys["base_url"] == KEYS["base_url"]
    base_url = (
        {"base_url_host": "paper-api.alpaca.markets"} if allowed else {"base_url_allowed": False}
    )
    assert entry["details"] == {"error_class": error_class, **base_url}
    assert "evil" not in json.dumps([error, entry], default=str)
    assert "169.254" not in json.dumps([error, entry], default=str)


def test_not_protobuf_is_acknowledged(deps: Deps, project: str) -> None:
    app = functions_framework.create_app(
        target="on_alpaca_secret_written", source=str(REPO_ROOT / "main.py")
    )
    headers = firestore_event_headers(
        project, paths.alpaca_secret_doc("u5"), "x", datetime.now(UTC)
    )
    response = app.test_client().post("/", data=b"\x08garbage\xff", headers=headers)
    assert response.status_code == 200


class _FailingPublisher:
    """A Pub/Sub publisher that is down."""

    def publish(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("Pub/Sub unavailable")


def test_a_first_sync_that_failed_to_publish_is_published_by_the_redelivery(
    deps: Deps, project: str, simulator: AlpacaSimulator
) -> None:
    db = deps.firestore
    seed_user(db, "pub", configured=False)
    db.document(paths.alpaca_secret_doc("pub")).set(sim_keys(simulator))
    change = DocumentChange(paths.alpaca_secret_doc("pub"), None, {})
    down = Deps(deps.settings, firestore_client=db, publisher=_FailingPublisher())  # type: ignore[arg-type]
    with pytest.raises(Exception, match="could not publish the first sync"):
        handle_key_change(down, change, "ev-1")
    assert handled(db, "pub") == (False, "pending", version(db, "pub"))
    assert handle_key_change(deps, change, "ev-other") is KeyChange.UNCHANGED
    assert tapped(project, wait=2) == []
    assert handle_key_change(deps, change, "ev-1") is KeyChange.REPUBLISHED  # Eventarc's retry
    assert json.loads(first_sync(project, "pub").data)["keys_version"] == version(db, "pub")


# --- debounce ---------------------------------------------------------------------------------


def test_keys_rewritten_within_the_window_are_synced_once_the_window_passed(
    deps: Deps, project: str, simulator: AlpacaSimulator
) -> None:
    db = deps.firestore
    seed_user(db, "burst", configured=False, enabled=False)
    assert write_keys(project, db, "burst", sim_keys(simulator), "ev-a") == 200
    # Inside the window: the events fail (503), so Eventarc redelivers them later.
    assert write_keys(project, db, "burst", sim_keys(simulator), "ev-b") == 503
    last = sim_keys(simulator)
    assert write_keys(project, db, "burst", last, "ev-c") == 503
    first = first_sync(project, "burst")  # of the first keys only
    after_window()
    # The first redelivery syncs the keys stored now (the last ones); the other finds them handled.
    assert secret_event(project, "burst", "ev-b", None, {}) == 200
    assert secret_event(project, "burst", "ev-c", None, {}) == 200
    latest = first_sync(project, "burst")
    assert json.loads(latest.data)["keys_version"] == version(db, "burst")
    worker = SyncWorker(deps)
    assert deliver(worker, first) is Result.SYNCED  # read the stored (last) keys: proves them
    assert deliver(worker, latest) is Result.SYNCED
    assert handled(db, "burst") == (True, "proven", version(db, "burst"))
    assert simulator.requests_for(last["key_id"]) == 4  # account + positions, twice


def test_a_rewrite_loop_costs_a_bounded_number_of_first_syncs_and_proves_the_last_keys(
    emulator_env: dict[str, str],
    project: str,
    simulator: AlpacaSimulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A client rewriting its keys 50 times in a loop, through the local stack (Firestore
    listener → Eventarc bridge with its retries → trigger → push bridge → worker)."""
    window = 2.0
    env = {
        **emulator_env,
        "ALPACA_ALLOWED_BASE_URLS": simulator.base_url,
        "KEYS_DEBOUNCE_SECONDS": str(window),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    db = firestore.Client(project=project)
    seed_user(db, "loop", configured=False, enabled=False)
    keys = [sim_keys(simulator) for _ in range(50)]
    with LocalStack(project, env) as stack:
        subscriber = pubsub_v1.SubscriberClient()
        subscriber.create_subscription(
            name=subscriber.subscription_path(project, "tap"),
            topic=f"projects/{project}/topics/{topology.USER_SYNC}",
        )
        subscriber.close()
        started = time.monotonic()
        for written in keys:
            db.document(paths.alpaca_secret_doc("loop")).set(written)
        duration = time.monotonic() - started
        final = version(db, "loop")
        bridge = stack.eventarc_bridge
        assert bridge is not None
        wait_for(lambda: bridge.idle() and handled(db, "loop")[0], timeout=90)
        time.sleep(1)  # the last event's delivery, already taken off the queue
        first_syncs = [m for m in tapped(project) if json.loads(m.data)["reason"] == "first_sync"]
        bound = 2 + math.ceil(duration / window)
        print(
            f"\n50 key writes in {duration:.2f} s: {bridge.delivered} events delivered, "
            f"{len(first_syncs)} first syncs (bound {bound}, window {window:g} s)"
        )
        assert 1 <= len(first_syncs) <= bound
        assert json.loads(first_syncs[-1].data)["keys_version"] == final
        assert bridge.failed == 0  # every event ended acknowledged: no endless retries
        wait_for(lambda: handled(db, "loop") == (True, "proven", final), timeout=30)
    assert simulator.requests_for(keys[-1]["key_id"]) >= 2


def test_key_write_through_the_bridge_fires_exactly_one_first_sync(
    emulator_env: dict[str, str], project: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with AlpacaSimulator() as sim:
        monkeypatch.setenv("ALPACA_ALLOWED_BASE_URLS", sim.base_url)
        db = firestore.Client(project=project)
        seed_user(db, "fresh", configured=False, enabled=False)
        env = {**emulator_env, "ALPACA_ALLOWED_BASE_URLS": sim.base_url}
        with LocalStack(project, env) as stack:
            tenant = sim.add_tenant(scenario=Scenario(kind="normal"))
            db.document(paths.alpaca_secret_doc("fresh")).set(
                {"key_id": tenant.key_id, "secret_key": tenant.secret_key, "base_url": sim.base_url}
            )
            snapshot = wait_for(lambda: doc(db, paths.snapshot_doc("fresh")), timeout=30)
            assert snapshot["reason"] == "first_sync"  # synced although trading is disabled
            wait_for(lambda: config_of(db, "fresh")["configured"], timeout=15)
            db.document(paths.alpaca_secret_doc("fresh")).delete()
            bridge = stack.eventarc_bridge
            assert bridge is not None
            # The client's write, the trigger's sealed rewrite (ignored) and the delete.
            wait_for(lambda: bridge.delivered == 3 and bridge.idle(), timeout=15)
            assert stack.push_bridge is not None
            time.sleep(1)
            assert stack.push_bridge.stats.acked == 1  # one first sync; the rest fired none
        config = doc(db, paths.alpaca_config_doc("fresh"))
        assert config is not None and config["configured"] is False


# --- the kill-switch trigger ------------------------------------------------------------------


def test_kill_switch_toggles_are_audited_with_who_and_old_to_new(deps: Deps, project: str) -> None:
    db = deps.firestore
    seed_user(db, "u6", enabled=False)
    path = paths.trading_status_doc("u6")
    app = functions_framework.create_app(
        target="on_trading_status_written", source=str(REPO_ROOT / "main.py")
    )
    client = app.test_client()

    def post(old: dict[str, object], new: dict[str, object], event_id: str) -> int:
        now = datetime.now(UTC)
        headers = firestore_event_headers(
            project,
            path,
            event_id,
            now,
            event_type=FIRESTORE_WRITTEN_WITH_AUTH,
            auth=("user", "u6"),
        )
        body = encode_document_event(project, path, old, new, now)
        return int(client.post("/", data=body, headers=headers).status_code)

    assert post({"enabled": False}, {"enabled": True, "message": "go"}, "t1") == 200
    assert post({"enabled": True}, {"enabled": True, "message": "only the message"}, "t2") == 200
    assert post({"enabled": False}, {"enabled": True}, "t1") == 200  # redelivered: same entry
    [entry] = [d.to_dict() for d in db.collection(paths.audit_collection("u6")).stream()]
    assert entry["action"] == "kill_switch_toggled"
    assert entry["actor"] == "user:u6"
    assert entry["details"] == {"old": False, "new": True, "deleted": False}


def test_the_kill_switch_event_of_a_deleted_account_writes_nothing(
    deps: Deps, project: str
) -> None:
    db = deps.firestore
    seed_user(db, "gone", enabled=True)
    deletion.delete_tenant(db, "gone", actor="gone", reason=deletion.Reason.SELF_SERVICE)
    app = functions_framework.create_app(
        target="on_trading_status_written", source=str(REPO_ROOT / "main.py")
    )
    path = paths.trading_status_doc("gone")
    now = datetime.now(UTC)
    headers = firestore_event_headers(
        project, path, "t-del", now, event_type=FIRESTORE_WRITTEN_WITH_AUTH, auth=("user", "gone")
    )
    body = encode_document_event(project, path, {"enabled": True}, None, now)
    assert app.test_client().post("/", data=body, headers=headers).status_code == 200
    assert documents_under(db, "gone") == []


def test_kill_switch_write_through_the_bridge_is_audited(
    emulator_env: dict[str, str], project: str
) -> None:
    db = firestore.Client(project=project)
    seed_user(db, "u7", enabled=False)
    with LocalStack(project, dict(emulator_env)):
        db.document(paths.trading_status_doc("u7")).update({"enabled": True})
        entries = wait_for(
            lambda: [d.to_dict() for d in db.collection(paths.audit_collection("u7")).stream()],
            timeout=20,
        )
    assert entries[0]["details"]["new"] is True
    assert entries[0]["actor"] == "unknown"  # a listener cannot tell who wrote
