"""Start, probe, clear and stop the Cloud SDK Pub/Sub and Firestore emulators.

Where the emulator comes from, in order: the jar named by ``PUBSUB_EMULATOR_JAR`` /
``FIRESTORE_EMULATOR_JAR``; the jar of the Cloud SDK component beside ``gcloud`` (run with
``java`` directly: it starts faster and dies with its parent); ``gcloud beta emulators … start``.
Every process is started in its own process group and stopped with it, on normal exit, on
Ctrl-C and when a test fails.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Self

READY_TIMEOUT_SECONDS = 90.0
"""Cold JVM start on a loaded 2-core machine has been seen to take ~15 s; allow headroom."""


class EmulatorUnavailable(RuntimeError):
    """Neither the Cloud SDK emulator nor a jar is available, or the emulator did not start."""


@dataclass(frozen=True)
class EmulatorKind:
    name: str
    env_var: str
    """The standard client switch, e.g. ``PUBSUB_EMULATOR_HOST``."""
    jar_env_var: str
    sdk_jar: str
    """Path of the jar inside the Cloud SDK root."""
    gcloud_args: tuple[str, ...]

    def java_command(self, jar: str, port: int) -> list[str]:
        if self.name == "pubsub":
            return ["java", "-jar", jar, "--host=127.0.0.1", f"--port={port}"]
        return [
            "java",
            "-cp",
            jar,
            "com.google.cloud.datastore.emulator.firestore.CloudFirestore",
            "start",
            "--host=127.0.0.1",
            f"--port={port}",
            "--database-mode=firestore-native",
        ]


PUBSUB = EmulatorKind(
    name="pubsub",
    env_var="PUBSUB_EMULATOR_HOST",
    jar_env_var="PUBSUB_EMULATOR_JAR",
    sdk_jar="platform/pubsub-emulator/lib/cloud-pubsub-emulator-0.8.20-all.jar",
    gcloud_args=("beta", "emulators", "pubsub", "start"),
)
FIRESTORE = EmulatorKind(
    name="firestore",
    env_var="FIRESTORE_EMULATOR_HOST",
    jar_env_var="FIRESTORE_EMULATOR_JAR",
    sdk_jar="platform/cloud-firestore-emulator/cloud-firestore-emulator.jar",
    gcloud_args=("beta", "emulators", "firestore", "start", "--database-mode=firestore-native"),
)


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _sdk_root() -> Path | None:
    gcloud = shutil.which("gcloud")
    return Path(os.path.realpath(gcloud)).parent.parent if gcloud else None


def command_for(kind: EmulatorKind, port: int, project: str) -> list[str]:
    """The command that starts ``kind`` on ``port``; ``EmulatorUnavailable`` if there is none."""
    jar = os.environ.get(kind.jar_env_var, "").strip()
    if jar:
        if not Path(jar).is_file():
            raise EmulatorUnavailable(f"{kind.jar_env_var}={jar} does not name a file")
        return kind.java_command(jar, port)
    root = _sdk_root()
    if root is not None:
        if (root / kind.sdk_jar).is_file() and shutil.which("java"):
            return kind.java_command(str(root / kind.sdk_jar), port)
        return [
            "gcloud",
            *kind.gcloud_args,
            f"--host-port=127.0.0.1:{port}",
            f"--project={project}",
            "--quiet",
        ]
    raise EmulatorUnavailable(
        f"no {kind.name} emulator: install the Google Cloud SDK with its "
        f"{kind.name} emulator component (and Java 17), or set {kind.jar_env_var} to the jar "
        "(../shared/emulators/ holds copies; .ci/run uses them)"
    )


def die_with_parent() -> None:
    """Runs in the child: SIGKILL it when the process that started it dies (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


@dataclass(kw_only=True)
class ManagedProcess:
    """A server on loopback in a process group of its own: probe it, wait for it, stop it.

    Shared by the Cloud SDK emulators and the Firebase Auth emulator.
    """

    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    remove_log: bool = False
    """A log in the temporary directory goes with the process (its tail is in any error)."""
    _stopped: bool = field(default=False, repr=False)

    ready_timeout: ClassVar[float] = READY_TIMEOUT_SECONDS
    unavailable: ClassVar[type[RuntimeError]] = EmulatorUnavailable

    @property
    def name(self) -> str:
        return "process"

    @property
    def host_port(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host_port}"

    def answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/", timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self, timeout: float | None = None) -> None:
        timeout = self.ready_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise self.unavailable(
                    f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            if self.answers():
                return
            time.sleep(0.2)
        tail = self.log_tail()  # before stop(), which may remove the log
        self.stop()
        raise self.unavailable(f"{self.name} did not answer within {timeout:.0f} s:\n{tail}")

    def ready(self) -> Self:
        """Wait until it answers (:meth:`wait_ready`); stopped if it never does."""
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        """Stop the whole process group (gcloud and firebase-tools spawn children); idempotent."""
        if self._stopped:
            return
        self._stopped = True
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        if self.remove_log:
            with contextlib.suppress(OSError):
                self.log_path.unlink()


@dataclass(kw_only=True)
class Emulator(ManagedProcess):
    """One running Cloud SDK emulator."""

    kind: EmulatorKind

    @property
    def name(self) -> str:
        return f"{self.kind.name} emulator"


def start(
    kind: EmulatorKind, project: str, port: int | None = None, log_dir: Path | None = None
) -> Emulator:
    """Start ``kind`` on a free loopback port and wait until it answers."""
    return _spawn(kind, project, port or free_port(), log_dir).ready()


@contextlib.contextmanager
def running(
    *kinds: EmulatorKind, project: str, log_dir: Path | None = None
) -> Iterator[dict[str, str]]:
    """Start ``kinds`` side by side; yields the environment variables that point at them.

    Everything started is stopped on exit, whatever the exit (exception, Ctrl-C). Their logs
    go to ``log_dir`` (default: the temporary directory).
    """
    started: list[Emulator] = []
    try:
        # Spawn every JVM before waiting for any: their cold starts overlap.
        for kind in kinds:
            started.append(_spawn(kind, project, free_port(), log_dir))
        for emulator in started:
            emulator.wait_ready()
        yield {e.kind.env_var: e.host_port for e in started}
    finally:
        for emulator in reversed(started):
            emulator.stop()


def _spawn(kind: EmulatorKind, project: str, port: int, log_dir: Path | None = None) -> Emulator:
    command = command_for(kind, port, project)
    log_fd, log_name = tempfile.mkstemp(
        prefix=f"agenttrader-{kind.name}-", suffix=".log", dir=log_dir
    )
    try:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log_fd,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,  # noqa: PLW1509 - only sets a signal in the child
        )
    except FileNotFoundError as err:
        raise EmulatorUnavailable(f"cannot run {command[0]!r}: {err}") from err
    finally:
        os.close(log_fd)
    return Emulator(
        kind=kind,
        port=port,
        process=process,
        log_path=Path(log_name),
        remove_log=log_dir is None,
    )


def clear_firestore(host_port: str, project: str) -> None:
    """Delete every document of ``project`` in the Firestore emulator."""
    request = urllib.request.Request(
        f"http://{host_port}/emulator/v1/projects/{project}/databases/(default)/documents",
        method="DELETE",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()


def load_firestore_rules(host_port: str, project: str, rules: str) -> None:
    """Load security rules into the Firestore emulator for ``project``."""
    import json

    body = json.dumps({"rules": {"files": [{"name": "firestore.rules", "content": rules}]}})
    request = urllib.request.Request(
        f"http://{host_port}/emulator/v1/projects/{project}:securityRules",
        data=body.encode(),
        method="PUT",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()
