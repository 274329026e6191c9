"""The dependency container: clients built lazily, once per instance, replaceable in tests.

Nothing here touches the network at import time; the first attribute access builds a client.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from agenttrader.alpaca import AlpacaClientFactory
from agenttrader.settings import Settings

if TYPE_CHECKING:
    import google.cloud.pubsub_v1 as pubsub_v1
    from google.cloud import firestore

    from agenttrader.credentials import Vault

T = TypeVar("T")


class Deps:
    """Firestore, the Pub/Sub publisher, the Alpaca client factory and the credentials vault
    for one instance.

    Pass ready-made collaborators (fakes in unit tests) as keyword arguments; anything not
    passed is built from ``settings`` on first use.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        firestore_client: firestore.Client | None = None,
        publisher: pubsub_v1.PublisherClient | None = None,
        alpaca_factory: AlpacaClientFactory | None = None,
        vault: Vault | None = None,
    ) -> None:
        self.settings = settings or Settings.from_env()
        self._lock = threading.Lock()
        self._built: dict[str, Any] = {
            "firestore": firestore_client,
            "publisher": publisher,
            "alpaca": alpaca_factory,
            "vault": vault,
        }

    def _get(self, name: str, build: Callable[[], T]) -> T:
        value = self._built.get(name)
        if value is None:
            with self._lock:
                value = self._built.get(name)
                if value is None:
                    value = build()
                    self._built[name] = value
        return value

    @property
    def firestore(self) -> firestore.Client:
        def build() -> firestore.Client:
            from google.cloud import firestore

            return firestore.Client(project=self.settings.project)

        return self._get("firestore", build)

    @property
    def publisher(self) -> pubsub_v1.PublisherClient:
        def build() -> pubsub_v1.PublisherClient:
            import google.cloud.pubsub_v1 as pubsub_v1

            return pubsub_v1.PublisherClient(
                batch_settings=pubsub_v1.types.BatchSettings(
                    max_messages=500, max_bytes=1_000_000, max_latency=0.01
                ),
                publisher_options=pubsub_v1.types.PublisherOptions(
                    flow_control=pubsub_v1.types.PublishFlowControl(
                        message_limit=5_000,
                        byte_limit=10_000_000,
                        limit_exceeded_behavior=pubsub_v1.types.LimitExceededBehavior.BLOCK,
                    )
                ),
            )

        return self._get("publisher", build)

    @property
    def alpaca(self) -> AlpacaClientFactory:
        return self._get(
            "alpaca",
            lambda: AlpacaClientFactory(
                self.settings.allowed_alpaca_base_urls, self.settings.alpaca_timeout_seconds
            ),
        )

    @property
    def vault(self) -> Vault:
        """Seals and opens tenant credentials under ``CREDENTIALS_KEK_URI`` (``ValueError``
        naming it when unset outside the emulators: only the functions that handle
        credentials ask for the vault, so only they refuse to start without it)."""

        def build() -> Vault:
            from agenttrader.credentials import Vault

            return Vault.from_settings(self.settings)

        return self._get("vault", build)

    def topic_path(self, topic: str) -> str:
        return f"projects/{self.settings.project}/topics/{topic}"


_default: Deps | None = None
_default_lock = threading.Lock()


def get_deps() -> Deps:
    """The instance-wide container, built on first use from the environment."""
    global _default  # noqa: PLW0603 - one container per instance, by design
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Deps()
    return _default


def set_deps(deps: Deps | None) -> None:
    """Replace the instance-wide container (tests); ``None`` rebuilds it from the environment."""
    global _default  # noqa: PLW0603 - one container per instance, by design
    with _default_lock:
        _default = deps
