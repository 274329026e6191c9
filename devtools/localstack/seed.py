"""Seeding tenants on the emulators the way the product creates them.

Two steps, as in production: the server-side structure of an onboarded user (what
``onboard_user`` writes), then, separately, the keys the tenant writes from the client to
``users/{uid}/secrets/alpaca``. Written after the local stack is up, the keys fire
``on_alpaca_secret_written`` through the Eventarc bridge, which requests the first sync, and
its success marks ``config/alpaca`` configured, exactly as for a real user. ``configured:
true`` seeded directly (with the keys, before any trigger listens) counts as it is, as one
written by an admin script does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from agenttrader import paths
from publisher import roster

if TYPE_CHECKING:
    from google.cloud import firestore

INSTRUCTIONS = (
    "Write your Alpaca paper key id, secret key and base URL to users/{uid}/secrets/alpaca; "
    "the server checks them and syncs your account at once."
)
"""``config/alpaca.instructions`` of a freshly onboarded user."""


def seed_user(
    db: firestore.Client,
    uid: str,
    *,
    enabled: bool = True,
    configured: bool = True,
    keys: dict[str, str] | None = None,
    extra_user_fields: Mapping[str, Any] | None = None,
) -> None:
    """The Firestore structure of an onboarded user (docs/DESIGN.md), written as the server.

    ``keys`` are written in the same batch: a shortcut for tests that seed a configured user
    before any trigger listens. A demo writes them later with :func:`store_keys`.
    ``extra_user_fields`` go into ``users/{uid}`` (the demo labels its tenants there).
    """
    from google.cloud import firestore

    now = firestore.SERVER_TIMESTAMP
    batch = db.batch()
    batch.set(
        db.document(paths.user_doc(uid)),
        {
            "onboarded": True,
            "onboardedAt": now,
            "email": f"{uid}@example.com",
            **(extra_user_fields or {}),
        },
    )
    batch.set(
        db.document(paths.alpaca_config_doc(uid)),
        {"configured": configured, "createdAt": now, "instructions": INSTRUCTIONS},
    )
    batch.set(
        db.document(paths.trading_status_doc(uid)),
        {"enabled": enabled, "message": "", "createdAt": now},
    )
    if keys is not None:
        batch.set(db.document(paths.alpaca_secret_doc(uid)), keys)
    batch.commit()
    # What the triggers on those documents do, done here too: seeding may run before any
    # trigger listens, and a repeated refresh changes nothing.
    roster.refresh(db, uid)


def store_keys(
    db: firestore.Client, uid: str, *, key_id: str, secret_key: str, base_url: str
) -> None:
    """Write the tenant's keys as the client does (the one document the trigger watches)."""
    db.document(paths.alpaca_secret_doc(uid)).set(
        {"key_id": key_id, "secret_key": secret_key, "base_url": base_url}
    )
