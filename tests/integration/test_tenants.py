"""Who is a tenant and how one leaves, with the real Auth emulator's ID tokens and the Firestore
emulator: the policy at onboarding, ``delete_account`` end to end, and ``agenttrader tenants
prune`` removing exactly the tenants Firebase Auth no longer knows."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from accounts.deletion import ROOT_KEY
from agenttrader import paths
from agenttrader.deps import set_deps
from devtools.auth_emulator import EmulatedUser
from operations.cli import _auth_app, main
from tests.callable_fixtures import (
    CallableEnv,
    call,
    documents_under,
    error_status,
    sign_in_anonymously,
    synced_snapshot,
    verify_email,
)

pytestmark = pytest.mark.integration

KEYS = {
    "key_id": "PKTENANTKEY000000001",
    "secret_key": "tenant-secret-" + "k" * 26,
    "base_url": "https://paper-api.alpaca.markets",
}


def onboard(env: CallableEnv, router: Any, token: str) -> tuple[int, dict[str, Any]]:
    return call(router, env.path("onboard_user"), None, token=token)


def give_data(env: CallableEnv, uid: str) -> None:
    """What a tenant accumulates: keys, a snapshot, signals, an order with a fill."""
    db = env.db
    db.document(paths.alpaca_secret_doc(uid)).set(KEYS)
    db.document(paths.snapshot_doc(uid)).set(synced_snapshot())
    db.document(paths.trading_signal_doc(uid, "s1")).set({"response": "HOLD"})
    db.document(f"users/{uid}/orders/o1").set({"event": "fill"})
    db.document(f"users/{uid}/orders/o1/fills/f1").set({"qty": "1"})


def deletion_log(env: CallableEnv) -> list[dict[str, Any]]:
    return [d.to_dict() or {} for d in env.db.collection(paths.DELETIONS_COLLECTION).stream()]


# --- the policy at onboarding ----------------------------------------------------------------


def test_an_anonymous_session_cannot_onboard(callable_env: CallableEnv, router: Any) -> None:
    uid, token = sign_in_anonymously(callable_env.auth)

    code, body = onboard(callable_env, router, token)

    assert (code, error_status(body)) == (403, "PERMISSION_DENIED")
    assert "anonymous session" in body["error"]["message"]
    assert documents_under(callable_env.db, uid) == []


def test_an_unverified_email_is_refused_when_required(
    callable_env: CallableEnv, router: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REQUIRE_VERIFIED_EMAIL", "true")
    set_deps(None)
    user = callable_env.auth.sign_up()

    code, body = onboard(callable_env, router, user.id_token)

    assert (code, error_status(body)) == (400, "FAILED_PRECONDITION")
    assert documents_under(callable_env.db, user.uid) == []
    verified = verify_email(callable_env.auth, user)
    code, body = onboard(callable_env, router, verified.id_token)
    assert (code, body["result"]["status"]) == (200, "success")
    root = callable_env.db.document(paths.user_doc(user.uid)).get().to_dict() or {}
    assert root["email"] == user.email and root["emailVerified"] is True
    assert root["tenantPolicy"] == {"providers": None, "requireVerifiedEmail": True}


def test_with_the_emulators_an_unverified_email_is_enough(
    callable_env: CallableEnv, router: Any
) -> None:
    user = callable_env.auth.sign_up()
    code, body = onboard(callable_env, router, user.id_token)
    assert (code, body["result"]["status"]) == (200, "success")
    root = callable_env.db.document(paths.user_doc(user.uid)).get().to_dict() or {}
    assert root["emailVerified"] is False
    assert root["tenantPolicy"] == {"providers": None, "requireVerifiedEmail": False}


def test_a_listed_anonymous_provider_is_a_tenant(
    callable_env: CallableEnv, router: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TENANT_SIGN_IN_PROVIDERS", "password,anonymous")
    set_deps(None)
    uid, token = sign_in_anonymously(callable_env.auth)
    code, body = onboard(callable_env, router, token)
    assert (code, body["result"]["status"]) == (200, "success")
    root = callable_env.db.document(paths.user_doc(uid)).get().to_dict() or {}
    assert root["tenantPolicy"]["providers"] == ["password", "anonymous"]


# --- delete_account --------------------------------------------------------------------------


def test_delete_account_end_to_end(callable_env: CallableEnv, router: Any) -> None:
    user, other = callable_env.auth.sign_up(), callable_env.auth.sign_up()
    for each in (user, other):
        assert onboard(callable_env, router, each.id_token)[0] == 200
        give_data(callable_env, each.uid)
    kept = documents_under(callable_env.db, other.uid)

    code, body = call(router, callable_env.path("delete_account"), None, token=user.id_token)

    assert code == 200, body
    result = body["result"]
    assert result["status"] == "deleted" and result["signInAccountDeleted"] is False
    assert result["deleted"][ROOT_KEY] == 1 and result["deleted"]["secrets"] == 1
    assert result["deleted"]["orders"] == 2
    assert documents_under(callable_env.db, user.uid) == []
    assert documents_under(callable_env.db, other.uid) == kept
    (entry,) = deletion_log(callable_env)
    assert (entry["uid"], entry["reason"], entry["total"]) == (
        user.uid,
        "delete_account",
        result["total"],
    )
    assert user.email not in json.dumps(entry, default=str)
    assert KEYS["secret_key"] not in json.dumps(body)

    again = call(router, callable_env.path("delete_account"), None, token=user.id_token)
    assert again[1]["result"]["status"] == "already_deleted"
    assert len(deletion_log(callable_env)) == 1
    # The sign-in account stays: the same user can start again from nothing.
    code, body = onboard(callable_env, router, user.id_token)
    assert (code, body["result"]["status"]) == (200, "success")


# --- agenttrader tenants prune ---------------------------------------------------------------


@pytest.fixture
def tenants(callable_env: CallableEnv, router: Any) -> Iterator[dict[str, EmulatedUser]]:
    """Three onboarded tenants with data; ``gone`` is then deleted from Firebase Auth."""
    from firebase_admin import auth

    users = {name: callable_env.auth.sign_up() for name in ("alice", "bob", "gone")}
    for user in users.values():
        assert onboard(callable_env, router, user.id_token)[0] == 200
        give_data(callable_env, user.uid)
    auth.delete_user(users["gone"].uid, app=_auth_app(callable_env.project))
    yield users


def prune(*args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    code = main(["tenants", "prune", "--json", *args])
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else {}


def test_prune_removes_only_users_missing_from_auth(
    callable_env: CallableEnv,
    tenants: dict[str, EmulatedUser],
    capsys: pytest.CaptureFixture[str],
) -> None:
    db = callable_env.db
    # Someone who never onboarded but left a kill-switch, and is unknown to Auth too.
    db.document(paths.trading_status_doc("never-onboarded")).set({"enabled": True})
    db.document("users/not a uid").set({"x": 1})
    alice = documents_under(callable_env.db, tenants["alice"].uid)
    bob = documents_under(callable_env.db, tenants["bob"].uid)
    gone = tenants["gone"].uid

    code, dry = prune("--dry-run", capsys=capsys)
    assert code == 0 and dry["dry_run"] is True
    assert sorted(dry["missing"]) == sorted([gone, "never-onboarded"])
    assert dry["removed"] == {} and dry["skipped"] == ["not a uid"]
    assert documents_under(callable_env.db, gone) != []

    code, report = prune("--yes", capsys=capsys)

    assert code == 0, report
    assert set(report["removed"]) == {gone, "never-onboarded"}
    assert report["removed"]["never-onboarded"] == 1
    assert report["checked"] == 4
    assert documents_under(callable_env.db, gone) == []
    assert documents_under(callable_env.db, "never-onboarded") == []
    assert documents_under(callable_env.db, tenants["alice"].uid) == alice
    assert documents_under(callable_env.db, tenants["bob"].uid) == bob
    log = {entry["uid"]: entry for entry in deletion_log(callable_env)}
    assert set(log) == {gone, "never-onboarded"}
    assert {entry["reason"] for entry in log.values()} == {"auth_user_missing"}
    assert all(entry["complete"] for entry in log.values())
    assert log[gone]["total"] == report["removed"][gone]

    code, again = prune("--yes", capsys=capsys)
    assert (code, again["missing"], again["removed"]) == (0, [], {})


def test_prune_stops_at_the_limit(
    callable_env: CallableEnv,
    tenants: dict[str, EmulatedUser],
    capsys: pytest.CaptureFixture[str],
) -> None:
    callable_env.db.document(paths.trading_status_doc("never-onboarded")).set({"enabled": True})

    code, report = prune("--yes", "--limit", "1", capsys=capsys)

    assert code == 0 and report["limited"] is True and len(report["removed"]) == 1
    assert len(deletion_log(callable_env)) == 1


def test_prune_refuses_to_compare_an_emulator_with_the_real_world(
    callable_env: CallableEnv,
    tenants: dict[str, EmulatedUser],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("FIREBASE_AUTH_EMULATOR_HOST")

    assert main(["tenants", "prune", "--yes"]) == 2

    assert "both be set" in capsys.readouterr().err
    assert documents_under(callable_env.db, tenants["gone"].uid) != []
