"""``migrate_legacy_snapshot`` against the Firestore emulator, and its input validation."""

from __future__ import annotations

import base64
import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.cloud import firestore

from accounts.migration import (
    MASKED_PATH,
    looks_like_credential,
    migrate_legacy_snapshot,
    parse_target,
    snapshot_time,
)
from agenttrader import paths
from agenttrader.callable import CallableError, Status
from agenttrader.deps import set_deps
from tests.callable_fixtures import (
    REPO_ROOT,
    FakeTokens,
    call,
    functions_framework_client,
    onboard_tenant,
    synced_snapshot,
)

TARGET = "tenant-7"
ADMIN = "operator-1"
LEGACY_TIME = datetime(2024, 6, 1, 15, 30, tzinfo=UTC)
LEGACY = {
    "syncedAt": "2024-06-01T15:30:00Z",
    "account": {"id": "acc-1", "equity": 1234.5, "status": "ACTIVE"},
    "equity": 1234.5,
    "cash": "200.10",
    "positions": [{"symbol": "SPY", "qty": "2"}],
    "source.version": 3,
    "api_key": "PKLEGACYKEY000000000",
    "secret_key": "legacy-secret",
}


@pytest.fixture
def db(emulator_env: dict[str, str]) -> firestore.Client:
    client = firestore.Client(project=emulator_env["GOOGLE_CLOUD_PROJECT"])
    onboard_tenant(client, TARGET, "t@example.com")
    return client


def legacy(db: firestore.Client, data: dict[str, Any] = LEGACY) -> None:
    db.document(paths.LEGACY_SNAPSHOT_DOC).set(data)


def target_snapshot(db: firestore.Client) -> dict[str, Any]:
    return db.document(paths.snapshot_doc(TARGET)).get().to_dict() or {}


def migrations(db: firestore.Client) -> list[dict[str, Any]]:
    entries = db.collection(paths.audit_collection(TARGET)).stream()
    return [e.to_dict() or {} for e in entries if e.get("action") == "legacy_data_migrated"]


# --- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (None, "targetUserId: is required"),
        ({}, "targetUserId: is required"),
        ({"targetUserId": None}, "targetUserId: is required"),
        ({"targetUserId": 42}, "targetUserId: must be a string"),
        ({"targetUserId": ["u"]}, "targetUserId: must be a string"),
        ({"targetUserId": ""}, "targetUserId: is not a valid user id"),
        ({"targetUserId": "a/b"}, "targetUserId: is not a valid user id"),
        ({"targetUserId": ".."}, "targetUserId: is not a valid user id"),
        ({"targetUserId": "u" * 129}, "targetUserId: is not a valid user id"),
        ({"targetUserId": "u", "force": True}, "unknown field(s): force"),
        ("tenant-7", "data: must be an object"),
    ],
)
def test_invalid_targets(data: Any, message: str) -> None:
    with pytest.raises(CallableError) as raised:
        parse_target(data)
    assert raised.value.status is Status.INVALID_ARGUMENT
    assert raised.value.message.startswith(message)


def test_valid_target() -> None:
    assert parse_target({"targetUserId": "abc-DEF_1:x@y.z"}) == "abc-DEF_1:x@y.z"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"syncedAt": "2024-06-01T15:30:00Z"}, LEGACY_TIME),
        ({"syncedAt": "2024-06-01T15:30:00"}, LEGACY_TIME),
        ({"updatedAt": LEGACY_TIME.timestamp()}, LEGACY_TIME),
        ({"timestamp": LEGACY_TIME.timestamp() * 1000}, LEGACY_TIME),
        ({"syncedAt": datetime(2024, 6, 1, 15, 30)}, LEGACY_TIME),
        ({"syncedAt": "yesterday", "lastUpdated": "2024-06-01T15:30:00+00:00"}, LEGACY_TIME),
        ({"syncedAt": None}, None),
        ({"syncedAt": True}, None),
        ({}, None),
    ],
)
def test_snapshot_time(data: dict[str, Any], expected: datetime | None) -> None:
    assert snapshot_time(data) == expected


# --- the migration ---------------------------------------------------------------------------


def test_not_onboarded_targets_are_not_found(db: firestore.Client) -> None:
    legacy(db)
    db.document(paths.user_doc("half")).set({"email": "h@example.com"})
    for target in ("nobody", "half"):
        with pytest.raises(CallableError) as raised:
            migrate_legacy_snapshot(db, ADMIN, target)
        assert raised.value.status is Status.NOT_FOUND


def test_without_legacy_data_it_is_a_failed_precondition(db: firestore.Client) -> None:
    with pytest.raises(CallableError) as raised:
        migrate_legacy_snapshot(db, ADMIN, TARGET)
    assert raised.value.status is Status.FAILED_PRECONDITION
    assert "alpacaAccounts/snapshot" in raised.value.message


def test_the_legacy_snapshot_replaces_the_placeholder(db: firestore.Client) -> None:
    legacy(db)
    result = migrate_legacy_snapshot(db, ADMIN, TARGET)

    assert result["status"] == "success"
    assert result["targetUserId"] == TARGET
    assert result["alreadyMigrated"] is False
    assert result["migratedFields"] == ["account", "cash", "equity", "positions", "syncedAt"]
    assert result["droppedFields"] == ["api_key", "secret_key", "source.version"]

    snapshot = target_snapshot(db)
    assert snapshot["syncedAt"] == LEGACY_TIME
    assert snapshot["equity"] == "1234.5"  # numbers become the spec's strings
    assert snapshot["cash"] == "200.10"
    assert snapshot["buying_power"] == "0"  # absent everywhere
    assert snapshot["account"] == LEGACY["account"]
    assert snapshot["positions"] == LEGACY["positions"]
    assert "source.version" not in snapshot  # not a snapshot field
    assert snapshot["migratedFrom"] == "alpacaAccounts/snapshot"
    assert isinstance(snapshot["migratedAt"], datetime)
    assert "placeholder" not in snapshot
    assert "api_key" not in snapshot and "secret_key" not in snapshot

    (entry,) = migrations(db)
    assert entry["actor"] == ADMIN
    assert entry["details"]["source"] == "alpacaAccounts/snapshot"


def test_running_twice_changes_nothing_the_second_time(db: firestore.Client) -> None:
    legacy(db)
    first = migrate_legacy_snapshot(db, ADMIN, TARGET)
    written = db.document(paths.snapshot_doc(TARGET)).get().update_time
    second = migrate_legacy_snapshot(db, ADMIN, TARGET)
    assert second["status"] == "success" and second["alreadyMigrated"] is True
    assert second["migratedFields"] == first["migratedFields"]
    assert db.document(paths.snapshot_doc(TARGET)).get().update_time == written
    assert len(migrations(db)) == 1


def test_a_newer_synced_snapshot_is_never_overwritten(db: firestore.Client) -> None:
    legacy(db)
    newer = synced_snapshot(syncedAt=LEGACY_TIME + timedelta(days=30))
    db.document(paths.snapshot_doc(TARGET)).set(newer)
    result = migrate_legacy_snapshot(db, ADMIN, TARGET)
    assert result["status"] == "skipped"
    assert "newer" in result["reason"]
    assert result["migratedFields"] == []
    assert target_snapshot(db)["equity"] == newer["equity"]
    assert migrations(db) == []


def test_an_older_synced_snapshot_is_replaced(db: firestore.Client) -> None:
    legacy(db)
    db.document(paths.snapshot_doc(TARGET)).set(
        synced_snapshot(syncedAt=LEGACY_TIME - timedelta(days=1), **{"stale.field": "x"})
    )
    assert migrate_legacy_snapshot(db, ADMIN, TARGET)["status"] == "success"
    snapshot = target_snapshot(db)
    assert snapshot["equity"] == "1234.5"
    assert "stale.field" not in snapshot  # a dotted name is one field, deleted as such


def test_undated_legacy_data(db: firestore.Client) -> None:
    legacy(db, {"equity": "5"})
    result = migrate_legacy_snapshot(db, ADMIN, TARGET)
    assert result["status"] == "success"
    assert isinstance(target_snapshot(db)["syncedAt"], datetime)  # the migration time

    db.document(paths.snapshot_doc(TARGET)).set(synced_snapshot())
    legacy(db, {"equity": "6"})
    assert migrate_legacy_snapshot(db, ADMIN, TARGET)["status"] == "skipped"


def test_a_changed_legacy_snapshot_is_migrated_again(db: firestore.Client) -> None:
    legacy(db)
    migrate_legacy_snapshot(db, ADMIN, TARGET)
    legacy(db, {**LEGACY, "syncedAt": "2024-07-01T00:00:00Z", "equity": 99})
    again = migrate_legacy_snapshot(db, ADMIN, TARGET)
    assert again["status"] == "success" and again["alreadyMigrated"] is False
    assert target_snapshot(db)["equity"] == "99"
    assert len(migrations(db)) == 2


# --- nothing credential-like is copied ---------------------------------------------------------

KEY_ID = "PKQ7ZD4NKT2XW8YB3M6P"
SECRET = "Jk3ZGLb9R4h0i9g4ZrTl5b3aWqnMbqNCxzqJFrTa"
BASIC = base64.b64encode(f"{KEY_ID}:{SECRET}".encode()).decode()
PEM_BODY = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7"
ACCOUNT_ID = "0d5d8b7e-1f4a-4c1e-9a7e-2b9f3c4d5e6f"
ASSET_ID = "b0b6dd9d-8b9b-48a9-ba46-b9d54906e415"
POISONED: dict[str, Any] = {
    "syncedAt": "2024-06-01T15:30:00Z",
    # Credential names at the top level (not snapshot fields).
    "APCA-API-KEY-ID": KEY_ID,
    "APCA-API-SECRET-KEY": SECRET,
    "private_key": f"-----BEGIN PRIVATE KEY-----\n{PEM_BODY}\n-----END PRIVATE KEY-----",
    "access_key": SECRET,
    "auth": f"Basic {BASIC}",
    "endpoint": f"https://{KEY_ID}:{SECRET}@api.alpaca.markets",
    "notes": f"rotated; secret_key={SECRET}",
    KEY_ID: True,  # a key pasted as a field name
    # Credential values under snapshot field names.
    "equity": "1000.00",
    "cash": f"Bearer {SECRET}",
    "buying_power": f"https://{KEY_ID}:{SECRET}@paper-api.alpaca.markets",
    "account": {
        "id": ACCOUNT_ID,
        "account_number": "PA3AB6C7D8E9",
        "status": "ACTIVE",
        "equity": "1000.00",
        "currency": KEY_ID,
        "sma": SECRET.lower() + "0",
        "secret_key": SECRET,
        "credentials": {"key_id": KEY_ID, "secret_key": SECRET},
        "admin_configurations": {"max_margin_multiplier": "4", "api_key": KEY_ID},
        "user_configurations": {"trade_confirm_email": f"Basic {BASIC}", "no_shorting": False},
    },
    "positions": [
        {"symbol": "SPY", "qty": "2", "asset_id": ASSET_ID, "auth": f"Bearer {SECRET}"},
        {"symbol": "AAPL", "qty": "1", "current_price": SECRET, "usd": {"cost_basis": KEY_ID}},
        {"symbol": f"https://u:{SECRET}@x.example", "qty": "3"},
        f"{KEY_ID}:{SECRET}",
    ],
    "history": [{"key_id": KEY_ID, "secret_key": SECRET}],
}
SECRET_FORMS = [
    form
    for secret in (KEY_ID, SECRET, BASIC, PEM_BODY)
    for form in (secret, secret.lower(), secret.upper())
]


def assert_clean(where: str, text: str) -> None:
    for form in SECRET_FORMS:
        assert form not in text, f"a credential leaked into {where}"


@pytest.mark.parametrize(
    "value",
    [
        KEY_ID,
        "AKQ7ZD4NKT2XW8YB3M6P",
        f"key {KEY_ID} here",
        SECRET,
        SECRET.lower(),
        "0123456789abcdef" * 4,
        f"Basic {BASIC}",
        f"bearer {SECRET[:12]}",
        f"https://{KEY_ID}:{SECRET}@paper-api.alpaca.markets",
        "wss://user:pw@stream.example/v2",
        f"-----BEGIN RSA PRIVATE KEY-----\n{PEM_BODY}",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJl",
        "secret_key=short",
        '{"api_key": "x"}',
        "APCA-API-SECRET-KEY: x",
    ],
)
def test_credential_shapes_are_recognised(value: str) -> None:
    assert looks_like_credential(value)


@pytest.mark.parametrize(
    "value",
    [
        ACCOUNT_ID,
        ACCOUNT_ID.upper(),
        ASSET_ID,
        "PA3AB6C7D8E9",
        "ACTIVE",
        "1234.56",
        "-0.0123456789",
        "2024-06-01T15:30:00.123456Z",
        "BRK.B",
        "BTC/USD",
        "us_equity",
        "https://paper-api.alpaca.markets",
        "gemini-2.5-flash",
        "a" * 64,
        "The key of the portfolio is diversification",
        None,
        42,
        True,
    ],
)
def test_ordinary_snapshot_values_are_not_credentials(value: object) -> None:
    assert not looks_like_credential(value)


def test_no_credential_reaches_the_snapshot_the_answer_the_audit_or_the_logs(
    db: firestore.Client, fake_tokens: FakeTokens, caplog: pytest.LogCaptureFixture
) -> None:
    legacy(db, POISONED)
    caplog.set_level(logging.DEBUG)
    set_deps(None)
    with functions_framework_client("migrate_legacy_data", REPO_ROOT / "accounts" / "main.py") as c:
        admin = fake_tokens.token_for(ADMIN, admin=True)
        code, answer = call(c, "/", {"targetUserId": TARGET}, token=admin)
    set_deps(None)

    assert code == 200, answer
    result = answer["result"]
    snapshot = target_snapshot(db)
    assert snapshot["account"] == {
        "id": ACCOUNT_ID,
        "account_number": "PA3AB6C7D8E9",
        "status": "ACTIVE",
        "equity": "1000.00",
        "admin_configurations": {"max_margin_multiplier": "4"},
        "user_configurations": {"no_shorting": False},
    }
    assert snapshot["positions"] == [
        {"symbol": "SPY", "qty": "2", "asset_id": ASSET_ID},
        {"symbol": "AAPL", "qty": "1", "usd": {}},
        {"qty": "3"},
    ]
    assert (snapshot["equity"], snapshot["cash"], snapshot["buying_power"]) == ("1000.00", "0", "0")
    assert result["migratedFields"] == ["account", "equity", "positions", "syncedAt"]
    assert result["droppedFields"] == [
        "APCA-API-KEY-ID",
        "APCA-API-SECRET-KEY",
        MASKED_PATH,
        "access_key",
        "account.admin_configurations.api_key",
        "account.credentials",
        "account.currency",
        "account.secret_key",
        "account.sma",
        "account.user_configurations.trade_confirm_email",
        "auth",
        "buying_power",
        "cash",
        "endpoint",
        "history",
        "notes",
        "positions[]",
        "positions[].auth",
        "positions[].current_price",
        "positions[].symbol",
        "positions[].usd.cost_basis",
        "private_key",
    ]
    (entry,) = migrations(db)
    assert entry["details"]["droppedFields"] == result["droppedFields"]
    assert_clean("the snapshot", json.dumps(snapshot, default=str))
    assert_clean("the callable's answer", json.dumps(answer))
    assert_clean("the audit entry", json.dumps(entry, default=str))
    assert caplog.records, "the migration logged nothing?"
    assert_clean("the logs", "\n".join(repr(vars(r)) for r in caplog.records))
