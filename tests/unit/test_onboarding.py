"""``onboard`` against the Firestore emulator: the structure, idempotence, the race, and never
overwriting what the pipeline or the user already wrote."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import pytest
from google.cloud import firestore

from accounts.onboarding import ALREADY_ONBOARDED, SUCCESS, onboard
from agenttrader import paths
from agenttrader.snapshot import is_placeholder
from agenttrader.snapshot import placeholder as placeholder_snapshot
from tests.callable_fixtures import synced_snapshot

UID = "new-user"


@pytest.fixture
def db(emulator_env: dict[str, str]) -> firestore.Client:
    return firestore.Client(project=emulator_env["GOOGLE_CLOUD_PROJECT"])


def doc(db: firestore.Client, path: str) -> dict[str, Any] | None:
    return db.document(path).get().to_dict()


def audit_entries(db: firestore.Client) -> list[dict[str, Any]]:
    return [d.to_dict() or {} for d in db.collection(paths.audit_collection(UID)).stream()]


def update_times(db: firestore.Client) -> dict[str, Any]:
    documents = [
        paths.user_doc(UID),
        paths.alpaca_config_doc(UID),
        paths.trading_status_doc(UID),
        paths.snapshot_doc(UID),
    ]
    return {path: db.document(path).get().update_time for path in documents}


def test_first_call_creates_the_structure(db: firestore.Client) -> None:
    result = onboard(db, UID, "new@example.com")

    assert result["status"] == SUCCESS
    assert result["userId"] == UID
    assert result["message"]
    assert any(paths.alpaca_secret_doc(UID) in step for step in result["next_steps"])

    root = doc(db, paths.user_doc(UID)) or {}
    assert root["onboarded"] is True
    assert isinstance(root["onboardedAt"], datetime)
    assert root["email"] == "new@example.com"

    config = doc(db, paths.alpaca_config_doc(UID)) or {}
    assert config["configured"] is False
    assert isinstance(config["createdAt"], datetime)
    assert paths.alpaca_secret_doc(UID) in config["instructions"]

    trading = doc(db, paths.trading_status_doc(UID)) or {}
    assert trading["enabled"] is False
    assert trading["message"]
    assert isinstance(trading["createdAt"], datetime)

    snapshot = doc(db, paths.snapshot_doc(UID)) or {}
    assert snapshot == placeholder_snapshot()
    assert is_placeholder(snapshot)

    assert doc(db, paths.alpaca_secret_doc(UID)) is None  # never fake keys
    (entry,) = audit_entries(db)
    assert entry["action"] == "onboarded" and entry["actor"] == UID
    assert entry["details"] == {"created": ["config/alpaca", "status/trading", "data/snapshot"]}


def test_second_call_changes_nothing(db: firestore.Client) -> None:
    onboard(db, UID, "new@example.com")
    before = update_times(db)
    result = onboard(db, UID, "other@example.com")
    assert result["status"] == ALREADY_ONBOARDED
    assert result["userId"] == UID
    assert update_times(db) == before
    assert (doc(db, paths.user_doc(UID)) or {})["email"] == "new@example.com"
    assert len(audit_entries(db)) == 1


def test_concurrent_first_calls_give_exactly_one_success(db: firestore.Client) -> None:
    with ThreadPoolExecutor(5) as pool:
        statuses = Counter(
            r["status"] for r in pool.map(lambda _: onboard(db, UID, None), range(5))
        )
    assert statuses == {SUCCESS: 1, ALREADY_ONBOARDED: 4}
    assert len(audit_entries(db)) == 1


def test_documents_written_before_onboarding_are_kept(db: firestore.Client) -> None:
    """Keys written first: the trigger already marked them configured and a sync ran."""
    secret = {"key_id": "PK1234567890ABCDEF", "secret_key": "s" * 40, "base_url": "https://x"}
    db.document(paths.alpaca_secret_doc(UID)).set(secret)
    db.document(paths.alpaca_config_doc(UID)).set({"configured": True})
    real = synced_snapshot()
    db.document(paths.snapshot_doc(UID)).set(real)
    db.document(paths.user_doc(UID)).set({"plan": "pro"})

    assert onboard(db, UID, "x@example.com")["status"] == SUCCESS

    assert doc(db, paths.alpaca_secret_doc(UID)) == secret
    assert doc(db, paths.alpaca_config_doc(UID)) == {"configured": True}
    assert (doc(db, paths.snapshot_doc(UID)) or {})["equity"] == real["equity"]
    root = doc(db, paths.user_doc(UID)) or {}
    assert root["plan"] == "pro" and root["onboarded"] is True
    assert (doc(db, paths.trading_status_doc(UID)) or {})["enabled"] is False
    (entry,) = audit_entries(db)
    assert entry["details"] == {"created": ["status/trading"]}


def test_a_user_without_email_is_onboarded(db: firestore.Client) -> None:
    assert onboard(db, UID, None)["status"] == SUCCESS
    assert (doc(db, paths.user_doc(UID)) or {})["email"] is None


def test_is_placeholder() -> None:
    assert is_placeholder(placeholder_snapshot())
    assert is_placeholder({"equity": "1"})  # never synced
    assert not is_placeholder(synced_snapshot())
