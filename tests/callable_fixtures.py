"""Fixtures and helpers of the callable tests, loaded with ``pytest_plugins``.

- ``fake_tokens``: a token verifier that needs no Auth emulator (unit tests: ``token_for(uid)``);
- ``vertex_standin`` / ``standin``: the local Vertex AI stand-in (session; reset per test);
- ``auth_emulator``: the Firebase Auth emulator, spawned before the JVM emulators so the two
  cold starts overlap, started once per session for one ``demo-`` project (its tokens name
  that project, so tests that use it share it and clear its data afterwards);
- ``callable_env``: this process pointed at Firestore + Auth emulator + stand-in;
- ``call``: one callable request through a Flask test client;
- callers and tenants: ``caller`` (a :class:`CallContext` as a token gives it),
  ``onboard_tenant``, ``sign_in_anonymously`` and ``verify_email`` (Auth emulator users),
  ``documents_under`` (everything stored under a user).

Test modules both import helpers from here and list it in ``pytest_plugins`` (so its session
fixtures exist once); PYTEST_DONT_REWRITE tells pytest that importing it first is intended
(it holds no assertions to rewrite).
"""

from __future__ import annotations

import json
import sys
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from agenttrader import paths
from agenttrader.callable import CallableError, CallContext, Status
from agenttrader.callable.id_tokens import set_token_verifier
from agenttrader.callable.tenancy import TenantPolicy
from agenttrader.deps import get_deps, set_deps
from devtools import emulators
from devtools.auth_emulator import API_KEY, AuthEmulator, AuthEmulatorClient, EmulatedUser, spawn
from devtools.vertex_standin import VertexStandIn
from signal_worker.providers import reset_providers

REPO_ROOT = Path(__file__).resolve().parents[1]
REGION = "us-central1"


def entry_points() -> dict[str, Callable[..., Any]]:
    """The callables by name (imported late: they are the code under test)."""
    from accounts.main import (
        connect_alpaca,
        delete_account,
        disconnect_alpaca,
        migrate_legacy_data,
        onboard_user,
    )
    from signal_worker.main import generate_trading_signal

    return {
        "onboard_user": onboard_user,
        "generate_trading_signal": generate_trading_signal,
        "migrate_legacy_data": migrate_legacy_data,
        "delete_account": delete_account,
        "connect_alpaca": connect_alpaca,
        "disconnect_alpaca": disconnect_alpaca,
    }


# --- calling ---------------------------------------------------------------------------------


def call(
    client: Any,
    path: str,
    data: Any = None,
    *,
    token: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    """POST ``{"data": data}`` like the Firebase SDK; returns (HTTP status, JSON body)."""
    sent = {"Content-Type": "application/json", **(headers or {})}
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    response = client.post(path, data=json.dumps({"data": data}), headers=sent)
    return response.status_code, response.get_json()


def error_status(body: Mapping[str, Any]) -> str:
    return str(body["error"]["status"])


# --- fake tokens (unit tests) ----------------------------------------------------------------


class FakeTokens:
    """Tokens are ``fake:`` + JSON claims; anything else is refused like a bad ID token."""

    prefix = "fake:"

    def token_for(
        self, uid: str, email: str | None = None, *, provider: str = "password", **claims: Any
    ) -> str:
        """Claims shaped like a Firebase ID token's: ``firebase.sign_in_provider`` included
        (``email_verified`` only when given)."""
        body = {
            "uid": uid,
            "sub": uid,
            **({"email": email} if email else {}),
            "firebase": {"sign_in_provider": provider, "identities": {}},
            **claims,
        }
        return self.prefix + json.dumps(body)

    def __call__(self, token: str) -> Mapping[str, Any]:
        if not token.startswith(self.prefix):
            raise CallableError(Status.UNAUTHENTICATED, "invalid or expired ID token")
        claims: dict[str, Any] = json.loads(token[len(self.prefix) :])
        return claims


@pytest.fixture
def fake_tokens() -> Iterator[FakeTokens]:
    tokens = FakeTokens()
    set_token_verifier(tokens)
    yield tokens
    set_token_verifier(None)


# --- the Vertex AI stand-in ------------------------------------------------------------------


@pytest.fixture(scope="session")
def vertex_standin() -> Iterator[VertexStandIn]:
    with VertexStandIn(hang_seconds=10) as standin:
        yield standin


@pytest.fixture
def standin(vertex_standin: VertexStandIn) -> Iterator[VertexStandIn]:
    vertex_standin.reset()
    yield vertex_standin
    vertex_standin.reset()


# --- the Auth emulator -----------------------------------------------------------------------


@pytest.fixture(scope="session")
def _auth_emulator_spawned() -> Iterator[AuthEmulator]:
    emulator = spawn(f"demo-cb{uuid.uuid4().hex[:10]}")
    yield emulator
    emulator.stop()


@pytest.fixture(scope="session")
def auth_emulator(
    _auth_emulator_spawned: AuthEmulator, emulator_hosts: dict[str, str]
) -> AuthEmulator:
    """Ready once ``emulator_hosts`` (requested second, so the JVMs start meanwhile) is."""
    _auth_emulator_spawned.wait_ready()
    return _auth_emulator_spawned


@dataclass
class CallableEnv:
    project: str
    env: dict[str, str]
    auth: AuthEmulatorClient
    standin: VertexStandIn

    @property
    def db(self) -> Any:
        return get_deps().firestore

    def path(self, name: str) -> str:
        """Where the callables router serves ``name`` for this project."""
        return f"/{self.project}/{REGION}/{name}"


@pytest.fixture
def callable_env(
    auth_emulator: AuthEmulator,
    emulator_hosts: dict[str, str],
    standin: VertexStandIn,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[CallableEnv]:
    """Firestore and Auth emulators and the Vertex stand-in for the Auth emulator's project;
    that project's Firestore data is cleared afterwards."""
    env = {
        **emulator_hosts,
        "FIREBASE_AUTH_EMULATOR_HOST": auth_emulator.host_port,
        "GOOGLE_CLOUD_PROJECT": auth_emulator.project,
        "VERTEX_AI_BASE_URL": standin.base_url,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    set_deps(None)
    reset_providers()
    yield CallableEnv(auth_emulator.project, env, auth_emulator.client(), standin)
    reset_providers()
    set_deps(None)
    emulators.clear_firestore(emulator_hosts["FIRESTORE_EMULATOR_HOST"], auth_emulator.project)


def _identity_toolkit(
    auth: AuthEmulatorClient, path: str, body: Mapping[str, Any], *, admin: bool = False
) -> Any:
    """One Identity Toolkit call to the emulator, as a client SDK (or with ``admin``, as
    firebase-admin: the emulator's ``Bearer owner``) sends it."""
    headers = {"Content-Type": "application/json"}
    if admin:
        headers["Authorization"] = "Bearer owner"
    request = urllib.request.Request(
        f"{auth.base}/identitytoolkit.googleapis.com/v1/{path}",
        data=json.dumps(body).encode(),
        method="POST",
        headers=headers,
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"{}")


def sign_in_anonymously(auth: AuthEmulatorClient) -> tuple[str, str]:
    """A new anonymous user of the Auth emulator: (uid, ID token), as ``signInAnonymously``
    gets them (``firebase.sign_in_provider == "anonymous"``)."""
    result = _identity_toolkit(auth, f"accounts:signUp?key={API_KEY}", {"returnSecureToken": True})
    return result["localId"], result["idToken"]


def verify_email(auth: AuthEmulatorClient, user: EmulatedUser) -> EmulatedUser:
    """Mark ``user``'s email verified (as the verification link does) and sign in again, so
    the new ID token carries ``email_verified: true``."""
    _identity_toolkit(
        auth,
        f"projects/{auth.project}/accounts:update",
        {"localId": user.uid, "emailVerified": True},
        admin=True,
    )
    return auth.refreshed(user)


@pytest.fixture
def router(callable_env: CallableEnv) -> Any:
    """A test client of the local callables router serving the callables."""
    from devtools.callable_server import callables_app

    return callables_app(entry_points(), project=callable_env.project).test_client()


@contextmanager
def functions_framework_client(target: str, source: Path) -> Iterator[Any]:
    """``functions_framework.create_app(target, source).test_client()``, undoing the
    framework's global side effects (it registers the source as module ``main`` and appends
    its directory to ``sys.path``)."""
    import functions_framework

    saved_main, saved_path = sys.modules.get("main"), list(sys.path)
    try:
        app = functions_framework.create_app(target=target, source=str(source))
        yield app.test_client()
    finally:
        sys.path[:] = saved_path
        if saved_main is None:
            sys.modules.pop("main", None)
        else:
            sys.modules["main"] = saved_main


# --- callers and tenants --------------------------------------------------------------------


def caller(
    uid: str,
    email: str | None = None,
    *,
    provider: str = "password",
    email_verified: bool = False,
    **claims: Any,
) -> CallContext:
    """The context of a call by ``uid``, as a verified ID token would give it."""
    firebase = {"sign_in_provider": provider, "identities": {}}
    return CallContext.from_claims(
        {"sub": uid, "email": email, "email_verified": email_verified, "firebase": firebase}
        | claims
    )


LENIENT = TenantPolicy(providers=None, require_verified_email=False)
"""The policy with the emulators in use (``REQUIRE_VERIFIED_EMAIL`` off by default there)."""


def onboard_tenant(db: Any, uid: str, email: str | None = None) -> dict[str, Any]:
    """Onboard ``uid`` as ``onboard_user`` would for a password user under :data:`LENIENT`."""
    from accounts.onboarding import onboard

    return onboard(db, caller(uid, email), LENIENT)


# --- data ------------------------------------------------------------------------------------


def documents_under(db: Any, uid: str) -> list[str]:
    """Every document of ``users/{uid}``'s subtree, found by a scan of the whole ``users``
    tree (a kindless query: no collection name is assumed, missing parents included)."""
    found = [snap.reference.path for snap in db.collection(paths.USERS).recursive().stream()]
    return sorted(p for p in found if p == f"users/{uid}" or p.startswith(f"users/{uid}/"))


def synced_snapshot(**overrides: Any) -> dict[str, Any]:
    """A snapshot as the sync worker writes it (Alpaca's strings)."""
    return {
        "syncedAt": datetime.now(UTC),
        "account": {"equity": "25000.00", "cash": "10000.00", "buying_power": "40000.00"},
        "equity": "25000.00",
        "buying_power": "40000.00",
        "cash": "10000.00",
        "positions": [
            {"symbol": "AAPL", "qty": "20", "market_value": "4000.00", "unrealized_pl": "150.00"},
            {"symbol": "MSFT", "qty": "10", "market_value": "4100.00", "unrealized_pl": "-90.00"},
        ],
        **overrides,
    }
