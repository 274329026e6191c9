"""The Firebase Auth emulator manager and its REST client, and firebase-admin accepting the
emulator's tokens."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from agenttrader.callable import CallableError, Status
from agenttrader.callable.id_tokens import FirebaseTokenVerifier
from devtools.auth_emulator import (
    AuthEmulator,
    AuthEmulatorUnavailable,
    config,
    firebase_cli,
)

pytestmark = pytest.mark.integration


def test_users_tokens_and_claims(
    auth_emulator: AuthEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FIREBASE_AUTH_EMULATOR_HOST", auth_emulator.host_port)
    client = auth_emulator.client()
    verify = FirebaseTokenVerifier(auth_emulator.project, auth_emulator.host_port)

    user = client.sign_up()
    claims = verify(user.id_token)
    assert (claims["uid"], claims["email"]) == (user.uid, user.email)
    assert "admin" not in claims

    client.set_custom_claims(user.uid, {"admin": True})
    assert "admin" not in verify(user.id_token)  # claims reach new tokens only
    assert verify(client.refreshed(user).id_token)["admin"] is True

    other = client.sign_up()
    assert other.uid != user.uid

    with pytest.raises(RuntimeError, match=r"INVALID_LOGIN_CREDENTIALS|INVALID_PASSWORD"):
        client.sign_in(user.email, "wrong-password")


def test_tokens_of_another_project_are_refused(
    auth_emulator: AuthEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FIREBASE_AUTH_EMULATOR_HOST", auth_emulator.host_port)
    token = auth_emulator.client().sign_up().id_token
    with pytest.raises(CallableError) as raised:
        FirebaseTokenVerifier("demo-someone-else", auth_emulator.host_port)(token)
    assert raised.value.status is Status.UNAUTHENTICATED


def test_without_the_emulator_switch_unsigned_tokens_are_refused(
    auth_emulator: AuthEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FIREBASE_AUTH_EMULATOR_HOST", raising=False)
    token = auth_emulator.client().sign_up().id_token
    with pytest.raises(CallableError) as raised:
        FirebaseTokenVerifier(auth_emulator.project, None)(token)
    assert raised.value.status is Status.UNAUTHENTICATED


def test_config_uses_its_own_loopback_ports() -> None:
    emulators = config(1001, 1002, 1003)["emulators"]
    assert emulators["auth"] == {"host": "127.0.0.1", "port": 1001}
    assert emulators["hub"]["port"] == 1002 and emulators["logging"]["port"] == 1003
    assert emulators["ui"] == {"enabled": False}


def test_a_missing_install_says_how_to_fix_it(tmp_path: Path) -> None:
    with pytest.raises(AuthEmulatorUnavailable, match="npm ci"):
        firebase_cli(tmp_path)


def test_stop_ends_the_process_group_and_cleans_up(tmp_path: Path) -> None:
    workdir = tmp_path / "emulator"
    workdir.mkdir()
    process = subprocess.Popen(
        ["sh", "-c", "sleep 60 & sleep 60"], start_new_session=True, stdin=subprocess.DEVNULL
    )
    emulator = AuthEmulator(
        project="demo-x", port=1, process=process, workdir=workdir, log_path=workdir / "log"
    )
    emulator.stop()
    emulator.stop()  # idempotent
    assert process.poll() is not None
    assert not workdir.exists()
    with pytest.raises(ProcessLookupError):
        os.killpg(process.pid, 0)


def test_a_hub_port_taken_before_the_emulator_binds_it_is_picked_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another process can take a port between our pick and firebase-tools' bind."""
    import socket

    from devtools import auth_emulator, emulators

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    picks = iter([taken.getsockname()[1], taken.getsockname()[1]])  # auth port, then hub port

    def pick() -> int:
        return next(picks, None) or emulators.free_port()

    monkeypatch.setattr(auth_emulator, "free_port", pick)
    try:
        with auth_emulator.running("demo-port-race") as emulator:  # its own port was taken
            assert emulator.client().sign_up().uid
        fixed = emulators.free_port()
        with auth_emulator.running("demo-port-race", fixed) as emulator:  # the hub's was taken
            assert emulator.port == fixed and emulator.client().sign_up().uid
    finally:
        taken.close()
