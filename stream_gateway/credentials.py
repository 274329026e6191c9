"""A tenant's stream credentials: read from ``users/{uid}/secrets/alpaca``, opened as the
worker opens them, checked against the base-URL allowlist, kept per keys version.

A sealed document is opened with the vault (the KEK: Cloud KMS in production, a local key
with the emulators), a plaintext one (before sealing reached it) parsed as the client wrote
it. The stream's URL is derived from the allowlisted origin, never from the stored string
itself. What was opened is kept per tenant and keys version, so a reconnect reads nothing; a
new keys version (rotation) or a refusal by Alpaca drops it.

Failures follow the retry contract: ``PermanentError`` (no keys, malformed keys, a base URL
off the allowlist, a ciphertext that does not open) — the stream is refused until the keys
change; ``RetryableError`` (Firestore or the KEK unavailable) — retried with backoff.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agenttrader.credentials import Credentials, Vault, open_stored
from agenttrader.errors import MissingKeys
from agenttrader.firestore_io import call
from agenttrader.paths import alpaca_secret_doc
from agenttrader.urls import check_base_url
from stream_gateway.protocol import stream_url

if TYPE_CHECKING:
    from google.cloud import firestore


@dataclass(frozen=True)
class StreamCredentials:
    """What a connection needs: the credentials and the stream URL (``repr``: the URL)."""

    credentials: Credentials = field(repr=False)
    url: str


class CredentialStore:
    """Loads and keeps stream credentials; thread-safe (loads run on the executor)."""

    def __init__(
        self,
        db: firestore.Client,
        allowed_base_urls: tuple[str, ...],
        vault: Callable[[], Vault],
    ) -> None:
        self._db = db
        self._allowed = allowed_base_urls
        self._vault = vault
        self._kept: dict[str, tuple[str | None, StreamCredentials]] = {}
        self._lock = threading.Lock()

    def get(self, uid: str, keys_version: str | None) -> StreamCredentials:
        """The tenant's credentials for ``keys_version`` (read when not kept)."""
        with self._lock:
            kept = self._kept.get(uid)
        if kept is not None and kept[0] == keys_version and keys_version is not None:
            return kept[1]
        loaded = self._load(uid)
        with self._lock:
            self._kept[uid] = (keys_version, loaded)
        return loaded

    def drop(self, uid: str) -> None:
        with self._lock:
            self._kept.pop(uid, None)

    def _load(self, uid: str) -> StreamCredentials:
        path = alpaca_secret_doc(uid)
        snap = call(self._db.document(path).get)
        doc: dict[str, Any] | None = (snap.to_dict() or {}) if snap.exists else None
        if not doc:
            raise MissingKeys("no Alpaca credentials stored")
        credentials = open_stored(doc, uid, path, self._vault)
        origin = check_base_url(credentials.base_url, self._allowed)
        return StreamCredentials(credentials, stream_url(origin))
