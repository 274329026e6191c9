"""``onboard`` against the Firestore emulator: the structure, idempotence, the race, never
overwriting what the pipeline or the user already wrote, and the tenant policy."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, NamedTuple

import pytest
from google.cloud import firestore

from accounts.onboarding import ALREADY_ONBOARDED, SUCCESS, onboard
from agenttrader import paths
from agenttrader.callable import CallableError, Status
from agenttrader.callable.tenancy import TenantPolicy
from agenttrader.snapshot import is_placeholder
from agenttrader.snapshot import placeholder as placeholder_snapshot
from tests.callable_fixtures import LENIENT, caller, onboard_tenant, synced_snapshot

UID = "new-user"


@pytest.fixture
def db(emulator_env: dict[str, str]) -> firestore.Client:
    return firestore.Client(project=emulator_env["GOOGLE_CLOUD_PROJECT"])


def doc(db: firestore.Client, path: str) -> dict[str, Any] | None:
    return db.document(path).get().to_dict()


def audit_entries(db: firestore.Client) -> list[dict[str, Any]]:
    return [d.to_dict() or {} for d in db.collection(paths.audit_collection(UID)).stream()]


def update_times(db: firestore.Client) -> dict[str, Any]:
    documents = [
        paths.user_doc(UID),
        paths.alpaca_config_doc(UID),
        paths.trading_status_doc(UID),
        paths.snapshot_doc(UID),
    ]
    return {path: db.document(path).get().update_time for path in documents}


def test_first_call_creates_the_structure(db: firestore.Client) -> None:
    result = onboard_tenant(db, UID, "new@example.com")

    assert result["status"] == SUCCESS
    assert result["userId"] == UID
    assert result["message"]
    assert any(paths.alpaca_secret_doc(UID) in step for step in result["next_steps"])

    root = doc(db, paths.user_doc(UID)) or {}
    assert root["onboarded"] is True
    assert isinstance(root["onboardedAt"], datetime)
    assert root["email"] == "new@example.com"
    assert root["emailVerified"] is False
    assert root["tenantPolicy"] == {"providers": None, "requireVerifiedEmail": False}

    config = doc(db, paths.alpaca_config_doc(UID)) or {}
    assert config["configured"] is False
    assert isinstance(config["createdAt"], datetime)
    assert paths.alpaca_secret_doc(UID) in config["instructions"]

    trading = doc(db, paths.trading_status_doc(UID)) or {}
    assert trading["enabled"] is False
    assert trading["message"]
    assert isinstance(trading["createdAt"], datetime)

    snapshot = doc(db, paths.snapshot_doc(UID)) or {}
    assert snapshot == placeholder_snapshot()
    assert is_placeholder(snapshot)

    assert doc(db, paths.alpaca_secret_doc(UID)) is None  # never fake keys
    (entry,) = audit_entries(db)
    assert entry["action"] == "onboarded" and entry["actor"] == UID
    assert entry["details"] == {
        "created": ["config/alpaca", "status/trading", "data/snapshot"],
        "signInProvider": "password",
    }


def test_second_call_changes_nothing(db: firestore.Client) -> None:
    onboard_tenant(db, UID, "new@example.com")
    before = update_times(db)
    result = onboard_tenant(db, UID, "new@example.com")
    assert result["status"] == ALREADY_ONBOARDED
    assert result["userId"] == UID
    assert update_times(db) == before
    assert len(audit_entries(db)) == 1


def test_a_later_call_refreshes_the_facts_only(db: firestore.Client) -> None:
    onboard_tenant(db, UID, "new@example.com")
    before = update_times(db)
    strict = TenantPolicy(("password",), require_verified_email=True)

    result = onboard(db, caller(UID, "other@example.com", email_verified=True), strict)

    assert result["status"] == ALREADY_ONBOARDED
    root = doc(db, paths.user_doc(UID)) or {}
    assert root["email"] == "other@example.com" and root["emailVerified"] is True
    assert root["tenantPolicy"] == {"providers": ["password"], "requireVerifiedEmail": True}
    after = update_times(db)
    assert after.pop(paths.user_doc(UID)) != before.pop(paths.user_doc(UID))
    assert after == before
    assert len(audit_entries(db)) == 1


def test_concurrent_first_calls_give_exactly_one_success(db: firestore.Client) -> None:
    with ThreadPoolExecutor(5) as pool:
        statuses = Counter(
            r["status"] for r in pool.map(lambda _: onboard_tenant(db, UID, None), range(5))
        )
    assert statuses == {SUCCESS: 1, ALREADY_ONBOARDED: 4}
    assert len(audit_entries(db)) == 1


def test_documents_written_before_onboarding_are_kept(db: firestore.Client) -> None:
    """Keys written first: the trigger already marked them configured and a sync ran."""
    secret = {"key_id": "PK1234567890ABCDEF", "secret_key": "s" * 40, "base_url": "https://x"}
    db.document(paths.alpaca_secret_doc(UID)).set(secret)
    db.document(paths.alpaca_config_doc(UID)).set({"configured": True})
    real = synced_snapshot()
    db.document(paths.snapshot_doc(UID)).set(real)
    db.document(paths.user_doc(UID)).set({"plan": "pro"})

    assert onboard_tenant(db, UID, "x@example.com")["status"] == SUCCESS

    assert doc(db, paths.alpaca_secret_doc(UID)) == secret
    assert doc(db, paths.alpaca_config_doc(UID)) == {"configured": True}
    assert (doc(db, paths.snapshot_doc(UID)) or {})["equity"] == real["equity"]
    root = doc(db, paths.user_doc(UID)) or {}
    assert root["plan"] == "pro" and root["onboarded"] is True
    assert (doc(db, paths.trading_status_doc(UID)) or {})["enabled"] is False
    (entry,) = audit_entries(db)
    assert entry["details"] == {"created": ["status/trading"], "signInProvider": "password"}


def test_a_user_without_email_is_onboarded_when_no_verified_email_is_required(
    db: firestore.Client,
) -> None:
    assert onboard(db, caller(UID, None, provider="phone"), LENIENT)["status"] == SUCCESS
    root = doc(db, paths.user_doc(UID)) or {}
    assert root["email"] is None and root["emailVerified"] is False


STRICT = TenantPolicy(None, require_verified_email=True)
VERIFIED = {"email": "v@example.com", "email_verified": True}


class Refusal(NamedTuple):
    policy: TenantPolicy
    provider: str
    email: str | None
    verified: bool
    status: Status


DENIED, UNVERIFIED = Status.PERMISSION_DENIED, Status.FAILED_PRECONDITION
ONLY_PASSWORD = TenantPolicy(("password",), False)
REFUSALS = {
    "anonymous_by_default": Refusal(LENIENT, "anonymous", None, False, DENIED),
    "anonymous_even_verified": Refusal(STRICT, "anonymous", "a@example.com", True, DENIED),
    "unverified_when_required": Refusal(STRICT, "password", "u@example.com", False, UNVERIFIED),
    "no_email_when_required": Refusal(STRICT, "phone", None, False, UNVERIFIED),
    "provider_not_listed": Refusal(ONLY_PASSWORD, "google.com", "g@example.com", True, DENIED),
    "anonymous_not_listed": Refusal(ONLY_PASSWORD, "anonymous", None, False, DENIED),
}


@pytest.mark.parametrize("case", REFUSALS.values(), ids=list(REFUSALS))
def test_the_policy_refuses_and_nothing_is_written(db: firestore.Client, case: Refusal) -> None:
    ctx = caller(UID, case.email, provider=case.provider, email_verified=case.verified)
    with pytest.raises(CallableError) as refused:
        onboard(db, ctx, case.policy)
    assert refused.value.status is case.status
    assert refused.value.message
    assert list(db.document(paths.user_doc(UID)).collections()) == []
    assert doc(db, paths.user_doc(UID)) is None


ACCEPTED = {
    "verified_password_strict": (STRICT, "password", True),
    "google_strict": (STRICT, "google.com", True),
    "anonymous_listed": (TenantPolicy(("anonymous",), False), "anonymous", False),
    "unverified_lenient": (LENIENT, "password", False),
}


@pytest.mark.parametrize(("policy", "provider", "verified"), ACCEPTED.values(), ids=list(ACCEPTED))
def test_the_policy_accepts_and_records_its_facts(
    db: firestore.Client, policy: TenantPolicy, provider: str, verified: bool
) -> None:
    ctx = caller(UID, "t@example.com", provider=provider, email_verified=verified)
    assert onboard(db, ctx, policy)["status"] == SUCCESS
    root = doc(db, paths.user_doc(UID)) or {}
    assert root["onboarded"] is True and root["emailVerified"] is verified
    assert root["tenantPolicy"] == policy.facts()


def test_a_tightened_policy_reaches_the_rules_when_a_tenant_is_refused(
    db: firestore.Client,
) -> None:
    """Onboarded while anonymous sessions were allowed; the policy changed since: the refusal
    records the new facts, so firestore.rules refuses that session's writes too."""
    anonymous = caller(UID, None, provider="anonymous")
    assert onboard(db, anonymous, TenantPolicy(("anonymous",), False))["status"] == SUCCESS

    with pytest.raises(CallableError) as refused:
        onboard(db, anonymous, LENIENT)

    assert refused.value.status is Status.PERMISSION_DENIED
    root = doc(db, paths.user_doc(UID)) or {}
    assert root["onboarded"] is True
    assert root["tenantPolicy"] == {"providers": None, "requireVerifiedEmail": False}


def test_is_placeholder() -> None:
    assert is_placeholder(placeholder_snapshot())
    assert is_placeholder({"equity": "1"})  # never synced
    assert not is_placeholder(synced_snapshot())
