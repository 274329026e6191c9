"""Every error status of each callable, through functions-framework (each function alone on
``/``, as ``functions-framework --target NAME`` serves it), with fake ID tokens, the Firestore
emulator and the Vertex AI stand-in."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from agenttrader import paths
from agenttrader.callable.tenancy import NOT_ONBOARDED
from agenttrader.deps import Deps, get_deps, set_deps
from agenttrader.settings import Settings
from devtools.callable_server import callables_app
from devtools.vertex_standin import Mode, VertexStandIn
from signal_worker.providers import reset_providers
from tests.callable_fixtures import (
    REPO_ROOT,
    FakeTokens,
    call,
    error_status,
    functions_framework_client,
    onboard_tenant,
    synced_snapshot,
)

SOURCES = {
    "onboard_user": REPO_ROOT / "accounts" / "main.py",
    "delete_account": REPO_ROOT / "accounts" / "main.py",
    "connect_alpaca": REPO_ROOT / "accounts" / "main.py",
    "disconnect_alpaca": REPO_ROOT / "accounts" / "main.py",
    "migrate_legacy_data": REPO_ROOT / "accounts" / "main.py",
    "generate_trading_signal": REPO_ROOT / "signal_worker" / "main.py",
}


@pytest.fixture
def env(
    emulator_env: dict[str, str],
    standin: VertexStandIn,
    fake_tokens: FakeTokens,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[FakeTokens]:
    monkeypatch.setenv("VERTEX_AI_BASE_URL", standin.base_url)
    monkeypatch.setenv("SIGNAL_DAILY_QUOTA", "2")
    set_deps(None)
    reset_providers()
    yield fake_tokens
    reset_providers()


@pytest.fixture
def client(request: pytest.FixtureRequest, env: FakeTokens) -> Iterator[Any]:
    with functions_framework_client(request.param, SOURCES[request.param]) as test_client:
        yield test_client


def status_of(response: tuple[int, dict[str, Any]]) -> tuple[int, str]:
    code, body = response
    return code, ("OK" if "result" in body else error_status(body))


# --- onboard_user ----------------------------------------------------------------------------


@pytest.mark.parametrize("client", ["onboard_user"], indirect=True)
def test_onboard_user(client: Any, env: FakeTokens) -> None:
    token = env.token_for("u1", "u1@example.com")
    assert status_of(call(client, "/", None)) == (401, "UNAUTHENTICATED")
    assert status_of(call(client, "/", {"uid": "u2"}, token=token)) == (400, "INVALID_ARGUMENT")
    code, body = call(client, "/", None, token=token)
    assert (code, body["result"]["status"]) == (200, "success")
    assert call(client, "/", {}, token=token)[1]["result"]["status"] == "already_onboarded"


@pytest.mark.parametrize("client", ["onboard_user"], indirect=True)
def test_onboard_user_refuses_an_anonymous_session(client: Any, env: FakeTokens) -> None:
    code, body = call(client, "/", None, token=env.token_for("anon-1", provider="anonymous"))
    assert (code, error_status(body)) == (403, "PERMISSION_DENIED")
    assert get_deps().firestore.document(paths.user_doc("anon-1")).get().exists is False


@pytest.mark.parametrize("client", ["onboard_user"], indirect=True)
def test_onboard_user_refuses_an_unverified_email_when_required(
    client: Any, env: FakeTokens, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REQUIRE_VERIFIED_EMAIL", "true")
    set_deps(None)
    token = env.token_for("u1", "u1@example.com", email_verified=False)
    code, body = call(client, "/", None, token=token)
    assert (code, error_status(body)) == (400, "FAILED_PRECONDITION")
    assert "verify your email" in body["error"]["message"]
    verified = env.token_for("u1", "u1@example.com", email_verified=True)
    assert status_of(call(client, "/", None, token=verified)) == (200, "OK")
    root = get_deps().firestore.document(paths.user_doc("u1")).get().to_dict() or {}
    assert root["emailVerified"] is True and root["tenantPolicy"]["requireVerifiedEmail"] is True


@pytest.mark.parametrize("client", ["onboard_user"], indirect=True)
def test_a_firestore_failure_is_internal_and_hidden(client: Any, env: FakeTokens) -> None:
    class Broken:
        def document(self, path: str) -> Any:
            raise RuntimeError("connection to 10.0.0.7 refused, password=hunter2")

    set_deps(Deps(Settings.from_env(), firestore_client=Broken()))  # type: ignore[arg-type]
    code, body = call(client, "/", None, token=env.token_for("u1"))
    assert (code, body) == (500, {"error": {"status": "INTERNAL", "message": "internal error"}})


# --- delete_account --------------------------------------------------------------------------


@pytest.mark.parametrize("client", ["delete_account"], indirect=True)
def test_delete_account(client: Any, env: FakeTokens) -> None:
    db = get_deps().firestore
    token = env.token_for("u1", "u1@example.com")
    onboard_tenant(db, "u1", "u1@example.com")
    assert status_of(call(client, "/", None)) == (401, "UNAUTHENTICATED")
    assert status_of(call(client, "/", {"uid": "u2"}, token=token)) == (400, "INVALID_ARGUMENT")
    code, body = call(client, "/", None, token=token)
    assert (code, body["result"]["status"]) == (200, "deleted")
    assert body["result"]["signInAccountDeleted"] is False
    assert db.document(paths.user_doc("u1")).get().exists is False
    assert call(client, "/", {}, token=token)[1]["result"]["status"] == "already_deleted"


@pytest.mark.parametrize("client", ["delete_account"], indirect=True)
def test_anyone_signed_in_may_delete_what_is_stored_about_them(
    client: Any, env: FakeTokens
) -> None:
    """Tenant or not: an anonymous session's leftovers (e.g. from before the policy) go too."""
    db = get_deps().firestore
    db.document(paths.trading_status_doc("anon-1")).set({"enabled": True})
    token = env.token_for("anon-1", provider="anonymous")
    code, body = call(client, "/", None, token=token)
    assert (code, body["result"]["status"], body["result"]["total"]) == (200, "deleted", 1)


# --- connect_alpaca / disconnect_alpaca ------------------------------------------------------


@pytest.mark.parametrize("client", ["connect_alpaca"], indirect=True)
def test_connect_alpaca_statuses(client: Any, env: FakeTokens) -> None:
    """Tenants only, the request checked, and a deployment without an OAuth client says so
    (the code exchange itself: tests/integration/test_sealed_credentials.py)."""
    request = {"code": "c0de", "redirect_uri": "https://app.example.com/cb", "environment": "paper"}
    token = env.token_for("u1")
    assert status_of(call(client, "/", request)) == (401, "UNAUTHENTICATED")
    code, body = call(client, "/", request, token=token)
    assert (code, body["error"]["message"]) == (400, NOT_ONBOARDED)
    onboard_tenant(get_deps().firestore, "u1")
    bad = {**request, "environment": "sandbox"}
    assert status_of(call(client, "/", bad, token=token)) == (400, "INVALID_ARGUMENT")
    code, body = call(client, "/", request, token=token)
    assert (code, body["error"]["status"]) == (400, "FAILED_PRECONDITION")
    assert body["error"]["details"] == {"reason": "oauth_client"}
    assert get_deps().firestore.document(paths.alpaca_secret_doc("u1")).get().exists is False


@pytest.mark.parametrize("client", ["disconnect_alpaca"], indirect=True)
def test_disconnect_alpaca_deletes_keys_a_client_wrote(client: Any, env: FakeTokens) -> None:
    db = get_deps().firestore
    token = env.token_for("u1")
    onboard_tenant(db, "u1")
    secret = db.document(paths.alpaca_secret_doc("u1"))
    secret.set({"key_id": "PK0123456789", "secret_key": "s" * 40, "base_url": "https://x"})
    assert status_of(call(client, "/", {"x": 1}, token=token)) == (400, "INVALID_ARGUMENT")
    code, body = call(client, "/", None, token=token)
    assert (code, body["result"]["status"], body["result"]["auth"]) == (200, "disconnected", "keys")
    assert secret.get().exists is False
    config = db.document(paths.alpaca_config_doc("u1")).get().to_dict() or {}
    assert (config["configured"], config["keysState"]) == (False, "deleted")
    assert call(client, "/", None, token=token)[1]["result"]["status"] == "not_connected"


# --- generate_trading_signal -----------------------------------------------------------------


@pytest.mark.parametrize("client", ["generate_trading_signal"], indirect=True)
def test_generate_trading_signal(client: Any, env: FakeTokens, standin: VertexStandIn) -> None:
    token = env.token_for("u1")
    db = get_deps().firestore
    assert status_of(call(client, "/", None)) == (401, "UNAUTHENTICATED")
    code, body = call(client, "/", None, token=token)
    assert (code, body["error"]["message"]) == (400, NOT_ONBOARDED)
    onboard_tenant(db, "u1")
    assert status_of(call(client, "/", {"marketConditions": 5}, token=token)) == (
        400,
        "INVALID_ARGUMENT",
    )
    assert status_of(call(client, "/", {"extra": 1}, token=token)) == (400, "INVALID_ARGUMENT")
    assert status_of(call(client, "/", None, token=token)) == (400, "FAILED_PRECONDITION")

    db.document(paths.snapshot_doc("u1")).set(synced_snapshot())
    standin.fail_next(Mode.HTTP_500)
    assert status_of(call(client, "/", None, token=token)) == (503, "UNAVAILABLE")
    standin.fail_next(Mode.INVALID_JSON)
    code, body = call(client, "/", None, token=token)
    assert (code, body) == (500, {"error": {"status": "INTERNAL", "message": "internal error"}})

    code, body = call(client, "/", {"marketConditions": "calm"}, token=token)
    assert code == 200 and set(body["result"]) == {"id", "response", "snapshotPath"}
    assert status_of(call(client, "/", None, token=token)) == (200, "OK")
    assert status_of(call(client, "/", None, token=token)) == (429, "RESOURCE_EXHAUSTED")
    assert len(list(db.collection(paths.trading_signals_collection("u1")).stream())) == 2


# --- migrate_legacy_data ---------------------------------------------------------------------


@pytest.mark.parametrize("client", ["migrate_legacy_data"], indirect=True)
def test_migrate_legacy_data(client: Any, env: FakeTokens) -> None:
    db = get_deps().firestore
    admin = env.token_for("op", admin=True)
    target = {"targetUserId": "t1"}
    assert status_of(call(client, "/", target)) == (401, "UNAUTHENTICATED")
    assert status_of(call(client, "/", target, token=env.token_for("t1"))) == (
        403,
        "PERMISSION_DENIED",
    )
    assert status_of(call(client, "/", {"targetUserId": 7}, token=admin)) == (
        400,
        "INVALID_ARGUMENT",
    )
    assert status_of(call(client, "/", target, token=admin)) == (404, "NOT_FOUND")
    db.document(paths.user_doc("t1")).set({"onboarded": True})
    assert status_of(call(client, "/", target, token=admin)) == (400, "FAILED_PRECONDITION")
    db.document(paths.LEGACY_SNAPSHOT_DOC).set({"equity": "3", "syncedAt": "2024-01-01T00:00:00Z"})
    code, body = call(client, "/", target, token=admin)
    assert (code, body["result"]["status"]) == (200, "success")


@pytest.mark.parametrize("client", ["migrate_legacy_data"], indirect=True)
def test_non_admins_learn_nothing_about_the_input(client: Any, env: FakeTokens) -> None:
    """The admin check comes first: a bad argument from a non-admin is still a refusal."""
    code, body = call(client, "/", {"bogus": True}, token=env.token_for("t1"))
    assert (code, error_status(body)) == (403, "PERMISSION_DENIED")


# --- every tenant callable -------------------------------------------------------------------

NOT_TENANT_CALLABLES = {
    "onboard_user": "makes a tenant",
    "delete_account": "anyone may delete what is stored about them",
    "migrate_legacy_data": "admins only",
    **dict.fromkeys(
        (
            "admin_status",
            "admin_tenants",
            "admin_tenant",
            "admin_dead_letters",
            "admin_replay_dead_letters",
            "admin_purge_dead_letters",
        ),
        "the admin console: admins only",
    ),
}


def test_every_other_callable_serves_onboarded_tenants_only(env: FakeTokens) -> None:
    """A callable added later (connect_alpaca…) is a tenant callable unless listed above."""
    import main
    from infra.resources import FUNCTIONS, Trigger

    callables = {fn.name for fn in FUNCTIONS if fn.trigger is Trigger.CALLABLE}
    assert set(NOT_TENANT_CALLABLES) <= callables
    tenant_callables = sorted(callables - set(NOT_TENANT_CALLABLES))
    assert "generate_trading_signal" in tenant_callables
    app = callables_app({name: getattr(main, name) for name in tenant_callables}, project="p")
    client = app.test_client()
    for name in tenant_callables:
        code, body = call(client, f"/p/us-central1/{name}", None, token=env.token_for("new"))
        assert (code, body["error"]["message"]) == (400, NOT_ONBOARDED), name
        anonymous = env.token_for("new", provider="anonymous")
        code, body = call(client, f"/p/us-central1/{name}", None, token=anonymous)
        assert (code, error_status(body)) == (403, "PERMISSION_DENIED"), name
