"""``agenttrader tenants prune``: remove the data of tenants whose Firebase Auth user is gone.

The candidates are every id in ``users``: onboarded roots, and roots that are missing but still
have documents below them (e.g. a kill-switch written by someone who never onboarded). They
are checked against Firebase Auth in batches of :data:`AUTH_BATCH` (``auth.get_users``' limit);
an id Auth does not know is a tenant to remove. Before anything is deleted the list is checked
once more, so a user who reappeared meanwhile is spared. Each removal is
:func:`accounts.deletion.delete_tenant` — the deletion ``delete_account`` does, in the same
order, with the same operators' log entry (reason ``auth_user_missing``) — repeated until
nothing is left under ``users/{uid}``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import TYPE_CHECKING, Any

from accounts.deletion import Reason, delete_tenant
from agenttrader import paths

if TYPE_CHECKING:
    from google.cloud import firestore

AUTH_BATCH = 100
"""Identifiers per ``auth.get_users`` call: Firebase's maximum."""
LIST_PAGE = 300
"""Document ids per page of the ``users`` listing."""
ACTOR = "operator:agenttrader tenants prune"

ExistingUsers = Callable[[Sequence[str]], set[str]]
"""Which of (at most :data:`AUTH_BATCH`) uids Firebase Auth knows."""
Progress = Callable[[str], None]


def firebase_auth_users(app: Any) -> ExistingUsers:
    """:data:`ExistingUsers` asking Firebase Auth through firebase-admin ``app`` (the Auth
    emulator when ``FIREBASE_AUTH_EMULATOR_HOST`` is set, the project's Auth otherwise)."""
    from firebase_admin import auth

    def existing(uids: Sequence[str]) -> set[str]:
        result = auth.get_users([auth.UidIdentifier(uid) for uid in uids], app=app)
        return {user.uid for user in result.users}

    return existing


def user_ids(db: firestore.Client) -> Iterator[str]:
    """Every document id in ``users``, missing roots with documents below them included."""
    for ref in db.collection(paths.USERS).list_documents(page_size=LIST_PAGE):
        yield ref.id


def batches(items: Iterable[str], size: int) -> Iterator[list[str]]:
    """``items`` in lists of ``size`` (the last one shorter)."""
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


@dataclass
class PruneReport:
    """What a prune found and did."""

    dry_run: bool
    checked: int = 0
    """Users looked up in Firebase Auth."""
    missing: list[str] = field(default_factory=list)
    """Users Firebase Auth does not know (at most ``limit``), in the order found."""
    skipped: list[str] = field(default_factory=list)
    """Ids in ``users`` that cannot be a uid (never looked up, never deleted)."""
    spared: list[str] = field(default_factory=list)
    """Missing at first, known to Auth again when checked before deleting."""
    removed: dict[str, int] = field(default_factory=dict)
    """uid → documents deleted."""
    limited: bool = False
    """The scan stopped at ``limit`` missing users."""

    def as_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "checked": self.checked,
            "missing": self.missing,
            "skipped": self.skipped,
            "spared": self.spared,
            "removed": self.removed,
            "documents_deleted": sum(self.removed.values()),
            "limited": self.limited,
        }


def find_missing(
    ids: Iterable[str],
    existing: ExistingUsers,
    report: PruneReport,
    *,
    limit: int | None,
    progress: Progress,
) -> None:
    """Fill ``report`` with the ids Auth does not know, up to ``limit`` of them."""

    def candidates() -> Iterator[str]:
        for uid in ids:
            if paths.valid_uid(uid) is None:
                report.skipped.append(uid)
            else:
                yield uid

    for batch in batches(candidates(), AUTH_BATCH):
        known = existing(batch)
        report.checked += len(batch)
        for uid in batch:
            if uid not in known:
                report.missing.append(uid)
                if limit is not None and len(report.missing) >= limit:
                    report.limited = True
                    break
        progress(
            f"checked {report.checked} users: {len(report.missing)} without a Firebase Auth user"
        )
        if report.limited:
            return


def prune(
    db: firestore.Client,
    existing: ExistingUsers,
    *,
    dry_run: bool = False,
    limit: int | None = None,
    confirm: Callable[[Sequence[str]], bool] = lambda _uids: True,
    progress: Progress = lambda _line: None,
) -> PruneReport | None:
    """Find and (unless ``dry_run``) remove the tenants Firebase Auth no longer knows; ``None``
    when ``confirm`` declined the list."""
    report = PruneReport(dry_run)
    find_missing(user_ids(db), existing, report, limit=limit, progress=progress)
    if dry_run or not report.missing:
        return report
    if not confirm(report.missing):
        return None
    for batch in batches(report.missing, AUTH_BATCH):
        back = existing(batch)  # checked again: a long confirmation may have let one return
        report.spared.extend(uid for uid in batch if uid in back)
        for uid in batch:
            if uid not in back:
                report.removed[uid] = _remove(db, uid)
                progress(f"removed {uid}: {report.removed[uid]} documents")
    return report


def render(report: PruneReport, project: str) -> str:
    """The human summary of a prune."""
    verb = "would remove" if report.dry_run else "removed"
    count = len(report.missing) if report.dry_run else len(report.removed)
    lines = [
        f"tenants prune of {project}{' (dry run)' if report.dry_run else ''}: checked"
        f" {report.checked} users, {len(report.missing)} without a Firebase Auth user"
        + (" (stopped at --limit)" if report.limited else ""),
        f"  {verb} {count} tenant(s)"
        + ("" if report.dry_run else f", {sum(report.removed.values())} documents"),
    ]
    if report.dry_run:
        lines += [f"    {uid}" for uid in report.missing]
    if report.spared:
        lines.append(
            f"  spared {len(report.spared)} that are back in Auth: {', '.join(report.spared)}"
        )
    if report.skipped:
        lines.append(f"  skipped {len(report.skipped)} id(s) that cannot be a uid")
    return "\n".join(lines) + "\n"


def _remove(db: firestore.Client, uid: str) -> int:
    total = 0
    while True:
        deletion = delete_tenant(db, uid, actor=ACTOR, reason=Reason.AUTH_USER_MISSING)
        total += deletion.total
        if deletion.complete:
            return total
