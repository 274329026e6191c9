"""Who is a tenant: the sign-in policy as a pure decision over a caller, and the one check every
tenant callable runs.

A tenant is a signed-in Firebase user who

- signed in with a provider ``TENANT_SIGN_IN_PROVIDERS`` allows (unset: any but ``anonymous``),
- carries ``email_verified: true`` when ``REQUIRE_VERIFIED_EMAIL`` is on (the production
  default; a phone- or custom-token-only user has no email and is then refused too), and
- was onboarded (``users/{uid}.onboarded == true``, written by ``onboard_user`` only).

``onboard_user`` applies the first two and records the policy's facts in
``users/{uid}.tenantPolicy`` (:meth:`TenantPolicy.facts`), so ``firestore.rules`` decides the same
for client writes without any environment of its own. The callables always apply the policy of
their current settings; the rules apply the facts recorded at the tenant's latest
``onboard_user`` call, which re-records them whenever they changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from agenttrader import paths
from agenttrader.callable.errors import CallableError, Status
from agenttrader.roster_verdict import is_onboarded
from agenttrader.settings import ANONYMOUS_PROVIDER

if TYPE_CHECKING:
    from google.cloud import firestore

    from agenttrader.settings import Settings

POLICY_FIELD = "tenantPolicy"
"""``users/{uid}`` field holding :meth:`TenantPolicy.facts`, read by ``firestore.rules``."""

NOT_ONBOARDED = "this account is not onboarded yet: call onboard_user first"


class Caller(Protocol):
    """What the policy looks at (a :class:`~agenttrader.callable.protocol.CallContext`)."""

    @property
    def uid(self) -> str: ...

    @property
    def email(self) -> str | None: ...

    @property
    def sign_in_provider(self) -> str | None: ...

    @property
    def email_verified(self) -> bool: ...


@dataclass(frozen=True)
class TenantPolicy:
    """``TENANT_SIGN_IN_PROVIDERS`` and ``REQUIRE_VERIFIED_EMAIL``, as one decision."""

    providers: tuple[str, ...] | None = None
    """The allowed sign-in providers; ``None``: every provider but ``anonymous``."""
    require_verified_email: bool = True

    @classmethod
    def from_settings(cls, settings: Settings) -> TenantPolicy:
        return cls(settings.tenant_sign_in_providers, settings.require_verified_email)

    def allows_provider(self, provider: str | None) -> bool:
        """A token naming no provider is never a tenant's (Firebase ID tokens always name one)."""
        if not provider:
            return False
        if self.providers is None:
            return provider != ANONYMOUS_PROVIDER
        return provider in self.providers

    def refusal(self, provider: str | None, email_verified: bool) -> CallableError | None:
        """Why a caller signed in with ``provider`` may not be a tenant, or ``None``."""
        if not self.allows_provider(provider):
            shown = "an anonymous session" if provider == ANONYMOUS_PROVIDER else "this sign-in"
            return CallableError(
                Status.PERMISSION_DENIED,
                f"{shown} cannot hold a tenant account: sign in with "
                f"{self._allowed_text()} (sign-in provider {str(provider)[:40]!r})",
                details={"reason": "sign_in_provider"},
            )
        if self.require_verified_email and not email_verified:
            return CallableError(
                Status.FAILED_PRECONDITION,
                "verify your email address first, then sign in again so that your ID token "
                "carries the verification",
                details={"reason": "email_not_verified"},
            )
        return None

    def _allowed_text(self) -> str:
        if self.providers is None:
            return "any method but an anonymous session"
        return "one of: " + ", ".join(self.providers)

    def facts(self) -> dict[str, Any]:
        """What ``users/{uid}.tenantPolicy`` records for the rules: ``providers`` (a list, or
        ``null`` for "every provider but anonymous") and ``requireVerifiedEmail``."""
        providers = list(self.providers) if self.providers is not None else None
        return {"providers": providers, "requireVerifiedEmail": self.require_verified_email}


def check_caller(ctx: Caller, policy: TenantPolicy) -> None:
    """Raise the policy's refusal of ``ctx``, if any (no Firestore access)."""
    refusal = policy.refusal(ctx.sign_in_provider, ctx.email_verified)
    if refusal is not None:
        raise refusal


def require_tenant(ctx: Caller, db: firestore.Client, policy: TenantPolicy) -> None:
    """Raise unless ``ctx`` passes ``policy`` and was onboarded (one document read)."""
    check_caller(ctx, policy)
    if not is_onboarded(db.document(paths.user_doc(ctx.uid)).get().to_dict()):
        raise CallableError(
            Status.FAILED_PRECONDITION, NOT_ONBOARDED, details={"reason": "not_onboarded"}
        )
