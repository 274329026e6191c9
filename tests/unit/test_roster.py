"""The roster's pure parts: the verdict, the entry encoding, reading shards, trigger paths."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agenttrader import paths
from publisher import roster

AT = datetime(2026, 11, 27, 14, 30, 0, 123456, tzinfo=UTC)


@pytest.mark.parametrize(
    ("config", "trading", "eligible"),
    [
        ({"configured": True}, {"enabled": True}, True),
        ({"configured": True}, {"enabled": False}, False),
        ({"configured": False}, {"enabled": True}, False),
        ({"configured": True}, None, False),
        (None, {"enabled": True}, False),
        (None, None, False),
        ({"configured": "true"}, {"enabled": True}, False),  # truthy is not true
        ({"configured": True}, {"enabled": 1}, False),
        ({}, {}, False),
    ],
)
def test_verdict_is_design_md_eligibility(
    config: dict[str, object] | None, trading: dict[str, object] | None, eligible: bool
) -> None:
    assert roster.verdict("u1", config, trading).eligible is eligible


VERSION = str(int(AT.timestamp() * 1_000_000))
ON = {"configured": True, "configuredAt": AT}
UNSTAMPED = {"configured": True}
BAD_STAMP = {"configured": True, "configuredAt": "2026-11-27T14:30:00Z"}
OFF = {"configured": False, "configuredAt": AT}
ENABLED, DISABLED = {"enabled": True}, {"enabled": False}

VERDICTS = [
    # (config, trading, the user exists) → (eligible, state, keys version)
    ((ON, ENABLED, True), (True, roster.ELIGIBLE, VERSION)),
    ((ON, DISABLED, True), (False, roster.KNOWN, VERSION)),  # the version waits for the switch
    ((ON, None, True), (False, roster.KNOWN, VERSION)),
    ((UNSTAMPED, ENABLED, True), (True, roster.ELIGIBLE, None)),  # configured by a script
    ((BAD_STAMP, ENABLED, True), (True, roster.ELIGIBLE, None)),
    ((OFF, ENABLED, True), (False, roster.KNOWN, None)),
    ((OFF, DISABLED, True), (False, roster.KNOWN, None)),
    ((None, ENABLED, True), (False, roster.KNOWN, None)),
    ((None, None, True), (False, roster.KNOWN, None)),  # onboarded, nothing configured yet
    ((None, None, False), (False, roster.GONE, None)),  # deleted
    ((OFF, DISABLED, False), (False, roster.GONE, None)),
    ((ON, DISABLED, False), (False, roster.GONE, VERSION)),
    ((ON, ENABLED, False), (True, roster.ELIGIBLE, VERSION)),  # its documents say it is eligible
]

Documents = tuple[dict[str, object] | None, dict[str, object] | None, bool]
Expected = tuple[bool, int, str | None]


@pytest.mark.parametrize(("documents", "expected"), VERDICTS)
def test_verdict_state_and_keys_version(documents: Documents, expected: Expected) -> None:
    config, trading, exists = documents
    eligible, state, version = expected
    found = roster.verdict("u1", config, trading, exists=exists)
    assert (found.eligible, found.state, found.keys_version) == (eligible, state, version)
    # As a tick reads it back from the shard the entry was recorded in.
    shard: dict[str, dict[str, int]] = {"members": {"u1": roster.entry(AT, found.state)}}
    if found.keys_version is not None:
        shard["keys"] = {"u1": int(found.keys_version)}
    parsed = roster._parse([shard])
    assert parsed.eligible == ({"u1": version} if eligible else {})
    assert parsed.members == (0 if state == roster.GONE else 1)


STATES = (roster.ELIGIBLE, roster.KNOWN, roster.GONE)


@pytest.mark.parametrize("old", STATES)
@pytest.mark.parametrize("new", STATES)
def test_a_later_read_always_compares_greater_whatever_the_verdict(old: int, new: int) -> None:
    earlier, later = AT, AT + timedelta(microseconds=1)
    assert roster.entry(later, new) > roster.entry(earlier, old)
    assert roster.entry(later, new) < 2**63  # a Firestore integer


def test_the_state_of_a_verdict() -> None:
    assert roster.Verdict("u", True, None).state == roster.ELIGIBLE
    assert roster.Verdict("u", False, None).state == roster.KNOWN
    assert roster.Verdict("u", False, None, exists=False).state == roster.GONE


def test_parse_keeps_eligible_entries_with_their_versions_sorted_and_counts_users() -> None:
    shards = [
        {
            "members": {
                "b": roster.entry(AT, roster.ELIGIBLE),
                "c": roster.entry(AT, roster.KNOWN),
                "gone": roster.entry(AT, roster.GONE),
            },
            "keys": {"b": 7, "c": 8},
        },
        {"members": {"a": roster.entry(AT, roster.ELIGIBLE)}},
        {},
    ]
    parsed = roster._parse(shards)
    assert parsed.eligible == {"a": None, "b": "7"}
    assert list(parsed.eligible) == ["a", "b"]
    assert parsed.members == 3  # a, b, c: "gone" is no user any more


def test_every_uid_has_a_shard_in_range_and_keeps_it() -> None:
    uids = [f"user-{i}" for i in range(2_000)] + ["a.b@c", "x:y-z_"]
    shards = {uid: roster.shard_of(uid) for uid in uids}
    assert all(0 <= s < paths.ROSTER_SHARDS for s in shards.values())
    assert {uid: roster.shard_of(uid) for uid in uids} == shards
    # Spread: no shard holds more than twice its share.
    counts = [list(shards.values()).count(s) for s in range(paths.ROSTER_SHARDS)]
    assert max(counts) < 2 * len(uids) / paths.ROSTER_SHARDS


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


def test_shard_paths_are_bounded() -> None:
    assert paths.roster_shard_doc(0) == "ops/roster/shards/0"
    with pytest.raises(ValueError, match="out of range"):
        paths.roster_shard_doc(paths.ROSTER_SHARDS)
