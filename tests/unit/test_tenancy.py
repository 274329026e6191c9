"""Who is a tenant: the policy's decision as a table, the caller's claims, the stored facts, the
check tenant callables run, and the settings it is built from."""

from __future__ import annotations

from typing import Any

import pytest

from agenttrader.callable import CallableError, CallContext, Status, https_callable
from agenttrader.callable.tenancy import NOT_ONBOARDED, TenantPolicy, require_tenant
from agenttrader.deps import Deps, set_deps
from agenttrader.settings import Settings
from devtools.callable_server import callables_app
from tests.callable_fixtures import FakeTokens, call, caller

ANY = TenantPolicy(None, require_verified_email=False)
ANY_VERIFIED = TenantPolicy(None, require_verified_email=True)
LISTED = TenantPolicy(("password", "google.com"), require_verified_email=False)
WITH_ANONYMOUS = TenantPolicy(("anonymous", "password"), require_verified_email=False)

DENIED, UNVERIFIED, OK = Status.PERMISSION_DENIED, Status.FAILED_PRECONDITION, None

DECISIONS = [
    # policy, provider, email_verified, refused with
    (ANY, "password", False, OK),
    (ANY, "google.com", False, OK),
    (ANY, "phone", False, OK),
    (ANY, "custom", False, OK),
    (ANY, "oidc.acme", False, OK),
    (ANY, "anonymous", False, DENIED),
    (ANY, None, False, DENIED),
    (ANY, "", False, DENIED),
    (ANY_VERIFIED, "password", True, OK),
    (ANY_VERIFIED, "password", False, UNVERIFIED),
    (ANY_VERIFIED, "phone", False, UNVERIFIED),
    (ANY_VERIFIED, "anonymous", True, DENIED),
    (LISTED, "password", False, OK),
    (LISTED, "google.com", False, OK),
    (LISTED, "phone", False, DENIED),
    (LISTED, "anonymous", False, DENIED),
    (LISTED, "Password", False, DENIED),
    (WITH_ANONYMOUS, "anonymous", False, OK),
    (WITH_ANONYMOUS, "google.com", False, DENIED),
    (TenantPolicy(("anonymous",), True), "anonymous", False, UNVERIFIED),
]


@pytest.mark.parametrize(("policy", "provider", "verified", "expected"), DECISIONS)
def test_refusal(
    policy: TenantPolicy, provider: str | None, verified: bool, expected: Status | None
) -> None:
    refusal = policy.refusal(provider, verified)
    assert (refusal.status if refusal else None) is expected
    if refusal is not None:
        assert refusal.message and refusal.details and refusal.details["reason"]


def test_refusals_say_what_to_do() -> None:
    anonymous = ANY.refusal("anonymous", False)
    assert anonymous is not None and "anonymous session" in anonymous.message
    listed = LISTED.refusal("phone", False)
    assert listed is not None and "password, google.com" in listed.message
    unverified = ANY_VERIFIED.refusal("password", False)
    assert unverified is not None and "verify your email" in unverified.message


def test_facts_are_what_the_rules_read() -> None:
    assert ANY_VERIFIED.facts() == {"providers": None, "requireVerifiedEmail": True}
    assert LISTED.facts() == {
        "providers": ["password", "google.com"],
        "requireVerifiedEmail": False,
    }


def test_policy_from_settings() -> None:
    settings = Settings.from_env(
        {"TENANT_SIGN_IN_PROVIDERS": "phone", "REQUIRE_VERIFIED_EMAIL": "1"}
    )
    assert TenantPolicy.from_settings(settings) == TenantPolicy(("phone",), True)
    assert TenantPolicy.from_settings(Settings.from_env({})) == ANY_VERIFIED


CLAIMS = [
    # claims, provider, email_verified
    ({"sub": "u", "firebase": {"sign_in_provider": "password"}}, "password", False),
    ({"sub": "u", "email": "a@b.c", "email_verified": True}, None, True),
    ({"sub": "u", "email": "a@b.c", "email_verified": "true"}, None, False),
    ({"sub": "u", "email_verified": True}, None, False),  # no email, nothing verified
    ({"sub": "u", "firebase": "anonymous"}, None, False),
    ({"sub": "u", "firebase": {"sign_in_provider": 7}}, None, False),
    ({"sub": "u", "firebase": {"sign_in_provider": "anonymous"}}, "anonymous", False),
]


@pytest.mark.parametrize(("claims", "provider", "verified"), CLAIMS)
def test_call_context_reads_the_provider_and_verification(
    claims: dict[str, Any], provider: str | None, verified: bool
) -> None:
    ctx = CallContext.from_claims(claims)
    assert (ctx.sign_in_provider, ctx.email_verified) == (provider, verified)


class _Users:
    """A Firestore stand-in holding ``users/{uid}`` documents (and counting reads)."""

    def __init__(self, documents: dict[str, dict[str, Any]]) -> None:
        self.documents = documents
        self.reads: list[str] = []

    def document(self, path: str) -> Any:
        users = self

        class Ref:
            def get(self) -> Any:
                users.reads.append(path)

                class Snap:
                    def to_dict(self) -> dict[str, Any] | None:
                        return users.documents.get(path)

                return Snap()

        return Ref()


ONBOARDED = {"users/u": {"onboarded": True}}


@pytest.mark.parametrize(
    ("documents", "ctx", "expected", "reads"),
    [
        (ONBOARDED, caller("u"), None, 1),
        ({}, caller("u"), NOT_ONBOARDED, 1),
        ({"users/u": {"onboarded": "true"}}, caller("u"), NOT_ONBOARDED, 1),
        ({"users/u": {"email": "x"}}, caller("u"), NOT_ONBOARDED, 1),
        (ONBOARDED, caller("u", provider="anonymous"), "anonymous session", 0),
    ],
)
def test_require_tenant(
    documents: dict[str, dict[str, Any]], ctx: CallContext, expected: str | None, reads: int
) -> None:
    users = _Users(documents)
    if expected is None:
        require_tenant(ctx, users, ANY)  # type: ignore[arg-type]
    else:
        with pytest.raises(CallableError, match=expected):
            require_tenant(ctx, users, ANY)  # type: ignore[arg-type]
    assert len(users.reads) == reads


@https_callable(tenant=True)
def tenants_only(ctx: CallContext, data: Any) -> str:
    return f"hello {ctx.uid}"


def test_a_tenant_callable_checks_before_its_handler_runs(fake_tokens: FakeTokens) -> None:
    users = _Users(ONBOARDED)
    set_deps(Deps(Settings(project="p", require_verified_email=False), firestore_client=users))  # type: ignore[arg-type]
    client = callables_app({"tenants_only": tenants_only}).test_client()

    def status(uid: str, **claims: Any) -> tuple[int, Any]:
        code, body = call(
            client, "/p/r/tenants_only", None, token=fake_tokens.token_for(uid, **claims)
        )
        return code, body.get("result") or body["error"]["status"]

    assert status("u") == (200, "hello u")
    assert status("stranger") == (400, "FAILED_PRECONDITION")
    assert status("u", provider="anonymous") == (403, "PERMISSION_DENIED")
    set_deps(Deps(Settings(project="p"), firestore_client=users))  # type: ignore[arg-type]
    assert status("u", email="u@example.com") == (400, "FAILED_PRECONDITION")
    assert status("u", email="u@example.com", email_verified=True) == (200, "hello u")
    assert tenants_only.__wrapped__(caller("nobody"), None) == "hello nobody"  # type: ignore[attr-defined]
