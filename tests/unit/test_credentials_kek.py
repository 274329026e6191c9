"""The key-encryption key: which one serves, the local development keyset (made on first use
by racing processes, rotated, failing on demand) and Cloud KMS through Tink's ``gcpkms``
(with a fake KMS client), with every failure mapped onto the retry contract."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import tink
from google.api_core import exceptions as api_exceptions
from google.auth import exceptions as auth_exceptions

from agenttrader.credentials import CloudKmsKek, LocalKek, MeteredKek, OAuthToken, Vault, kek_for
from agenttrader.credentials.kek import KMS_TIMEOUT_SECONDS, classify
from agenttrader.credentials.local_kek import (
    DEFAULT_DIRECTORY,
    KEYSET_FILE,
    outage_flag,
    rotate,
    set_outage,
)
from agenttrader.errors import CredentialsTampered, KmsUnavailable
from agenttrader.settings import Settings

REPOSITORY = Path(__file__).resolve().parents[2]
PROJECT = "demo-kek"
URI = "gcp-kms://projects/p/locations/global/keyRings/agenttrader/cryptoKeys/credentials"
TOKEN = OAuthToken(
    access_token="0d6f3b2e-9c11-4c8e-9a51-7f0c4a4e1d2b", base_url="https://api.alpaca.markets"
)
UID = "tenant-0000000000000000000000"
PATH = f"users/{UID}/secrets/alpaca"
DEK = b"d" * 32


def _keyset(directory: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((directory / KEYSET_FILE).read_text())
    return loaded


# --- the local development KEK ----------------------------------------------------------------


def test_the_local_keyset_lives_in_the_ignored_local_directory() -> None:
    assert DEFAULT_DIRECTORY == REPOSITORY / ".local" / "credentials"
    assert ".local/" in (REPOSITORY / ".gitignore").read_text().splitlines()


def test_the_local_keyset_is_made_on_first_use_owner_only(tmp_path: Path) -> None:
    directory = tmp_path / "credentials"
    kek = LocalKek(PROJECT, directory)
    assert not directory.exists()  # nothing at construction

    wrapped = kek.encrypt(DEK, b"")

    assert stat.S_IMODE((directory / KEYSET_FILE).stat().st_mode) == 0o600
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert len(_keyset(directory)["key"]) == 1
    assert LocalKek(PROJECT, directory).decrypt(wrapped, b"") == DEK
    assert [p.name for p in directory.iterdir()] == [KEYSET_FILE]  # no temporary file left


_RACER = """
import sys, time
from pathlib import Path
from agenttrader.credentials import LocalKek
directory, ready, go = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
kek = LocalKek("demo-kek", directory)
ready.touch()
while not go.exists():
    time.sleep(0.0005)
print(kek.encrypt(b"d" * 32, b"").hex())
"""


def test_processes_starting_at_once_agree_on_one_keyset(tmp_path: Path) -> None:
    directory, go = tmp_path / "credentials", tmp_path / "go"
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", _RACER, str(directory), str(tmp_path / f"ready-{n}"), str(go)],
            cwd=REPOSITORY,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(4)
    ]
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("ready-*"))) < len(racers) and time.monotonic() < deadline:
        time.sleep(0.01)
    go.touch()
    outputs = [racer.communicate(timeout=60) for racer in racers]

    assert [racer.returncode for racer in racers] == [0] * len(racers), outputs
    keyset = _keyset(directory)
    assert len(keyset["key"]) == 1  # one winner, every process used it
    kek = LocalKek(PROJECT, directory)
    assert all(kek.decrypt(bytes.fromhex(out), b"") == DEK for out, _ in outputs)
    assert [p.name for p in directory.iterdir()] == [KEYSET_FILE]


def test_an_existing_keyset_is_used_never_replaced(tmp_path: Path) -> None:
    first = LocalKek(PROJECT, tmp_path)
    wrapped = first.encrypt(DEK, b"")
    before = (tmp_path / KEYSET_FILE).read_bytes()

    again = LocalKek("demo-other-project", tmp_path)

    assert again.decrypt(wrapped, b"") == DEK
    assert (tmp_path / KEYSET_FILE).read_bytes() == before


def test_rotation_adds_a_primary_that_running_instances_pick_up(tmp_path: Path) -> None:
    running = LocalKek(PROJECT, tmp_path)
    old = running.encrypt(DEK, b"")

    new_id = rotate(tmp_path)
    new = running.encrypt(DEK, b"")

    keyset = _keyset(tmp_path)
    assert keyset["primaryKeyId"] == new_id and len(keyset["key"]) == 2
    assert int.from_bytes(new[1:5], "big") == new_id != int.from_bytes(old[1:5], "big")
    assert running.decrypt(old, b"") == running.decrypt(new, b"") == DEK
    assert stat.S_IMODE((tmp_path / KEYSET_FILE).stat().st_mode) == 0o600


def test_rotation_makes_the_keyset_if_there_is_none(tmp_path: Path) -> None:
    new_id = rotate(tmp_path)

    assert _keyset(tmp_path)["primaryKeyId"] == new_id
    assert len(_keyset(tmp_path)["key"]) == 2


def test_an_outage_on_demand_fails_only_that_project_retryably(tmp_path: Path) -> None:
    down, other = LocalKek(PROJECT, tmp_path), LocalKek("demo-unaffected", tmp_path)
    wrapped = other.encrypt(DEK, b"")

    set_outage(PROJECT, True, tmp_path)
    with pytest.raises(KmsUnavailable):
        down.encrypt(DEK, b"")
    with pytest.raises(KmsUnavailable):
        down.decrypt(wrapped, b"")
    unaffected = other.decrypt(wrapped, b"")
    set_outage(PROJECT, False, tmp_path)
    set_outage(PROJECT, False, tmp_path)  # ending an outage twice is harmless

    assert unaffected == DEK
    assert down.decrypt(wrapped, b"") == DEK


def test_an_outage_before_first_use_creates_nothing(tmp_path: Path) -> None:
    directory = tmp_path / "credentials"
    set_outage(PROJECT, True, directory)

    with pytest.raises(KmsUnavailable):
        LocalKek(PROJECT, directory).encrypt(DEK, b"")

    assert not (directory / KEYSET_FILE).exists()


@pytest.mark.parametrize("project", ["", "../escape", "a/b", ".hidden", "x" * 101])
def test_outage_flags_are_named_by_project_ids_only(tmp_path: Path, project: str) -> None:
    with pytest.raises(ValueError, match="project"):
        outage_flag(project, tmp_path)


# --- failures onto the retry contract ---------------------------------------------------------


def _from_gcpkms(error: Exception) -> tink.TinkError:
    """What Tink's gcpkms AEAD raises: ``raise tink.TinkError(e)`` inside ``except``."""
    try:
        raise error
    except Exception as exc:  # noqa: BLE001 - the shape under test
        try:
            raise tink.TinkError(exc)  # as tink does: implicitly chained
        except tink.TinkError as wrapped:
            return wrapped


@pytest.mark.parametrize(
    ("error", "operation", "expected"),
    [
        (_from_gcpkms(api_exceptions.InvalidArgument("x")), "decrypt", CredentialsTampered),
        (_from_gcpkms(api_exceptions.InvalidArgument("x")), "encrypt", KmsUnavailable),
        (_from_gcpkms(api_exceptions.ServiceUnavailable("x")), "decrypt", KmsUnavailable),
        (_from_gcpkms(api_exceptions.DeadlineExceeded("x")), "decrypt", KmsUnavailable),
        (_from_gcpkms(api_exceptions.TooManyRequests("x")), "encrypt", KmsUnavailable),
        (_from_gcpkms(api_exceptions.ResourceExhausted("x")), "decrypt", KmsUnavailable),
        (_from_gcpkms(api_exceptions.PermissionDenied("x")), "decrypt", KmsUnavailable),
        (_from_gcpkms(api_exceptions.FailedPrecondition("x")), "decrypt", KmsUnavailable),
        (_from_gcpkms(api_exceptions.InternalServerError("x")), "encrypt", KmsUnavailable),
        (_from_gcpkms(api_exceptions.RetryError("x", None)), "decrypt", KmsUnavailable),
        (auth_exceptions.DefaultCredentialsError("x"), "encrypt", KmsUnavailable),
        (tink.TinkError("Decryption failed."), "decrypt", CredentialsTampered),
        (tink.TinkError("failed"), "encrypt", KmsUnavailable),
        (KmsUnavailable("outage"), "decrypt", KmsUnavailable),
    ],
)
def test_kek_failures_map_onto_the_retry_contract(
    error: BaseException, operation: Any, expected: type[Exception]
) -> None:
    assert type(classify(error, operation)) is expected


def test_what_is_not_a_kek_failure_is_not_classified() -> None:
    assert classify(ValueError("bug"), "decrypt") is None


def test_messages_name_the_failure_class_not_its_text() -> None:
    error = classify(_from_gcpkms(api_exceptions.ServiceUnavailable("echo-me-not")), "decrypt")

    assert str(error) == "Cloud KMS could not decrypt (ServiceUnavailable)"


class _Failing:
    def encrypt(self, plaintext: bytes, associated_data: bytes) -> bytes:
        raise ValueError("a bug")

    def decrypt(self, ciphertext: bytes, associated_data: bytes) -> bytes:
        raise _from_gcpkms(api_exceptions.InvalidArgument("x"))


def test_the_metered_kek_counts_attempts_and_raises_contract_errors_only() -> None:
    metered = MeteredKek(_Failing())  # type: ignore[arg-type]

    with pytest.raises(ValueError, match="a bug"):
        metered.encrypt(DEK, b"")
    with pytest.raises(CredentialsTampered) as raised:
        metered.decrypt(b"wrapped", b"")

    assert raised.value.__cause__ is None and raised.value.__suppress_context__
    assert metered.counts() == (1, 1)


# --- Cloud KMS through tink.integration.gcpkms ------------------------------------------------


@dataclass
class _Response:
    ciphertext: bytes = b""
    plaintext: bytes = b""


@dataclass
class FakeKms:
    """A ``kms_v1.KeyManagementServiceClient`` stand-in: wraps by prefixing a tag, records
    requests, or raises ``failure``."""

    failure: Exception | None = None
    requests: list[tuple[str, str, Any, Any]] = field(default_factory=list)

    def encrypt(self, request: dict[str, Any], retry: Any, timeout: Any) -> _Response:
        self.requests.append(("encrypt", request["name"], retry, timeout))
        if self.failure is not None:
            raise self.failure
        return _Response(ciphertext=b"kms:" + request["plaintext"][::-1])

    def decrypt(self, request: dict[str, Any], retry: Any, timeout: Any) -> _Response:
        self.requests.append(("decrypt", request["name"], retry, timeout))
        if self.failure is not None:
            raise self.failure
        if not request["ciphertext"].startswith(b"kms:"):
            raise api_exceptions.InvalidArgument("Decryption failed")
        return _Response(plaintext=request["ciphertext"][4:][::-1])


def test_cloud_kms_is_asked_with_the_key_name_and_built_at_first_use() -> None:
    kms, built = FakeKms(), []

    def factory() -> FakeKms:
        built.append(1)
        return kms

    vault = Vault(CloudKmsKek(URI, client_factory=factory))
    assert built == []  # nothing contacted or built yet
    doc = vault.seal(TOKEN, UID, PATH, None)
    opened = vault.open(doc, UID, PATH)

    assert opened == TOKEN
    assert built == [1]
    key_name = URI.removeprefix("gcp-kms://")
    assert kms.requests == [  # one bounded attempt each: Pub/Sub owns the retries
        ("encrypt", key_name, None, KMS_TIMEOUT_SECONDS),
        ("decrypt", key_name, None, KMS_TIMEOUT_SECONDS),
    ]
    assert vault.stats().kek == (1, 1)


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        (api_exceptions.ServiceUnavailable("down"), KmsUnavailable),
        (api_exceptions.TooManyRequests("quota"), KmsUnavailable),
        (api_exceptions.PermissionDenied("no decrypter role"), KmsUnavailable),
        (api_exceptions.InvalidArgument("Decryption failed"), CredentialsTampered),
    ],
)
def test_cloud_kms_failures_when_opening(failure: Exception, expected: type[Exception]) -> None:
    kms = FakeKms()
    vault = Vault(CloudKmsKek(URI, client_factory=lambda: kms))
    doc = vault.seal(TOKEN, UID, PATH, None)

    kms.failure = failure
    with pytest.raises(expected) as raised:
        Vault(CloudKmsKek(URI, client_factory=lambda: kms)).open(doc, UID, PATH)

    assert str(failure) not in str(raised.value)


def test_a_wrapped_key_kms_refuses_is_tampering() -> None:
    vault = Vault(CloudKmsKek(URI, client_factory=FakeKms))
    doc = vault.seal(TOKEN, UID, PATH, None)
    ciphertext = doc["ciphertext"]
    forged = ciphertext[:4] + b"KMS:" + ciphertext[8:]  # not what this KMS wrapped

    with pytest.raises(CredentialsTampered):
        vault.open({**doc, "ciphertext": forged}, UID, PATH)


def test_the_kms_client_cannot_be_built_is_retryable(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_credentials() -> None:
        raise auth_exceptions.DefaultCredentialsError("no application default credentials")

    with pytest.raises(KmsUnavailable, match=r"\(DefaultCredentialsError\)"):
        Vault(CloudKmsKek(URI, client_factory=no_credentials)).seal(TOKEN, UID, PATH, None)


# --- which KEK serves -------------------------------------------------------------------------


def test_the_uri_selects_cloud_kms_without_contacting_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from google.cloud import kms_v1

    def unreachable(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the KMS client was built at construction")

    monkeypatch.setattr(kms_v1, "KeyManagementServiceClient", unreachable)
    settings = Settings.from_env({"CREDENTIALS_KEK_URI": URI})

    assert isinstance(kek_for(settings), CloudKmsKek)
    Vault.from_settings(settings)


def test_the_firestore_emulator_selects_the_local_kek() -> None:
    settings = Settings.from_env({"FIRESTORE_EMULATOR_HOST": "127.0.0.1:1"})

    assert isinstance(kek_for(settings), LocalKek)


def test_neither_refuses_naming_the_variable() -> None:
    with pytest.raises(ValueError, match="CREDENTIALS_KEK_URI"):
        Vault.from_settings(Settings.from_env({"PUBSUB_EMULATOR_HOST": "127.0.0.1:1"}))


def test_a_real_kms_client_that_cannot_reach_kms_fails_fast_and_retryably() -> None:
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import kms_v1

    def unreachable() -> kms_v1.KeyManagementServiceClient:
        return kms_v1.KeyManagementServiceClient(
            credentials=AnonymousCredentials(),
            client_options=ClientOptions(api_endpoint="127.0.0.1:1"),
        )

    vault = Vault(CloudKmsKek(URI, client_factory=unreachable))
    started = time.monotonic()
    with pytest.raises(KmsUnavailable, match=r"\(ServiceUnavailable\)"):
        vault.seal(TOKEN, UID, PATH, None)

    assert time.monotonic() - started < KMS_TIMEOUT_SECONDS  # one attempt, no 60 s of retries
