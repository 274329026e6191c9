"""The roster on the Firestore emulator: triggers keep it at the truth whatever order they run
in, only onboarded users are members, it grows and reshards under racing triggers and ticks,
tombstones keep older verdicts from winning until they are dropped, a missing roster is
rebuilt from a scan, and the local Eventarc bridges keep it in step with writes by anyone."""

from __future__ import annotations

import json
import logging
import random
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.cloud import firestore

from agenttrader import paths, roster_layout, roster_read
from agenttrader.deps import Deps
from agenttrader.errors import DependencyUnavailable
from agenttrader.events import PubsubDelivery
from agenttrader.roster_layout import shard_of, shards_in
from agenttrader.roster_read import Roster, merge
from agenttrader.roster_verdict import ELIGIBLE, GONE, MEMBER, entry
from devtools.localstack.stack import LocalStack
from publisher import roster, roster_upkeep
from tests.pipeline_fixtures import doc, seed_user, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def db(emulator_env: dict[str, str], project: str) -> firestore.Client:
    return firestore.Client(project=project)


@pytest.fixture
def small_shards(monkeypatch: pytest.MonkeyPatch) -> int:
    """Shards of 4 users, so that a few users make the roster grow."""
    monkeypatch.setattr(roster_layout, "SHARD_CAPACITY", 4)
    return 4


def shards(db: firestore.Client) -> int:
    return shards_in(doc(db, paths.ROSTER_DOC))


def current(db: firestore.Client) -> Roster:
    """The roster now, built or not (the shard count the marker says, 1 without one)."""
    return merge(roster_read.get_shards(db, shards(db), None))


def eligible(db: firestore.Client) -> dict[str, str | None]:
    return current(db).eligible


def write_verdict(db: firestore.Client, uid: str, value: int, count: int | None = None) -> None:
    """What a trigger that read long ago (the marker saying ``count`` shards) writes when it
    finally runs."""
    ref = db.document(paths.roster_shard_doc(shard_of(uid, count or shards(db))))
    ref.set(roster._update(uid, value, None), merge=True)


def entries_of(db: firestore.Client, uid: str) -> dict[int, int]:
    """Shard → ``uid``'s entry there, over every shard document."""
    return {k: members[uid] for k, members in enumerate(current(db).held) if uid in members}


def tick_upkeep(db: firestore.Client) -> roster_upkeep.Upkeep:
    """What a tick does after publishing: read the roster, keep it in shape."""
    loaded = roster.read(db)
    assert loaded is not None
    return roster.maintain(db, loaded)


def settle(db: firestore.Client, rounds: int = 10) -> None:
    """Ticks' upkeep until there is nothing left to do."""
    for _ in range(rounds):
        done = tick_upkeep(db)
        if not (done.grown_to or done.moved or done.dropped or done.contended):
            return
    raise AssertionError("the roster upkeep did not settle")


def truth(db: firestore.Client, uids: list[str]) -> list[str]:
    return sorted(
        uid
        for uid in uids
        if (doc(db, paths.user_doc(uid)) or {}).get("onboarded") is True
        and (doc(db, paths.alpaca_config_doc(uid)) or {}).get("configured") is True
        and (doc(db, paths.trading_status_doc(uid)) or {}).get("enabled") is True
    )


def read_time_now(db: firestore.Client) -> datetime:
    moment = db.document(paths.ROSTER_DOC).get().read_time
    assert moment is not None
    return moment


def test_refresh_follows_the_documents_and_a_late_trigger_loses(db: firestore.Client) -> None:
    seed_user(db, "u.dot@x")  # uids may hold dots and @: map keys, not field paths
    assert list(eligible(db)) == ["u.dot@x"]
    earlier = db.document(paths.trading_status_doc("u.dot@x")).get().read_time
    db.document(paths.trading_status_doc("u.dot@x")).update({"enabled": False})
    assert roster.refresh(db, "u.dot@x").eligible is False
    assert eligible(db) == {}
    # A trigger that read "eligible" before the switch was turned off runs last: ignored.
    write_verdict(db, "u.dot@x", entry(earlier, ELIGIBLE))
    assert eligible(db) == {}
    # The same trigger delivered twice changes nothing either.
    assert roster.refresh(db, "u.dot@x").eligible is False
    assert roster.refresh(db, "u.dot@x").eligible is False
    assert eligible(db) == {}
    assert current(db).members == 1


def test_only_onboarded_users_are_members(db: firestore.Client) -> None:
    # A user who never onboarded writes the two documents anyway (an admin script, an old
    # client): no member, nothing published, not even counted as skipped.
    db.document(paths.alpaca_config_doc("drifter")).set({"configured": True})
    db.document(paths.trading_status_doc("drifter")).set({"enabled": True})
    assert roster.refresh(db, "drifter").state == GONE
    assert (eligible(db), current(db).members) == ({}, 0)
    # Onboarding makes it one.
    db.document(paths.user_doc("drifter")).set({"onboarded": True})
    assert roster.refresh(db, "drifter").eligible is True
    assert (list(eligible(db)), current(db).members) == (["drifter"], 1)
    # An account deleted (users/{uid} first, then what is under it) leaves a tombstone.
    db.document(paths.user_doc("drifter")).delete()
    db.document(paths.alpaca_config_doc("drifter")).delete()
    assert roster.refresh(db, "drifter").state == GONE
    assert (eligible(db), current(db).members) == ({}, 0)
    (value,) = entries_of(db, "drifter").values()
    assert value & 3 == GONE


def test_racing_writes_and_triggers_end_at_the_truth(db: firestore.Client) -> None:
    """Eight writers toggle the two documents of four users; after every write, its trigger
    (a refresh) runs in its own thread, in whatever order the threads get to it."""
    uids = [f"race-{i}" for i in range(4)]
    for uid in uids:
        seed_user(db, uid)
    errors = race(db, uids, writers=8, writes=15)
    assert not errors
    assert sorted(eligible(db)) == truth(db, uids)


def race(
    db: firestore.Client,
    uids: list[str],
    *,
    writers: int,
    writes: int,
    while_racing: Any = None,
) -> list[BaseException]:
    """``writers`` threads each toggle a random user's documents ``writes`` times, every write
    followed by its trigger in a thread of its own; ``while_racing`` runs alongside."""
    errors: list[BaseException] = []
    triggers: list[threading.Thread] = []
    done = threading.Event()

    def writer(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(writes):
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

    def alongside() -> None:
        try:
            while not done.is_set():
                while_racing()
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    side = threading.Thread(target=alongside) if while_racing else None
    if side:
        side.start()
    threads = [threading.Thread(target=writer, args=(seed,)) for seed in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for thread in triggers:
        thread.join(timeout=30)
    done.set()
    if side:
        side.join(timeout=60)
    return errors


def one_shard_roster(db: firestore.Client, uids: list[str], **seed: Any) -> None:
    """``uids`` onboarded, in a roster of one shard (as it starts): about to grow."""
    for uid in uids:
        seed_user(db, uid, **seed.get(uid, {}))
    db.document(paths.ROSTER_DOC).set({"shards": 1, "built_at": firestore.SERVER_TIMESTAMP})


def test_triggers_racing_a_reshard_end_at_the_truth_in_their_shards(
    db: firestore.Client, small_shards: int
) -> None:
    """The roster grows from 1 shard to 8 while writers and their triggers race ticks reading
    it and keeping it in shape (raising the count, moving entries)."""
    uids = [f"grow-{i}" for i in range(24)]
    one_shard_roster(db, uids)
    reads: list[Roster] = []

    def a_tick() -> None:
        loaded = roster.read(db)
        assert loaded is not None
        reads.append(loaded)
        roster.maintain(db, loaded)

    errors = race(db, uids, writers=6, writes=12, while_racing=a_tick)
    assert not errors
    settle(db)
    assert shards(db) == 8  # 24 users, 4 a shard: 6, rounded up to a power of two
    assert sorted(eligible(db)) == truth(db, uids)
    # Every entry sits in its shard, once.
    for uid in uids:
        assert list(entries_of(db, uid)) == [shard_of(uid, 8)]
    # No tick read along the way ever lost a user.
    assert len({r.shards for r in reads}) > 1
    assert all(r.members == len(uids) for r in reads)


def test_a_tick_mid_reshard_reads_every_user_and_can_resume_its_snapshot(
    db: firestore.Client, small_shards: int
) -> None:
    uids = [f"mid-{i}" for i in range(8)]
    one_shard_roster(db, uids, **{"mid-0": {"enabled": False}})
    before = roster.read(db)
    assert before is not None and before.shards == 1
    expected = sorted(uids[1:])
    assert sorted(before.eligible) == expected
    # The tick's upkeep raises the count; nothing moved yet: everyone still in shard 0.
    assert roster.maintain(db, before).grown_to == 2
    grown = roster.read(db)
    assert grown is not None and grown.shards == 2
    assert sorted(grown.eligible) == expected and grown.members == 8
    # A trigger under the new count writes where the user now belongs; one that read the old
    # count lands in shard 0, later, with an older verdict: the newer one still wins.
    mover = next(uid for uid in expected if shard_of(uid, 2) == 1)
    stale_read = db.document(paths.user_doc(mover)).get().read_time
    db.document(paths.trading_status_doc(mover)).update({"enabled": False})
    roster.refresh(db, mover)
    write_verdict(db, mover, entry(stale_read, ELIGIBLE), count=1)
    assert set(entries_of(db, mover)) == {0, 1}
    during = roster.read(db)
    assert during is not None and sorted(during.eligible) == sorted(set(expected) - {mover})
    # The moves; then the same snapshot read again (a resumed fan-out) is what it was.
    settle(db)
    assert list(entries_of(db, mover)) == [1]
    again = roster.read(db, read_time=during.read_time)
    assert again is not None and again.eligible == during.eligible
    assert [again.shard(k) for k in range(2)] == [during.shard(k) for k in range(2)]
    after = roster.read(db)
    assert after is not None and after.eligible.keys() == during.eligible.keys()
    assert all(
        list(after.shard(k)) == [(u, v) for u, v in after.shard(k) if shard_of(u, 2) == k]
        for k in range(2)
    )


def test_tombstones_keep_older_verdicts_out_then_go(
    db: firestore.Client, small_shards: int
) -> None:
    one_shard_roster(db, ["leaver", "stayer"])
    was_eligible = db.document(paths.user_doc("leaver")).get().read_time
    for path in (
        paths.user_doc("leaver"),  # first, so that the triggers of the others see it gone
        paths.alpaca_config_doc("leaver"),
        paths.trading_status_doc("leaver"),
    ):
        db.document(path).delete()
    assert roster.refresh(db, "leaver").state == GONE
    # A trigger that read "eligible" before the deletion lands late: the tombstone wins, and a
    # tick's upkeep keeps a tombstone younger than the horizon.
    write_verdict(db, "leaver", entry(was_eligible, ELIGIBLE))
    assert list(eligible(db)) == ["stayer"]
    settle(db)
    assert entries_of(db, "leaver")
    # Two shards now; a tombstone past the horizon (as if read two days ago) in its shard, and
    # an older "eligible" of the same user left in the other shard.
    db.document(paths.ROSTER_DOC).update({"shards": 2})
    home = shard_of("ghost", 2)
    assert home == 1  # so that the copy written under one shard sits in the other one
    old = read_time_now(db) - timedelta(days=2)
    tombstone = entry(old, GONE)
    write_verdict(db, "ghost", tombstone)
    write_verdict(db, "ghost", entry(old - timedelta(hours=1), ELIGIBLE), count=1)
    assert set(entries_of(db, "ghost")) == {0, 1} and "ghost" not in eligible(db)
    # The older entry is moved first (and loses to the tombstone); the tombstone is kept
    # while it is moving, then dropped: at no point is the user eligible again.
    tick_upkeep(db)
    assert entries_of(db, "ghost") == {home: tombstone}
    assert "ghost" not in eligible(db)
    settle(db)
    assert entries_of(db, "ghost") == {}
    assert list(eligible(db)) == ["stayer"] and current(db).members == 1
    assert entries_of(db, "leaver")  # the recent tombstone stays


def test_ticks_grow_the_roster_after_publishing_and_move_its_entries(
    pipeline_deps: Deps, small_shards: int
) -> None:
    from publisher.tick import fan_out

    db = pipeline_deps.firestore
    uids = [f"tick-{i}" for i in range(10)]
    one_shard_roster(db, uids)

    def a_tick(n: int) -> int:
        at = datetime.now(UTC)
        return fan_out(pipeline_deps, PubsubDelivery(f"grow-{n}", b"{}", {}, at)).published

    assert a_tick(1) == 10  # published from one shard, then the count raised
    assert shards(db) == 4  # 10 users, 4 a shard: 3, rounded up
    # The next one reads four shards (everyone still in the first) and moves the entries.
    assert a_tick(2) == 10
    for uid in uids:
        assert list(entries_of(db, uid)) == [shard_of(uid, 4)]


def test_a_verdict_that_landed_late_is_read_and_written_again(
    db: firestore.Client, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import time

    from agenttrader import roster_verdict

    seed_user(db, "slow")
    monkeypatch.setattr(roster, "LATE_WRITE", timedelta(milliseconds=300))
    calls = {"n": 0}
    original = roster.verdict

    def stalled(*args: Any) -> roster_verdict.Verdict:
        calls["n"] += 1
        if calls["n"] == 1:
            time.sleep(0.6)  # an instance frozen between its read and its write
        return original(*args)

    monkeypatch.setattr(roster, "verdict", stalled)
    with caplog.at_level(logging.WARNING):
        assert roster.refresh(db, "slow").eligible is True
    assert calls["n"] == 2
    assert "landed late" in caplog.text
    # Always late: the trigger fails, for Eventarc to retry it.
    monkeypatch.setattr(roster, "LATE_WRITE", timedelta(microseconds=-1))
    with pytest.raises(DependencyUnavailable):
        roster.refresh(db, "slow")


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
    db.document(paths.alpaca_config_doc("never")).set({"configured": True})  # not onboarded
    db.document(paths.trading_status_doc("never")).set({"enabled": True})
    # A trigger that reads after the rebuild's scan started, still on its way.
    future = db.document(paths.user_doc("late")).get().read_time + timedelta(minutes=5)
    write_verdict(db, "late", entry(future, MEMBER))
    # An entry left in a shard beyond any count (a marker lost): still read after the rebuild.
    db.document(paths.roster_shard_doc(5)).set({"members": {"stray": entry(future, ELIGIBLE)}})
    assert roster.read(db) is None  # no marker: never built
    rebuilt = roster.load(db)
    assert sorted(rebuilt.eligible) == ["on", "stray"]  # "gone" turned off, "late" kept off
    assert rebuilt.eligible["on"] is not None  # the keys' version came along
    assert rebuilt.members == 5  # on, late, gone, off, stray; "never" is no member
    marker = doc(db, paths.ROSTER_DOC)
    assert marker is not None and marker["shards"] == 8 and marker["users"] == 4
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
    from operations import cli

    seed_user(db, "r1")
    seed_user(db, "r2", enabled=False)
    assert cli.main(["roster", "show"]) == 0
    assert "not built yet" in capsys.readouterr().out
    assert cli.main(["roster", "rebuild", "--json"]) == 0
    rebuilt = json.loads(capsys.readouterr().out)
    assert (rebuilt["users"], rebuilt["eligible"], rebuilt["shards"]) == (2, 1, 1)
    assert rebuilt["built_at"] and rebuilt["fullest_shard"] == 2
    db.document(paths.trading_status_doc("r2")).update({"enabled": True})
    roster.refresh(db, "r2")
    assert cli.main(["roster", "show", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["eligible"] == 2
    assert cli.main(["roster", "show"]) == 0
    assert "2 users, 2 eligible, 1 shard" in capsys.readouterr().out


def test_the_raw_read_decodes_what_the_client_decodes(db: firestore.Client) -> None:
    """``roster_read.get_maps`` reads through the client's transport, not its public API: it
    must agree with ``to_dict`` on the same documents, missing ones included."""
    for i in range(40):
        seed_user(db, f"raw-{i}.x@y", enabled=i % 3 != 0)
    names = [paths.roster_shard_doc(k) for k in range(4)] + [paths.ROSTER_DOC]
    raw = roster_read.get_maps(db, names)
    by_client = {}
    for name in names:
        snapshot = db.document(name).get()
        data = snapshot.to_dict() if snapshot.exists else None
        by_client[name] = (
            {k: v for k, v in data.items() if k in ("members", "keys")} if data else None
        )
    assert raw == by_client
    assert sum(len((shard or {}).get("members", {})) for shard in raw.values()) == 40
