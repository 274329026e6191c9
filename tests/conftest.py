"""Shared fixtures: an isolated environment per test, one pair of emulators per session,
a unique project per test (so the fixed topic names never collide between tests)."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator

import google.cloud.pubsub_v1 as pubsub_v1
import pytest

from agenttrader import logs, topology
from agenttrader.deps import Deps, set_deps
from agenttrader.settings import Settings
from devtools import emulators
from devtools.simulator import AlpacaSimulator
from devtools.topology import apply_topology

pytest_plugins = ["tests.callable_fixtures"]
"""Fixtures of the callables' tests (Auth emulator, Vertex stand-in, callables server)."""

_EMULATOR_VARS = ("PUBSUB_EMULATOR_HOST", "FIRESTORE_EMULATOR_HOST", "FIREBASE_AUTH_EMULATOR_HOST")


@pytest.fixture(autouse=True)
def _isolated_environ(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts from the same environment and cannot leak changes into the next."""
    saved = dict(os.environ)
    for name in (*_EMULATOR_VARS, "GOOGLE_CLOUD_PROJECT", "ALPACA_ALLOWED_BASE_URLS"):
        monkeypatch.delenv(name, raising=False)
    set_deps(None)
    yield
    set_deps(None)
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="session")
def emulator_hosts() -> Iterator[dict[str, str]]:
    """The Pub/Sub and Firestore emulators, started once for the whole run and always stopped."""
    with emulators.running(emulators.PUBSUB, emulators.FIRESTORE, project="demo-test") as hosts:
        yield hosts


@pytest.fixture
def project() -> str:
    """A project id of its own for this test: data and topics never collide between tests."""
    return f"demo-t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def emulator_env(
    emulator_hosts: dict[str, str], project: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    """Point every client in this process at the emulators and this test's project; the
    project's Firestore data is cleared afterwards."""
    for name, value in emulator_hosts.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", project)
    yield {**emulator_hosts, "GOOGLE_CLOUD_PROJECT": project}
    emulators.clear_firestore(emulator_hosts["FIRESTORE_EMULATOR_HOST"], project)


@pytest.fixture
def pubsub_clients(
    emulator_env: dict[str, str],
) -> Iterator[tuple[pubsub_v1.PublisherClient, pubsub_v1.SubscriberClient]]:
    """A publisher and a subscriber on the emulator (they read ``PUBSUB_EMULATOR_HOST``)."""
    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    yield publisher, subscriber
    subscriber.close()
    publisher.stop()
    publisher.transport.close()


@pytest.fixture
def simulator() -> Iterator[AlpacaSimulator]:
    """An Alpaca paper-API simulator of this test's own, on a free port."""
    with AlpacaSimulator() as sim:
        yield sim


@pytest.fixture
def stack_env(
    emulator_env: dict[str, str], simulator: AlpacaSimulator, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """The environment of a pipeline under test: emulators, the simulator allowed as a base
    URL, short Alpaca timeouts and quick pulse rollups. Also set in this process."""
    env = {
        **emulator_env,
        "ALPACA_ALLOWED_BASE_URLS": simulator.base_url,
        "ALPACA_TIMEOUT_SECONDS": "1",
        "PULSE_ROLLUP_DELAY_SECONDS": "0.3",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def pipeline_deps(stack_env: dict[str, str], project: str) -> Iterator[Deps]:
    """A dependency container on the emulators with the topology applied (pull only) and a
    tap subscription ``tap`` on ``user-sync`` that sees every message published there."""

    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    apply_topology(project, publisher, subscriber)
    subscriber.create_subscription(
        name=subscriber.subscription_path(project, "tap"),
        topic=publisher.topic_path(project, topology.USER_SYNC),
    )
    subscriber.close()
    container = Deps(Settings.from_env(), publisher=publisher)
    set_deps(container)
    yield container


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    """The root logger without our JSON handler (a test installs its own); handlers and level
    are restored afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    for handler in handlers:
        if handler.get_name() == logs._HANDLER_NAME:
            root.removeHandler(handler)
    yield root
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
