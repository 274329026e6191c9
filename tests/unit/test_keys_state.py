"""The credentials' version and state as pure functions: exact versions, what a config says it
handled, what the secrets trigger decides, and what a sync's success or 401 records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from accounts.key_changes import Step, decide, had_credentials
from agenttrader.keys_state import KeysState, handled_version, state_of
from agenttrader.keys_version import stored_version, version_of
from sync_worker.key_proof import proves, rejects

AT = datetime(2026, 11, 27, 14, 30, 15, 123457, tzinfo=UTC)
V = str(version_of(AT))
LATER = str(version_of(AT + timedelta(microseconds=1)))
NOW = AT + timedelta(minutes=5)
WINDOW = timedelta(seconds=10)


def test_versions_are_microseconds_and_order_like_the_times() -> None:
    assert V == "1795789815123457"
    for micros in (1_795_789_815_123_457, 1_700_000_000_000_001, 1_899_999_999_999_999):
        moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)
        assert version_of(moment) == str(micros)
    assert int(LATER) == int(V) + 1
    assert version_of("2026-11-27") is None and version_of(None) is None


def _snapshot(data: dict[str, Any] | None, update_time: datetime | None = AT) -> Any:
    return SimpleNamespace(exists=data is not None, update_time=update_time, to_dict=lambda: data)


def test_stored_version_is_the_update_time_of_plaintext_and_the_sealed_keys_version() -> None:
    keys = {"key_id": "PK0123456789", "secret_key": "s" * 40, "base_url": "https://x"}
    assert stored_version(_snapshot(keys)) == V
    assert stored_version(_snapshot(None, None)) is None
    # Sealing and re-wrapping rewrite the document but keep the version of the credentials.
    sealed = {"sealed": True, "keys_version": "1700000000000001", "ciphertext": b"x"}
    assert stored_version(_snapshot(sealed, AT + timedelta(hours=1))) == "1700000000000001"
    # Only the server's sealed form names its version; a client cannot set one.
    assert stored_version(_snapshot({**keys, "keys_version": "1"})) == V
    assert stored_version(_snapshot({**sealed, "keys_version": None})) == V


def config(
    state: KeysState | str | None, *, at: datetime | None = AT, **fields: Any
) -> dict[str, Any]:
    data: dict[str, Any] = {"configured": state == KeysState.PROVEN, **fields}
    if state is not None:
        data["keysState"] = str(state)
    if at is not None:
        data["configuredAt"] = at
    return data


@pytest.mark.parametrize(
    ("data", "state", "version"),
    [
        (config(KeysState.PENDING), KeysState.PENDING, V),
        (config(KeysState.PROVEN), KeysState.PROVEN, V),
        (config(KeysState.DELETED, at=None), KeysState.DELETED, None),
        # Written some other way: its version is unknown, whatever configuredAt says.
        (config(None), None, None),
        ({"configured": True}, None, None),
        (config("sealed"), None, None),  # not a state of ours
        (config(7), None, None),  # type: ignore[arg-type]
        (None, None, None),
    ],
    ids=["pending", "proven", "deleted", "legacy", "seeded", "unknown-state", "not-str", "none"],
)
def test_what_a_config_says_it_handled(
    data: dict[str, Any] | None, state: KeysState | None, version: str | None
) -> None:
    assert state_of(data) is state
    assert handled_version(data) == version


RECENT = {"keysHandledAt": NOW - timedelta(seconds=3)}
OLD = {"keysHandledAt": NOW - timedelta(seconds=30)}

DECISIONS: list[tuple[str, str | None, dict[str, Any] | None, Step]] = [
    # id, stored version (None: no document), config/alpaca's data (None: missing), decision
    ("first-keys", V, config(None, at=None), Step.NEW),
    ("first-keys-no-config", V, None, Step.NEW),
    ("seeded-configured-user-rewrites", V, {"configured": True}, Step.NEW),
    ("legacy-stamp-is-not-a-version", V, config(None), Step.NEW),
    ("redelivered-pending", V, config(KeysState.PENDING, keysEventId="other"), Step.NOTHING),
    ("redelivered-proven", V, config(KeysState.PROVEN, keysEventId="ev"), Step.NOTHING),
    ("redelivered-rejected", V, config(KeysState.REJECTED), Step.NOTHING),
    ("redelivered-invalid", V, config(KeysState.INVALID, keysEventId="ev"), Step.NOTHING),
    (
        "own-redelivery-while-pending",
        V,
        config(KeysState.PENDING, keysEventId="ev"),
        Step.REPUBLISH,
    ),
    ("rotated", LATER, config(KeysState.PROVEN, **OLD), Step.NEW),
    ("rotated-within-window", LATER, config(KeysState.PENDING, **RECENT), Step.WAIT),
    (
        "rotated-after-rejection-within-window",
        LATER,
        config(KeysState.REJECTED, **RECENT),
        Step.WAIT,
    ),
    (
        "clock-far-ahead-still-waits",
        LATER,
        config(KeysState.PENDING, keysHandledAt=NOW + timedelta(seconds=5)),
        Step.WAIT,
    ),
    ("window-just-over", LATER, config(KeysState.PENDING, keysHandledAt=NOW - WINDOW), Step.NEW),
    ("re-created-after-delete", LATER, config(KeysState.DELETED, **OLD), Step.NEW),
    ("deleted", None, config(KeysState.PROVEN), Step.DELETE),
    ("deleted-seeded", None, {"configured": True}, Step.DELETE),
    (
        "deleted-within-window-is-not-delayed",
        None,
        config(KeysState.PENDING, **RECENT),
        Step.DELETE,
    ),
    ("redelivered-delete", None, config(KeysState.DELETED, at=None), Step.NOTHING),
    # Refused credentials are deleted by the trigger itself: that delete changes nothing.
    ("refused-keys-deleted", None, config(KeysState.INVALID), Step.NOTHING),
    ("delete-without-config", None, None, Step.NOTHING),
]


@pytest.mark.parametrize(
    ("version", "data", "step"), [d[1:] for d in DECISIONS], ids=[d[0] for d in DECISIONS]
)
def test_the_trigger_acts_on_the_stored_version(
    version: str | None, data: dict[str, Any] | None, step: Step
) -> None:
    assert decide(version, data, "ev", NOW, WINDOW) is step


@pytest.mark.parametrize(
    ("data", "had"),
    [
        (None, False),
        ({"configured": False}, False),
        ({"configured": True}, True),
        (config(KeysState.DELETED), False),
        (config(KeysState.PENDING), True),
        (config(KeysState.INVALID), True),
        (config(KeysState.REJECTED), True),
    ],
)
def test_new_credentials_are_a_rotation_when_others_were_there(
    data: dict[str, Any] | None, had: bool
) -> None:
    assert had_credentials(data) is had


VERDICTS: list[tuple[str, dict[str, Any], str, bool, bool]] = [
    # id, config, version of the keys used, a success proves, a 401/403 rejects
    ("pending-same-version", config(KeysState.PENDING), V, True, True),
    (
        "pending-older-keys-used",
        config(KeysState.PENDING, at=AT + timedelta(seconds=1)),
        V,
        False,
        False,
    ),
    ("pending-newer-keys-used", config(KeysState.PENDING), LATER, False, False),
    ("proven", config(KeysState.PROVEN), V, False, True),
    ("rejected-same-version", config(KeysState.REJECTED), V, True, False),
    ("rejected-other-version", config(KeysState.REJECTED), LATER, False, False),
    ("invalid", config(KeysState.INVALID), V, False, False),
    ("deleted", config(KeysState.DELETED), V, False, False),
    # Written by a script, a seed or before versions: a 401 unmarks, a success proves nothing.
    ("seeded-configured", {"configured": True}, V, False, True),
    ("legacy-configured", config(None, configured=True), V, False, True),
    ("seeded-unconfigured", {"configured": False}, V, False, True),
]


@pytest.mark.parametrize(
    ("data", "version", "proven", "rejected"),
    [v[1:] for v in VERDICTS],
    ids=[v[0] for v in VERDICTS],
)
def test_what_a_sync_records_about_the_keys(
    data: dict[str, Any], version: str, proven: bool, rejected: bool
) -> None:
    assert proves(data, version) is proven
    assert rejects(data, version) is rejected
