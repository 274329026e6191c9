"""The dependency container: lazy, built once (even under a race), injectable."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from agenttrader import deps as deps_module
from agenttrader.alpaca import AlpacaClientFactory
from agenttrader.deps import Deps, get_deps, set_deps
from agenttrader.settings import Settings

SETTINGS = Settings(
    project="demo-fake-project",
    extra_alpaca_base_urls=("http://127.0.0.1:8765",),
    alpaca_timeout_seconds=1.5,
)


class _Counting:
    """Stands in for a client class; counts constructions and widens any race window."""

    def __init__(self) -> None:
        self.built: list[Any] = []
        self._lock = threading.Lock()

    def __call__(self, *args: Any, **kwargs: Any) -> object:
        time.sleep(0.05)
        instance = object()
        with self._lock:
            self.built.append((instance, args, kwargs))
        return instance


@pytest.fixture
def firestore_client(monkeypatch: pytest.MonkeyPatch) -> _Counting:
    from google.cloud import firestore

    fake = _Counting()
    monkeypatch.setattr(firestore, "Client", fake)
    return fake


@pytest.fixture
def publisher_client(monkeypatch: pytest.MonkeyPatch) -> _Counting:
    import google.cloud.pubsub_v1 as pubsub_v1

    fake = _Counting()
    monkeypatch.setattr(pubsub_v1, "PublisherClient", fake)
    return fake


def test_nothing_is_built_at_construction(
    firestore_client: _Counting, publisher_client: _Counting
) -> None:
    deps = Deps(SETTINGS)

    assert deps._built == {"firestore": None, "publisher": None, "alpaca": None, "vault": None}
    assert firestore_client.built == []
    assert publisher_client.built == []


def test_construction_without_settings_reads_the_environment_only(
    monkeypatch: pytest.MonkeyPatch, firestore_client: _Counting, publisher_client: _Counting
) -> None:
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "demo-from-env")

    deps = Deps()

    assert deps.settings.project == "demo-from-env"
    assert all(value is None for value in deps._built.values())
    assert firestore_client.built == []
    assert publisher_client.built == []


def test_firestore_is_built_on_first_access_for_the_project(firestore_client: _Counting) -> None:
    deps = Deps(SETTINGS)

    first = deps.firestore
    second = deps.firestore

    assert first is second
    assert len(firestore_client.built) == 1
    assert firestore_client.built[0][2] == {"project": "demo-fake-project"}
    assert deps._built["publisher"] is None
    assert deps._built["alpaca"] is None


def test_publisher_is_built_once(publisher_client: _Counting) -> None:
    deps = Deps(SETTINGS)

    assert deps.publisher is deps.publisher
    assert len(publisher_client.built) == 1


def test_alpaca_factory_uses_the_settings() -> None:
    deps = Deps(SETTINGS)

    factory = deps.alpaca

    assert factory is deps.alpaca
    assert isinstance(factory, AlpacaClientFactory)
    assert factory._allowed == SETTINGS.allowed_alpaca_base_urls
    assert factory._timeout == 1.5


def test_the_vault_is_built_once_from_the_settings_and_contacts_nothing() -> None:
    from agenttrader.credentials import CloudKmsKek, LocalKek, Vault

    uri = "gcp-kms://projects/p/locations/l/keyRings/r/cryptoKeys/k"
    production = Deps(Settings(project="p", credentials_kek_uri=uri))
    local = Deps(Settings(project="demo-x", firestore_emulator_host="localhost:8080"))

    assert production.vault is production.vault
    assert isinstance(production.vault._kek._kek, CloudKmsKek)
    assert isinstance(local.vault._kek._kek, LocalKek)
    assert production.vault.stats().kek.total == 0
    with pytest.raises(ValueError, match="CREDENTIALS_KEK_URI"):
        Deps(Settings(project="p")).vault  # noqa: B018 - the property is what is tested
    injected = Vault(LocalKek("demo-injected"))
    assert Deps(SETTINGS, vault=injected).vault is injected


def test_injected_collaborators_are_returned_as_is(
    firestore_client: _Counting, publisher_client: _Counting
) -> None:
    fake_firestore, fake_publisher = object(), object()
    factory = AlpacaClientFactory(("https://paper-api.alpaca.markets",), 3.0)

    deps = Deps(
        SETTINGS,
        firestore_client=fake_firestore,  # type: ignore[arg-type]
        publisher=fake_publisher,  # type: ignore[arg-type]
        alpaca_factory=factory,
    )

    assert deps.firestore is fake_firestore
    assert deps.publisher is fake_publisher
    assert deps.alpaca is factory
    assert firestore_client.built == []
    assert publisher_client.built == []


@pytest.mark.parametrize("attribute", ["firestore", "publisher", "alpaca"])
def test_built_once_when_threads_race(
    attribute: str,
    firestore_client: _Counting,
    publisher_client: _Counting,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    factory_builds = _Counting()
    monkeypatch.setattr(deps_module, "AlpacaClientFactory", factory_builds)
    deps = Deps(SETTINGS)
    barrier = threading.Barrier(8)
    seen: list[object] = []
    seen_lock = threading.Lock()

    def access() -> None:
        barrier.wait(5)
        value = getattr(deps, attribute)
        with seen_lock:
            seen.append(value)

    threads = [threading.Thread(target=access) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    builds = {"firestore": firestore_client, "publisher": publisher_client}.get(
        attribute, factory_builds
    )
    assert len(seen) == 8
    assert len(builds.built) == 1
    assert all(value is seen[0] for value in seen)


def test_topic_path() -> None:
    assert Deps(SETTINGS).topic_path("user-sync") == "projects/demo-fake-project/topics/user-sync"


def test_get_deps_is_one_lazy_instance_and_replaceable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "demo-instance")

    first = get_deps()

    assert first is get_deps()
    assert first.settings.project == "demo-instance"
    custom = Deps(SETTINGS)
    set_deps(custom)
    assert get_deps() is custom
    set_deps(None)
    assert get_deps() is not custom


def test_get_deps_builds_once_when_threads_race() -> None:
    set_deps(None)
    barrier = threading.Barrier(8)
    seen: list[Deps] = []

    def access() -> None:
        barrier.wait(5)
        seen.append(get_deps())

    threads = [threading.Thread(target=access) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    assert len(seen) == 8
    assert all(d is seen[0] for d in seen)
