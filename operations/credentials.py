"""``agenttrader credentials seal-existing | rewrap``: bring every tenant's stored credentials
into the sealed form, and onto the KEK's current primary version after a rotation.

Both walk ``users/`` (:func:`operations.tenants.user_ids`: no index needed) and read the
``secrets/alpaca`` documents :data:`READ_BATCH` at a time. Each change is one commit of the
document and the tenant's audit entry, guarded by the update time read: a client writing new
keys meanwhile wins (the trigger seals those), and the document is counted as ``changed``.
Both are idempotent, so an interrupted run is resumed by running it again: what is done is
skipped (seal-existing: the sealed documents; rewrap: those wrapped after ``--wrapped-before``).

- **seal-existing** seals each plaintext document left from before sealing existed, keeping
  the version of the credentials (the plaintext's update time): the tenant stays as
  configured as it was and the trigger, seeing a server-written sealed document, does
  nothing. Plaintext that is not well-formed credentials cannot be sealed; it is listed, and
  deleted with ``delete_invalid`` (it could never be used).
- **rewrap** re-wraps each sealed document's data key under the KEK's current primary
  version (two KEK operations, the credentials never decrypted), so the old key versions can
  be disabled; audited as ``credentials_rewrapped``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from agenttrader import audit, paths
from agenttrader.credentials import (
    PLAINTEXT_FIELDS,
    AlpacaKeys,
    SealedForm,
    Vault,
    is_sealed,
    parse_plaintext,
)
from agenttrader.errors import CredentialsTampered, PermanentError
from agenttrader.firestore_io import add_set_fields
from agenttrader.keys_version import stored_version
from operations.tenants import batches, user_ids

if TYPE_CHECKING:
    from google.cloud import firestore

READ_BATCH = 100
"""``secrets/alpaca`` documents read per ``get_all``."""
SEAL_ACTOR = "operator:agenttrader credentials seal-existing"
REWRAP_ACTOR = "operator:agenttrader credentials rewrap"

Progress = Callable[[str], None]


class Outcome(StrEnum):
    """What became of one ``secrets/alpaca`` document."""

    SEALED = "sealed"
    REWRAPPED = "rewrapped"
    ALREADY = "already"
    """Nothing to do: already sealed (seal-existing), or wrapped after the cut-off (rewrap)."""
    PLAINTEXT = "plaintext"
    """rewrap only: not sealed yet (run seal-existing first)."""
    INVALID = "invalid"
    """seal-existing: plaintext that is not well-formed credentials (never usable)."""
    DELETED = "deleted"
    """seal-existing with ``delete_invalid``: such plaintext, deleted."""
    CHANGED = "changed"
    """Written by someone else between the read and the write: left to them."""
    DAMAGED = "damaged"
    """rewrap only: a sealed document whose data key does not unwrap (left as it is)."""


@dataclass
class Report:
    """What a run found and did (or, in a dry run, would do)."""

    command: str
    dry_run: bool
    scanned: int = 0
    """``users/`` ids looked at."""
    outcomes: dict[str, list[str]] = field(default_factory=dict)
    """Outcome → uids, in the order met."""
    limited: bool = False
    """Stopped at ``limit`` documents changed."""

    def add(self, outcome: Outcome, uid: str) -> None:
        self.outcomes.setdefault(outcome.value, []).append(uid)

    def count(self, outcome: Outcome) -> int:
        return len(self.outcomes.get(outcome.value, []))

    def as_json(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "dry_run": self.dry_run,
            "scanned": self.scanned,
            "counts": {name: len(uids) for name, uids in self.outcomes.items()},
            "uids": {
                name: uids
                for name, uids in self.outcomes.items()
                if name not in (Outcome.ALREADY.value,)
            },
            "limited": self.limited,
        }


def secrets_documents(db: firestore.Client, ids: Iterable[str]) -> Iterator[tuple[str, Any]]:
    """``(uid, snapshot)`` of every existing ``users/{uid}/secrets/alpaca``, read in batches;
    ids that cannot be a uid are skipped."""
    valid = (uid for uid in ids if paths.valid_uid(uid) is not None)
    for batch in batches(valid, READ_BATCH):
        refs = [db.document(paths.alpaca_secret_doc(uid)) for uid in batch]
        found = {snap.reference.path: snap for snap in db.get_all(refs)}
        for uid, ref in zip(batch, refs, strict=True):
            snapshot = found.get(ref.path)
            if snapshot is not None and snapshot.exists:
                yield uid, snapshot


def _commit_guarded(db: firestore.Client, write: Callable[[Any], None]) -> bool:
    """Commit one batch built by ``write``; ``False`` when its precondition failed (someone
    wrote the document since it was read)."""
    from google.api_core import exceptions as gexc

    batch = db.batch()
    write(batch)
    try:
        batch.commit()
    except (gexc.FailedPrecondition, gexc.NotFound):
        return False
    return True


def seal_existing(
    db: firestore.Client,
    vault: Vault | None,
    *,
    dry_run: bool = False,
    limit: int | None = None,
    delete_invalid: bool = False,
    progress: Progress = lambda _line: None,
    ids: Iterable[str] | None = None,
) -> Report:
    """Seal every plaintext ``secrets/alpaca`` (at most ``limit`` of them); ``vault`` is
    ``None`` only for a dry run."""
    if vault is None and not dry_run:
        raise ValueError("sealing needs the vault of the KEK")

    def handle(uid: str, snapshot: Any) -> Outcome:
        stored = snapshot.to_dict() or {}
        if is_sealed(stored):
            return Outcome.ALREADY
        try:
            keys = parse_plaintext(stored)
        except PermanentError:
            return _invalid(db, uid, snapshot, delete=delete_invalid and not dry_run)
        if vault is None:  # a dry run
            return Outcome.SEALED
        return _seal(db, vault, uid, snapshot, keys)

    report = Report("seal-existing", dry_run)
    return _walk(db, report, handle, ids=ids, done=Outcome.SEALED, limit=limit, progress=progress)


def _seal(db: firestore.Client, vault: Vault, uid: str, snapshot: Any, keys: AlpacaKeys) -> Outcome:
    path = snapshot.reference.path
    stored = snapshot.to_dict() or {}
    sealed = vault.seal(keys, uid, path, stored_version(snapshot))

    def write(batch: Any) -> None:
        stale = tuple(name for name in stored if name not in sealed)
        add_set_fields(batch, db, path, sealed, delete=stale, last_update_time=snapshot.update_time)
        audit.record(
            db,
            uid,
            audit.AuditAction.CREDENTIALS_SEALED,
            SEAL_ACTOR,
            {"key_id_hint": keys.key_id_hint},
            batch=batch,
        )

    return Outcome.SEALED if _commit_guarded(db, write) else Outcome.CHANGED


def _invalid(db: firestore.Client, uid: str, snapshot: Any, *, delete: bool) -> Outcome:
    if not delete:
        return Outcome.INVALID

    def write(batch: Any) -> None:
        batch.delete(
            snapshot.reference, option=db.write_option(last_update_time=snapshot.update_time)
        )
        fields = [name for name in PLAINTEXT_FIELDS if name in (snapshot.to_dict() or {})]
        audit.record(
            db,
            uid,
            audit.AuditAction.KEYS_DELETED,
            SEAL_ACTOR,
            {"reason": "unusable plaintext left from before sealing", "fields": fields},
            batch=batch,
        )

    return Outcome.DELETED if _commit_guarded(db, write) else Outcome.CHANGED


def rewrap(
    db: firestore.Client,
    vault: Vault | None,
    *,
    dry_run: bool = False,
    limit: int | None = None,
    wrapped_before: datetime | None = None,
    progress: Progress = lambda _line: None,
    ids: Iterable[str] | None = None,
) -> Report:
    """Re-wrap the data key of every sealed ``secrets/alpaca`` last wrapped before
    ``wrapped_before`` (all of them without it), at most ``limit``; ``vault`` is ``None``
    only for a dry run."""
    if vault is None and not dry_run:
        raise ValueError("re-wrapping needs the vault of the KEK")

    def handle(uid: str, snapshot: Any) -> Outcome:
        stored = snapshot.to_dict() or {}
        if not is_sealed(stored):
            return Outcome.PLAINTEXT
        if wrapped_before is not None and _last_wrapped(stored) >= wrapped_before:
            return Outcome.ALREADY
        if vault is None:  # a dry run
            return Outcome.REWRAPPED
        return _rewrap(db, vault, uid, snapshot, stored)

    report = Report("rewrap", dry_run)
    return _walk(
        db, report, handle, ids=ids, done=Outcome.REWRAPPED, limit=limit, progress=progress
    )


def _last_wrapped(stored: Mapping[str, Any]) -> datetime:
    """When the data key was last wrapped: ``rewrappedAt``, else ``sealedAt``."""
    rewrapped = stored.get("rewrappedAt")
    if isinstance(rewrapped, datetime):
        return rewrapped
    return SealedForm.from_document(stored).sealed_at


def _rewrap(
    db: firestore.Client, vault: Vault, uid: str, snapshot: Any, stored: Mapping[str, Any]
) -> Outcome:
    try:
        fields = vault.rewrap(stored)
    except CredentialsTampered:
        return Outcome.DAMAGED

    def write(batch: Any) -> None:
        add_set_fields(
            batch, db, snapshot.reference.path, fields, last_update_time=snapshot.update_time
        )
        audit.record(
            db, uid, audit.AuditAction.CREDENTIALS_REWRAPPED, REWRAP_ACTOR, {}, batch=batch
        )

    return Outcome.REWRAPPED if _commit_guarded(db, write) else Outcome.CHANGED


PROGRESS_EVERY = 500
"""A progress line per this many users scanned."""


def _walk(
    db: firestore.Client,
    report: Report,
    handle: Callable[[str, Any], Outcome],
    *,
    ids: Iterable[str] | None,
    done: Outcome,
    limit: int | None,
    progress: Progress,
) -> Report:
    """``handle`` every ``secrets/alpaca`` of ``ids`` (every user without), recording each
    outcome; stop once ``limit`` documents came to ``done``."""
    scan = _counted(report, ids if ids is not None else user_ids(db), progress)
    for uid, snapshot in secrets_documents(db, scan):
        outcome = handle(uid, snapshot)
        report.add(outcome, uid)
        if outcome is done and _reached(report, limit, done):
            break
    progress(render_counts(report))
    return report


def _counted(report: Report, ids: Iterable[str], progress: Progress) -> Iterator[str]:
    for uid in ids:
        report.scanned += 1
        if report.scanned % PROGRESS_EVERY == 0:
            progress(render_counts(report))
        yield uid


def _reached(report: Report, limit: int | None, done: Outcome) -> bool:
    if limit is not None and report.count(done) >= limit:
        report.limited = True
        return True
    return False


def render_counts(report: Report) -> str:
    counts = ", ".join(f"{len(uids)} {name}" for name, uids in report.outcomes.items())
    return f"{report.command}: {report.scanned} users scanned ({counts or 'nothing found'})"


def render(report: Report, project: str) -> str:
    """The human summary of a run."""
    title = f"credentials {report.command} of {project}" + (" (dry run)" if report.dry_run else "")
    lines = [
        f"{title}: {render_counts(report)}" + (" — stopped at --limit" if report.limited else "")
    ]
    verb = "would be" if report.dry_run else "were"
    notes = {
        Outcome.SEALED: f"{verb} sealed",
        Outcome.REWRAPPED: f"{verb} re-wrapped under the KEK's current primary version",
        Outcome.INVALID: "hold plaintext that is not well-formed credentials: never usable; "
        "run again with --delete-invalid to delete them",
        Outcome.DELETED: "unusable plaintext deleted",
        Outcome.PLAINTEXT: "are not sealed yet: run `agenttrader credentials seal-existing`",
        Outcome.CHANGED: "were written by someone else meanwhile and left to them",
        Outcome.DAMAGED: "do not unwrap under this KEK (another deployment's, or altered): "
        "left as they are; their syncs fail closed",
    }
    for outcome, note in notes.items():
        uids = report.outcomes.get(outcome.value, [])
        if uids:
            shown = ", ".join(uids[:10]) + (
                f" … and {len(uids) - 10} more" if len(uids) > 10 else ""
            )
            lines.append(f"  {len(uids)} {note}: {shown}")
    return "\n".join(lines) + "\n"
