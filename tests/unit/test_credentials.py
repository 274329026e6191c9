"""Credentials sealed at rest: the sealed form, opening it only where it was sealed, the
retry contract of its failures, re-wrapping after a KEK rotation, and no secret anywhere.

Runs the real Tink envelope over the local development KEK in a temporary directory.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from agenttrader.credentials import (
    PLAINTEXT_FIELDS,
    AlpacaKeys,
    Credentials,
    KekCounts,
    LocalKek,
    OAuthToken,
    Vault,
    is_sealed,
    parse_plaintext,
)
from agenttrader.credentials.local_kek import rotate, set_outage
from agenttrader.credentials.sealed import associated_data
from agenttrader.errors import (
    CredentialsTampered,
    InvalidKeys,
    KmsUnavailable,
    MissingKeys,
    PermanentError,
    RetryableError,
)

PROJECT = "demo-credentials"
UID = "tenant-a-0000000000000000000"
PATH = f"users/{UID}/secrets/alpaca"
OTHER_UID = "tenant-b-0000000000000000000"
PAPER = "https://paper-api.alpaca.markets"
LIVE = "https://api.alpaca.markets"
SEALED_AT = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
VERSION = "1764504000000000"

KEYS = AlpacaKeys(
    key_id="PKTESTKEY0000000WXYZ", secret_key="S3cretValue0123456789abcdefABCDEF", base_url=PAPER
)
TOKEN = OAuthToken(access_token="7f0c4a4e-1d2b-4c8e-9a51-0d6f3b2e9c11", base_url=LIVE)
SECRETS = (KEYS.key_id, KEYS.secret_key, TOKEN.access_token)
SEALED_FIELDS = {
    "sealed",
    "auth",
    "ciphertext",
    "key_id_hint",
    "base_url",
    "sealedAt",
    "keys_version",
}


@pytest.fixture
def kek_dir(tmp_path: Path) -> Path:
    return tmp_path / "credentials"


@pytest.fixture
def make_vault(kek_dir: Path) -> Callable[..., Vault]:
    def make(**kwargs: Any) -> Vault:
        return Vault(LocalKek(PROJECT, kek_dir), clock=lambda: SEALED_AT, **kwargs)

    return make


@pytest.fixture
def vault(make_vault: Callable[..., Vault]) -> Vault:
    return make_vault()


# --- the sealed form ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("credentials", "auth", "hint"), [(KEYS, "keys", "WXYZ"), (TOKEN, "oauth", "9c11")]
)
def test_seal_then_open_gives_the_credentials_back(
    vault: Vault, credentials: Credentials, auth: str, hint: str
) -> None:
    doc = vault.seal(credentials, UID, PATH, VERSION)

    assert set(doc) == SEALED_FIELDS
    assert doc["sealed"] is True and is_sealed(doc)
    assert (doc["auth"], doc["key_id_hint"], doc["base_url"]) == (auth, hint, credentials.base_url)
    assert (doc["sealedAt"], doc["keys_version"]) == (SEALED_AT, VERSION)
    assert isinstance(doc["ciphertext"], bytes)
    assert not set(PLAINTEXT_FIELDS) & set(doc)
    assert vault.open(doc, UID, PATH) == credentials


def test_keys_version_may_be_absent(vault: Vault) -> None:
    doc = vault.seal(KEYS, UID, PATH, None)

    assert doc["keys_version"] is None
    assert vault.open(doc, UID, PATH) == KEYS


@pytest.mark.parametrize("credentials", [KEYS, TOKEN])
def test_no_secret_value_is_left_in_the_sealed_document(
    vault: Vault, credentials: Credentials
) -> None:
    doc = vault.seal(credentials, UID, PATH, VERSION)

    for secret in SECRETS:
        assert secret.encode() not in doc["ciphertext"]
        assert secret not in repr(doc)
        assert all(secret not in value for value in doc.values() if isinstance(value, str))


def test_every_seal_draws_a_new_data_key(vault: Vault) -> None:
    first, second = (vault.seal(KEYS, UID, PATH, VERSION) for _ in range(2))

    assert first["ciphertext"] != second["ciphertext"]
    (length,) = struct.unpack(">I", first["ciphertext"][:4])
    assert first["ciphertext"][4 : 4 + length] != second["ciphertext"][4 : 4 + length]
    assert vault.open(first, UID, PATH) == vault.open(second, UID, PATH) == KEYS


@pytest.mark.parametrize(
    "doc",
    [
        None,
        {},
        {"key_id": KEYS.key_id, "secret_key": KEYS.secret_key, "base_url": PAPER},
        {"sealed": "true", "auth": "keys", "ciphertext": b"x", "key_id_hint": "WXYZ"},
    ],
)
def test_is_sealed_only_for_the_sealed_form(doc: dict[str, Any] | None) -> None:
    assert is_sealed(doc) is False


def test_associated_data_binds_uid_and_path_unambiguously() -> None:
    assert associated_data("a", "b/c") != associated_data("a/b", "c")
    assert associated_data(UID, PATH) != associated_data(OTHER_UID, PATH)


# --- fails closed: a permanent error, never credentials ---------------------------------------


@pytest.mark.parametrize(
    ("uid", "path"),
    [
        (OTHER_UID, f"users/{OTHER_UID}/secrets/alpaca"),  # copied into another tenant's document
        (OTHER_UID, PATH),
        (UID, f"users/{OTHER_UID}/secrets/alpaca"),
        (UID, f"users/{UID}/secrets/other"),
        (UID, PATH + "/"),
    ],
)
def test_a_moved_ciphertext_does_not_open(vault: Vault, uid: str, path: str) -> None:
    doc = vault.seal(KEYS, UID, PATH, VERSION)
    vault.open(doc, UID, PATH)  # remembered where it belongs: no help elsewhere

    with pytest.raises(CredentialsTampered) as raised:
        vault.open(doc, uid, path)

    assert isinstance(raised.value, PermanentError)
    assert raised.value.error_class == "CredentialsTampered"


def _flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


@pytest.mark.parametrize(
    "alter",
    [
        pytest.param(lambda c: _flip(c, 10), id="wrapped data key"),
        pytest.param(lambda c: _flip(c, len(c) - 1), id="payload tag"),
        pytest.param(lambda c: _flip(c, len(c) - 30), id="payload"),
        pytest.param(lambda c: _flip(c, 0), id="length prefix"),
        pytest.param(lambda c: c[:3], id="shorter than the prefix"),
        pytest.param(lambda c: c[:-1], id="truncated"),
        pytest.param(lambda c: c + b"\x00", id="extended"),
    ],
)
def test_an_altered_ciphertext_does_not_open(vault: Vault, alter: Callable[[bytes], bytes]) -> None:
    doc = vault.seal(KEYS, UID, PATH, VERSION)

    with pytest.raises(CredentialsTampered):
        vault.open({**doc, "ciphertext": alter(doc["ciphertext"])}, UID, PATH)


@pytest.mark.parametrize(
    "edit",
    [
        {"auth": "oauth"},
        {"base_url": LIVE},
        {"base_url": "https://paper-api.alpaca.markets/v2"},
    ],
)
def test_clear_fields_edited_around_the_ciphertext_fail_closed(
    vault: Vault, edit: dict[str, str]
) -> None:
    doc = vault.seal(KEYS, UID, PATH, VERSION)
    vault.open(doc, UID, PATH)  # and remembered: the memory checks the fields too

    with pytest.raises(CredentialsTampered):
        vault.open({**doc, **edit}, UID, PATH)


def test_an_oauth_ciphertext_does_not_open_as_keys(vault: Vault) -> None:
    keys_doc = vault.seal(KEYS, UID, PATH, VERSION)
    oauth_doc = vault.seal(TOKEN, UID, PATH, VERSION)

    with pytest.raises(CredentialsTampered):
        vault.open({**keys_doc, "ciphertext": oauth_doc["ciphertext"]}, UID, PATH)


@pytest.mark.parametrize(
    "edit",
    [
        {"sealed": False},
        {"auth": "basic"},
        {"ciphertext": "not bytes"},
        {"ciphertext": b""},
        {"key_id_hint": None},
        {"base_url": None},
        {"sealedAt": "2026-11-30"},
        {"keys_version": 17},
    ],
)
def test_a_malformed_sealed_document_fails_closed(vault: Vault, edit: dict[str, Any]) -> None:
    doc = {**vault.seal(KEYS, UID, PATH, VERSION), **edit}

    with pytest.raises(CredentialsTampered):
        vault.open(doc, UID, PATH)
    with pytest.raises(CredentialsTampered):
        vault.rewrap(doc)


@pytest.mark.parametrize("doc", [None, {}, {"key_id": KEYS.key_id, "base_url": PAPER}])
def test_opening_what_is_not_sealed_fails_closed(vault: Vault, doc: dict[str, Any] | None) -> None:
    with pytest.raises(CredentialsTampered, match="not sealed"):
        vault.open(doc, UID, PATH)


def test_a_ciphertext_of_another_kek_does_not_open(
    vault: Vault, tmp_path: Path, kek_dir: Path
) -> None:
    elsewhere = Vault(LocalKek(PROJECT, tmp_path / "another-checkout"))
    doc = elsewhere.seal(KEYS, UID, PATH, VERSION)

    with pytest.raises(CredentialsTampered):
        vault.open(doc, UID, PATH)


# --- a KEK outage is retryable, and never a verdict on the credentials ------------------------


def test_a_kek_outage_is_retryable_and_passes(vault: Vault, kek_dir: Path) -> None:
    remembered = vault.seal(KEYS, UID, PATH, VERSION)
    vault.open(remembered, UID, PATH)
    cold = vault.seal(TOKEN, UID, PATH, VERSION)

    set_outage(PROJECT, True, kek_dir)
    with pytest.raises(KmsUnavailable) as sealing:
        vault.seal(KEYS, UID, PATH, VERSION)
    with pytest.raises(KmsUnavailable) as opening:
        vault.open(cold, UID, PATH)
    with pytest.raises(KmsUnavailable):
        vault.rewrap(cold)
    warm = vault.open(remembered, UID, PATH)  # already opened: no KEK needed
    set_outage(PROJECT, False, kek_dir)

    assert isinstance(sealing.value, RetryableError) and isinstance(opening.value, RetryableError)
    assert warm == KEYS
    assert vault.open(cold, UID, PATH) == TOKEN


# --- once per credential, not once per sync ---------------------------------------------------


def test_opening_the_same_ciphertext_again_asks_the_kek_once(vault: Vault) -> None:
    doc = vault.seal(KEYS, UID, PATH, VERSION)

    opened = [vault.open(doc, UID, PATH) for _ in range(5)]

    stats = vault.stats()
    assert opened == [KEYS] * 5
    assert (stats.kek.encrypt, stats.kek.decrypt, stats.kek.total) == (1, 1, 2)
    assert (stats.opens, stats.remembered) == (5, 4)


def test_a_new_seal_is_opened_anew_and_memory_is_bounded(make_vault: Callable[..., Vault]) -> None:
    vault = make_vault(memo_capacity=2)
    docs = [vault.seal(KEYS, UID, PATH, str(n)) for n in range(3)]

    for doc in docs:
        vault.open(doc, UID, PATH)
    vault.open(docs[2], UID, PATH)  # remembered
    vault.open(docs[0], UID, PATH)  # forgotten (least recently used): opened again

    assert vault.stats().kek.decrypt == 4
    assert vault.stats().remembered == 1


def test_threads_seal_and_open_at_once(vault: Vault) -> None:
    def round_trip(n: int) -> Credentials:
        uid = f"tenant-{n:04d}"
        path = f"users/{uid}/secrets/alpaca"
        doc = vault.seal(TOKEN if n % 2 else KEYS, uid, path, str(n))
        vault.open(doc, uid, path)
        return vault.open(doc, uid, path)

    with ThreadPoolExecutor(max_workers=8) as pool:
        opened = list(pool.map(round_trip, range(200)))

    assert opened == [TOKEN if n % 2 else KEYS for n in range(200)]
    assert vault.stats() == (KekCounts(200, 200), 400, 200)


# --- rotation: re-wrapping data keys under the new primary ------------------------------------


def _wrapped_key_id(ciphertext: bytes) -> int:
    """The Tink key id prefixed to the wrapped data key (local keyset, TINK output prefix)."""
    assert ciphertext[4] == 0x01
    return int.from_bytes(ciphertext[5:9], "big")


def _payload(ciphertext: bytes) -> bytes:
    (length,) = struct.unpack(">I", ciphertext[:4])
    return ciphertext[4 + length :]


def test_rewrap_moves_the_data_key_to_the_new_primary(
    vault: Vault, make_vault: Callable[..., Vault], kek_dir: Path
) -> None:
    doc = vault.seal(KEYS, UID, PATH, VERSION)
    old_key = _wrapped_key_id(doc["ciphertext"])
    before = vault.stats().kek

    new_key = rotate(kek_dir)
    rewrapped = vault.rewrap(doc)

    assert new_key != old_key
    assert _wrapped_key_id(rewrapped["ciphertext"]) == new_key
    assert _payload(rewrapped["ciphertext"]) == _payload(doc["ciphertext"])  # not re-encrypted
    assert rewrapped.pop("rewrappedAt") == SEALED_AT
    assert {k: v for k, v in rewrapped.items() if k != "ciphertext"} == {
        k: v for k, v in doc.items() if k != "ciphertext"
    }
    after = vault.stats().kek
    assert (after.decrypt - before.decrypt, after.encrypt - before.encrypt) == (1, 1)
    fresh = make_vault()
    assert fresh.open(rewrapped, UID, PATH) == KEYS
    assert fresh.open(doc, UID, PATH) == KEYS  # the old key still unwraps until retired
    assert _wrapped_key_id(fresh.seal(TOKEN, UID, PATH, VERSION)["ciphertext"]) == new_key


def test_rewrap_keeps_the_binding_to_tenant_and_path(vault: Vault, kek_dir: Path) -> None:
    rotate(kek_dir)
    rewrapped = vault.rewrap(vault.seal(KEYS, UID, PATH, VERSION))

    with pytest.raises(CredentialsTampered):
        vault.open(rewrapped, OTHER_UID, f"users/{OTHER_UID}/secrets/alpaca")


@pytest.mark.parametrize(
    "alter",
    [
        pytest.param(lambda c: _flip(c, 10), id="wrapped data key"),
        pytest.param(lambda c: c[:3], id="shorter than the prefix"),
        pytest.param(lambda c: b"\xff\xff\xff\xff" + c[4:], id="length beyond the end"),
    ],
)
def test_rewrap_of_an_altered_ciphertext_fails_closed(
    vault: Vault, alter: Callable[[bytes], bytes]
) -> None:
    doc = vault.seal(KEYS, UID, PATH, VERSION)

    with pytest.raises(CredentialsTampered):
        vault.rewrap({**doc, "ciphertext": alter(doc["ciphertext"])})


# --- the clear model --------------------------------------------------------------------------


def test_plaintext_parsing_is_the_key_validation() -> None:
    doc = {"key_id": KEYS.key_id, "secret_key": KEYS.secret_key, "base_url": PAPER}

    assert parse_plaintext(doc) == KEYS
    with pytest.raises(MissingKeys):
        parse_plaintext({"base_url": PAPER})
    with pytest.raises(InvalidKeys):
        parse_plaintext({**doc, "secret_key": "has a space in it"})


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (None, MissingKeys),
        ({"base_url": LIVE}, MissingKeys),
        ({"access_token": 12345678, "base_url": LIVE}, InvalidKeys),
        ({"access_token": TOKEN.access_token, "base_url": None}, InvalidKeys),
        ({"access_token": "short", "base_url": LIVE}, InvalidKeys),
        ({"access_token": "has a space in it", "base_url": LIVE}, InvalidKeys),
        ({"access_token": "x" * 4097, "base_url": LIVE}, InvalidKeys),
        ({"access_token": TOKEN.access_token, "base_url": ""}, InvalidKeys),
    ],
)
def test_oauth_tokens_are_validated(data: dict[str, Any] | None, error: type[Exception]) -> None:
    with pytest.raises(error) as raised:
        OAuthToken.from_document(data)

    assert TOKEN.access_token not in str(raised.value)


def test_no_secret_in_repr_str_errors_or_logs(
    vault: Vault, kek_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    for credentials in (KEYS, TOKEN):
        doc = vault.seal(credentials, UID, PATH, VERSION)
        opened = vault.open(doc, UID, PATH)
        texts += [repr(credentials), str(credentials), repr(opened), repr(doc), str(doc)]
        elsewhere = {**doc, "base_url": "https://elsewhere.example"}
        for uid, moved in ((OTHER_UID, doc), (UID, elsewhere)):
            with pytest.raises(CredentialsTampered) as raised:
                vault.open(moved, uid, PATH)
            texts += [str(raised.value), repr(raised.value)]
        set_outage(PROJECT, True, kek_dir)
        with pytest.raises(KmsUnavailable) as failing:
            vault.seal(credentials, UID, PATH, VERSION)
        set_outage(PROJECT, False, kek_dir)
        texts += [str(failing.value), repr(failing.value)]
    texts.append(caplog.text)

    for secret in SECRETS:
        assert not any(secret in text for text in texts), secret


def test_the_cpu_benchmark_runs_and_counts_one_kek_call_per_tenant(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from benchmarks import credentials_cpu

    assert credentials_cpu.main(["--rounds", "40", "--tenants", "5", "--syncs", "20"]) == 0

    out = capsys.readouterr().out
    assert "cold open (new ciphertext)" in out
    assert "for 20 syncs over 5 tenants with unchanged keys: 5 (250 per 1,000 syncs" in out
