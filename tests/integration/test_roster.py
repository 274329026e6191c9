"""The roster on the Firestore emulator: triggers keep it at the truth whatever order they run
in, a missing roster is rebuilt from a scan, and the local Eventarc bridges keep it in step
with writes to ``config/alpaca`` and ``status/trading`` by anyone."""

from __future__ import annotations

import random
import threading
from datetime import timedelta

import pytest
from google.cloud import firestore

from agenttrader import paths
from devtools.localstack.stack import LocalStack
from publisher import roster
from tests.pipeline_fixtures import doc, seed_user, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def db(emulator_env: dict[str, str], project: str) -> firestore.Client:
    return firestore.Client(project=project)


def eligible(db: firestore.Client) -> dict[str, str | None]:
    return roster._parse(roster._shards(db)).eligible


def write_verdict(db: firestore.Client, uid: str, value: int) -> None:
    """What a trigger that read long ago writes when it finally runs."""
    ref = db.document(paths.roster_shard_doc(roster.shard_of(uid)))
    ref.set(roster._update(uid, value, None), merge=True)


def test_refresh_follows_the_documents_and_a_late_trigger_loses(db: firestore.Client) -> None:
    seed_user(db, "u.dot@x")  # uids may hold dots and @: map keys, not field paths
    assert list(eligible(db)) == ["u.dot@x"]
    earlier = db.document(paths.trading_status_doc("u.dot@x")).get().read_time
    db.document(paths.trading_status_doc("u.dot@x")).update({"enabled": False})
    assert roster.refresh(db, "u.dot@x").eligible is False
    assert eligible(db) == {}
    # A trigger that read "eligible" before the switch was turned off runs last: ignored.
    write_verdict(db, "u.dot@x", roster.entry(earlier, roster.ELIGIBLE))
    assert eligible(db) == {}
    # The same trigger delivered twice changes nothing either.
    assert roster.refresh(db, "u.dot@x").eligible is False
    assert roster.refresh(db, "u.dot@x").eligible is False
    assert eligible(db) == {}


def test_racing_writes_and_triggers_end_at_the_truth(db: firestore.Client) -> None:
    """Eight writers toggle the two documents of four users; after every write, its trigger
    (a refresh) runs in its own thread, in whatever order the threads get to it."""
    uids = [f"race-{i}" for i in range(4)]
    for uid in uids:
        seed_user(db, uid)
    errors: list[BaseException] = []
    triggers: list[threading.Thread] = []

    def writer(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(15):
                uid = rng.choice(uids)
                if rng.random() < 0.5:
                    path, body = paths.trading_status_doc(uid), {"enabled": rng.random() < 0.5}
                else:
                    path, body = paths.alpaca_config_doc(uid), {"configured": rng.random() < 0.5}
                db.document(path).set(body, merge=True)
                trigger = threading.Thread(target=roster.refresh, args=(db, uid))
                trigger.start()
                triggers.append(trigger)
                if rng.random() < 0.5:
                    trigger.join()
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    writers = [threading.Thread(target=writer, args=(seed,)) for seed in range(8)]
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    for thread in triggers:
        thread.join(timeout=30)
    assert not errors
    truth = sorted(
        uid
        for uid in uids
        if (doc(db, paths.alpaca_config_doc(uid)) or {}).get("configured") is True
        and (doc(db, paths.trading_status_doc(uid)) or {}).get("enabled") is True
    )
    assert sorted(eligible(db)) == truth


def test_a_missing_roster_is_rebuilt_from_a_scan_keeping_later_trigger_verdicts(
    db: firestore.Client,
) -> None:
    for uid in ("on", "late", "gone", "off"):
        seed_user(db, uid, enabled=uid != "off")
    # Documents changed while no trigger ran (data from before the roster existed).
    db.document(paths.trading_status_doc("gone")).update({"enabled": False})
    db.document(paths.alpaca_config_doc("on")).update(
        {"configuredAt": db.document(paths.user_doc("on")).get().read_time}
    )
    # A trigger that reads after the rebuild's scan started, still on its way.
    future = db.document(paths.user_doc("late")).get().read_time + timedelta(minutes=5)
    write_verdict(db, "late", roster.entry(future, roster.KNOWN))
    assert roster.read(db) is None  # no marker: never built
    rebuilt = roster.load(db)
    assert list(rebuilt.eligible) == ["on"]  # "gone" turned off, "late" kept off
    assert rebuilt.eligible["on"] is not None  # the keys' version came along
    marker = doc(db, paths.ROSTER_DOC)
    assert marker is not None and marker["shards"] == paths.ROSTER_SHARDS
    again = roster.read(db)
    assert again is not None and again.eligible == rebuilt.eligible


def test_bridged_triggers_follow_writes_by_anyone(
    emulator_env: dict[str, str], project: str, db: firestore.Client
) -> None:
    seed_user(db, "admin-made", configured=False)
    seed_user(db, "switch", enabled=False)
    assert eligible(db) == {}
    with LocalStack(project, dict(emulator_env)):
        # An admin script marks keys configured; the owner enables trading from a client.
        db.document(paths.alpaca_config_doc("admin-made")).update({"configured": True})
        db.document(paths.trading_status_doc("switch")).update({"enabled": True})
        wait_for(lambda: sorted(eligible(db)) == ["admin-made", "switch"], timeout=20)
        db.document(paths.alpaca_config_doc("admin-made")).delete()
        wait_for(lambda: list(eligible(db)) == ["switch"], timeout=20)


def test_operator_shows_and_rebuilds_the_roster(
    db: firestore.Client, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from operations import cli

    seed_user(db, "r1")
    seed_user(db, "r2", enabled=False)
    assert cli.main(["roster", "show"]) == 0
    assert "not built yet" in capsys.readouterr().out
    assert cli.main(["roster", "rebuild", "--json"]) == 0
    rebuilt = json.loads(capsys.readouterr().out)
    assert (rebuilt["users"], rebuilt["eligible"]) == (2, 1) and rebuilt["built_at"]
    db.document(paths.trading_status_doc("r2")).update({"enabled": True})
    roster.refresh(db, "r2")
    assert cli.main(["roster", "show", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["eligible"] == 2


def test_the_raw_read_decodes_what_the_client_decodes(db: firestore.Client) -> None:
    """``roster._get_maps`` reads through the client's transport, not its public API: it must
    agree with ``to_dict`` on the same documents, missing ones included."""
    for i in range(40):
        seed_user(db, f"raw-{i}.x@y", enabled=i % 3 != 0)
    names = [paths.roster_shard_doc(k) for k in range(paths.ROSTER_SHARDS)] + [paths.ROSTER_DOC]
    raw = roster._get_maps(db, names)
    by_client = {}
    for name in names:
        snapshot = db.document(name).get()
        data = snapshot.to_dict() if snapshot.exists else None
        by_client[name] = (
            {k: v for k, v in data.items() if k in ("members", "keys")} if data else None
        )
    assert raw == by_client
    assert sum(len((shard or {}).get("members", {})) for shard in raw.values()) == 40
