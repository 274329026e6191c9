"""The roster: who a tick publishes to, read from a few shard documents, not a scan.

Eligibility stays what docs/DESIGN.md says: ``config/alpaca.configured`` and
``status/trading.enabled`` both true, whoever wrote them — for an onboarded user
(``users/{uid}.onboarded == true``); nobody else is a member. The triggers on those two
documents (``on_alpaca_config_written``, ``on_trading_status_written``) call :func:`refresh`,
which reads them, ``users/{uid}`` and the marker ``ops/roster`` at one read time and records
the verdict in the user's shard document ``ops/roster/shards/{n}``
(:mod:`agenttrader.roster_layout`: ``n = crc32(uid) mod shards``, the marker's count):

- ``members.{uid}`` = read time in µs × 4 + state (:mod:`agenttrader.roster_verdict`), written
  with Firestore's ``maximum`` transform: the verdict read last wins whatever order the
  triggers run, retry or race in — no transaction, no lock; a redelivered event changes
  nothing. A verdict read at *t* is the truth at *t*; every later write of either document
  fires a trigger whose read comes later still, so the entry always ends at the truth. A user
  who is not onboarded gets a tombstone, dropped a day later.
- ``keys.{uid}`` = ``configuredAt`` in µs (also ``maximum``): the ``keys_version`` the worker's
  key cache checks; keys rotate forward only.

A tick reads the marker, then its shards at the marker's read time
(:mod:`agenttrader.roster_read`: one document per ~1,000 users, one consistent snapshot), and
after publishing keeps the roster in shape (:func:`maintain`, :mod:`publisher.roster_upkeep`:
the shard count doubles as the users grow, entries move to their shard, old tombstones go).
Where the marker is missing — a new deployment, data written before the roster existed — the
first tick rebuilds the roster from a scan of the documents (:func:`rebuild`, also
``agenttrader roster rebuild``), with the scan's start as read time so that every trigger
that runs meanwhile still wins.

Limits (README, "The roster's limits"): a shard holds ~1,000 users (~75 KB of a document's
1 MiB; its maps are exempt from indexing, so no index-entry limit applies) and takes about a
thousandth of the eligibility changes — ~1 write a second each at 1,000 changes a second over
1,000,000 users. A burst beyond that makes triggers fail with contention and Eventarc retry
them (with backoff, for up to a day): nothing is lost, the entries just arrive later.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, cast

from agenttrader import roster_read
from agenttrader.errors import DependencyUnavailable
from agenttrader.keys_version import version_of
from agenttrader.logs import get_logger
from agenttrader.paths import (
    CONFIG_ALPACA,
    ROSTER_COLLECTION,
    ROSTER_DOC,
    ROSTER_MAX_SHARDS,
    STATUS_TRADING,
    USERS,
    alpaca_config_doc,
    owner_of,
    roster_shard_doc,
    trading_status_doc,
    user_doc,
)
from agenttrader.roster_layout import shard_of, shards_for, shards_in
from agenttrader.roster_read import Roster, read
from agenttrader.roster_verdict import (
    ELIGIBLE,
    GONE,
    LATE_WRITE,
    MEMBER,
    TOMBSTONE_HORIZON,
    Verdict,
    entry,
    verdict,
)
from publisher.roster_upkeep import maintain

if TYPE_CHECKING:
    from google.cloud import firestore

__all__ = [
    "ELIGIBLE",
    "GONE",
    "MEMBER",
    "Roster",
    "Verdict",
    "entry",
    "load",
    "maintain",
    "read",
    "rebuild",
    "refresh",
    "verdict",
]

log = get_logger(__name__)

USERS_PER_WRITE = 200
"""Entries per rebuild commit: two ``maximum`` transforms each, under Firestore's limit of 500
field transforms per document and commit."""
WRITE_ATTEMPTS = 2
"""A trigger whose verdict keeps landing late raises (Eventarc retries it)."""


def _update(uid: str, value: int, keys_version: str | None) -> dict[str, Any]:
    from google.cloud.firestore import Maximum

    body: dict[str, Any] = {"members": {uid: Maximum(value)}}
    if keys_version is not None:
        body["keys"] = {uid: Maximum(int(keys_version))}
    return body


def _data(snapshot: Any) -> dict[str, Any] | None:
    return cast(dict[str, Any], snapshot.to_dict() or {}) if snapshot.exists else None


def refresh(db: firestore.Client, uid: str) -> Verdict:
    """Read ``uid``'s documents and record the verdict; safe to repeat, in any order.

    A write that landed longer than ``LATE_WRITE`` after its read is done again from a new
    read, so a verdict that waited (a stalled instance) is always followed by a current one,
    even after the upkeep dropped a tombstone it was older than."""
    for _ in range(WRITE_ATTEMPTS):
        result, late = _record(db, uid)
        if not late:
            return result
        log.warning("roster verdict landed late: reading it again", uid=uid)
    raise DependencyUnavailable("roster verdicts kept landing late")


def _record(db: firestore.Client, uid: str) -> tuple[Verdict, bool]:
    """The verdict as read now, written to the shard the marker says; whether it landed
    late."""
    names = [user_doc(uid), alpaca_config_doc(uid), trading_status_doc(uid), ROSTER_DOC]
    found = {snap.reference.path: snap for snap in db.get_all([db.document(n) for n in names])}
    user, config, trading, marker = (_data(found[name]) for name in names)
    result = verdict(uid, user, config, trading)
    read_time = min(snap.read_time for snap in found.values())
    written = db.document(roster_shard_doc(shard_of(uid, shards_in(marker)))).set(
        _update(uid, entry(read_time, result.state), result.keys_version), merge=True
    )
    return result, written.update_time - read_time > LATE_WRITE


def load(db: firestore.Client) -> Roster:
    """The roster, rebuilt first if it was never built."""
    roster = read(db)
    if roster is None:
        log.warning("roster missing: rebuilding it from a scan (once)")
        roster = rebuild(db)
    return roster


# --- the scan: what the roster replaced, and how it is rebuilt ------------------------------


def _by_uid(docs: Iterable[Any], kind: tuple[str, str]) -> Iterable[tuple[str, Any]]:
    """``(uid, doc)`` for documents of ``kind`` (``users/{uid}/{collection}/{doc_id}``)."""
    for doc in docs:
        uid = owner_of(doc.reference.path, kind)
        if uid is not None:
            yield uid, doc


def _where_true(db: firestore.Client, group: str, field: str, fields: list[str]) -> Iterable[Any]:
    from google.cloud.firestore_v1.base_query import FieldFilter

    query = db.collection_group(group).where(filter=FieldFilter(field, "==", True))
    return cast(Iterable[Any], query.select(fields).stream())


def configured_users(db: firestore.Client) -> dict[str, str | None]:
    """uid → keys version of every user whose ``config/alpaca.configured`` is true (the
    version is ``configuredAt``, read by the same query at no extra cost)."""
    docs = _where_true(db, "config", "configured", ["configuredAt"])
    return {
        uid: version_of((doc.to_dict() or {}).get("configuredAt"))
        for uid, doc in _by_uid(docs, CONFIG_ALPACA)
    }


def enabled_uids(db: firestore.Client) -> set[str]:
    """Users whose kill-switch ``status/trading.enabled`` is true."""
    docs = _where_true(db, "status", "enabled", [])
    return {uid for uid, _ in _by_uid(docs, STATUS_TRADING)}


def onboarded_uids(db: firestore.Client) -> set[str]:
    """Users whose ``users/{uid}.onboarded`` is true (a collection-scoped query: served by
    Firestore's automatic index)."""
    from google.cloud.firestore_v1.base_query import FieldFilter

    query = db.collection(USERS).where(filter=FieldFilter("onboarded", "==", True))
    return {doc.id for doc in query.select([]).stream()}


def eligible_users(db: firestore.Client) -> dict[str, str | None]:
    """Users whose keys are configured and whose kill-switch is on, with their keys' version."""
    configured, enabled = configured_users(db), enabled_uids(db)
    return {uid: configured[uid] for uid in sorted(configured.keys() & enabled)}


def eligible_uids(db: firestore.Client) -> list[str]:
    """Users whose keys are configured and whose kill-switch is on, sorted."""
    return list(eligible_users(db))


def rebuild(db: firestore.Client) -> Roster:
    """Record every user's verdict from a scan of the documents, then mark the roster built.

    The verdicts carry the read time of a read made before the scan, so an entry a trigger
    writes meanwhile (from a later read) is kept. The scan reads the onboarded users (the
    members), the configured and the enabled users, and every shard document there is; a user
    the roster holds that is no member any more gets a tombstone. The shard count is sized for
    the members (never lowered) and covers every shard document found, so nothing written
    under an earlier count is left unread."""
    start = db.document(ROSTER_DOC).get()
    started = start.read_time
    onboarded = onboarded_uids(db)
    configured = configured_users(db)
    enabled = enabled_uids(db)
    existing = [
        int(ref.id)
        for ref in db.collection(ROSTER_COLLECTION).list_documents()
        if ref.id.isdigit() and int(ref.id) < ROSTER_MAX_SHARDS
    ]
    held: set[str] = set()
    for maps in roster_read.get_maps(db, [roster_shard_doc(k) for k in existing]).values():
        held.update((maps or {}).get("members", {}))
    verdicts = {
        uid: Verdict(uid, uid in configured and uid in enabled, configured.get(uid))
        for uid in onboarded
    }
    for uid in (configured.keys() | enabled | held) - onboarded:
        verdicts[uid] = Verdict(uid, False, None, member=False)
    at_least = max([shards_in(_data(start)), *(k + 1 for k in existing)])
    shards = shards_for(len(verdicts), at_least)
    by_shard: dict[int, list[Verdict]] = {}
    for item in verdicts.values():
        by_shard.setdefault(shard_of(item.uid, shards), []).append(item)
    for shard, items in sorted(by_shard.items()):
        ref = db.document(roster_shard_doc(shard))
        for begin in range(0, len(items), USERS_PER_WRITE):
            body: dict[str, Any] = {"members": {}, "keys": {}}
            for item in items[begin : begin + USERS_PER_WRITE]:
                part = _update(item.uid, entry(started, item.state), item.keys_version)
                body["members"].update(part["members"])
                body["keys"].update(part.get("keys", {}))
            written = ref.set({name: value for name, value in body.items() if value}, merge=True)
            if written.update_time - started > TOMBSTONE_HORIZON / 2:
                raise DependencyUnavailable("the roster rebuild ran too long: run it again")
    _mark_built(db, shards, len(onboarded))
    roster = read(db)
    assert roster is not None  # just marked built
    log.info(
        "roster rebuilt from a scan",
        fields={"users": len(verdicts), "eligible": len(roster.eligible), "shards": shards},
    )
    return roster


def _mark_built(db: firestore.Client, shards: int, users: int) -> None:
    """Write the marker, keeping a shard count raised meanwhile (never lowering it)."""
    from google.api_core import exceptions as gexc
    from google.cloud.firestore import SERVER_TIMESTAMP

    ref = db.document(ROSTER_DOC)
    for _ in range(5):
        current = ref.get()
        body = {
            "built_at": SERVER_TIMESTAMP,
            "shards": max(shards, shards_in(_data(current))),
            "users": users,
        }
        try:
            if current.exists:
                ref.update(body, option=db.write_option(last_update_time=current.update_time))
            else:
                ref.create(body)
            return
        except (gexc.FailedPrecondition, gexc.AlreadyExists):
            continue
    raise DependencyUnavailable("the roster marker kept changing while it was marked built")


def source_owner(path: str) -> str | None:
    """The uid when ``path`` is a document eligibility is decided from
    (``users/{uid}/config/alpaca`` or ``users/{uid}/status/trading``), else ``None``."""
    return owner_of(path, CONFIG_ALPACA, STATUS_TRADING)


def on_source_written(db: firestore.Client, path: str) -> Verdict | None:
    """A trigger's whole job: refresh the roster entry of the user whose document changed.

    The event's values are not used (they may be older than what the read finds)."""
    uid = source_owner(path)
    if uid is None:
        log.warning("roster: event for a document eligibility does not depend on ignored")
        return None
    result = refresh(db, uid)
    log.info("roster entry refreshed", uid=uid, fields={"eligible": result.eligible})
    return result
