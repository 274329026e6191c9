"""Sealing and opening tenant credentials: Tink envelope encryption under the KEK.

Each seal draws a fresh AES256-GCM data key, encrypts the credentials with it (associated
data: the tenant's uid and the document's path) and wraps the data key with the KEK: one KEK
operation per seal. Opening unwraps the data key (one KEK operation) and decrypts.

Opening the same ciphertext again is free: an instance remembers what it opened, keyed by a
digest of the associated data and the ciphertext (a new seal is a new ciphertext, so there is
nothing to invalidate), least recently used forgotten first. Together with the worker's
per-``keys_version`` cache, the KEK is asked once per cold credential, not once per sync.
"""

from __future__ import annotations

import hashlib
import struct
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, NamedTuple

import tink
from tink import aead

from agenttrader.credentials.kek import KekCounts, MeteredKek, kek_for
from agenttrader.credentials.model import Credentials, auth_of, hint_of, parse_plaintext
from agenttrader.credentials.sealed import (
    SealedForm,
    associated_data,
    decode_payload,
    encode_payload,
    is_sealed,
)
from agenttrader.errors import CredentialsTampered
from agenttrader.settings import Settings

DEFAULT_MEMO_CAPACITY = 20_000
"""Opened credentials kept per instance (a few hundred bytes each), as the worker's key cache."""
_DEK_LENGTH = struct.Struct(">I")
"""Tink's envelope layout: the wrapped data key's length (4 bytes, big endian), the wrapped
data key, then the payload encrypted under it."""
_MAX_WRAPPED_DEK = 4096


class VaultStats(NamedTuple):
    """What an instance's vault did: KEK operations (Cloud KMS requests), opens, and how many
    opens were answered from memory."""

    kek: KekCounts
    opens: int
    remembered: int


def _now() -> datetime:
    return datetime.now(UTC)


class Vault:
    """Seals, opens and re-wraps ``secrets/alpaca`` documents under one KEK; thread-safe."""

    def __init__(
        self,
        kek: aead.Aead,
        *,
        memo_capacity: int = DEFAULT_MEMO_CAPACITY,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        aead.register()
        self._kek = MeteredKek(kek)
        self._envelope = aead.KmsEnvelopeAead(aead.aead_key_templates.AES256_GCM, self._kek)
        self._clock = clock
        self._capacity = memo_capacity
        self._memo: OrderedDict[bytes, Credentials] = OrderedDict()
        self._lock = threading.Lock()
        self._opens = 0
        self._remembered = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> Vault:
        """The vault of the KEK the settings name (``ValueError`` naming
        ``CREDENTIALS_KEK_URI`` when there is none); contacts nothing yet."""
        return cls(kek_for(settings))

    def seal(
        self, credentials: Credentials, uid: str, path: str, keys_version: str | None
    ) -> dict[str, Any]:
        """The sealed form of ``credentials`` for the document at ``path`` of tenant ``uid``:
        the fields to write (no plaintext among them)."""
        ciphertext = self._envelope.encrypt(encode_payload(credentials), associated_data(uid, path))
        return SealedForm(
            auth=auth_of(credentials),
            ciphertext=ciphertext,
            key_id_hint=hint_of(credentials),
            base_url=credentials.base_url,
            sealed_at=self._clock(),
            keys_version=keys_version,
        ).to_document()

    def open(self, doc: Mapping[str, Any] | None, uid: str, path: str) -> Credentials:
        """The credentials of a sealed document read at ``path`` for tenant ``uid``.

        ``CredentialsTampered`` (permanent) when it does not open there: moved from another
        tenant's document, altered, malformed or sealed under another KEK. ``KmsUnavailable``
        (retryable) when the KEK cannot be asked now.
        """
        sealed = SealedForm.from_document(doc)
        aad = associated_data(uid, path)
        digest = hashlib.blake2b(
            _DEK_LENGTH.pack(len(aad)) + aad + sealed.ciphertext, digest_size=32
        ).digest()
        with self._lock:
            self._opens += 1
            remembered = self._memo.get(digest)
            if remembered is not None:
                self._memo.move_to_end(digest)
                self._remembered += 1
        if remembered is not None:
            return sealed.check_matches(remembered)
        try:
            plaintext = self._envelope.decrypt(sealed.ciphertext, aad)
        except tink.TinkError:
            raise CredentialsTampered("sealed credentials do not open for this document") from None
        credentials = sealed.check_matches(decode_payload(plaintext))
        with self._lock:
            self._memo[digest] = credentials
            while len(self._memo) > self._capacity:
                self._memo.popitem(last=False)
        return credentials

    def rewrap(self, doc: Mapping[str, Any] | None) -> dict[str, Any]:
        """The same sealed document with its data key re-wrapped under the KEK's current
        primary version (after a rotation), plus ``rewrappedAt``; the credentials are not
        decrypted and the payload is unchanged. Two KEK operations."""
        sealed = SealedForm.from_document(doc)
        ciphertext = sealed.ciphertext
        if len(ciphertext) < _DEK_LENGTH.size:
            raise CredentialsTampered("sealed credentials have a truncated ciphertext")
        (length,) = _DEK_LENGTH.unpack_from(ciphertext)
        end = _DEK_LENGTH.size + length
        if length > _MAX_WRAPPED_DEK or end > len(ciphertext):
            raise CredentialsTampered("sealed credentials have a truncated ciphertext")
        data_key = self._kek.decrypt(ciphertext[_DEK_LENGTH.size : end], b"")
        wrapped = self._kek.encrypt(data_key, b"")
        rewrapped = replace(
            sealed, ciphertext=_DEK_LENGTH.pack(len(wrapped)) + wrapped + ciphertext[end:]
        )
        return {**rewrapped.to_document(), "rewrappedAt": self._clock()}

    def stats(self) -> VaultStats:
        with self._lock:
            return VaultStats(self._kek.counts(), self._opens, self._remembered)


def open_stored(
    doc: Mapping[str, Any], uid: str, path: str, vault: Callable[[], Vault]
) -> Credentials:
    """The credentials a ``secrets/alpaca`` document holds: opened with ``vault()`` when sealed
    (built only then), parsed as the client wrote them when the trigger has not sealed them
    yet."""
    return vault().open(doc, uid, path) if is_sealed(doc) else parse_plaintext(doc)
