"""Deleting a tenant's data: every document under ``users/{uid}``, audited for operators.

One implementation serves ``delete_account`` (the tenant deletes himself) and ``agenttrader
tenants prune`` (an operator removes tenants whose Firebase Auth user is gone).

The order:

1. ``secrets/alpaca`` and ``users/{uid}`` in one batch. The credentials go first, so they are
   destroyed even if a later step fails; and with the root gone the user is no tenant any
   more, so ``firestore.rules`` refuse every further client write under ``users/{uid}`` and
   the tenant callables refuse too. A key write racing the deletion either commits before
   this batch (and is deleted by it or by step 2) or is refused after it.
2. Every other document under ``users/{uid}``, at any depth (subcollections of subcollections,
   documents under missing parents): per collection of the root, a query for at most
   :data:`PAGE_SIZE` document names of that collection's subtree, deleted in one batch that
   also adds the page to the deletion-log entry's counts, so the log never misses a commit.
3. The log entry (``ops/deletions/entries/{id}``) marked complete.

Bounded: a call deletes at most ``max_documents``; when more remain it says so and the next
call continues where it stopped. Idempotent: a call that finds nothing writes nothing and
reports the account already deleted.

What follows on its own: deleting ``config/alpaca`` and ``status/trading`` fires
``on_alpaca_config_written`` / ``on_trading_status_written``, whose roster refresh records the
user gone, so no tick publishes to them again (and the stream gateway, which reads the roster,
drops their stream). The Firebase Auth user is not deleted: that account is the user's sign-in,
managed by the app; signing in again and calling ``onboard_user`` starts a new, empty tenant.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from agenttrader import paths
from agenttrader.logs import get_logger

if TYPE_CHECKING:
    from google.cloud import firestore

_log = get_logger("accounts.deletion")

PAGE_SIZE = 400
"""Documents per batch: with the log entry's write, under Firestore's 500 writes per commit."""
MAX_DOCUMENTS_PER_CALL = 10_000
"""What one call deletes at most (25 batches): far within a callable's timeout."""
ROOT_KEY = "user"
"""The key counting ``users/{uid}`` itself in :attr:`Deletion.deleted`."""


class Reason(StrEnum):
    """Why a tenant's data was deleted (the log entry's ``reason``)."""

    SELF_SERVICE = "delete_account"
    """The tenant called ``delete_account``."""
    AUTH_USER_MISSING = "auth_user_missing"
    """``agenttrader tenants prune``: the Firebase Auth user no longer exists."""


@dataclass(frozen=True)
class Deletion:
    """What one call deleted."""

    uid: str
    deleted: Mapping[str, int] = field(default_factory=dict)
    """Documents deleted per collection directly under ``users/{uid}`` (every depth below it
    counted there), and :data:`ROOT_KEY` for the root document."""
    complete: bool = True
    """False when the call stopped at its bound with documents left: call again."""
    entry_id: str | None = None
    """The deletion-log entry written (``None`` when nothing was deleted)."""

    @property
    def total(self) -> int:
        return sum(self.deleted.values())


class _Log:
    """The deletion-log entry, written in the batches that delete (created by the first)."""

    def __init__(self, db: firestore.Client, uid: str, actor: str, reason: Reason) -> None:
        self.db = db
        self.ref = db.collection(paths.DELETIONS_COLLECTION).document()
        self.header = {"uid": uid, "actor": actor, "reason": reason.value}
        self.created = False

    def add(self, batch: firestore.WriteBatch, counts: Counter[str]) -> None:
        from google.cloud import firestore
        from google.cloud.firestore_v1.field_path import FieldPath

        total = sum(counts.values())
        if not self.created:
            body = {
                **self.header,
                "at": firestore.SERVER_TIMESTAMP,
                "deleted": dict(counts),
                "total": total,
                "complete": False,
            }
            batch.create(self.ref, body)
            self.created = True
            return
        changes: dict[str, Any] = {
            FieldPath("deleted", name).to_api_repr(): firestore.Increment(count)
            for name, count in counts.items()
        }
        batch.update(self.ref, {**changes, "total": firestore.Increment(total)})

    def finish(self, complete: bool) -> None:
        from google.cloud import firestore

        if self.created:
            self.ref.update({"complete": complete, "finishedAt": firestore.SERVER_TIMESTAMP})


def delete_tenant(
    db: firestore.Client,
    uid: str,
    *,
    actor: str,
    reason: Reason,
    max_documents: int = MAX_DOCUMENTS_PER_CALL,
    page_size: int = PAGE_SIZE,
) -> Deletion:
    """Delete every document under ``users/{uid}`` (at most ``max_documents`` of them) and log
    it; ``actor`` is who asked (the uid itself, or an operator tool)."""
    root = db.document(paths.user_doc(uid))
    log = _Log(db, uid, actor, reason)
    deleted: Counter[str] = Counter()

    def commit(refs: list[firestore.DocumentReference], counts: Counter[str]) -> None:
        batch = db.batch()
        for ref in refs:
            batch.delete(ref)
        log.add(batch, counts)
        batch.commit()
        deleted.update(counts)

    secret = db.document(paths.alpaca_secret_doc(uid))
    first = [snap for snap in db.get_all([secret, root]) if snap.exists]
    if first:
        keys = {secret.path: paths.SECRETS_ALPACA[0], root.path: ROOT_KEY}
        commit([snap.reference for snap in first], Counter(keys[s.reference.path] for s in first))

    complete = _delete_subtree(db, root, commit, max_documents - deleted.total(), page_size)
    log.finish(complete)
    result = Deletion(uid, dict(deleted), complete, log.ref.id if log.created else None)
    if result.total:
        _log.info(
            "tenant data deleted" if complete else "tenant data partly deleted",
            uid=uid,
            fields={"deleted": result.total, "reason": reason.value, "complete": complete},
        )
    return result


def _delete_subtree(
    db: firestore.Client,
    root: firestore.DocumentReference,
    commit: Callable[[list[firestore.DocumentReference], Counter[str]], None],
    budget: int,
    page_size: int,
) -> bool:
    """Delete the documents below ``root`` page by page; True when none is left."""
    from google.cloud.firestore_v1.field_path import FieldPath

    while True:
        collections = list(root.collections())
        if not collections:
            return True
        progressed = False
        for collection in collections:
            while True:
                if budget <= 0:
                    return False
                query = collection.recursive().select([FieldPath.document_id()])
                refs = [snap.reference for snap in query.limit(min(page_size, budget)).stream()]
                if not refs:
                    break
                commit(refs, Counter({collection.id: len(refs)}))
                budget -= len(refs)
                progressed = True
        if not progressed:
            # Listed but empty: nothing the queries can see is left.
            return True


def account_deletion_result(deletion: Deletion) -> dict[str, Any]:
    """``delete_account``'s answer to the tenant."""
    if not deletion.complete:
        status = "incomplete"
        message = (
            "Part of your data was deleted (your Alpaca credentials first); call "
            "delete_account again to delete the rest."
        )
    elif deletion.total:
        status = "deleted"
        message = (
            "Your tenant data was deleted: Alpaca credentials, configuration, snapshots, "
            "signals and history. Your sign-in account itself was not deleted; signing in "
            "and calling onboard_user again starts a new, empty account."
        )
    else:
        status = "already_deleted"
        message = "There is no tenant data for this account; nothing was changed."
    return {
        "status": status,
        "userId": deletion.uid,
        "deleted": dict(deletion.deleted),
        "total": deletion.total,
        "signInAccountDeleted": False,
        "message": message,
    }
