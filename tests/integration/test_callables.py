"""The three callables end to end in Python: the real Auth emulator's ID tokens, the Firestore
emulator, and the real google-genai client talking to the Vertex AI stand-in, served by the
local callables router (``/{project}/{region}/{name}``) and by functions-framework."""

from __future__ import annotations

import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import pytest

from agenttrader import paths
from agenttrader.deps import get_deps, set_deps
from devtools.auth_emulator import EmulatedUser
from devtools.vertex_standin import Mode
from signal_worker import providers
from signal_worker.gemini import OVERRIDE_NOTICE, OVERRIDE_PROVIDER, GeminiProvider
from signal_worker.heuristic import NOTICE
from signal_worker.quota import COUNTER
from tests.callable_fixtures import (
    REPO_ROOT,
    CallableEnv,
    call,
    error_status,
    functions_framework_client,
    synced_snapshot,
)

pytestmark = pytest.mark.integration


def onboarded(env: CallableEnv, router: Any) -> EmulatedUser:
    user = env.auth.sign_up()
    code, body = call(router, env.path("onboard_user"), None, token=user.id_token)
    assert (code, body["result"]["status"]) == (200, "success")
    return user


def with_snapshot(env: CallableEnv, router: Any) -> EmulatedUser:
    user = onboarded(env, router)
    env.db.document(paths.snapshot_doc(user.uid)).set(synced_snapshot())
    return user


def signals_of(env: CallableEnv, uid: str) -> list[dict[str, Any]]:
    docs = env.db.collection(paths.trading_signals_collection(uid)).stream()
    return [d.to_dict() or {} for d in docs]


def used_today(env: CallableEnv, uid: str) -> int:
    usage = list(env.db.collection(f"users/{uid}/usage").stream())
    return sum(int((d.to_dict() or {}).get(COUNTER, 0)) for d in usage)


# --- authentication --------------------------------------------------------------------------


def test_tokens_are_verified_by_firebase_admin(callable_env: CallableEnv, router: Any) -> None:
    user = callable_env.auth.sign_up()
    head, payload, _ = user.id_token.split(".")
    forged = json.loads(_b64decode(payload))
    forged["user_id"] = forged["sub"] = "someone-else"
    forged_token = f"{head}.{_b64encode(json.dumps(forged))}.x"
    for token in (forged_token, "garbage", user.id_token[:-3]):
        code, body = call(router, callable_env.path("onboard_user"), None, token=token)
        assert (code, error_status(body)) == (401, "UNAUTHENTICATED")
    assert call(router, callable_env.path("onboard_user"), None, token=user.id_token)[0] == 200


def _b64decode(part: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _b64encode(text: str) -> str:
    import base64

    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


# --- onboard_user ----------------------------------------------------------------------------


def test_onboarding_then_already_onboarded(callable_env: CallableEnv, router: Any) -> None:
    user = onboarded(callable_env, router)
    root = callable_env.db.document(paths.user_doc(user.uid)).get().to_dict() or {}
    assert root["onboarded"] is True and root["email"] == user.email
    code, body = call(router, callable_env.path("onboard_user"), None, token=user.id_token)
    assert (code, body["result"]["status"], body["result"]["userId"]) == (
        200,
        "already_onboarded",
        user.uid,
    )


def test_concurrent_first_calls_give_one_success(callable_env: CallableEnv, router: Any) -> None:
    user = callable_env.auth.sign_up()

    def first_call(_: int) -> str:
        client = router.application.test_client()
        _, body = call(client, callable_env.path("onboard_user"), None, token=user.id_token)
        return str(body["result"]["status"])

    with ThreadPoolExecutor(2) as pool:
        assert Counter(pool.map(first_call, range(2))) == {"success": 1, "already_onboarded": 1}


def test_onboarding_keeps_keys_and_configured_flag(callable_env: CallableEnv, router: Any) -> None:
    user = callable_env.auth.sign_up()
    db = callable_env.db
    keys = {"key_id": "PKTESTKEY00000000001", "secret_key": "s" * 40, "base_url": "https://x"}
    db.document(paths.alpaca_secret_doc(user.uid)).set(keys)
    db.document(paths.alpaca_config_doc(user.uid)).set({"configured": True, "checkedAt": 1})
    code, body = call(router, callable_env.path("onboard_user"), None, token=user.id_token)
    assert (code, body["result"]["status"]) == (200, "success")
    assert db.document(paths.alpaca_secret_doc(user.uid)).get().to_dict() == keys
    config = db.document(paths.alpaca_config_doc(user.uid)).get().to_dict()
    assert config == {"configured": True, "checkedAt": 1}
    assert keys["secret_key"] not in json.dumps(body)


# --- generate_trading_signal -----------------------------------------------------------------


def test_signal_through_the_real_genai_client(callable_env: CallableEnv, router: Any) -> None:
    user = with_snapshot(callable_env, router)
    conditions = {"vix": 17.2, "note": "earnings week"}
    code, body = call(
        router,
        callable_env.path("generate_trading_signal"),
        {"marketConditions": conditions},
        token=user.id_token,
    )
    assert code == 200, body
    result = body["result"]
    assert result["snapshotPath"] == f"users/{user.uid}/data/snapshot"
    response = json.loads(result["response"])
    assert response["action"] in {"BUY", "SELL", "HOLD"}
    # The stand-in answered, not Gemini: the stored signal says so.
    assert response["provider"] == OVERRIDE_PROVIDER and response["notice"] == OVERRIDE_NOTICE

    stored = callable_env.db.document(paths.trading_signal_doc(user.uid, result["id"])).get()
    doc = stored.to_dict() or {}
    assert isinstance(doc["createdAt"], datetime)
    assert doc["userId"] == user.uid
    assert doc["response"] == result["response"]
    assert '"note": "earnings week"' in doc["prompt"] and '"symbol": "MSFT"' in doc["prompt"]
    vertex = doc["vertex"]
    assert vertex["model"] == "gemini-2.5-flash"
    assert vertex["provider"] == OVERRIDE_PROVIDER
    assert vertex["finish_reason"] == "STOP"
    assert vertex["total_tokens"] == vertex["prompt_tokens"] + vertex["candidates_tokens"] > 0
    assert vertex["latency_ms"] > 0

    (request,) = callable_env.standin.requests
    assert request.model == "gemini-2.5-flash"
    assert request.project == callable_env.project and request.location == "us-central1"
    assert request.prompt == doc["prompt"]
    assert request.generation_config["responseMimeType"] == "application/json"
    schema = request.generation_config["responseSchema"]
    assert set(schema["required"]) == {"action", "symbol", "confidence", "rationale", "risks"}


def test_no_snapshot_is_a_failed_precondition(callable_env: CallableEnv, router: Any) -> None:
    user = onboarded(callable_env, router)  # only the placeholder
    code, body = call(router, callable_env.path("generate_trading_signal"), {}, token=user.id_token)
    assert (code, error_status(body)) == (400, "FAILED_PRECONDITION")
    assert callable_env.standin.requests == []


def test_quota_under_concurrency(
    callable_env: CallableEnv, router: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIGNAL_DAILY_QUOTA", "5")
    set_deps(None)
    user = with_snapshot(callable_env, router)

    def attempt(_: int) -> str:
        client = router.application.test_client()
        path = callable_env.path("generate_trading_signal")
        _, body = call(client, path, None, token=user.id_token)
        return "OK" if "result" in body else error_status(body)

    with ThreadPoolExecutor(20) as pool:
        outcomes = Counter(pool.map(attempt, range(20)))
    assert outcomes == {"OK": 5, "RESOURCE_EXHAUSTED": 15}
    assert len(signals_of(callable_env, user.uid)) == 5
    assert len(callable_env.standin.requests) == 5
    assert used_today(callable_env, user.uid) == 5


@pytest.mark.parametrize(("mode", "status"), [(Mode.HTTP_500, 503), (Mode.TIMEOUT, 503)])
def test_model_failure_stores_nothing_and_releases_the_slot(
    callable_env: CallableEnv, router: Any, mode: Mode, status: int
) -> None:
    providers.set_provider(GeminiProvider(get_deps().settings, timeout_seconds=1.0))
    user = with_snapshot(callable_env, router)
    callable_env.standin.fail_next(mode)
    path = callable_env.path("generate_trading_signal")
    code, body = call(router, path, None, token=user.id_token)
    assert (code, error_status(body)) == (status, "UNAVAILABLE")
    assert signals_of(callable_env, user.uid) == []
    assert used_today(callable_env, user.uid) == 0
    assert call(router, path, None, token=user.id_token)[0] == 200  # the model is back


def test_an_unusable_answer_is_internal(callable_env: CallableEnv, router: Any) -> None:
    user = with_snapshot(callable_env, router)
    callable_env.standin.fail_next(Mode.INVALID_JSON)
    code, body = call(
        router, callable_env.path("generate_trading_signal"), None, token=user.id_token
    )
    assert (code, body) == (500, {"error": {"status": "INTERNAL", "message": "internal error"}})
    assert signals_of(callable_env, user.uid) == [] and used_today(callable_env, user.uid) == 0


def test_heuristic_without_vertex_configuration(
    callable_env: CallableEnv, router: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VERTEX_AI_BASE_URL")
    monkeypatch.setattr(providers, "google_credentials_available", lambda: False)
    set_deps(None)
    providers.reset_providers()
    user = with_snapshot(callable_env, router)
    code, body = call(
        router, callable_env.path("generate_trading_signal"), None, token=user.id_token
    )
    assert code == 200
    response = json.loads(body["result"]["response"])
    assert response["provider"] == "local-heuristic" and response["notice"] == NOTICE
    assert callable_env.standin.requests == []
    (doc,) = signals_of(callable_env, user.uid)
    assert doc["vertex"]["provider"] == "local-heuristic"


def test_functions_framework_serves_the_signal_function_alone(callable_env: CallableEnv) -> None:
    from devtools.callable_server import callables_app
    from tests.callable_fixtures import entry_points

    router = callables_app(entry_points()).test_client()
    user = with_snapshot(callable_env, router)
    source = REPO_ROOT / "signal_worker" / "main.py"
    with functions_framework_client("generate_trading_signal", source) as client:
        code, body = call(client, "/", {"marketConditions": "quiet"}, token=user.id_token)
    assert code == 200 and body["result"]["id"]


# --- migrate_legacy_data ---------------------------------------------------------------------


def test_migrate_legacy_data(callable_env: CallableEnv, router: Any) -> None:
    db = callable_env.db
    path = callable_env.path("migrate_legacy_data")
    target = onboarded(callable_env, router)
    operator = callable_env.auth.sign_up()

    code, body = call(router, path, {"targetUserId": target.uid}, token=operator.id_token)
    assert (code, error_status(body)) == (403, "PERMISSION_DENIED")

    callable_env.auth.set_custom_claims(operator.uid, {"admin": True})
    admin = callable_env.auth.refreshed(operator).id_token
    code, body = call(router, path, {"targetUserId": "no-such-user"}, token=admin)
    assert (code, error_status(body)) == (404, "NOT_FOUND")
    code, body = call(router, path, {"targetUserId": target.uid}, token=admin)
    assert (code, error_status(body)) == (400, "FAILED_PRECONDITION")

    db.document(paths.LEGACY_SNAPSHOT_DOC).set(
        {"syncedAt": "2024-05-01T00:00:00Z", "equity": 100.5, "account": {"cash": "7"}}
    )
    code, first = call(router, path, {"targetUserId": target.uid}, token=admin)
    assert code == 200
    assert first["result"]["status"] == "success"
    assert first["result"]["targetUserId"] == target.uid
    assert first["result"]["migratedFields"] == ["account", "equity", "syncedAt"]
    snapshot = db.document(paths.snapshot_doc(target.uid)).get().to_dict() or {}
    assert (snapshot["equity"], snapshot["cash"]) == ("100.5", "7")

    code, second = call(router, path, {"targetUserId": target.uid}, token=admin)
    assert (code, second["result"]["status"], second["result"]["alreadyMigrated"]) == (
        200,
        "success",
        True,
    )
    entries = [
        e.to_dict() or {}
        for e in db.collection(paths.audit_collection(target.uid)).stream()
        if e.get("action") == "legacy_data_migrated"
    ]
    assert [(e["actor"], e["details"]["source"]) for e in entries] == [
        (operator.uid, "alpacaAccounts/snapshot")
    ]
