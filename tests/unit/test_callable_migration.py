"""``migrate_legacy_snapshot`` against the Firestore emulator, and its input validation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.cloud import firestore

from accounts.migration import migrate_legacy_snapshot, parse_target, snapshot_time
from agenttrader import paths
from agenttrader.callable import CallableError, Status
from tests.callable_fixtures import onboard_tenant, synced_snapshot

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
    assert result["migratedFields"] == [
        "account", "cash", "equity", "positions", "source.version", "syncedAt"
    ]  # fmt: skip
    assert result["droppedFields"] == ["api_key", "secret_key"]

    snapshot = target_snapshot(db)
    assert snapshot["syncedAt"] == LEGACY_TIME
    assert snapshot["equity"] == "1234.5"  # numbers become the spec's strings
    assert snapshot["cash"] == "200.10"
    assert snapshot["buying_power"] == "0"  # absent everywhere
    assert snapshot["account"] == LEGACY["account"]
    assert snapshot["positions"] == LEGACY["positions"]
    assert snapshot["source.version"] == 3  # a dotted name stays one field
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
        synced_snapshot(syncedAt=LEGACY_TIME - timedelta(days=1), stale_field="x")
    )
    assert migrate_legacy_snapshot(db, ADMIN, TARGET)["status"] == "success"
    snapshot = target_snapshot(db)
    assert snapshot["equity"] == "1234.5"
    assert "stale_field" not in snapshot


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
