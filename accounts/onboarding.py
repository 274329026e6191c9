"""``onboard_user``: create a new tenant's documents (docs/DESIGN.md data model), exactly once,
for a caller the tenant policy (:mod:`agenttrader.callable.tenancy`) accepts.

One atomic batch creates the root and whichever of the three other documents are absent, each
write guarded by a precondition (``create``, or the root's ``last_update_time``): of two
concurrent first calls exactly one commits; the other re-reads, sees ``onboarded: true`` and
answers ``already_onboarded``, as a later call does, changing nothing but the caller's facts
(:func:`user_facts`) when they moved on. Documents the key
trigger or a sync may already have written (``config/alpaca.configured``, a real snapshot) are
never overwritten, and no ``secrets`` document is created: only the user writes keys.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agenttrader import audit, paths, snapshot
from agenttrader.callable.tenancy import POLICY_FIELD, Caller, TenantPolicy
from agenttrader.firestore_io import retry_on_conflict
from agenttrader.logs import get_logger
from agenttrader.roster_verdict import is_onboarded

if TYPE_CHECKING:
    from google.cloud import firestore

_log = get_logger("accounts.onboarding")

SUCCESS = "success"
ALREADY_ONBOARDED = "already_onboarded"


def key_instructions(uid: str) -> str:
    return (
        f"Write your Alpaca API keys to the Firestore document {paths.alpaca_secret_doc(uid)} "
        'as {key_id, secret_key, base_url} (base_url "https://paper-api.alpaca.markets" for '
        "paper trading). The keys are write-only: nobody can read them back from a client. "
        "They are checked at once, this document then shows configured: true, and your account "
        "snapshot appears after the first sync."
    )


def next_steps(uid: str) -> list[str]:
    return [
        f"Write your Alpaca API keys to {paths.alpaca_secret_doc(uid)} "
        "(key_id, secret_key, base_url).",
        f"Wait for {paths.alpaca_config_doc(uid)} to show configured: true and for your "
        f"snapshot to appear at {paths.snapshot_doc(uid)}.",
        f"Enable trading by setting enabled: true on {paths.trading_status_doc(uid)}.",
        "Call generate_trading_signal for a recommendation based on your snapshot.",
    ]


def user_facts(caller: Caller, policy: TenantPolicy) -> dict[str, Any]:
    """What ``users/{uid}`` records of the caller's token and of the tenant policy: the facts
    ``firestore.rules`` decides client writes on, refreshed at every call."""
    return {
        "email": caller.email,
        "emailVerified": caller.email_verified,
        POLICY_FIELD: policy.facts(),
    }


def onboard(db: firestore.Client, caller: Caller, policy: TenantPolicy) -> dict[str, Any]:
    """Create the caller's tenant documents unless already onboarded; the callable's result.

    A caller the policy refuses gets the refusal (:class:`~agenttrader.callable.CallableError`)
    and no tenant. An onboarded caller's ``email``, ``emailVerified`` and ``tenantPolicy`` are
    brought up to date first, refused or not, so a tightened policy reaches the rules as soon as
    the tenant calls again. ``email`` comes from the verified token; users without one (phone,
    custom tokens) get ``null``.
    """
    from google.cloud import firestore

    uid = caller.uid
    refusal = policy.refusal(caller.sign_in_provider, caller.email_verified)
    facts = user_facts(caller, policy)
    root = db.document(paths.user_doc(uid))
    now = firestore.SERVER_TIMESTAMP
    children = {
        paths.alpaca_config_doc(uid): {
            "configured": False,
            "createdAt": now,
            "instructions": key_instructions(uid),
        },
        paths.trading_status_doc(uid): {
            "enabled": False,
            "message": "Trading is disabled. Set enabled: true once your keys are configured.",
            "createdAt": now,
        },
        paths.snapshot_doc(uid): snapshot.placeholder(),
    }

    def attempt() -> tuple[bool, list[str]]:
        """One atomic, guarded write: (onboarded now?, the paths created or fields refreshed)."""
        refs = [root, *(db.document(path) for path in children)]
        found = {snap.reference.path: snap for snap in db.get_all(refs)}
        current = found[root.path]
        stored = current.to_dict() or {}
        if is_onboarded(stored):
            changed = {name: value for name, value in facts.items() if stored.get(name) != value}
            if changed:
                option = db.write_option(last_update_time=current.update_time)
                root.update(changed, option=option)
            return False, sorted(changed)
        if refusal is not None:
            return False, []
        batch = db.batch()
        fields = {"onboarded": True, "onboardedAt": now, **facts}
        if current.exists:
            # A root written before onboarding (e.g. by an admin) keeps its other fields; the
            # precondition makes a concurrent onboarding of the same user lose the race.
            batch.update(root, fields, option=db.write_option(last_update_time=current.update_time))
        else:
            batch.create(root, fields)
        created = [path for path in children if not found[path].exists]
        for path in created:
            batch.create(db.document(path), children[path])
        details = {
            "created": [path.split("/", 2)[2] for path in created],
            "signInProvider": caller.sign_in_provider,
        }
        audit.record(db, uid, audit.AuditAction.ONBOARDED, uid, details, batch=batch)
        batch.commit()
        return True, created

    onboarded_now, changed = retry_on_conflict(attempt)
    if refusal is not None:
        _log.info(
            "onboarding refused",
            uid=uid,
            fields={"reason": (refusal.details or {}).get("reason"), "refreshed": changed},
        )
        raise refusal
    if not onboarded_now:
        if changed:
            _log.info("tenant facts refreshed", uid=uid, fields={"fields": changed})
        return {
            "status": ALREADY_ONBOARDED,
            "userId": uid,
            "message": "This account is already onboarded; nothing was changed.",
            "next_steps": next_steps(uid),
        }
    _log.info("user onboarded", fields={"created": changed}, uid=uid)
    return {
        "status": SUCCESS,
        "userId": uid,
        "message": "Your account is ready. Connect your Alpaca account to start.",
        "next_steps": next_steps(uid),
    }
