"""ID-token verification: firebase-admin's verdicts mapped to callable statuses (no network)."""

from __future__ import annotations

from typing import Any

import firebase_admin
import pytest
from firebase_admin import auth as admin_auth

from agenttrader.callable import CallableError, Status
from agenttrader.callable import id_tokens as auth
from agenttrader.deps import Deps, set_deps
from agenttrader.settings import Settings


class FakeVerify:
    """Stands in for ``firebase_admin.auth.verify_id_token``: answers ``outcome`` (claims, or
    an exception to raise) and records its calls."""

    def __init__(self) -> None:
        self.outcome: Any = {}
        self.calls: list[dict[str, Any]] = []

    def __call__(self, token: str, app: Any = None, check_revoked: bool = True) -> Any:
        self.calls.append({"token": token, "app": app, "check_revoked": check_revoked})
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome


@pytest.fixture
def verify(monkeypatch: pytest.MonkeyPatch) -> FakeVerify:
    fake = FakeVerify()
    monkeypatch.setattr(admin_auth, "verify_id_token", fake)
    return fake


def test_valid_token_returns_claims_verified_without_revocation_check(verify: FakeVerify) -> None:
    verify.outcome = {"uid": "u1", "admin": True}
    verifier = auth.FirebaseTokenVerifier("demo-a", "127.0.0.1:9099")
    assert verifier("tok") == {"uid": "u1", "admin": True}
    assert verify.calls[0]["token"] == "tok"
    assert verify.calls[0]["check_revoked"] is False
    assert verify.calls[0]["app"].project_id == "demo-a"


@pytest.mark.parametrize(
    "error",
    [
        admin_auth.InvalidIdTokenError("bad signature"),
        admin_auth.ExpiredIdTokenError("expired", cause=None),
        admin_auth.RevokedIdTokenError("revoked"),
        ValueError("empty token"),
    ],
)
def test_refused_tokens_are_unauthenticated(verify: FakeVerify, error: Exception) -> None:
    verify.outcome = error
    with pytest.raises(CallableError) as raised:
        auth.FirebaseTokenVerifier("demo-a", "127.0.0.1:9099")("tok")
    assert raised.value.status is Status.UNAUTHENTICATED
    assert raised.value.message == "invalid or expired ID token"


def test_unreachable_certificates_are_unavailable(verify: FakeVerify) -> None:
    verify.outcome = admin_auth.CertificateFetchError("dns failure", cause=None)
    with pytest.raises(CallableError) as raised:
        auth.FirebaseTokenVerifier("demo-a")("tok")
    assert raised.value.status is Status.UNAVAILABLE


def test_one_firebase_app_per_project_and_emulator() -> None:
    a = auth.FirebaseTokenVerifier("demo-app1", "127.0.0.1:1")
    b = auth.FirebaseTokenVerifier("demo-app1", None)
    assert a.app() is a.app()
    assert a.app() is not b.app()
    assert a.app().project_id == b.app().project_id == "demo-app1"
    # a second verifier for the same pair reuses the initialised app
    assert auth.FirebaseTokenVerifier("demo-app1", "127.0.0.1:1").app() is a.app()
    assert firebase_admin.get_app(a.app_name) is a.app()


def test_the_verifier_follows_the_deps_settings() -> None:
    set_deps(Deps(Settings(project="demo-one", firebase_auth_emulator_host="127.0.0.1:2")))
    first = auth.get_token_verifier()
    assert isinstance(first, auth.FirebaseTokenVerifier)
    assert (first.project, first.auth_emulator_host) == ("demo-one", "127.0.0.1:2")
    assert auth.get_token_verifier() is first
    set_deps(Deps(Settings(project="demo-two")))
    assert auth.get_token_verifier() is not first


def test_set_token_verifier_overrides_and_restores() -> None:
    def fake(token: str) -> dict[str, Any]:
        return {"uid": token}

    auth.set_token_verifier(fake)
    try:
        assert auth.get_token_verifier() is fake
    finally:
        auth.set_token_verifier(None)
    assert auth.get_token_verifier() is not fake
