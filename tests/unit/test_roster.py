"""The roster's pure parts: the verdict, the entry encoding, where entries live and how the
shard count grows, merging shards into a tick's roster, and the upkeep's decisions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agenttrader import paths, roster_layout
from agenttrader.roster_layout import SHARD_CAPACITY, shard_of, shards_for, shards_in
from agenttrader.roster_read import Roster, merge
from agenttrader.roster_verdict import (
    ELIGIBLE,
    GONE,
    MEMBER,
    TOMBSTONE_HORIZON,
    Verdict,
    entry,
    expired,
    micros,
    verdict,
)
from publisher import roster, roster_upkeep
from publisher.roster_upkeep import ShardPlan, plan, survey

AT = datetime(2026, 11, 27, 14, 30, 0, 123456, tzinfo=UTC)
NOW = micros(AT)
VERSION = str(NOW)
ONBOARDED, NOT_ONBOARDED = {"onboarded": True}, {"onboarded": False}
ON = {"configured": True, "configuredAt": AT}
UNSTAMPED = {"configured": True}
BAD_STAMP = {"configured": True, "configuredAt": "2026-11-27T14:30:00Z"}
OFF = {"configured": False, "configuredAt": AT}
ENABLED, DISABLED = {"enabled": True}, {"enabled": False}

Doc = dict[str, object] | None


def merged(
    held: list[dict[str, int]], keys: list[dict[str, int]], at: datetime | None = None
) -> Roster:
    """The roster of shards with these ``members`` and ``keys`` maps, as a tick reads them
    (keys versions kept for eligible entries only)."""
    return merge(
        [
            (entries, {u: k for u, k in versions.items() if entries.get(u, 0) & 3 == ELIGIBLE})
            for entries, versions in zip(held, keys, strict=True)
        ],
        at,
    )


VERDICTS: list[tuple[tuple[Doc, Doc, Doc], tuple[bool, int, str | None]]] = [
    # (users/{uid}, config/alpaca, status/trading) → (eligible, state, keys version)
    ((ONBOARDED, ON, ENABLED), (True, ELIGIBLE, VERSION)),
    ((ONBOARDED, ON, DISABLED), (False, MEMBER, VERSION)),  # the version waits for the switch
    ((ONBOARDED, ON, None), (False, MEMBER, VERSION)),
    ((ONBOARDED, UNSTAMPED, ENABLED), (True, ELIGIBLE, None)),  # configured by a script
    ((ONBOARDED, BAD_STAMP, ENABLED), (True, ELIGIBLE, None)),
    ((ONBOARDED, OFF, ENABLED), (False, MEMBER, None)),
    ((ONBOARDED, None, ENABLED), (False, MEMBER, None)),
    ((ONBOARDED, None, None), (False, MEMBER, None)),  # onboarded, nothing configured yet
    ((ONBOARDED, {"configured": "true"}, ENABLED), (False, MEMBER, None)),  # truthy is not true
    ((ONBOARDED, ON, {"enabled": 1}), (False, MEMBER, VERSION)),
    # Not onboarded: no member, whatever its other documents say.
    ((None, None, None), (False, GONE, None)),  # deleted
    ((None, ON, ENABLED), (False, GONE, None)),  # never onboarded, documents written anyway
    ((NOT_ONBOARDED, ON, ENABLED), (False, GONE, None)),
    (({"onboarded": "true"}, ON, ENABLED), (False, GONE, None)),
    (({}, ON, ENABLED), (False, GONE, None)),
]


@pytest.mark.parametrize(("documents", "expected"), VERDICTS)
def test_verdict_from_the_three_documents(
    documents: tuple[Doc, Doc, Doc], expected: tuple[bool, int, str | None]
) -> None:
    user, config, trading = documents
    found = verdict("u1", user, config, trading)  # type: ignore[arg-type]
    assert (found.eligible, found.state, found.keys_version) == expected
    # As a tick reads it back from the shard the entry was recorded in.
    keys = {"u1": int(found.keys_version)} if found.keys_version is not None else {}
    parsed = merged([{"u1": entry(AT, found.state)}], [keys])
    assert parsed.eligible == ({"u1": expected[2]} if expected[0] else {})
    assert parsed.members == (0 if found.state == GONE else 1)


STATES = (ELIGIBLE, MEMBER, GONE)


@pytest.mark.parametrize("old", STATES)
@pytest.mark.parametrize("new", STATES)
def test_a_later_read_always_compares_greater_whatever_the_verdict(old: int, new: int) -> None:
    earlier, later = AT, AT + timedelta(microseconds=1)
    assert entry(later, new) > entry(earlier, old)
    assert entry(later, new) < 2**63  # a Firestore integer


def test_the_state_of_a_verdict() -> None:
    assert Verdict("u", True, None).state == ELIGIBLE
    assert Verdict("u", False, None).state == MEMBER
    assert Verdict("u", False, None, member=False).state == GONE


HORIZON = TOMBSTONE_HORIZON


@pytest.mark.parametrize(
    ("state", "age", "is_expired"),
    [
        (GONE, HORIZON + timedelta(microseconds=1), True),
        (GONE, HORIZON * 3, True),
        (GONE, HORIZON, False),
        (GONE, timedelta(0), False),
        (MEMBER, HORIZON * 3, False),  # only tombstones expire
        (ELIGIBLE, HORIZON * 3, False),
    ],
)
def test_only_tombstones_older_than_the_horizon_expire(
    state: int, age: timedelta, is_expired: bool
) -> None:
    assert expired(entry(AT - age, state), NOW) is is_expired


# --- layout -------------------------------------------------------------------------------------


@pytest.mark.parametrize("shards", [1, 2, 32, 1024])
def test_every_uid_has_a_shard_in_range_keeps_it_and_they_spread(shards: int) -> None:
    uids = [f"user-{i}" for i in range(20 * shards)] + ["a.b@c", "x:y-z_"]
    placed = {uid: shard_of(uid, shards) for uid in uids}
    assert all(0 <= s < shards for s in placed.values())
    assert {uid: shard_of(uid, shards) for uid in uids} == placed
    counts = [0] * shards
    for s in placed.values():
        counts[s] += 1
    assert max(counts) < 2 * len(uids) / shards


def test_when_the_count_doubles_an_entry_stays_or_moves_up_by_the_old_count() -> None:
    for i in range(2_000):
        uid = f"u-{i}"
        for shards in (1, 2, 16, 512):
            assert shard_of(uid, 2 * shards) in (
                shard_of(uid, shards),
                shard_of(uid, shards) + shards,
            )


def test_the_old_32_shard_roster_is_the_same_layout() -> None:
    import zlib

    for uid in ("u1", "tenant-0000001-xxxxxxxxxxxxx", "a.b@c"):
        assert shard_of(uid, 32) == zlib.crc32(uid.encode()) % 32


@pytest.mark.parametrize(
    ("users", "current", "expected"),
    [
        (0, 1, 1),
        (SHARD_CAPACITY, 1, 1),
        (SHARD_CAPACITY + 1, 1, 2),
        (2 * SHARD_CAPACITY + 1, 1, 4),
        (100, 32, 32),  # never lowered
        (100, 48, 64),  # rounded up to a power of two
        (1_000_000, 1, 1024),
        (1_000_000, 32, 1024),
        (1_024_000, 1024, 1024),
        (1_024_001, 1024, 2048),
        (10**12, 1, paths.ROSTER_MAX_SHARDS),  # capped
    ],
)
def test_the_shard_count_doubles_until_shards_hold_the_capacity(
    users: int, current: int, expected: int
) -> None:
    assert shards_for(users, current) == expected


@pytest.mark.parametrize(
    ("marker", "expected"),
    [
        (None, 1),
        ({}, 1),
        ({"shards": 32}, 32),
        ({"shards": 1024}, 1024),
        ({"shards": 0}, 1),
        ({"shards": -4}, 1),
        ({"shards": True}, 1),
        ({"shards": "32"}, 1),
        ({"shards": paths.ROSTER_MAX_SHARDS + 1}, 1),
    ],
)
def test_the_shard_count_the_marker_says(marker: dict[str, object] | None, expected: int) -> None:
    assert shards_in(marker) == expected


def test_shard_paths_are_bounded() -> None:
    assert paths.roster_shard_doc(0) == "ops/roster/shards/0"
    assert paths.roster_shard_doc(1023) == "ops/roster/shards/1023"
    with pytest.raises(ValueError, match="out of range"):
        paths.roster_shard_doc(paths.ROSTER_MAX_SHARDS)
    with pytest.raises(ValueError, match="out of range"):
        paths.roster_shard_doc(-1)


# --- merging shards -----------------------------------------------------------------------------

E, M, G = (entry(AT, s) for s in (ELIGIBLE, MEMBER, GONE))
E2, M2, G2 = (entry(AT + timedelta(seconds=1), s) for s in (ELIGIBLE, MEMBER, GONE))


def test_merge_lists_eligible_users_shard_by_shard_and_counts_members() -> None:
    parsed = merged(
        [{"c": E, "b": M, "gone": G}, {}, {"z": E, "a": E}],
        [{"c": 7, "b": 8}, {}, {"a": 9}],
        AT,
    )
    assert list(parsed.eligible.items()) == [("c", "7"), ("a", "9"), ("z", None)]
    assert parsed.members == 4  # b, c, a, z: "gone" is no member
    assert parsed.entries == 5
    assert (parsed.shards, parsed.shard_starts, parsed.read_time) == (3, (0, 1, 1), AT)
    assert [list(parsed.shard(k)) for k in range(3)] == [
        [("c", "7")],
        [],
        [("a", "9"), ("z", None)],
    ]


@pytest.mark.parametrize(
    ("held", "keys", "eligible", "members"),
    [
        # A user held in two shards (not moved yet): the greater entry wins, wherever it is.
        ([{"u": E}, {"u": M2}], [{}, {}], {}, 1),
        ([{"u": M}, {"u": E2}], [{}, {}], {"u": None}, 1),
        ([{"u": E2}, {"u": G}], [{}, {}], {"u": None}, 1),
        ([{"u": E}, {"u": G2}], [{}, {}], {}, 0),  # a tombstone read later wins
        ([{"u": G2}, {"u": E}], [{}, {}], {}, 0),
        # Keys only move forward: the greatest version, from whichever shard.
        ([{"u": E2}, {"u": E}], [{"u": 5}, {"u": 9}], {"u": "9"}, 1),
        ([{"u": E}, {"u": E2}], [{"u": 9}, {}], {"u": "9"}, 1),
        # The same entry twice (copied, not yet deleted): counted once.
        ([{"u": E, "v": M}, {"u": E}], [{}, {}], {"u": None}, 2),
    ],
)
def test_merge_takes_a_users_greatest_entry_over_every_shard(
    held: list[dict[str, int]],
    keys: list[dict[str, int]],
    eligible: dict[str, str | None],
    members: int,
) -> None:
    parsed = merged(held, keys)
    assert parsed.eligible == eligible
    assert parsed.members == members
    assert parsed.entries == len(set().union(*held))


def test_a_user_held_twice_is_listed_with_the_shard_of_its_winning_entry() -> None:
    parsed = merged([{"u": E, "a": E}, {"u": E2}, {"u": E}], [{}, {}, {}])
    assert [parsed.shard(k) for k in range(3)] == [[("a", None)], [("u", None)], []]
    assert parsed.shard_starts == (0, 1, 2) and list(parsed.eligible) == ["a", "u"]
    tie = merged([{}, {"u": E}, {"u": E}], [{}, {}, {}])
    assert [tie.shard(k) for k in range(3)] == [[], [("u", None)], []]


# --- upkeep -------------------------------------------------------------------------------------


def uids_in(shard: int, shards: int, count: int, prefix: str = "u") -> list[str]:
    """``count`` uids whose shard is ``shard`` with ``shards`` shards."""
    found, i = [], 0
    while len(found) < count:
        uid = f"{prefix}{i}"
        if shard_of(uid, shards) == shard:
            found.append(uid)
        i += 1
    return found


OLD_TOMB = entry(AT - HORIZON - timedelta(seconds=1), GONE)
NEW_TOMB = entry(AT - timedelta(hours=1), GONE)


def test_survey_of_a_roster_in_shape_finds_nothing_to_do() -> None:
    held = [{uid: E for uid in uids_in(k, 4, 3)} for k in range(4)]
    found = survey(held, NOW, 12)
    assert (found.grow_to, found.misplaced, found.expired) == (4, {}, {})
    assert found.shards_to_rewrite() == []


def test_survey_finds_misplaced_entries_and_expired_tombstones() -> None:
    # Two shards after a doubling from one: shard 0 still holds the users of shard 1.
    stays, moves = uids_in(0, 2, 2, "s"), uids_in(1, 2, 2, "m")
    old_gone, recent_gone, gone_but_moving = uids_in(1, 2, 3, "g")
    held = [
        {stays[0]: E, stays[1]: OLD_TOMB, moves[0]: E, moves[1]: M, gone_but_moving: E},
        {old_gone: OLD_TOMB, recent_gone: NEW_TOMB, gone_but_moving: OLD_TOMB},
    ]
    found = survey(held, NOW, 7)
    assert found.grow_to == 2
    assert found.misplaced == {0: (moves[0], moves[1], gone_but_moving)}
    # A tombstone is dropped only where no other entry of the user is still to be moved.
    assert found.expired == {0: (stays[1],), 1: (old_gone,)}
    assert found.moving == {moves[0], moves[1], gone_but_moving}
    assert found.shards_to_rewrite() == [0, 1]


@pytest.mark.parametrize(
    ("shards", "entries", "grow_to"),
    [(1, SHARD_CAPACITY, 1), (1, SHARD_CAPACITY + 1, 2), (2, 4 * SHARD_CAPACITY + 1, 8)],
)
def test_survey_sizes_the_shard_count_for_every_entry(
    shards: int, entries: int, grow_to: int
) -> None:
    assert survey([{}] * shards, NOW, entries).grow_to == grow_to


PLANS = [
    # (shards, entries of shard 0 by uid placement, moving elsewhere) → moves, drops
    ("in shape", 2, {"s0": E}, set(), {}, ()),
    ("misplaced: moved with its keys", 2, {"s0": E, "m0": M}, set(), {1: {"m0": (M, 7)}}, ()),
    ("old tombstone dropped", 2, {"s0": OLD_TOMB}, set(), {}, ("s0",)),
    ("recent tombstone kept", 2, {"s0": NEW_TOMB}, set(), {}, ()),
    ("tombstone of a user still moving", 2, {"s0": OLD_TOMB}, {"s0"}, {}, ()),
    (
        "misplaced old tombstone: moved, not dropped",
        2,
        {"m0": OLD_TOMB},
        set(),
        {1: {"m0": (OLD_TOMB, None)}},
        (),
    ),
]


@pytest.mark.parametrize(
    ("shards", "members", "moving", "moves", "drops"),
    [case[1:] for case in PLANS],
    ids=[case[0] for case in PLANS],
)
def test_plan_of_one_shard_from_its_fresh_read(
    shards: int,
    members: dict[str, int],
    moving: set[str],
    moves: dict[int, dict[str, tuple[int, int | None]]],
    drops: tuple[str, ...],
) -> None:
    # Name stand-ins: "s…" belongs in shard 0, "m…" in shard 1.
    real = {"s0": uids_in(0, shards, 1, "s")[0], "m0": uids_in(1, shards, 1, "m")[0]}
    maps = {
        "members": {real[k]: v for k, v in members.items()},
        "keys": {real["m0"]: 7} if "m0" in members and members["m0"] == M else {},
    }
    found = plan(0, maps, shards, NOW, {real[k] for k in moving})
    assert found == ShardPlan(
        {home: {real[k]: v for k, v in users.items()} for home, users in moves.items()},
        tuple(real[k] for k in drops),
    )


def test_the_inlined_placement_of_the_survey_is_shard_of() -> None:
    uids = [f"t-{i}" for i in range(500)]
    for shards in (1, 4, 64):
        held = [{u: E for u in uids if shard_of(u, shards) == k} for k in range(shards)]
        assert survey(held, NOW, len(uids)).misplaced == {}
        mixed = [{u: E for u in uids}] + [{}] * (shards - 1)
        wrong = survey(mixed, NOW, len(uids)).misplaced.get(0, ())
        assert set(wrong) == {u for u in uids if shard_of(u, shards) != 0}


# --- triggers -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "uid"),
    [
        ("users/u1/config/alpaca", "u1"),
        ("users/u1/status/trading", "u1"),
        ("users/u1/status/sync", None),
        ("users/u1/secrets/alpaca", None),
        ("users/u1/config/alpaca/x/y", None),
        ("other/u1/config/alpaca", None),
    ],
)
def test_only_the_two_source_documents_refresh_the_roster(path: str, uid: str | None) -> None:
    assert roster.source_owner(path) == uid


def test_the_upkeep_limits_hold_firestores_limits() -> None:
    # Two maximum transforms per user on one document, under 500 per commit.
    assert 2 * roster_upkeep.USERS_PER_COMMIT <= 500
    assert 2 * roster.USERS_PER_WRITE <= 500
    # A full shard (with its hash spread) is far under 1 MiB: ~75 bytes a user.
    assert 2 * roster_layout.SHARD_CAPACITY * 75 < 1024 * 1024 / 4
