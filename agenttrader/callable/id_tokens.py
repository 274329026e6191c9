"""Firebase ID-token verification for the callable functions.

The Firebase Admin app is built lazily, once per (project, Auth emulator) pair, and never at
import. With ``FIREBASE_AUTH_EMULATOR_HOST`` set, firebase-admin accepts the emulator's unsigned
tokens and needs no Google credentials; in production it checks Google's signature, the
audience (the project) and the expiry.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from agenttrader.callable.errors import CallableError, Status
from agenttrader.logs import get_logger

if TYPE_CHECKING:
    import firebase_admin

    from agenttrader.settings import Settings

_log = get_logger(__name__)


class TokenVerifier(Protocol):
    """Turns a bearer token into its verified claims, or raises :class:`CallableError`."""

    def __call__(self, token: str) -> Mapping[str, Any]: ...


class FirebaseTokenVerifier:
    """Verifies Firebase ID tokens with firebase-admin for one project."""

    def __init__(self, project: str, auth_emulator_host: str | None = None) -> None:
        self.project = project
        self.auth_emulator_host = auth_emulator_host
        self._app: firebase_admin.App | None = None
        self._lock = threading.Lock()

    @property
    def app_name(self) -> str:
        """One app per project and emulator: firebase-admin binds both when it builds the
        app's auth client, so a changed environment must not reuse a stale one."""
        return f"agenttrader:{self.project}:{self.auth_emulator_host or 'google'}"

    def app(self) -> firebase_admin.App:
        if self._app is None:
            with self._lock:
                if self._app is None:
                    self._app = _firebase_app(self.app_name, self.project)
        return self._app

    def __call__(self, token: str) -> Mapping[str, Any]:
        from firebase_admin import auth

        try:
            claims: Mapping[str, Any] = auth.verify_id_token(
                token, app=self.app(), check_revoked=False
            )
        except auth.CertificateFetchError as err:
            # Google's public keys could not be fetched: our outage, not the caller's fault.
            _log.warning("ID token certificates unavailable", fields={"error": type(err).__name__})
            raise CallableError(
                Status.UNAVAILABLE, "authentication is temporarily unavailable"
            ) from err
        except (ValueError, auth.InvalidIdTokenError) as err:
            # ExpiredIdTokenError and RevokedIdTokenError are InvalidIdTokenError subclasses.
            _log.info("ID token refused", fields={"reason": type(err).__name__})
            raise CallableError(Status.UNAUTHENTICATED, "invalid or expired ID token") from err
        return claims


def _firebase_app(name: str, project: str) -> firebase_admin.App:
    """A verification-only app: checking an ID token needs Google's public keys, not our
    credentials, so anonymous credentials serve everywhere (production, emulator, a laptop
    without application-default credentials). Never use this app for admin calls."""
    import firebase_admin
    from google.auth.credentials import AnonymousCredentials

    try:
        return firebase_admin.get_app(name)
    except ValueError:
        pass
    try:
        return firebase_admin.initialize_app(
            AnonymousCredentials(),  # type: ignore[no-untyped-call]
            options={"projectId": project},
            name=name,
        )
    except ValueError:  # another thread initialised it first
        return firebase_admin.get_app(name)


_verifiers: dict[tuple[str, str | None], FirebaseTokenVerifier] = {}
_override: TokenVerifier | None = None
_lock = threading.Lock()


def verifier_for(settings: Settings) -> FirebaseTokenVerifier:
    """The instance-wide verifier for ``settings``' project and Auth emulator."""
    key = (settings.project, settings.firebase_auth_emulator_host)
    with _lock:
        verifier = _verifiers.get(key)
        if verifier is None:
            verifier = _verifiers[key] = FirebaseTokenVerifier(*key)
        return verifier


def get_token_verifier() -> TokenVerifier:
    """The verifier the callables use: the one set by :func:`set_token_verifier`, else the
    Firebase verifier for the settings of :func:`agenttrader.deps.get_deps`."""
    if _override is not None:
        return _override
    from agenttrader.deps import get_deps

    return verifier_for(get_deps().settings)


def set_token_verifier(verifier: TokenVerifier | None) -> None:
    """Replace the verifier (tests); ``None`` restores the Firebase verifier."""
    global _override  # noqa: PLW0603 - one verifier per instance, like agenttrader.deps
    _override = verifier
