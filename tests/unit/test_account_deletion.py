"""``delete_tenant`` against the Firestore emulator: every document under ``users/{uid}`` goes
(any depth, missing parents included), nobody else's does, the operators' log holds the counts
and nothing personal, a second call is a no-op, the bound holds, a racing key write goes too,
and the roster forgets the user."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from google.cloud import firestore

from accounts.deletion import (
    ROOT_KEY,
    Deletion,
    Reason,
    account_deletion_result,
    delete_tenant,
)
from agenttrader import paths
from publisher import roster
from tests.callable_fixtures import documents_under, onboard_tenant, synced_snapshot

UID, NEIGHBOUR = "leaving-user", "staying-user"
KEYS = {
    "key_id": "PKDELETEME0000000001",
    "secret_key": "s3cret-" + "d" * 33,
    "base_url": "https://paper-api.alpaca.markets",
}


@pytest.fixture
def db(emulator_env: dict[str, str]) -> firestore.Client:
    return firestore.Client(project=emulator_env["GOOGLE_CLOUD_PROJECT"])


def seed_tenant(db: firestore.Client, uid: str, *, audit_entries: int = 5) -> int:
    """A tenant with a bit of everything; returns how many documents it has."""
    onboard_tenant(db, uid, f"{uid}@example.com")  # root, config, trading, snapshot, 1 audit
    db.document(paths.alpaca_secret_doc(uid)).set(KEYS)
    db.document(paths.alpaca_config_doc(uid)).set({"configured": True}, merge=True)
    db.document(paths.trading_status_doc(uid)).set({"enabled": True}, merge=True)
    db.document(paths.snapshot_doc(uid)).set(synced_snapshot())
    db.document(paths.last_sync_error_doc(uid)).set({"error": "x", "timestamp": 1})
    db.document(paths.sync_state_doc(uid)).set({"pulse_id": "p", "outcome": "success"})
    for n in range(3):
        db.document(paths.trading_signal_doc(uid, f"s{n}")).set({"response": "HOLD"})
    for n in range(audit_entries - 1):
        db.document(f"{paths.audit_collection(uid)}/e{n}").set({"action": "keys_created"})
    db.document(paths.usage_doc(uid, "2026-01-02")).set({"signals": 1})
    db.document(f"users/{uid}/orders/o1").set({"event": "fill"})
    db.document(f"users/{uid}/orders/o1/fills/f1").set({"qty": "1"})  # a deeper level
    db.document(f"users/{uid}/ghost/missing/deep/x").set({"x": 1})  # under missing parents
    # root, secrets, config, 3 status, snapshot, 3 signals, audit, usage, 2 orders, ghost
    return 1 + 1 + 1 + 3 + 1 + 3 + audit_entries + 1 + 2 + 1


def log_entries(db: firestore.Client) -> list[dict[str, Any]]:
    return [d.to_dict() or {} for d in db.collection(paths.DELETIONS_COLLECTION).stream()]


def test_everything_under_the_user_goes_and_is_logged(db: firestore.Client) -> None:
    count = seed_tenant(db, UID)
    neighbour = seed_tenant(db, NEIGHBOUR)
    assert len(documents_under(db, UID)) == count

    result = delete_tenant(db, UID, actor=UID, reason=Reason.SELF_SERVICE)

    assert documents_under(db, UID) == []
    assert len(documents_under(db, NEIGHBOUR)) == neighbour
    assert result.complete and result.total == count
    assert result.deleted == {
        ROOT_KEY: 1,
        "secrets": 1,
        "config": 1,
        "status": 3,
        "data": 1,
        "trading_signals": 3,
        "audit": 5,
        "usage": 1,
        "orders": 2,
        "ghost": 1,
    }
    (entry,) = log_entries(db)
    assert entry["uid"] == UID and entry["actor"] == UID
    assert entry["reason"] == "delete_account"
    assert entry["deleted"] == result.deleted and entry["total"] == count
    assert entry["complete"] is True and entry["at"] and entry["finishedAt"]
    assert result.entry_id is not None
    assert db.document(paths.deletion_doc(result.entry_id)).get().exists
    text = repr(entry)
    assert "@example.com" not in text and KEYS["secret_key"] not in text
    assert KEYS["key_id"] not in text


def test_a_second_call_changes_nothing(db: firestore.Client) -> None:
    seed_tenant(db, UID)
    delete_tenant(db, UID, actor=UID, reason=Reason.SELF_SERVICE)

    again = delete_tenant(db, UID, actor=UID, reason=Reason.SELF_SERVICE)

    assert again == Deletion(UID, {}, True, None)
    assert len(log_entries(db)) == 1
    assert account_deletion_result(again)["status"] == "already_deleted"


def test_a_user_who_never_onboarded_has_nothing_to_delete(db: firestore.Client) -> None:
    result = delete_tenant(db, "never-seen", actor="never-seen", reason=Reason.SELF_SERVICE)
    assert result.total == 0 and result.complete
    assert log_entries(db) == []


def test_the_bound_stops_a_call_and_the_next_one_continues(db: firestore.Client) -> None:
    count = seed_tenant(db, UID, audit_entries=30)

    first = delete_tenant(
        db, UID, actor=UID, reason=Reason.SELF_SERVICE, max_documents=20, page_size=7
    )

    assert not first.complete and first.total == 20
    assert first.deleted[ROOT_KEY] == 1 and first.deleted["secrets"] == 1  # credentials first
    assert account_deletion_result(first)["status"] == "incomplete"
    assert len(documents_under(db, UID)) == count - 20
    second = delete_tenant(db, UID, actor=UID, reason=Reason.SELF_SERVICE, page_size=7)
    assert second.complete and second.total == count - 20
    assert documents_under(db, UID) == []
    entries = sorted(log_entries(db), key=lambda e: e["total"])
    assert [(e["total"], e["complete"]) for e in entries] == [(20, False), (count - 20, True)]


class _RacingClient:
    """The real client, but a key write lands right after the first commit (a tenant's write
    that reached Firestore just before the root went)."""

    def __init__(self, db: firestore.Client, uid: str) -> None:
        self._db, self._uid, self.raced = db, uid, False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)

    def batch(self) -> Any:
        real, client = self._db.batch(), self

        class Batch:
            def __getattr__(self, name: str) -> Any:
                return getattr(real, name)

            def commit(self) -> Any:
                result = real.commit()
                if not client.raced:
                    client.raced = True
                    client._db.document(paths.alpaca_secret_doc(client._uid)).set(KEYS)
                return result

        return Batch()


def test_a_key_write_racing_the_deletion_is_deleted_too(db: firestore.Client) -> None:
    seed_tenant(db, UID)
    racing = _RacingClient(db, UID)

    result = delete_tenant(racing, UID, actor=UID, reason=Reason.SELF_SERVICE)  # type: ignore[arg-type]

    assert racing.raced
    assert documents_under(db, UID) == []
    assert result.deleted["secrets"] == 2


@pytest.fixture
def eligible(db: firestore.Client) -> Iterator[None]:
    seed_tenant(db, UID)
    seed_tenant(db, NEIGHBOUR)
    built = roster.rebuild(db)
    assert set(built.eligible) == {UID, NEIGHBOUR}
    yield


@pytest.mark.usefixtures("eligible")
def test_the_roster_entry_goes_with_the_config_trigger(db: firestore.Client) -> None:
    delete_tenant(db, UID, actor=UID, reason=Reason.SELF_SERVICE)

    # What on_alpaca_config_written (and on_trading_status_written) do for the two deletes.
    verdict = roster.on_source_written(db, paths.alpaca_config_doc(UID))

    assert verdict is not None and not verdict.eligible and not verdict.member
    after = roster.read(db)
    assert after is not None and set(after.eligible) == {NEIGHBOUR}
    assert after.members == 1
