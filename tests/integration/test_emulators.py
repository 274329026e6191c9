"""The emulator manager: finding, starting, probing, clearing and stopping the emulators.

The session emulators (``emulator_hosts``) serve the probing and clearing tests; the lifecycle
tests start processes of their own: one real Pub/Sub emulator, and cheap stand-ins (a Python
HTTP server, optionally behind a shell that forks it) where only the process handling matters.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import socket
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.cloud import firestore

from devtools import emulators
from devtools.emulators import EmulatorUnavailable

pytestmark = pytest.mark.integration

KINDS = [emulators.PUBSUB, emulators.FIRESTORE]


def _live_processes_in_group(pgid: int) -> list[int]:
    """Pids of processes of group ``pgid`` that are still running (zombies do not count)."""
    live = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        state, _ppid, pgrp = text[text.rindex(")") + 2 :].split()[:3]
        if int(pgrp) == pgid and state not in {"Z", "X"}:
            live.append(int(stat.parent.name))
    return live


def _port_refuses(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _get(host_port: str) -> tuple[int, str]:
    with urllib.request.urlopen(f"http://{host_port}/", timeout=5) as response:
        return response.status, response.read().decode()


@pytest.fixture
def no_emulator_sources(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No ``gcloud`` (nor anything else) on PATH and no jar variables."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    for kind in KINDS:
        monkeypatch.delenv(kind.jar_env_var, raising=False)
    return empty


@pytest.fixture
def spawned(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[emulators.Emulator]]:
    """Every emulator process a test spawns; any still running afterwards is stopped."""
    started: list[emulators.Emulator] = []
    original = emulators._spawn

    def record(
        kind: emulators.EmulatorKind, project: str, port: int, log_dir: Path | None = None
    ) -> emulators.Emulator:
        emulator = original(kind, project, port, log_dir)
        started.append(emulator)
        return emulator

    monkeypatch.setattr(emulators, "_spawn", record)
    yield started
    for emulator in started:
        emulator.stop()
        with contextlib.suppress(OSError):
            emulator.log_path.unlink()


def _http_server_command(tmp_path: Path, port: int, *, forked: bool = False) -> list[str]:
    """A stand-in emulator answering 200 on ``/``; ``forked`` runs it as a child of ``sh``."""
    server = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    server += ["--directory", str(tmp_path)]
    if forked:
        return ["sh", "-c", f"{shlex.join(server)} & wait"]
    return server


# --- the session emulators -------------------------------------------------------------------


def test_running_emulators_answer(emulator_hosts: dict[str, str]) -> None:
    assert set(emulator_hosts) == {"PUBSUB_EMULATOR_HOST", "FIRESTORE_EMULATOR_HOST"}
    ports = set()
    for host_port in emulator_hosts.values():
        host, port = host_port.rsplit(":", 1)
        assert host == "127.0.0.1"
        ports.add(port)
        status, body = _get(host_port)
        assert (status, body.strip()) == (200, "Ok")
    assert len(ports) == 2


def test_clients_reach_the_session_emulators(emulator_env: dict[str, str], project: str) -> None:
    import google.cloud.pubsub_v1 as pubsub_v1

    publisher = pubsub_v1.PublisherClient()
    db = firestore.Client(project=project)
    try:
        topic = publisher.create_topic(name=publisher.topic_path(project, "probe"))
        db.document("probe/doc").set({"ok": True})

        assert topic.name == f"projects/{project}/topics/probe"
        assert db.document("probe/doc").get().to_dict() == {"ok": True}
    finally:
        db.close()
        publisher.stop()
        publisher.transport.close()


def test_clear_firestore_removes_this_projects_documents(
    emulator_env: dict[str, str], project: str
) -> None:
    host = emulator_env["FIRESTORE_EMULATOR_HOST"]
    other_project = f"demo-t{uuid.uuid4().hex[:12]}"
    db, other = firestore.Client(project=project), firestore.Client(project=other_project)
    paths = ["users/u1", "users/u1/secrets/alpaca", "users/u1/data/snapshot", "ops/last_pulse"]
    try:
        for path in paths:
            db.document(path).set({"x": 1})
        other.document("users/u1").set({"kept": True})
        assert all(db.document(p).get().exists for p in paths)

        emulators.clear_firestore(host, project)

        assert not any(db.document(p).get().exists for p in paths)
        assert list(db.collections()) == []
        assert other.document("users/u1").get().to_dict() == {"kept": True}
    finally:
        emulators.clear_firestore(host, other_project)
        db.close()
        other.close()


# --- finding an emulator ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_no_gcloud_and_no_jar_is_a_clear_error(
    no_emulator_sources: Path, kind: emulators.EmulatorKind
) -> None:
    with pytest.raises(EmulatorUnavailable) as info:
        emulators.command_for(kind, 8085, "demo-x")

    message = str(info.value)
    assert f"no {kind.name} emulator" in message
    assert "Cloud SDK" in message
    assert kind.jar_env_var in message


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_jar_variable_naming_a_missing_file_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, kind: emulators.EmulatorKind
) -> None:
    missing = tmp_path / "nope" / "emulator.jar"
    monkeypatch.setenv(kind.jar_env_var, str(missing))

    with pytest.raises(EmulatorUnavailable) as info:
        emulators.command_for(kind, 8085, "demo-x")

    assert kind.jar_env_var in str(info.value)
    assert str(missing) in str(info.value)
    assert "does not name a file" in str(info.value)


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_jar_variable_wins_over_the_cloud_sdk(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, kind: emulators.EmulatorKind
) -> None:
    jar = tmp_path / "emulator.jar"
    jar.write_bytes(b"")
    monkeypatch.setenv(kind.jar_env_var, f"  {jar}  ")

    command = emulators.command_for(kind, 8123, "demo-x")

    assert command[0] == "java"
    assert str(jar) in command
    assert "--host=127.0.0.1" in command
    assert "--port=8123" in command


def test_a_jar_but_no_java_is_a_clear_error(
    no_emulator_sources: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    jar = tmp_path / "emulator.jar"
    jar.write_bytes(b"")
    monkeypatch.setenv(emulators.PUBSUB.jar_env_var, str(jar))

    with pytest.raises(EmulatorUnavailable, match="cannot run 'java'"):
        emulators.start(emulators.PUBSUB, project="demo-x")


def test_an_emulator_that_exits_is_reported_with_its_log(
    monkeypatch: pytest.MonkeyPatch, spawned: list[emulators.Emulator]
) -> None:
    command = ["sh", "-c", "echo 'port already in use' >&2; exit 3"]
    monkeypatch.setattr(emulators, "command_for", lambda kind, port, project: command)

    with pytest.raises(EmulatorUnavailable) as info:
        emulators.start(emulators.PUBSUB, project="demo-x")

    assert "exited with 3" in str(info.value)
    assert "port already in use" in str(info.value)


# --- starting and stopping -------------------------------------------------------------------


def test_stop_kills_a_real_pubsub_emulator(spawned: list[emulators.Emulator]) -> None:
    emulator = emulators.start(emulators.PUBSUB, project="demo-stop")
    pgid = os.getpgid(emulator.process.pid)
    assert emulator.answers()
    assert pgid == emulator.process.pid, "started in a process group of its own"
    assert pgid != os.getpgrp()
    assert _live_processes_in_group(pgid)

    emulator.stop()
    emulator.stop()  # idempotent

    assert emulator.process.poll() is not None
    assert _live_processes_in_group(pgid) == []
    assert not emulator.answers()
    assert _port_refuses(emulator.port)


def test_stop_kills_the_whole_process_group(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, spawned: list[emulators.Emulator]
) -> None:
    # Like `gcloud beta emulators … start`, the started process forks the real server.
    monkeypatch.setattr(
        emulators,
        "command_for",
        lambda kind, port, project: _http_server_command(tmp_path, port, forked=True),
    )
    emulator = emulators.start(emulators.PUBSUB, project="demo-x")
    pgid = emulator.process.pid
    assert len(_live_processes_in_group(pgid)) == 2  # the shell and its server child

    emulator.stop()

    assert _live_processes_in_group(pgid) == []
    assert _port_refuses(emulator.port)


def test_running_yields_the_environment_and_stops_on_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, spawned: list[emulators.Emulator]
) -> None:
    monkeypatch.setattr(
        emulators,
        "command_for",
        lambda kind, port, project: _http_server_command(tmp_path, port),
    )

    with (
        pytest.raises(RuntimeError, match="test failed"),
        emulators.running(emulators.PUBSUB, emulators.FIRESTORE, project="demo-x") as env,
    ):
        assert set(env) == {"PUBSUB_EMULATOR_HOST", "FIRESTORE_EMULATOR_HOST"}
        assert env == {e.kind.env_var: e.host_port for e in spawned}
        for host_port in env.values():
            assert _get(host_port)[0] == 200
        raise RuntimeError("test failed")

    assert len(spawned) == 2
    for emulator in spawned:
        assert emulator.process.poll() is not None
        assert _port_refuses(emulator.port)


def test_running_stops_the_first_when_the_second_fails(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, spawned: list[emulators.Emulator]
) -> None:
    def command(kind: emulators.EmulatorKind, port: int, project: str) -> list[str]:
        if kind is emulators.FIRESTORE:
            return ["sh", "-c", "exit 7"]
        return _http_server_command(tmp_path, port)

    monkeypatch.setattr(emulators, "command_for", command)

    with (
        pytest.raises(EmulatorUnavailable, match="firestore emulator exited with 7"),
        emulators.running(emulators.PUBSUB, emulators.FIRESTORE, project="demo-x"),
    ):
        pytest.fail("must not yield")

    first = spawned[0]
    assert first.kind is emulators.PUBSUB
    assert first.process.poll() is not None
    assert _port_refuses(first.port)
