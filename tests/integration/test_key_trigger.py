"""on_alpaca_secret_written: directly with golden CloudEvents through the functions-framework
test client, and through the local Eventarc bridge (a real Firestore write fires it)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import functions_framework
import pytest
from google.cloud import firestore

from agenttrader import paths
from agenttrader.deps import Deps
from agenttrader.events import FIRESTORE_WRITTEN_WITH_AUTH
from devtools.eventarc import encode_document_event, firestore_event_headers
from devtools.localstack.stack import LocalStack
from devtools.simulator import AlpacaSimulator, Scenario
from tests.pipeline_fixtures import doc, pull, seed_user, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def deps(pipeline_deps: Deps) -> Deps:
    return pipeline_deps


REPO_ROOT = Path(__file__).parents[2]
KEYS = {
    "key_id": "PKTESTKEY00000000001",
    "secret_key": "S" * 40,
    "base_url": "https://paper-api.alpaca.markets",
}


def tapped(project: str, wait: float = 3.0) -> list[dict[str, object]]:
    return [json.loads(m.data) for m in pull(project, "tap", timeout=wait)]


def post_event(
    project: str,
    uid: str,
    old: dict[str, object] | None,
    new: dict[str, object] | None,
    event_id: str = "ev-1",
) -> int:
    path = paths.alpaca_secret_doc(uid)
    now = datetime.now(UTC)
    app = functions_framework.create_app(
        target="on_alpaca_secret_written", source=str(REPO_ROOT / "main.py")
    )
    response = app.test_client().post(
        "/",
        data=encode_document_event(project, path, old, new, now),
        headers=firestore_event_headers(project, path, event_id, now),
    )
    return int(response.status_code)


def test_valid_keys_mark_configured_and_request_one_first_sync(deps: Deps, project: str) -> None:
    db = deps.firestore
    seed_user(db, "u1", configured=False, enabled=False)
    assert post_event(project, "u1", None, KEYS) == 200
    config = doc(db, paths.alpaca_config_doc("u1"))
    assert config is not None and config["configured"] is True and config["configuredAt"]
    [message] = tapped(project)
    assert message["uid"] == "u1" and message["reason"] == "first_sync"
    assert KEYS["key_id"] not in json.dumps(message) and KEYS["secret_key"] not in json.dumps(
        message
    )
    [entry] = [d.to_dict() for d in db.collection(paths.audit_collection("u1")).stream()]
    assert entry["action"] == "keys_created"
    assert entry["details"] == {"key_id_hint": "…0001", "base_url_host": "paper-api.alpaca.markets"}
    assert doc(db, paths.alpaca_secret_doc("u1")) is None  # the trigger never writes the secret


def test_unchanged_write_and_delete_request_no_sync(deps: Deps, project: str) -> None:
    db = deps.firestore
    seed_user(db, "u2")
    assert post_event(project, "u2", KEYS, {**KEYS}) == 200
    assert post_event(project, "u2", KEYS, None, event_id="ev-del") == 200
    assert tapped(project, wait=2) == []
    config = doc(db, paths.alpaca_config_doc("u2"))
    assert config is not None and config["configured"] is False
    actions = [d.to_dict()["action"] for d in db.collection(paths.audit_collection("u2")).stream()]
    assert actions == ["keys_deleted"]


@pytest.mark.parametrize(
    ("keys", "error_class"),
    [
        (
            {**KEYS, "base_url": "https://paper-api.alpaca.markets.evil.example"},
            "DisallowedBaseUrl",
        ),
        ({**KEYS, "base_url": "http://169.254.169.254"}, "DisallowedBaseUrl"),
        ({**KEYS, "secret_key": "has space in it"}, "InvalidKeys"),
        ({"key_id": KEYS["key_id"], "base_url": KEYS["base_url"]}, "MissingKeys"),
    ],
    ids=["look-alike", "metadata", "bad-secret", "missing-secret"],
)
def test_invalid_keys_are_recorded_and_not_synced(
    deps: Deps, project: str, keys: dict[str, str], error_class: str
) -> None:
    db = deps.firestore
    seed_user(db, "u3", configured=False)
    assert post_event(project, "u3", None, keys) == 200
    error = doc(db, paths.last_sync_error_doc("u3"))
    assert error is not None and error["error_class"] == error_class
    assert doc(db, paths.alpaca_config_doc("u3"))["configured"] is False  # type: ignore[index]
    assert tapped(project, wait=2) == []
    assert KEYS["secret_key"] not in json.dumps(error, default=str)
    # The audit names a host only when it is on the allowlist.
    [entry] = [d.to_dict() for d in db.collection(paths.audit_collection("u3")).stream()]
    allowed = keys["base_url"] == KEYS["base_url"]
    base_url = (
        {"base_url_host": "paper-api.alpaca.markets"} if allowed else {"base_url_allowed": False}
    )
    assert entry["details"] == {"error_class": error_class, **base_url}
    assert "evil" not in json.dumps([error, entry], default=str)
    assert "169.254" not in json.dumps([error, entry], default=str)


def test_redelivered_event_writes_one_audit_entry(deps: Deps, project: str) -> None:
    db = deps.firestore
    seed_user(db, "u4", configured=False)
    assert post_event(project, "u4", None, KEYS, event_id="same") == 200
    assert post_event(project, "u4", None, KEYS, event_id="same") == 200
    assert len(list(db.collection(paths.audit_collection("u4")).stream())) == 1


def test_not_protobuf_is_acknowledged(deps: Deps, project: str) -> None:
    app = functions_framework.create_app(
        target="on_alpaca_secret_written", source=str(REPO_ROOT / "main.py")
    )
    headers = firestore_event_headers(
        project, paths.alpaca_secret_doc("u5"), "x", datetime.now(UTC)
    )
    response = app.test_client().post("/", data=b"\x08garbage\xff", headers=headers)
    assert response.status_code == 200


def test_key_write_through_the_bridge_fires_exactly_one_first_sync(
    emulator_env: dict[str, str], project: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with AlpacaSimulator() as sim:
        monkeypatch.setenv("ALPACA_ALLOWED_BASE_URLS", sim.base_url)
        db = firestore.Client(project=project)
        seed_user(db, "fresh", configured=False, enabled=False)
        env = {**emulator_env, "ALPACA_ALLOWED_BASE_URLS": sim.base_url}
        with LocalStack(project, env) as stack:
            tenant = sim.add_tenant(scenario=Scenario(kind="normal"))
            db.document(paths.alpaca_secret_doc("fresh")).set(
                {"key_id": tenant.key_id, "secret_key": tenant.secret_key, "base_url": sim.base_url}
            )
            snapshot = wait_for(lambda: doc(db, paths.snapshot_doc("fresh")), timeout=30)
            assert snapshot["reason"] == "first_sync"  # synced although trading is disabled
            db.document(paths.alpaca_secret_doc("fresh")).delete()
            bridge = stack.eventarc_bridge
            assert bridge is not None
            wait_for(lambda: bridge.delivered == 2, timeout=15)
            assert stack.push_bridge is not None
            time.sleep(1)
            assert stack.push_bridge.stats.acked == 1  # one first sync; the delete fired none
        config = doc(db, paths.alpaca_config_doc("fresh"))
        assert config is not None and config["configured"] is False


def test_kill_switch_toggles_are_audited_with_who_and_old_to_new(deps: Deps, project: str) -> None:
    db = deps.firestore
    seed_user(db, "u6", enabled=False)
    path = paths.trading_status_doc("u6")
    app = functions_framework.create_app(
        target="on_trading_status_written", source=str(REPO_ROOT / "main.py")
    )
    client = app.test_client()

    def post(old: dict[str, object], new: dict[str, object], event_id: str) -> int:
        now = datetime.now(UTC)
        headers = firestore_event_headers(
            project,
            path,
            event_id,
            now,
            event_type=FIRESTORE_WRITTEN_WITH_AUTH,
            auth=("user", "u6"),
        )
        body = encode_document_event(project, path, old, new, now)
        return int(client.post("/", data=body, headers=headers).status_code)

    assert post({"enabled": False}, {"enabled": True, "message": "go"}, "t1") == 200
    assert post({"enabled": True}, {"enabled": True, "message": "only the message"}, "t2") == 200
    assert post({"enabled": False}, {"enabled": True}, "t1") == 200  # redelivered: same entry
    [entry] = [d.to_dict() for d in db.collection(paths.audit_collection("u6")).stream()]
    assert entry["action"] == "kill_switch_toggled"
    assert entry["actor"] == "user:u6"
    assert entry["details"] == {"old": False, "new": True, "deleted": False}


def test_kill_switch_write_through_the_bridge_is_audited(
    emulator_env: dict[str, str], project: str
) -> None:
    db = firestore.Client(project=project)
    seed_user(db, "u7", enabled=False)
    with LocalStack(project, dict(emulator_env)):
        db.document(paths.trading_status_doc("u7")).update({"enabled": True})
        entries = wait_for(
            lambda: [d.to_dict() for d in db.collection(paths.audit_collection("u7")).stream()],
            timeout=20,
        )
    assert entries[0]["details"]["new"] is True
    assert entries[0]["actor"] == "unknown"  # a listener cannot tell who wrote
