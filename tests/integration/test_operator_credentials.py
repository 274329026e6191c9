"""``agenttrader credentials seal-existing | rewrap`` against the Firestore emulator: plaintext
left from before is sealed keeping its version (the worker then syncs from it, the trigger
leaves it alone), unusable plaintext is listed or deleted, a client writing meanwhile wins,
runs are idempotent and resumable, a rotation's data keys are re-wrapped; every change is
audited for the tenant."""

from __future__ import annotations

import json
import struct
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from google.cloud import firestore

from accounts.key_changes import KeyChange, handle_key_change
from agenttrader import paths
from agenttrader.credentials import LocalKek, Vault
from agenttrader.credentials.local_kek import rotate
from agenttrader.deps import Deps
from agenttrader.events import DocumentChange
from agenttrader.keys_version import stored_version
from agenttrader.messages import Reason, SyncRequest
from devtools.simulator import AlpacaSimulator
from operations import cli
from operations import credentials as ops
from sync_worker.worker import Result, SyncWorker
from tests.pipeline_fixtures import doc, seed_user

pytestmark = pytest.mark.integration

INVALID = {"key_id": "short", "secret_key": "has space in it", "base_url": "https://x.example"}


def secret(db: firestore.Client, uid: str) -> dict[str, Any] | None:
    return doc(db, paths.alpaca_secret_doc(uid))


def actions(db: firestore.Client, uid: str) -> list[str]:
    entries = db.collection(paths.audit_collection(uid)).stream()
    return sorted(entry.to_dict()["action"] for entry in entries)


def plain_keys(uid: str) -> dict[str, str]:
    """Well-formed keys of a tenant no Alpaca knows (sealing never calls Alpaca)."""
    key_id = f"PK{uid.upper().replace('-', '')}0123456789"
    return {
        "key_id": key_id,
        "secret_key": "s" * 40,
        "base_url": "https://paper-api.alpaca.markets",
    }


def keys_of(sim: AlpacaSimulator) -> dict[str, str]:
    account = sim.add_tenant()
    return {"key_id": account.key_id, "secret_key": account.secret_key, "base_url": sim.base_url}


@pytest.fixture
def kek_dir(tmp_path: Path) -> Path:
    return tmp_path / "kek"


@pytest.fixture
def vault(kek_dir: Path, project: str) -> Vault:
    return Vault(LocalKek(project, kek_dir))


def test_seal_existing_seals_plaintext_keeping_its_version(
    pipeline_deps: Deps, project: str, simulator: AlpacaSimulator
) -> None:
    db = pipeline_deps.firestore
    plain = {uid: keys_of(simulator) for uid in ("a", "b", "c")}
    for uid, keys in plain.items():
        seed_user(db, uid, keys=keys)  # configured and stored before sealing existed
    seed_user(db, "bad", keys=INVALID)
    seed_user(db, "none")  # no credentials at all
    versions = {
        uid: stored_version(db.document(paths.alpaca_secret_doc(uid)).get()) for uid in plain
    }
    vault = pipeline_deps.vault

    dry = ops.seal_existing(db, None, dry_run=True)
    assert (dry.count(ops.Outcome.SEALED), dry.count(ops.Outcome.INVALID)) == (3, 1)
    assert secret(db, "a") == plain["a"]  # a dry run changes nothing

    lines: list[str] = []
    report = ops.seal_existing(db, vault, progress=lines.append)
    assert report.outcomes == {"sealed": ["a", "b", "c"], "invalid": ["bad"]}
    assert report.scanned == 5 and lines  # progress shown
    for uid, keys in plain.items():
        stored = secret(db, uid)
        assert stored is not None and stored["sealed"] is True
        assert stored["keys_version"] == versions[uid]
        assert keys["secret_key"].encode() not in stored["ciphertext"]
        assert actions(db, uid) == ["credentials_sealed"]
    assert vault.stats().kek.encrypt == 3
    # The trigger leaves the server-written form alone; the worker syncs from it.
    change = DocumentChange(paths.alpaca_secret_doc("a"), plain["a"], secret(db, "a"))
    assert handle_key_change(pipeline_deps, change, "ev-sealed") is KeyChange.UNCHANGED
    request = SyncRequest("a", Reason.SCHEDULE, datetime.now(UTC), keys_version=versions["a"])
    assert SyncWorker(pipeline_deps).handle(_delivery(request)) is Result.SYNCED
    assert (doc(db, paths.alpaca_config_doc("a")) or {})["configured"] is True

    again = ops.seal_existing(db, vault)  # idempotent: a second run (or a resumed one) skips
    assert again.outcomes == {"already": ["a", "b", "c"], "invalid": ["bad"]}
    assert vault.stats().kek.encrypt == 3
    removed = ops.seal_existing(db, vault, delete_invalid=True)
    assert removed.outcomes["deleted"] == ["bad"] and secret(db, "bad") is None
    assert actions(db, "bad") == ["keys_deleted"]


def test_seal_existing_stops_at_the_limit_and_resumes(pipeline_deps: Deps, vault: Vault) -> None:
    db = pipeline_deps.firestore
    for uid in ("l1", "l2", "l3"):
        seed_user(db, uid, keys=plain_keys(uid))
    first = ops.seal_existing(db, vault, limit=2)
    assert first.limited and first.outcomes == {"sealed": ["l1", "l2"]}
    second = ops.seal_existing(db, vault, limit=2)
    assert not second.limited
    assert second.outcomes == {"already": ["l1", "l2"], "sealed": ["l3"]}


class _ClientWritesDuringTheSeal:
    """A vault whose first seal is raced by the tenant writing new keys."""

    def __init__(self, vault: Vault, db: firestore.Client, uid: str, newer: dict[str, str]):
        self.vault, self.db, self.uid, self.newer = vault, db, uid, newer

    def seal(self, *args: Any, **kwargs: Any) -> Any:
        self.db.document(paths.alpaca_secret_doc(self.uid)).set(self.newer)
        return self.vault.seal(*args, **kwargs)


def test_a_client_write_during_seal_existing_wins(
    pipeline_deps: Deps, vault: Vault, simulator: AlpacaSimulator
) -> None:
    db = pipeline_deps.firestore
    seed_user(db, "racer", keys=keys_of(simulator))
    newer = keys_of(simulator)
    racing = _ClientWritesDuringTheSeal(vault, db, "racer", newer)

    report = ops.seal_existing(db, racing)  # type: ignore[arg-type]

    assert report.outcomes == {"changed": ["racer"]}
    assert secret(db, "racer") == newer  # left for the trigger, which seals what is new
    assert actions(db, "racer") == []


def test_rewrap_moves_every_data_key_to_the_new_primary(
    pipeline_deps: Deps, vault: Vault, kek_dir: Path, project: str
) -> None:
    db = pipeline_deps.firestore
    for uid in ("r1", "r2"):
        seed_user(db, uid, keys=plain_keys(uid))
    seed_user(db, "r3", keys=plain_keys("r3"))
    ops.seal_existing(db, vault, ids=["r1", "r2"])
    before = {uid: secret(db, uid) for uid in ("r1", "r2")}
    new_primary = rotate(kek_dir)
    rotated_at = datetime.now(UTC)

    dry = ops.rewrap(db, None, dry_run=True)
    assert dry.outcomes == {"rewrapped": ["r1", "r2"], "plaintext": ["r3"]}
    report = ops.rewrap(db, vault, wrapped_before=rotated_at)
    assert report.outcomes == {"rewrapped": ["r1", "r2"], "plaintext": ["r3"]}
    for uid, old in before.items():
        new = secret(db, uid)
        assert new is not None and old is not None
        assert (
            _wrapped_key_id(new["ciphertext"]) == new_primary != _wrapped_key_id(old["ciphertext"])
        )
        assert new["keys_version"] == old["keys_version"] and new["rewrappedAt"]
        assert "credentials_rewrapped" in actions(db, uid)
        fresh = Vault(LocalKek(project, kek_dir))
        assert fresh.open(new, uid, paths.alpaca_secret_doc(uid)).base_url == old["base_url"]
    # Resumable: what was re-wrapped since the rotation is skipped.
    again = ops.rewrap(db, vault, wrapped_before=rotated_at)
    assert again.outcomes == {"already": ["r1", "r2"], "plaintext": ["r3"]}


def test_the_commands_through_the_cli(
    pipeline_deps: Deps,
    project: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    db = pipeline_deps.firestore
    seed_user(db, "cli", keys=plain_keys("cli"))
    assert cli.main(["credentials", "seal-existing", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "(dry run)" in out and "1 would be sealed: cli" in out
    assert secret(db, "cli") is not None and "sealed" not in (secret(db, "cli") or {})
    assert cli.main(["credentials", "seal-existing", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["counts"] == {"sealed": 1} and summary["uids"] == {"sealed": ["cli"]}
    assert cli.main(["credentials", "rewrap", "--wrapped-before", "2000-01-01T00:00:00Z"]) == 0
    assert "already" in capsys.readouterr().out
    # Outside the emulators, a KEK must be named.
    monkeypatch.delenv("FIRESTORE_EMULATOR_HOST")
    assert cli.main(["credentials", "rewrap"]) == 2
    assert "CREDENTIALS_KEK_URI" in capsys.readouterr().err


def _delivery(request: SyncRequest) -> Any:
    from agenttrader.events import PubsubDelivery

    return PubsubDelivery("m-ops", request.to_bytes(), request.attributes(), datetime.now(UTC), 1)


def _wrapped_key_id(ciphertext: bytes) -> int:
    """The local keyset's key id prefixed to the wrapped data key (Tink's output prefix)."""
    (length,) = struct.unpack(">I", ciphertext[:4])
    assert length > 5
    return int.from_bytes(ciphertext[5:9], "big")
