"""Firestore paths are spelled as in docs/DESIGN.md's data model; uids cannot escape a subtree."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from agenttrader import paths

UID = "user-1"


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (lambda: paths.user_doc(UID), "users/user-1"),
        (lambda: paths.alpaca_config_doc(UID), "users/user-1/config/alpaca"),
        (lambda: paths.alpaca_secret_doc(UID), "users/user-1/secrets/alpaca"),
        (lambda: paths.trading_status_doc(UID), "users/user-1/status/trading"),
        (lambda: paths.last_sync_error_doc(UID), "users/user-1/status/last_sync_error"),
        (lambda: paths.sync_state_doc(UID), "users/user-1/status/sync"),
        (lambda: paths.snapshot_doc(UID), "users/user-1/data/snapshot"),
        (lambda: paths.trading_signals_collection(UID), "users/user-1/trading_signals"),
        (lambda: paths.trading_signal_doc(UID, "sig-1"), "users/user-1/trading_signals/sig-1"),
        (lambda: paths.audit_collection(UID), "users/user-1/audit"),
        (lambda: paths.usage_doc(UID, "2024-05-17"), "users/user-1/usage/2024-05-17"),
        (lambda: paths.LAST_PULSE_DOC, "ops/last_pulse"),
        (lambda: paths.LEGACY_SNAPSHOT_DOC, "alpacaAccounts/snapshot"),
        (lambda: paths.pulse_doc("p-1"), "ops/pulses/history/p-1"),
        (lambda: paths.pulse_shard_doc("p-1", 3), "ops/pulses/history/p-1/shards/3"),
    ],
)
def test_paths_match_the_data_model(build: Callable[[], str], expected: str) -> None:
    assert build() == expected


@pytest.mark.parametrize(
    "path",
    [
        paths.user_doc(UID),
        paths.alpaca_config_doc(UID),
        paths.alpaca_secret_doc(UID),
        paths.trading_status_doc(UID),
        paths.last_sync_error_doc(UID),
        paths.sync_state_doc(UID),
        paths.snapshot_doc(UID),
        paths.trading_signal_doc(UID, "s"),
        paths.usage_doc(UID, "2024-01-01"),
        paths.LAST_PULSE_DOC,
        paths.LEGACY_SNAPSHOT_DOC,
        paths.pulse_doc("p"),
        paths.pulse_shard_doc("p", 0),
    ],
)
def test_document_paths_have_an_even_number_of_segments(path: str) -> None:
    assert len(path.split("/")) % 2 == 0


@pytest.mark.parametrize(
    "path",
    [paths.trading_signals_collection(UID), paths.audit_collection(UID), paths.PULSES_COLLECTION],
)
def test_collection_paths_have_an_odd_number_of_segments(path: str) -> None:
    assert len(path.split("/")) % 2 == 1


@pytest.mark.parametrize(
    "uid",
    [
        "a",
        "A-b_c:d.e@f",
        "x" * 128,
        "Zx9",
        "...",
        "a..b",
        "user@example.com",
        # Underscores at one end only, or too few to match Firestore's reserved __.*__:
        "__x",
        "x__",
        "_x_",
        "___",
        "a__b__",
    ],
)
def test_valid_uids(uid: str) -> None:
    assert paths.validate_uid(uid) == uid
    assert paths.alpaca_secret_doc(uid) == f"users/{uid}/secrets/alpaca"


@pytest.mark.parametrize(
    "uid",
    [
        "",
        ".",
        "..",
        "a/b",
        "../admin",
        "x" * 129,
        "a b",
        "a\nb",
        "a\tb",
        "tab\t",
        "ü",
        "a%2Fb",
        "a\\b",
        "a*",
        # Reserved by Firestore (__.*__): refused whatever the request, so never a user.
        "__x__",
        "____",
        "__.__",
        "__a:b@c__",
        "__" + "x" * 124 + "__",
        None,
        123,
        b"user",
        ["user"],
    ],
)
def test_invalid_uids_are_refused(uid: object) -> None:
    with pytest.raises(ValueError, match="invalid uid"):
        paths.validate_uid(uid)
    with pytest.raises(ValueError, match="invalid uid"):
        paths.alpaca_secret_doc(uid)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "builder",
    [
        paths.user_doc,
        paths.alpaca_config_doc,
        paths.alpaca_secret_doc,
        paths.trading_status_doc,
        paths.last_sync_error_doc,
        paths.sync_state_doc,
        paths.snapshot_doc,
        paths.trading_signals_collection,
        paths.audit_collection,
        lambda uid: paths.trading_signal_doc(uid, "s"),
        lambda uid: paths.usage_doc(uid, "2024-01-01"),
    ],
)
def test_every_user_builder_validates_the_uid(builder: Callable[[str], str]) -> None:
    with pytest.raises(ValueError, match="invalid uid"):
        builder("other/secrets/alpaca")


def test_invalid_uid_error_is_truncated() -> None:
    with pytest.raises(ValueError) as info:
        paths.validate_uid("/" * 1000)

    assert len(str(info.value)) < 200


@pytest.mark.parametrize(
    ("path", "uid"),
    [
        ("users/user-1", "user-1"),
        ("users/user-1/secrets/alpaca", "user-1"),
        ("users/a:b@c/data/snapshot", "a:b@c"),
        (paths.trading_signal_doc("u9", "s1"), "u9"),
    ],
)
def test_uid_of(path: str, uid: str) -> None:
    assert paths.uid_of(path) == uid


@pytest.mark.parametrize(
    "path",
    [
        "users",
        "",
        "ops/last_pulse",
        "alpacaAccounts/snapshot",
        "Users/user-1",
        "/users/user-1",
        "users//secrets/alpaca",
        "users/../secrets/alpaca",
        "users/./x",
        "xusers/user-1",
    ],
)
def test_uid_of_refuses_other_paths(path: str) -> None:
    with pytest.raises(ValueError):
        paths.uid_of(path)
