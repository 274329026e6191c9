"""The key-encryption key (KEK): which one serves, how its failures are classified, and how
many operations it did.

``CREDENTIALS_KEK_URI`` set → Cloud KMS through ``tink.integration.gcpkms`` (the client is
built at the first operation, never at import); unset with the Firestore emulator → the local
development KEK (:mod:`agenttrader.credentials.local_kek`); unset otherwise → ``ValueError``
naming the variable (:meth:`agenttrader.settings.Settings.credentials_kek`).

Every KEK operation is one Cloud KMS request in production; :class:`MeteredKek` counts them
and maps failures onto the retry contract: a data key that does not unwrap is
``CredentialsTampered`` (permanent), anything else the KEK does wrong is ``KmsUnavailable``
(retryable: outages, throttling, timeouts, refused access, a disabled key version).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Literal, NamedTuple, cast

import tink
from tink import aead

from agenttrader.credentials.local_kek import LocalKek
from agenttrader.errors import AgentTraderError, CredentialsTampered, KmsUnavailable
from agenttrader.settings import Settings

Operation = Literal["encrypt", "decrypt"]

KMS_TIMEOUT_SECONDS = 10.0
"""One Cloud KMS request, one attempt: a slow or failing KMS surfaces as ``KmsUnavailable``
within this time and Pub/Sub retries with backoff (the client library would otherwise retry
for up to 60 s, longer than a sync may take)."""


class KekCounts(NamedTuple):
    """KEK operations since the instance started (Cloud KMS requests, in production)."""

    encrypt: int
    decrypt: int

    @property
    def total(self) -> int:
        return self.encrypt + self.decrypt


def classify(exc: BaseException, operation: Operation) -> AgentTraderError | None:
    """The retry-contract error for a KEK failure; ``None`` for what is not a KEK failure
    (a bug, to be raised as it is). Messages name the failure's class, never its text."""
    if isinstance(exc, AgentTraderError):
        return exc
    from google.api_core import exceptions as api_exceptions
    from google.auth import exceptions as auth_exceptions

    cause: BaseException = exc
    if isinstance(exc, tink.TinkError):
        wrapped = next((a for a in exc.args if isinstance(a, BaseException)), exc.__context__)
        if wrapped is not None:
            cause = wrapped
    if isinstance(cause, api_exceptions.InvalidArgument) and operation == "decrypt":
        return CredentialsTampered("the data key does not unwrap under this deployment's KEK")
    if isinstance(cause, api_exceptions.GoogleAPIError | auth_exceptions.GoogleAuthError):
        return KmsUnavailable(f"Cloud KMS could not {operation} ({type(cause).__name__})")
    if isinstance(exc, tink.TinkError):
        if operation == "decrypt":  # the local keyset holds no key that unwraps it
            return CredentialsTampered("the data key does not unwrap under this deployment's KEK")
        return KmsUnavailable(f"the KEK could not {operation}")
    return None


class MeteredKek(aead.Aead):
    """A KEK that counts its operations and raises only retry-contract errors."""

    def __init__(self, kek: aead.Aead) -> None:
        self._kek = kek
        self._lock = threading.Lock()
        self._counts: dict[Operation, int] = {"encrypt": 0, "decrypt": 0}

    def counts(self) -> KekCounts:
        with self._lock:
            return KekCounts(**self._counts)

    def encrypt(self, plaintext: bytes, associated_data: bytes) -> bytes:
        return self._call("encrypt", self._kek.encrypt, plaintext, associated_data)

    def decrypt(self, ciphertext: bytes, associated_data: bytes) -> bytes:
        return self._call("decrypt", self._kek.decrypt, ciphertext, associated_data)

    def _call(
        self,
        operation: Operation,
        function: Callable[[bytes, bytes], bytes],
        data: bytes,
        associated_data: bytes,
    ) -> bytes:
        with self._lock:
            self._counts[operation] += 1
        try:
            return function(data, associated_data)
        except Exception as exc:  # noqa: BLE001 - classify() hands back what it does not know
            raise _translated(exc, operation) from None


def _translated(exc: Exception, operation: Operation) -> Exception:
    return classify(exc, operation) or exc


class _OneAttempt:
    """The KMS client as Tink's ``gcpkms`` AEAD calls it, each call bounded by
    :data:`KMS_TIMEOUT_SECONDS` and never retried in the client."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def encrypt(self, request: dict[str, Any]) -> Any:
        return self._client.encrypt(request=request, retry=None, timeout=KMS_TIMEOUT_SECONDS)

    def decrypt(self, request: dict[str, Any]) -> Any:
        return self._client.decrypt(request=request, retry=None, timeout=KMS_TIMEOUT_SECONDS)


class CloudKmsKek(aead.Aead):
    """A Cloud KMS CryptoKey through Tink's ``gcpkms`` integration, built at first use.

    ``client_factory`` makes the ``kms_v1.KeyManagementServiceClient`` (tests pass a fake);
    by default it uses the instance's service account. Decrypting needs
    ``roles/cloudkms.cryptoKeyDecrypter``, encrypting ``cryptoKeyEncrypter``.
    """

    def __init__(self, uri: str, client_factory: Callable[[], Any] | None = None) -> None:
        self._uri = uri
        self._client_factory = client_factory
        self._lock = threading.Lock()
        self._aead: aead.Aead | None = None

    def encrypt(self, plaintext: bytes, associated_data: bytes) -> bytes:
        return self._remote().encrypt(plaintext, associated_data)

    def decrypt(self, ciphertext: bytes, associated_data: bytes) -> bytes:
        return self._remote().decrypt(ciphertext, associated_data)

    def _remote(self) -> aead.Aead:
        with self._lock:
            if self._aead is None:
                from tink.integration import gcpkms

                if self._client_factory is None:
                    from google.cloud import kms_v1

                    client = kms_v1.KeyManagementServiceClient()
                else:
                    client = self._client_factory()
                # Duck-typed: Tink's AEAD calls only encrypt(request=…) and decrypt(request=…).
                bounded = cast(Any, _OneAttempt(client))
                kms = gcpkms.new_client(kms_v1_client=bounded, key_uri=self._uri)
                self._aead = kms.get_aead(self._uri)
            return self._aead


def kek_for(settings: Settings) -> aead.Aead:
    """The KEK the settings name (``ValueError`` naming ``CREDENTIALS_KEK_URI`` if none);
    nothing is contacted or created until its first operation."""
    uri = settings.credentials_kek()
    if uri is None:
        return LocalKek(settings.project)
    return CloudKmsKek(uri)
