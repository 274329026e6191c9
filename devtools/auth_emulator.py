"""The Firebase Auth emulator (firebase-tools, pinned in ``package.json``): start, probe, stop,
and a small REST client to create users, sign in and set custom claims.

The emulator is pure Node.js (no Java). It compiles its API schema on start, which costs about
15 s of CPU, so start it once per test session or ``make run``, and spawn it before the JVM
emulators so the two warm-ups overlap. Each instance gets its own temporary ``firebase.json``
with free loopback ports for the emulator, its hub and its logging endpoint, so several runs can
share a machine. Its tokens are unsigned; firebase-admin accepts them only with
``FIREBASE_AUTH_EMULATOR_HOST`` set, and they are issued for the project it was started with.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from devtools.emulators import EmulatorUnavailable, ManagedProcess, die_with_parent, free_port

REPO_ROOT = Path(__file__).resolve().parents[1]
READY_TIMEOUT_SECONDS = 120.0
"""Measured: 20 s on an idle 2-core machine, 50-60 s when the CPU is shared with JVMs."""

ENV_VAR = "FIREBASE_AUTH_EMULATOR_HOST"
API_KEY = "fake-api-key"
"""The emulator accepts any API key; the Firebase JS SDK only needs one to be present."""

_IDENTITY_TOOLKIT = "/identitytoolkit.googleapis.com/v1"

_ADMIN_HEADERS = {"Authorization": "Bearer owner"}
"""What the emulator takes as an administrator (firebase-admin sends the same)."""


PORT_ATTEMPTS = 3


class AuthEmulatorUnavailable(EmulatorUnavailable):
    """firebase-tools is not installed, or the emulator did not start."""


def firebase_cli(root: Path = REPO_ROOT) -> Path:
    """The pinned ``firebase`` executable installed by ``npm ci`` (``make setup``)."""
    cli = root / "node_modules" / ".bin" / "firebase"
    if not cli.exists():
        raise AuthEmulatorUnavailable(
            f"{cli} is missing: run `npm ci` in {root} (part of `make setup`); needs Node.js 20+"
        )
    if shutil.which("node") is None:
        raise AuthEmulatorUnavailable("`node` is not on PATH: install Node.js 20 or later")
    return cli


@dataclass(kw_only=True)
class AuthEmulator(ManagedProcess):
    """One running Auth emulator; its temporary configuration is removed when it stops."""

    project: str
    workdir: Path
    port_fixed: bool = False
    """The caller chose ``port``: a restart keeps it (else every port is picked again)."""

    ready_timeout: ClassVar[float] = READY_TIMEOUT_SECONDS
    unavailable: ClassVar[type[RuntimeError]] = AuthEmulatorUnavailable

    @property
    def name(self) -> str:
        return "Auth emulator"

    def client(self) -> AuthEmulatorClient:
        return AuthEmulatorClient(self.host_port, self.project)

    def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until it answers. firebase-tools refuses to start when one of its ports was
        taken between our pick and its bind (an outgoing connection may get any free port):
        then it is started again on fresh ports (the caller's own port kept)."""
        for attempt in range(1, PORT_ATTEMPTS + 1):
            try:
                super().wait_ready(timeout)
                return
            except AuthEmulatorUnavailable as err:
                if "port taken" not in str(err) or attempt == PORT_ATTEMPTS:
                    raise
            self.stop()
            again = spawn(self.project, self.port if self.port_fixed else None)
            self.port, self.process = again.port, again.process
            self.workdir, self.log_path = again.workdir, again.log_path
            self._stopped = False

    def stop(self) -> None:
        """SIGTERM the process group (firebase-tools shuts down cleanly), SIGKILL if it lingers;
        idempotent."""
        super().stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def config(port: int, hub_port: int, logging_port: int) -> dict[str, Any]:
    """The ``firebase.json`` of one instance: only the Auth emulator, no UI, own ports."""
    loopback = "127.0.0.1"
    return {
        "emulators": {
            "auth": {"host": loopback, "port": port},
            "hub": {"host": loopback, "port": hub_port},
            "logging": {"host": loopback, "port": logging_port},
            "ui": {"enabled": False},
        }
    }


def spawn(project: str, port: int | None = None, root: Path = REPO_ROOT) -> AuthEmulator:
    """Start the emulator without waiting for it (see :meth:`AuthEmulator.wait_ready`)."""
    cli = firebase_cli(root)
    port_fixed = port is not None
    port = port or free_port()
    workdir = Path(tempfile.mkdtemp(prefix="agenttrader-auth-"))
    config_path = workdir / "firebase.json"
    config_path.write_text(json.dumps(config(port, free_port(), free_port())))
    env = {**os.environ, "NO_UPDATE_NOTIFIER": "1", "CI": "1"}
    env.pop(ENV_VAR, None)
    with (workdir / "emulator.log").open("wb") as log:
        process = subprocess.Popen(
            [
                str(cli),
                "emulators:start",
                "--only",
                "auth",
                "--project",
                project,
                "--config",
                str(config_path),
            ],
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,  # noqa: PLW1509 - only sets a signal in the child
        )
    return AuthEmulator(
        project=project,
        port=port,
        port_fixed=port_fixed,
        process=process,
        workdir=workdir,
        log_path=workdir / "emulator.log",
    )


def start(project: str, port: int | None = None, root: Path = REPO_ROOT) -> AuthEmulator:
    """Start the emulator on a free loopback port and wait until it answers."""
    return spawn(project, port, root).ready()


@contextlib.contextmanager
def running(project: str, port: int | None = None) -> Iterator[AuthEmulator]:
    """The emulator for the duration of the block, stopped whatever the exit."""
    emulator = start(project, port)
    try:
        yield emulator
    finally:
        emulator.stop()


# --- REST client -------------------------------------------------------------------------------


@dataclass(frozen=True)
class EmulatedUser:
    uid: str
    email: str
    password: str = field(repr=False)
    id_token: str = field(repr=False)


class AuthEmulatorClient:
    """The emulator's REST API, as a client SDK and the admin SDK would call it."""

    def __init__(self, host_port: str, project: str) -> None:
        self.base = f"http://{host_port}"
        self.project = project

    def _post(
        self, path: str, body: Mapping[str, Any], headers: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        request = urllib.request.Request(
            self.base + path,
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json", **(headers or {})},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                result: dict[str, Any] = json.loads(response.read() or b"{}")
                return result
        except urllib.error.HTTPError as err:
            detail = err.read().decode(errors="replace")[:500]
            endpoint = path.split("?", maxsplit=1)[0]
            raise RuntimeError(f"Auth emulator {endpoint}: {err.code} {detail}") from err

    def sign_up(self, email: str | None = None, password: str | None = None) -> EmulatedUser:
        """A new email/password user, signed in."""
        email = email or f"user-{secrets.token_hex(6)}@example.com"
        password = password or secrets.token_urlsafe(12)
        body = {"email": email, "password": password, "returnSecureToken": True}
        result = self._post(f"{_IDENTITY_TOOLKIT}/accounts:signUp?key={API_KEY}", body)
        return EmulatedUser(result["localId"], email, password, result["idToken"])

    def sign_in(self, email: str, password: str) -> EmulatedUser:
        """A fresh ID token (it carries the custom claims set so far)."""
        body = {"email": email, "password": password, "returnSecureToken": True}
        result = self._post(f"{_IDENTITY_TOOLKIT}/accounts:signInWithPassword?key={API_KEY}", body)
        return EmulatedUser(result["localId"], email, password, result["idToken"])

    def set_custom_claims(self, uid: str, claims: Mapping[str, Any]) -> None:
        """What ``firebase_admin.auth.set_custom_user_claims`` sends; sign in again to get a
        token carrying them."""
        self._post(
            f"{_IDENTITY_TOOLKIT}/projects/{self.project}/accounts:update",
            {"localId": uid, "customAttributes": json.dumps(dict(claims))},
            _ADMIN_HEADERS,
        )

    def refreshed(self, user: EmulatedUser) -> EmulatedUser:
        return self.sign_in(user.email, user.password)

    def delete_all_users(self) -> None:
        request = urllib.request.Request(
            f"{self.base}/emulator/v1/projects/{self.project}/accounts", method="DELETE"
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()
