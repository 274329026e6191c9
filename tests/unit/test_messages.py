"""The ``user-sync`` schema: strict codecs, clear errors, tolerant of unknown extra fields."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from agenttrader.messages import (
    MAX_CLOCK_SKEW,
    MAX_MESSAGE_BYTES,
    Reason,
    SyncRequest,
    format_timestamp,
    parse_timestamp,
    requested_at_bound,
)

WHEN = datetime(2024, 5, 17, 13, 30, 5, 123456, tzinfo=UTC)
_DROP = object()
"""Marks a field to leave out of :func:`_body`."""


def _body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "uid": "user-1",
        "reason": "schedule",
        "requested_at": "2024-05-17T13:30:05.123456Z",
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not _DROP}


def _encode(payload: object) -> bytes:
    return json.dumps(payload).encode()


# --- round trip ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_",
    [
        SyncRequest(uid="user-1", reason=Reason.SCHEDULE, requested_at=WHEN),
        SyncRequest(uid="a:b.c@d_e-f", reason=Reason.FIRST_SYNC, requested_at=WHEN),
        SyncRequest(uid="u" * 128, reason=Reason.MANUAL, requested_at=WHEN, pulse_id="p-1"),
        SyncRequest(
            uid="user-2",
            reason=Reason.REPLAY,
            requested_at=WHEN,
            pulse_id="pulse-42",
            replay_count=3,
            original_reason=Reason.SCHEDULE,
        ),
        SyncRequest(
            uid="user-3", reason=Reason.SCHEDULE, requested_at=WHEN, pulse_id="p", check_clock=True
        ),
    ],
    ids=["minimal", "uid-punctuation", "max-uid-with-pulse", "replay", "check-clock"],
)
def test_round_trip(request_: SyncRequest) -> None:
    data = request_.to_bytes()

    assert SyncRequest.from_bytes(data, request_.attributes()) == request_


def test_wire_format_is_the_design_contract() -> None:
    request = SyncRequest(uid="user-1", reason=Reason.FIRST_SYNC, requested_at=WHEN)

    assert json.loads(request.to_bytes().decode("utf-8")) == {
        "uid": "user-1",
        "reason": "first_sync",
        "requested_at": "2024-05-17T13:30:05.123456Z",
    }
    assert request.attributes() == {"uid": "user-1"}


def test_optional_fields_are_written_only_when_set() -> None:
    request = SyncRequest(
        uid="user-1",
        reason=Reason.REPLAY,
        requested_at=WHEN,
        pulse_id="p",
        replay_count=2,
        original_reason=Reason.SCHEDULE,
    )

    payload = json.loads(request.to_bytes())

    assert payload["pulse_id"] == "p"
    assert payload["replay_count"] == 2
    assert payload["original_reason"] == "schedule"
    assert "check_clock" not in payload
    asking = SyncRequest(uid="user-1", reason=Reason.SCHEDULE, requested_at=WHEN, check_clock=True)
    assert json.loads(asking.to_bytes())["check_clock"] is True


def test_check_clock_defaults_to_false_for_messages_without_it() -> None:
    assert SyncRequest.from_bytes(_encode(_body())).check_clock is False
    assert SyncRequest.from_bytes(_encode(_body(check_clock=False))).check_clock is False
    assert SyncRequest.from_bytes(_encode(_body(check_clock=True))).check_clock is True


def test_timestamps_are_normalised_to_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    request = SyncRequest(
        uid="u", reason=Reason.SCHEDULE, requested_at=datetime(2024, 1, 1, 2, 0, tzinfo=plus_two)
    )

    payload = json.loads(request.to_bytes())
    decoded = SyncRequest.from_bytes(request.to_bytes())

    assert payload["requested_at"] == "2024-01-01T00:00:00.000000Z"
    assert decoded.requested_at == datetime(2024, 1, 1, tzinfo=UTC)
    assert decoded.requested_at.tzinfo == UTC


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-17T13:30:05Z", datetime(2024, 5, 17, 13, 30, 5, tzinfo=UTC)),
        ("2024-05-17T13:30:05z", datetime(2024, 5, 17, 13, 30, 5, tzinfo=UTC)),
        ("2024-05-17T15:30:05+02:00", datetime(2024, 5, 17, 13, 30, 5, tzinfo=UTC)),
        ("2024-05-17T13:30:05.5+00:00", datetime(2024, 5, 17, 13, 30, 5, 500000, tzinfo=UTC)),
    ],
)
def test_parse_timestamp_accepts_rfc3339(text: str, expected: datetime) -> None:
    assert parse_timestamp(text, "requested_at") == expected


def test_format_timestamp_refuses_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        format_timestamp(datetime(2024, 1, 1))


def test_unknown_extra_fields_are_ignored() -> None:
    data = _encode(_body(trace="abc", nested={"x": [1, 2]}, future_flag=True))

    request = SyncRequest.from_bytes(data)

    assert request.uid == "user-1"
    assert request.reason is Reason.SCHEDULE
    assert "trace" not in request.to_dict()


def test_missing_attributes_are_accepted() -> None:
    assert SyncRequest.from_bytes(_encode(_body()), None).uid == "user-1"
    assert SyncRequest.from_bytes(_encode(_body()), {}).uid == "user-1"
    assert SyncRequest.from_bytes(_encode(_body()), {"other": "x"}).uid == "user-1"


def test_effective_reason_of_a_replay_is_the_original() -> None:
    replay = SyncRequest(
        uid="u",
        reason=Reason.REPLAY,
        requested_at=WHEN,
        replay_count=1,
        original_reason=Reason.SCHEDULE,
    )
    plain = SyncRequest(uid="u", reason=Reason.MANUAL, requested_at=WHEN)

    assert replay.effective_reason is Reason.SCHEDULE
    assert plain.effective_reason is Reason.MANUAL


def test_now_is_timezone_aware_and_recent() -> None:
    before = datetime.now(UTC)
    request = SyncRequest.now("user-1", Reason.MANUAL, pulse_id="p")

    assert request.requested_at.tzinfo is not None
    assert before <= request.requested_at <= datetime.now(UTC)
    assert request.pulse_id == "p"


# --- refusals --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"not json", "not JSON"),
        (b"", "not JSON"),
        (b'{"uid": "u",', "not JSON"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b'{"uid": "\xe9"}', "not UTF-8"),
        (b"[" * 3000, "not JSON"),
        (b"[]", "JSON object.*list"),
        (b"null", "JSON object.*NoneType"),
        (b'"a string"', "JSON object.*str"),
        (b"42", "JSON object.*int"),
    ],
    ids=[
        "text",
        "empty",
        "truncated",
        "utf16-bom",
        "latin1",
        "deeply-nested",
        "array",
        "null",
        "string",
        "number",
    ],
)
def test_undecodable_bodies_are_refused(data: bytes, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SyncRequest.from_bytes(data)


@pytest.mark.parametrize(
    ("drop", "named"),
    [
        (("uid",), ["uid"]),
        (("reason",), ["reason"]),
        (("requested_at",), ["requested_at"]),
        (("uid", "requested_at"), ["uid", "requested_at"]),
        (("uid", "reason", "requested_at"), ["uid", "reason", "requested_at"]),
    ],
)
def test_missing_fields_are_named(drop: tuple[str, ...], named: list[str]) -> None:
    body = _body(**dict.fromkeys(drop, _DROP))

    with pytest.raises(ValueError, match="missing required field") as info:
        SyncRequest.from_bytes(_encode(body))

    for name in named:
        assert name in str(info.value)
    for name in {"uid", "reason", "requested_at"} - set(named):
        assert name not in str(info.value)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"uid": 123}, "uid must be a string"),
        ({"uid": None}, "uid must be a string"),
        ({"uid": ["a"]}, "uid must be a string"),
        ({"reason": 1}, "reason must be one of"),
        ({"reason": None}, "reason must be one of"),
        ({"reason": "daily"}, "reason must be one of"),
        ({"reason": "SCHEDULE"}, "reason must be one of"),
        ({"reason": ""}, "reason must be one of"),
        ({"original_reason": "bogus"}, "original_reason must be one of"),
        ({"requested_at": 1715952605}, "requested_at must be an RFC 3339 string"),
        ({"requested_at": None}, "requested_at must be an RFC 3339 string"),
        ({"requested_at": "yesterday"}, "not an RFC 3339 timestamp"),
        ({"requested_at": "2024-13-01T00:00:00Z"}, "not an RFC 3339 timestamp"),
        ({"requested_at": "2024-05-17T13:30:05+25:00"}, "not an RFC 3339 timestamp"),
        ({"requested_at": ""}, "not an RFC 3339 timestamp"),
        ({"requested_at": "2024-05-17T13:30:05"}, "must carry a timezone"),
        ({"requested_at": "2024-05-17"}, "must carry a timezone"),
        ({"requested_at": "0001-01-01T00:00:00+01:00"}, "out of range"),
        ({"requested_at": "9999-12-31T23:59:59-01:00"}, "out of range"),
        ({"pulse_id": 7}, "pulse_id must be 1-128 characters"),
        ({"pulse_id": ""}, "pulse_id must be 1-128 characters"),
        ({"pulse_id": "p" * 129}, "pulse_id must be 1-128 characters"),
        ({"pulse_id": "p/../../x"}, "pulse_id must be 1-128 characters"),
        ({"pulse_id": "__p__"}, "pulse_id must be 1-128 characters"),  # reserved by Firestore
        ({"replay_count": -1}, "replay_count must be a non-negative integer"),
        ({"replay_count": True}, "replay_count must be a non-negative integer"),
        ({"replay_count": False}, "replay_count must be a non-negative integer"),
        ({"replay_count": 1.5}, "replay_count must be a non-negative integer"),
        ({"replay_count": "2"}, "replay_count must be a non-negative integer"),
        ({"check_clock": "true"}, "check_clock must be true or false"),
        ({"check_clock": 1}, "check_clock must be true or false"),
        ({"check_clock": None}, "check_clock must be true or false"),
    ],
)
def test_wrong_field_values_are_refused(overrides: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SyncRequest.from_bytes(_encode(_body(**overrides)))


@pytest.mark.parametrize(
    "uid",
    [
        "",
        "a/b",
        "../other",
        "..",
        ".",
        "u" * 129,
        "u" * 200,
        "a b",
        "a\nb",
        "ü",
        "users/x",
        "__x__",
        "____",
    ],
    ids=[
        "empty",
        "slash",
        "dotdot-slash",
        "dotdot",
        "dot",
        "129-chars",
        "200-chars",
        "space",
        "newline",
        "non-ascii",
        "path",
        "firestore-reserved",
        "firestore-reserved-empty",
    ],
)
def test_invalid_uids_are_refused(uid: str) -> None:
    with pytest.raises(ValueError, match="invalid uid"):
        SyncRequest.from_bytes(_encode(_body(uid=uid)))
    with pytest.raises(ValueError, match="invalid uid"):
        SyncRequest(uid=uid, reason=Reason.SCHEDULE, requested_at=WHEN)


def test_oversized_payload_is_refused_before_parsing() -> None:
    body = _encode(_body(padding="x" * MAX_MESSAGE_BYTES))

    with pytest.raises(ValueError, match=f"more than {MAX_MESSAGE_BYTES}"):
        SyncRequest.from_bytes(body)


def test_payload_at_the_limit_is_accepted() -> None:
    body = _encode(_body(padding=""))
    body = _encode(_body(padding="x" * (MAX_MESSAGE_BYTES - len(body))))
    assert len(body) == MAX_MESSAGE_BYTES

    assert SyncRequest.from_bytes(body).uid == "user-1"


@pytest.mark.parametrize("attr_uid", ["user-2", "", "USER-1", "user-1 "])
def test_attribute_uid_must_match_the_body(attr_uid: str) -> None:
    with pytest.raises(ValueError, match="attribute uid does not match"):
        SyncRequest.from_bytes(_encode(_body()), {"uid": attr_uid})


def test_constructor_refuses_naive_timestamps_and_negative_replay_count() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        SyncRequest(uid="u", reason=Reason.SCHEDULE, requested_at=datetime(2024, 1, 1))
    with pytest.raises(ValueError, match="replay_count"):
        SyncRequest(uid="u", reason=Reason.SCHEDULE, requested_at=WHEN, replay_count=-1)


def test_error_messages_truncate_echoed_values() -> None:
    with pytest.raises(ValueError) as info:
        SyncRequest.from_bytes(_encode(_body(reason="r" * 1000)))

    assert len(str(info.value)) < 200


# --- requested_at bounded by the server's clock ----------------------------------------------

PUBLISHED = datetime(2026, 1, 5, 15, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("requested_at", "published_at", "now", "kept"),
    [
        # As sent: requested before its message was published, or a clock a little ahead.
        (PUBLISHED - timedelta(minutes=5), PUBLISHED, PUBLISHED, True),
        (PUBLISHED, PUBLISHED, PUBLISHED + timedelta(seconds=1), True),
        (PUBLISHED + MAX_CLOCK_SKEW, PUBLISHED, PUBLISHED + timedelta(seconds=1), True),
        # An operator's machine an hour ahead, a forged far future: bounded.
        (PUBLISHED + timedelta(hours=1), PUBLISHED, PUBLISHED + timedelta(seconds=1), False),
        (datetime(9999, 12, 31, 23, 59, tzinfo=UTC), PUBLISHED, PUBLISHED, False),
        # A publish time ahead of the receiving server: its own clock bounds.
        (PUBLISHED + timedelta(minutes=30), PUBLISHED + timedelta(hours=1), PUBLISHED, False),
    ],
)
def test_requested_at_is_bounded_by_publish_time_and_server_clock(
    requested_at: datetime, published_at: datetime, now: datetime, kept: bool
) -> None:
    sent = SyncRequest("user-1", Reason.REPLAY, requested_at, pulse_id="p")
    bound = requested_at_bound(published_at, now)
    assert bound == min(published_at, now) + MAX_CLOCK_SKEW
    bounded = sent.not_after(bound)
    assert bounded.requested_at == (requested_at if kept else bound)
    assert (bounded is sent) is kept
    assert bounded.requested_at <= now + MAX_CLOCK_SKEW
    assert (bounded.uid, bounded.reason, bounded.pulse_id) == (sent.uid, sent.reason, "p")
