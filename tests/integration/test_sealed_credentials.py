"""Credentials sealed at rest, through the trigger, the worker and the OAuth callables, against
the emulators and the Alpaca simulator: the worker syncs from the sealed form and asks the KEK
once per instance and version; a ciphertext moved to another tenant fails closed (dead-lettered
and audited); a KEK outage is retried, never a verdict on the keys; ``connect_alpaca`` stores
a token sealed and ``disconnect_alpaca`` removes it; a revoked token is rejected like bad keys.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from google.cloud import firestore

from accounts.key_changes import KeyChange, handle_key_change
from agenttrader import errors, paths
from agenttrader.credentials import Vault, local_kek
from agenttrader.deps import Deps, set_deps
from agenttrader.events import DocumentChange, PubsubDelivery
from agenttrader.keys_version import stored_version
from agenttrader.messages import Reason, SyncRequest
from agenttrader.settings import Settings
from devtools.simulator import AlpacaSimulator
from devtools.simulator.oauth import OAuthApp
from sync_worker.worker import Result, SyncWorker
from tests.callable_fixtures import REPO_ROOT, FakeTokens, call, functions_framework_client
from tests.database_scan import holding
from tests.pipeline_fixtures import doc, drain_dead_letters, pull, seed_user

pytestmark = pytest.mark.integration

REDIRECT = "https://app.example.com/alpaca/callback"


def audit_actions(db: firestore.Client, uid: str) -> list[str]:
    return sorted(
        d.to_dict()["action"] for d in db.collection(paths.audit_collection(uid)).stream()
    )


def config_state(db: firestore.Client, uid: str) -> tuple[object, object]:
    config = doc(db, paths.alpaca_config_doc(uid)) or {}
    return config.get("configured"), config.get("keysState")


def tapped(project: str, wait: float = 3.0) -> list[dict[str, Any]]:
    return [json.loads(m.data) for m in pull(project, "tap", timeout=wait, until_quiet=True)]


def deliver(worker: SyncWorker, request: SyncRequest, attempt: int = 1) -> Result:
    message_id = f"m-{request.uid}-{datetime.now(UTC).timestamp()}"
    delivery = PubsubDelivery(
        message_id, request.to_bytes(), request.attributes(), datetime.now(UTC), attempt
    )
    return worker.handle(delivery)


def fresh_instance(deps: Deps) -> Deps:
    """Another worker instance: the same database, a vault of its own (nothing opened yet)."""
    return Deps(
        deps.settings,
        firestore_client=deps.firestore,
        publisher=deps.publisher,
        vault=Vault.from_settings(deps.settings),
    )


def sealed_keys(deps: Deps, sim: AlpacaSimulator, uid: str, **seed: Any) -> tuple[Any, str]:
    """A tenant who wrote simulator keys, sealed by the trigger: (its account, the version)."""
    db = deps.firestore
    account = sim.add_tenant()
    seed_user(db, uid, configured=False, **seed)
    keys = {"key_id": account.key_id, "secret_key": account.secret_key, "base_url": sim.base_url}
    db.document(paths.alpaca_secret_doc(uid)).set(keys)
    change = DocumentChange(paths.alpaca_secret_doc(uid), None, keys)
    assert handle_key_change(deps, change, f"ev-{uid}") is KeyChange.FIRST_SYNC
    version = stored_version(db.document(paths.alpaca_secret_doc(uid)).get())
    assert version is not None
    return account, version


def test_warm_syncs_from_the_sealed_form_ask_the_kek_nothing(
    pipeline_deps: Deps, project: str, simulator: AlpacaSimulator
) -> None:
    account, version = sealed_keys(pipeline_deps, simulator, "warm")
    [message] = tapped(project)
    instance = fresh_instance(pipeline_deps)
    worker = SyncWorker(instance)

    first = SyncRequest("warm", Reason.FIRST_SYNC, datetime.now(UTC), keys_version=version)
    assert message["keys_version"] == version
    assert deliver(worker, first) is Result.SYNCED
    assert config_state(pipeline_deps.firestore, "warm") == (True, "proven")
    for _ in range(20):
        request = SyncRequest("warm", Reason.SCHEDULE, datetime.now(UTC), keys_version=version)
        assert deliver(worker, request) is Result.SYNCED
    # Messages without a version read the sealed document again: opened from memory.
    assert deliver(worker, SyncRequest.now("warm", Reason.MANUAL)) is Result.SYNCED

    stats = instance.vault.stats()
    assert stats.kek.decrypt == 1 and stats.kek.encrypt == 0
    assert simulator.requests_for(account.key_id) == 2 * 22


def test_a_ciphertext_moved_to_another_tenant_fails_closed(
    pipeline_deps: Deps, project: str, simulator: AlpacaSimulator
) -> None:
    db = pipeline_deps.firestore
    victim, version = sealed_keys(pipeline_deps, simulator, "victim")
    seed_user(db, "thief", configured=True)
    tapped(project)
    # Someone with database access copies the victim's sealed document to another tenant.
    copied = doc(db, paths.alpaca_secret_doc("victim"))
    assert copied is not None
    db.document(paths.alpaca_secret_doc("thief")).set(copied)
    worker = SyncWorker(fresh_instance(pipeline_deps))

    request = SyncRequest("thief", Reason.MANUAL, datetime.now(UTC), keys_version=version)
    assert deliver(worker, request) is Result.DEAD_LETTERED

    [letter] = drain_dead_letters(project, expect=1, timeout=20)
    assert letter.attributes["error_class"] == "CredentialsTampered"
    assert letter.attributes["uid"] == "thief"
    error = doc(db, paths.last_sync_error_doc("thief"))
    assert error is not None and error["error_class"] == "CredentialsTampered"
    assert "credentials_tampered" in audit_actions(db, "thief")
    assert simulator.requests_for(victim.key_id) == 0  # the victim's keys were never used
    assert config_state(db, "thief") == (True, None)  # not a verdict from Alpaca: not rejected
    own = SyncRequest("victim", Reason.FIRST_SYNC, datetime.now(UTC), keys_version=version)
    assert deliver(worker, own) is Result.SYNCED  # where it was sealed, it opens


def test_a_kek_outage_is_retried_and_never_a_verdict_on_the_keys(
    pipeline_deps: Deps, project: str, simulator: AlpacaSimulator
) -> None:
    db = pipeline_deps.firestore
    account, version = sealed_keys(pipeline_deps, simulator, "outage")
    tapped(project)
    worker = SyncWorker(fresh_instance(pipeline_deps))
    request = SyncRequest("outage", Reason.FIRST_SYNC, datetime.now(UTC), keys_version=version)

    local_kek.set_outage(project, True)
    try:
        for attempt in (1, 2, 3):
            with pytest.raises(errors.KmsUnavailable):
                deliver(worker, request, attempt=attempt)
    finally:
        local_kek.set_outage(project, False)
    error = doc(db, paths.last_sync_error_doc("outage"))
    assert error is not None and error["error_class"] == "KmsUnavailable"
    assert error["permanent"] is False and error["final"] is False
    assert config_state(db, "outage") == (False, "pending")  # not rejected, not invalid
    assert simulator.requests_for(account.key_id) == 0

    assert deliver(worker, request, attempt=4) is Result.SYNCED
    assert config_state(db, "outage") == (True, "proven")
    assert doc(db, paths.last_sync_error_doc("outage")) is None
    assert drain_dead_letters(project, expect=1, timeout=3) == []


# --- Alpaca OAuth (Connect) ---------------------------------------------------------------------


@pytest.fixture
def oauth(
    pipeline_deps: Deps,
    simulator: AlpacaSimulator,
    fake_tokens: FakeTokens,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[OAuthApp]:
    """The app registered with the simulator and the functions configured for it."""
    app = simulator.add_oauth_app([REDIRECT])
    monkeypatch.setenv("ALPACA_OAUTH_CLIENT_ID", app.client_id)
    monkeypatch.setenv("ALPACA_OAUTH_CLIENT_SECRET", app.client_secret)
    monkeypatch.setenv("ALPACA_OAUTH_BASE_URL", simulator.base_url)
    deps = Deps(
        Settings.from_env(),
        firestore_client=pipeline_deps.firestore,
        publisher=pipeline_deps.publisher,
    )
    set_deps(deps)
    yield app
    set_deps(pipeline_deps)


def approved(
    db: firestore.Client, simulator: AlpacaSimulator, oauth: OAuthApp, uid: str
) -> tuple[Any, dict[str, str]]:
    """An onboarded tenant who approved the app at Alpaca's authorize page: their simulated
    account and the ``connect_alpaca`` request their browser sends back."""
    seed_user(db, uid, configured=False)
    account = simulator.add_tenant()
    code = simulator.authorize(oauth, REDIRECT, tenant=account.key_id)
    request = {"code": code, "redirect_uri": REDIRECT, "environment": "paper"}
    return account, {**request, "base_url": simulator.base_url}


def first_sync_of(uid: str, message: dict[str, Any]) -> SyncRequest:
    return SyncRequest(
        uid, Reason.FIRST_SYNC, datetime.now(UTC), keys_version=message["keys_version"]
    )


def test_connect_stores_the_token_sealed_and_a_revoked_token_is_rejected_like_bad_keys(
    pipeline_deps: Deps,
    project: str,
    simulator: AlpacaSimulator,
    oauth: OAuthApp,
    fake_tokens: FakeTokens,
) -> None:
    db = pipeline_deps.firestore
    account, request = approved(db, simulator, oauth, "connected")
    token = fake_tokens.token_for("connected", "connected@example.com")

    with functions_framework_client("connect_alpaca", REPO_ROOT / "main.py") as client:
        status, body = call(client, "/", request, token=token)
        assert status == 200, body
        assert body["result"] == {
            "status": "connected",
            "environment": "paper",
            "baseUrlHost": "127.0.0.1",
            "auth": "oauth",
        }
        # The code is spent: a second exchange is refused and stores nothing new.
        status, body = call(client, "/", request, token=token)
        assert (status, body["error"]["status"]) == (400, "FAILED_PRECONDITION")

    [grant] = [g for g in simulator.oauth_grants() if g.tenant == account.key_id]
    secret = doc(db, paths.alpaca_secret_doc("connected"))
    assert secret is not None and secret["sealed"] is True and secret["auth"] == "oauth"
    assert holding([("secret", secret)], [grant.token]) == []
    assert grant.revoked  # the reused code revoked the token it had been exchanged for
    assert config_state(db, "connected") == (False, "pending")
    assert audit_actions(db, "connected") == ["oauth_connected"]
    [message] = tapped(project)
    assert message["reason"] == "first_sync"
    assert message["keys_version"] == secret["keys_version"]
    # The trigger sees the sealed write and leaves it to the callable that handled it.
    change = DocumentChange(paths.alpaca_secret_doc("connected"), None, secret)
    assert handle_key_change(pipeline_deps, change, "ev-connect") is KeyChange.UNCHANGED

    # The reused code revoked the token: the first sync is refused (401), like bad keys.
    worker = SyncWorker(fresh_instance(pipeline_deps))
    assert deliver(worker, first_sync_of("connected", message)) is Result.DEAD_LETTERED
    assert config_state(db, "connected") == (False, "rejected")
    [letter] = drain_dead_letters(project, expect=1, timeout=20)
    assert letter.attributes["error_class"] == "AlpacaAuthError"
    rejected = [
        d.to_dict() for d in db.collection(paths.audit_collection("connected")).stream()
        if d.to_dict()["action"] == "keys_rejected"
    ]  # fmt: skip
    assert [entry["details"] for entry in rejected] == [
        {"error_class": "AlpacaAuthError", "auth": "oauth"}
    ]


def test_a_connected_token_syncs_and_disconnect_removes_it(
    pipeline_deps: Deps,
    project: str,
    simulator: AlpacaSimulator,
    oauth: OAuthApp,
    fake_tokens: FakeTokens,
) -> None:
    db = pipeline_deps.firestore
    account, connect = approved(db, simulator, oauth, "oauth-user")
    token = fake_tokens.token_for("oauth-user")
    with functions_framework_client("connect_alpaca", REPO_ROOT / "main.py") as client:
        assert call(client, "/", connect, token=token)[0] == 200
    [message] = tapped(project)
    worker = SyncWorker(fresh_instance(pipeline_deps))
    assert deliver(worker, first_sync_of("oauth-user", message)) is Result.SYNCED
    assert config_state(db, "oauth-user") == (True, "proven")
    snapshot = doc(db, paths.snapshot_doc("oauth-user"))
    assert snapshot is not None and snapshot["account"]["account_number"] == account.account_number
    assert simulator.requests_for(account.key_id) == 2

    with functions_framework_client("disconnect_alpaca", REPO_ROOT / "main.py") as client:
        status, body = call(client, "/", None, token=token)
        assert (status, body["result"]["status"], body["result"]["auth"]) == (
            200,
            "disconnected",
            "oauth",
        )
        status, body = call(client, "/", None, token=token)
        assert (status, body["result"]["status"]) == (200, "not_connected")
    assert doc(db, paths.alpaca_secret_doc("oauth-user")) is None
    assert config_state(db, "oauth-user") == (False, "deleted")
    # The trigger's delete event finds the state already deleted: no second audit entry.
    change = DocumentChange(paths.alpaca_secret_doc("oauth-user"), {}, None)
    assert handle_key_change(pipeline_deps, change, "ev-gone") is KeyChange.UNCHANGED
    assert audit_actions(db, "oauth-user") == ["oauth_connected", "oauth_disconnected"]
    assert tapped(project, wait=1) == []
