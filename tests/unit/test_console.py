"""The admin console's decisions: a tenant's state from its documents, the callables' arguments
(the command line's limits), dead letters grouped by error class, and the admin gate every
callable passes first."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from agenttrader.callable import CallableError, CallContext, Status
from agenttrader.messages import Reason, SyncRequest
from console import deadletters as dlq
from console import documents, main, requests
from console.tenants import State, StateFilter, TenantDocs, TenantPage, classify

NOW = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)
KEY_ID = "PKSECRETKEYID0000042"

ONBOARDED = {"user": {"onboarded": True, "email": "a@example.com"}}
CONFIGURED = {"config": {"configured": True}}
ENABLED = {"trading": {"enabled": True}}
SYNCED = {"snapshot": {"syncedAt": NOW, "equity": "100.5", "syncOutcome": "success"}}
FAILED = {
    "error": {"error_class": "AlpacaAuthError", "error": "401", "timestamp": NOW, "final": True}
}


@pytest.mark.parametrize(
    ("docs", "state"),
    [
        ({}, State.NOT_ONBOARDED),
        ({**ONBOARDED}, State.NOT_CONFIGURED),
        ({**ONBOARDED, "config": {"configured": False}, **ENABLED}, State.NOT_CONFIGURED),
        ({**ONBOARDED, **CONFIGURED, **ENABLED, **SYNCED, **FAILED}, State.FAILING),
        (  # keys Alpaca refused: unmarked (not configured), and failing is what to show
            {**ONBOARDED, "config": {"configured": False, "keysState": "rejected"}, **FAILED},
            State.FAILING,
        ),
        (
            {**ONBOARDED, **CONFIGURED, "trading": {"enabled": False}, **SYNCED},
            State.KILL_SWITCH_OFF,
        ),
        ({**ONBOARDED, **CONFIGURED, **ENABLED}, State.NEVER_SYNCED),
        (
            {**ONBOARDED, **CONFIGURED, **ENABLED, "snapshot": {"placeholder": True}},
            State.NEVER_SYNCED,
        ),
        ({**ONBOARDED, **CONFIGURED, **ENABLED, **SYNCED}, State.HEALTHY),
        ({**CONFIGURED, **ENABLED, **SYNCED}, State.HEALTHY),  # no user document: still listed
        (
            {**ONBOARDED, **CONFIGURED, "trading": {"enabled": "true"}, **SYNCED},
            State.KILL_SWITCH_OFF,
        ),
    ],
)
def test_a_tenant_state_comes_from_its_documents(docs: dict[str, Any], state: State) -> None:
    assert classify(TenantDocs("u1", docs)).state is state


def test_a_row_carries_what_the_table_shows() -> None:
    docs = {**ONBOARDED, **CONFIGURED, **ENABLED, **SYNCED, **FAILED}
    tenant = classify(TenantDocs("u1", {**docs, "sync": {"consecutive_failures": 4}}))
    assert (tenant.email, tenant.equity, tenant.last_sync) == ("a@example.com", "100.5", NOW)
    assert (tenant.error_class, tenant.final, tenant.consecutive_failures) == (
        "AlpacaAuthError",
        True,
        4,
    )
    placeholder = classify(TenantDocs("u2", {**ONBOARDED, "snapshot": {"placeholder": True}}))
    assert (placeholder.last_sync, placeholder.equity, placeholder.error_class) == (None,) * 3


@pytest.mark.parametrize(
    ("docs", "matching"),
    [
        ({**ONBOARDED, **CONFIGURED, **ENABLED, **SYNCED}, {"all", "healthy"}),
        (
            {**ONBOARDED, **CONFIGURED, "trading": {"enabled": False}, **SYNCED, **FAILED},
            {"all", "failing", "kill_switch_off"},
        ),
        ({**ONBOARDED, "config": {"configured": False}, **ENABLED}, {"all", "not_configured"}),
    ],
)
def test_filters_match_the_flag_they_name(docs: dict[str, Any], matching: set[str]) -> None:
    tenant = classify(TenantDocs("u1", docs))
    assert {f.value for f in StateFilter if tenant.matches(f)} == matching


# --- arguments -----------------------------------------------------------------------------


def invalid(parse: Any, data: Any, status: Status = Status.INVALID_ARGUMENT) -> str:
    with pytest.raises(CallableError) as caught:
        parse(data)
    assert caught.value.status is status
    return caught.value.message


def test_dead_letter_filters_are_the_command_lines() -> None:
    request = requests.replay_request(
        {
            "uids": ["alice"],
            "errorClasses": ["AlpacaAuthError"],
            "olderThan": "30m",
            "newerThan": "1d",
        }
    )
    assert request.filters == dlq.Filters(
        uids=frozenset({"alice"}),
        error_classes=frozenset({"AlpacaAuthError"}),
        older_than=timedelta(minutes=30),
        newer_than=timedelta(days=1),
    )
    assert (request.rate, request.max_replays, request.force, request.dry_run) == (
        dlq.DEFAULT_RATE,
        dlq.DEFAULT_MAX_REPLAYS,
        False,
        False,
    )
    assert "invalid duration" in invalid(requests.list_request, {"olderThan": "soon"})
    assert "older-than" in invalid(requests.list_request, {"olderThan": "2h", "newerThan": "1h"})
    assert "valid user id" in invalid(requests.list_request, {"uids": ["a/b"]})
    assert "unknown source" in invalid(requests.list_request, {"sources": ["elsewhere"]})
    assert "unknown field" in invalid(requests.list_request, {"uid": "alice"})


def test_a_replay_must_fit_the_functions_time() -> None:
    assert requests.replay_request({"limit": 1000, "rate": 0}).rate == 0  # no limit, as --rate 0
    assert requests.replay_request({"limit": 1000, "rate": 5}).limit == 1000  # 200 s
    assert "take longer" in invalid(requests.replay_request, {"limit": 1000, "rate": 1})
    assert "finite" in invalid(requests.replay_request, {"rate": -1})
    assert "finite" in invalid(requests.replay_request, {"rate": True})
    assert "whole number" in invalid(requests.replay_request, {"limit": 0})


def test_a_purge_needs_confirm_or_a_dry_run() -> None:
    assert "confirm" in invalid(requests.purge_request, {}, Status.FAILED_PRECONDITION)
    assert requests.purge_request({"dryRun": True}).dry_run
    assert not requests.purge_request({"confirm": True}).dry_run


def test_tenant_pages_take_a_filter_and_a_cursor_or_a_search() -> None:
    page = requests.tenants_request({"filter": "failing", "cursor": "users/u1/status/x"})
    assert (page.state_filter, page.cursor, page.page_size) == (
        StateFilter.FAILING,
        "users/u1/status/x",
        25,
    )
    assert requests.tenants_request({"search": "  ali "}).search == "ali"
    assert "must be one of" in invalid(requests.tenants_request, {"filter": "sad"})
    assert "cursor" in invalid(requests.tenants_request, {"cursor": "ops/last_pulse"})
    assert "cursor" in invalid(requests.tenants_request, {"cursor": "users/u1/status"})
    assert "search takes no" in invalid(
        requests.tenants_request, {"search": "a", "filter": "failing"}
    )
    assert "from 1 to 100" in invalid(requests.tenants_request, {"pageSize": 101})
    assert requests.tenant_uid({"uid": "alice"}) == "alice"
    assert "valid user id" in invalid(requests.tenant_uid, {"uid": "../x"})
    assert requests.status_request(None) == requests.StatusRequest(24, 5, True)


# --- dead letters by error class -----------------------------------------------------------


def letter(uid: str | None, error_class: str, minutes_ago: int) -> dlq.DeadLetter:
    request = SyncRequest(uid=uid or "x", reason=Reason.SCHEDULE, requested_at=NOW)
    return dlq.DeadLetter(
        message_id=f"{uid}-{minutes_ago}",
        published_at=NOW - timedelta(minutes=minutes_ago),
        source=dlq.SOURCE_WORKER,
        uid=uid,
        error_class=error_class,
        error="e",
        reason="schedule",
        delivery_attempts=1,
        request=request,
    )


def test_dead_letters_are_grouped_by_error_class_largest_first() -> None:
    letters = [
        letter("a", "AlpacaAuthError", 5),
        letter("b", "AlpacaAuthError", 1),
        letter("a", "AlpacaAuthError", 3),
        letter(None, "MalformedMessage", 9),
    ]
    groups = dlq.group_by_error_class(letters)
    assert [(g.error_class, g.count, g.tenants, g.uids) for g in groups] == [
        ("AlpacaAuthError", 3, 2, ("a", "b")),
        ("MalformedMessage", 1, 0, ()),
    ]
    assert groups[0].oldest == NOW - timedelta(minutes=5)
    assert documents.groups_json(groups, NOW)[0]["oldest_age_seconds"] == 300


# --- the admin gate ------------------------------------------------------------------------

CALLABLES = (
    main.admin_status,
    main.admin_tenants,
    main.admin_tenant,
    main.admin_dead_letters,
    main.admin_replay_dead_letters,
    main.admin_purge_dead_letters,
)


@pytest.mark.parametrize("callable_", CALLABLES, ids=lambda c: c.__name__)
@pytest.mark.parametrize("claims", [{}, {"admin": "true"}, {"admin": 1}])
def test_every_callable_refuses_a_non_admin_before_anything_else(
    callable_: Any, claims: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(main, "console", lambda: pytest.fail("no client for a non-admin"))
    ctx = CallContext(uid="tenant", claims={"uid": "tenant", **claims})
    with pytest.raises(CallableError) as caught:
        callable_.__wrapped__(ctx, {"uid": "x"})
    assert caught.value.status is Status.PERMISSION_DENIED


def test_the_tenant_page_json_redacts_and_lists_the_filters() -> None:
    tenant = classify(
        TenantDocs(
            "u1",
            {
                **ONBOARDED,
                **CONFIGURED,
                **ENABLED,
                "error": {"error_class": "X", "error": f"key {KEY_ID} refused", "final": False},
            },
        )
    )
    page = TenantPage((tenant,), 1, "users/u1", StateFilter.FAILING, None)
    document = documents.tenant_page_json(page)
    assert KEY_ID not in json.dumps(document)
    assert document["filters"] == [f.value for f in StateFilter]
    assert document["tenants"][0]["state"] == "failing"
    assert document["next_cursor"] == "users/u1"


def test_admin_status_answers_the_command_lines_document(monkeypatch: pytest.MonkeyPatch) -> None:
    """The callable and ``agenttrader status --json`` render one PipelineStatus the same way."""
    from console import status as status_module

    seen: dict[str, Any] = {}
    current = status_module.PipelineStatus(
        now=NOW,
        pulses=(),
        failing=(),
        failing_capped=False,
        dead_letters=dlq.Listing((), 3, True),
        dead_letters_problem=None,
        alerts=(),
    )

    def read_status(db: Any, **kwargs: Any) -> status_module.PipelineStatus:
        seen.update(kwargs)
        return current

    monkeypatch.setattr(status_module, "read_status", read_status)
    monkeypatch.setattr(status_module, "read_history", lambda db, **kw: ())
    clients = SimpleNamespace(
        deps=SimpleNamespace(firestore=object()),
        project="demo-p",
        hold_path="projects/demo-p/subscriptions/user-sync-dead-letter-hold",
        hold=object,
    )
    monkeypatch.setattr(main, "console", lambda: clients)
    admin = CallContext(uid="op", claims={"uid": "op", "admin": True})
    answer = main.admin_status.__wrapped__(admin, {"deadLetters": False, "hours": 6})  # type: ignore[attr-defined]
    assert seen["peek"] is None and seen["pulses"] == 5
    assert answer["status"] == documents.status_json(current, "demo-p", clients.hold_path)
    assert answer["history"]["hours"] == 6
