"""The roster: who a tick publishes to, read from ``ROSTER_SHARDS`` documents, not a scan.

Eligibility stays what docs/DESIGN.md says: ``config/alpaca.configured`` and
``status/trading.enabled`` both true, whoever wrote them. The triggers on those two documents
(``on_alpaca_config_written``, ``on_trading_status_written``) call :func:`refresh`, which reads
them and ``users/{uid}`` at one read time and records the verdict in the user's shard document
``ops/roster/shards/{n}``:

- ``members.{uid}`` = read time in µs × 4 + state (3 eligible, 2 a user who is not, 0 no such
  user any more), written with Firestore's ``maximum`` transform. The verdict read last wins
  whatever order the triggers run, retry or race in: no transaction, no lock, and a
  redelivered event changes nothing. A verdict read at
  time *t* is the truth at *t*; every later write of either document fires a trigger whose
  read comes later still, so the entry always ends at the truth.
- ``keys.{uid}`` = ``configuredAt`` in µs (also ``maximum``): the ``keys_version`` the worker's
  key cache checks; keys rotate forward only.

A tick reads the 32 shard documents (and ``ops/roster``, the marker written once the roster is
complete): the users to publish to, and how many others to count as skipped. Where the marker
is missing — a new deployment, data written before the roster existed — the first tick
rebuilds the roster from a scan of the documents
(:func:`rebuild`, also ``agenttrader roster rebuild``), with the scan's start as read time so
that every trigger that runs meanwhile still wins.

Limits: a shard document takes ~60 bytes per user, so 32 shards serve ~400,000 users before
one nears Firestore's 1 MiB; and Firestore sustains about one write a second per document, so
the roster absorbs ~32 eligibility changes a second (key writes, toggles, onboardings) — a
burst beyond that makes triggers fail with contention and Eventarc retry them (with backoff,
for up to a day); nothing is lost, the entries just arrive later.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

from agenttrader.keys_version import version_of
from agenttrader.logs import get_logger
from agenttrader.paths import (
    CONFIG_ALPACA,
    ROSTER_DOC,
    ROSTER_SHARDS,
    STATUS_TRADING,
    USERS,
    alpaca_config_doc,
    owner_of,
    roster_shard_doc,
    trading_status_doc,
    user_doc,
)

if TYPE_CHECKING:
    from google.cloud import firestore

log = get_logger(__name__)

USERS_PER_WRITE = 200
"""Entries per rebuild commit: two ``maximum`` transforms each, under Firestore's limit of 500
field transforms per commit."""


def shard_of(uid: str) -> int:
    return zlib.crc32(uid.encode()) % ROSTER_SHARDS


def _micros(moment: datetime) -> int:
    return int(moment.timestamp()) * 1_000_000 + moment.microsecond


ELIGIBLE = 3
KNOWN = 2
"""Bit of a user who exists (counted as skipped unless eligible too)."""
GONE = 0


def entry(read_time: datetime, state: int) -> int:
    """The ``members`` value of a verdict read at ``read_time``: later reads compare greater."""
    return _micros(read_time) * 4 + state


def _keys_micros(keys_version: str | None) -> int | None:
    return int(keys_version) if keys_version is not None else None


def _update(uid: str, value: int, keys_version: str | None) -> dict[str, Any]:
    from google.cloud.firestore import Maximum

    body: dict[str, Any] = {"members": {uid: Maximum(value)}}
    keys = _keys_micros(keys_version)
    if keys is not None:
        body["keys"] = {uid: Maximum(keys)}
    return body


@dataclass(frozen=True)
class Verdict:
    uid: str
    eligible: bool
    keys_version: str | None
    exists: bool = True
    """Whether the user has any of its documents (``users/{uid}``, the two above)."""

    @property
    def state(self) -> int:
        return ELIGIBLE if self.eligible else KNOWN if self.exists else GONE


def verdict(
    uid: str,
    config: dict[str, Any] | None,
    trading: dict[str, Any] | None,
    *,
    exists: bool = True,
) -> Verdict:
    """Eligibility from the two documents (``None`` = missing), as docs/DESIGN.md defines it."""
    configured = (config or {}).get("configured") is True
    enabled = (trading or {}).get("enabled") is True
    keys_version = version_of((config or {}).get("configuredAt")) if configured else None
    return Verdict(uid, configured and enabled, keys_version, exists)


def refresh(db: firestore.Client, uid: str) -> Verdict:
    """Read ``uid``'s documents and record the verdict; safe to repeat, in any order."""
    names = [user_doc(uid), alpaca_config_doc(uid), trading_status_doc(uid)]
    found = {snap.reference.path: snap for snap in db.get_all([db.document(n) for n in names])}
    user, config, trading = (found[name] for name in names)
    result = verdict(
        uid,
        config.to_dict() if config.exists else None,
        trading.to_dict() if trading.exists else None,
        exists=user.exists or config.exists or trading.exists,
    )
    read_time = min(snap.read_time for snap in found.values())
    db.document(roster_shard_doc(shard_of(uid))).set(
        _update(uid, entry(read_time, result.state), result.keys_version), merge=True
    )
    return result


@dataclass(frozen=True)
class Roster:
    """What one tick needs: eligible uids with their keys' version, sorted by uid."""

    eligible: dict[str, str | None]
    members: int
    """Users that exist, eligible or not: the others are a tick's skipped count."""


def _parse(shards: Iterable[dict[str, Any]]) -> Roster:
    eligible: dict[str, str | None] = {}
    members = 0
    for data in shards:
        entries: dict[str, int] = data.get("members") or {}
        keys: dict[str, int] = data.get("keys") or {}
        for uid, value in entries.items():
            members += bool(value & KNOWN)
            if value & 3 == ELIGIBLE:
                version = keys.get(uid)
                eligible[uid] = str(version) if version is not None else None
    return Roster(dict(sorted(eligible.items())), members)


def read(db: firestore.Client) -> Roster | None:
    """The roster, or ``None`` when it was never built (``ops/roster`` missing)."""
    names = [ROSTER_DOC] + [roster_shard_doc(k) for k in range(ROSTER_SHARDS)]
    found = _get_maps(db, names)
    if found.get(ROSTER_DOC) is None:
        return None
    return _parse(shard for name, shard in found.items() if name != ROSTER_DOC and shard)


def _get_maps(db: firestore.Client, names: list[str]) -> dict[str, dict[str, Any] | None]:
    """The ``members`` and ``keys`` maps of the documents ``names`` (``None``: missing),
    decoded from the protobuf directly rather than through the client's generic decoding
    (``to_dict``), which costs several times the CPU on maps of 100,000 entries. Uses the
    client's own transport, retry settings and emulator switch."""
    from google.cloud.firestore_v1.types import BatchGetDocumentsRequest

    client: Any = db
    prefix = f"{client._database_string}/documents/"
    request = BatchGetDocumentsRequest(
        database=client._database_string, documents=[prefix + name for name in names]
    )
    found: dict[str, dict[str, Any] | None] = {}
    responses = client._firestore_api.batch_get_documents(
        request=request, metadata=client._rpc_metadata
    )
    for response in responses:
        pb = response._pb
        if pb.HasField("found"):
            fields = pb.found.fields
            found[pb.found.name.removeprefix(prefix)] = {
                field: {k: v.integer_value for k, v in fields[field].map_value.fields.items()}
                for field in ("members", "keys")
                if field in fields
            }
        else:
            found[pb.missing.removeprefix(prefix)] = None
    return found


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


def eligible_users(db: firestore.Client) -> dict[str, str | None]:
    """Users whose keys are configured and whose kill-switch is on, with their keys' version."""
    configured, enabled = configured_users(db), enabled_uids(db)
    return {uid: configured[uid] for uid in sorted(configured.keys() & enabled)}


def eligible_uids(db: firestore.Client) -> list[str]:
    """Users whose keys are configured and whose kill-switch is on, sorted."""
    return list(eligible_users(db))


def rebuild(db: firestore.Client) -> Roster:
    """Record every user's verdict from a scan of the two documents, then mark the roster built.

    The verdicts carry the read time of a read made before the scan, so an entry a trigger
    writes meanwhile (from a later read) is kept. The scan reads every user's name once (the
    skipped count) and the configured and the enabled users; users the roster holds that the
    scan no longer finds are recorded as gone.
    """
    started = db.document(ROSTER_DOC).get().read_time
    users = {doc.id for doc in db.collection(USERS).select([]).stream()}
    configured = configured_users(db)
    enabled = enabled_uids(db)
    verdicts = {uid: Verdict(uid, False, None) for uid in users | enabled}
    for uid, version in configured.items():
        verdicts[uid] = Verdict(uid, uid in enabled, version)
    for held in _shards(db):
        for uid in held.get("members") or {}:
            verdicts.setdefault(uid, Verdict(uid, False, None, exists=False))
    by_shard: dict[int, list[Verdict]] = {}
    for item in verdicts.values():
        by_shard.setdefault(shard_of(item.uid), []).append(item)
    for shard, items in sorted(by_shard.items()):
        ref = db.document(roster_shard_doc(shard))
        for start in range(0, len(items), USERS_PER_WRITE):
            body: dict[str, Any] = {"members": {}, "keys": {}}
            for item in items[start : start + USERS_PER_WRITE]:
                part = _update(item.uid, entry(started, item.state), item.keys_version)
                body["members"].update(part["members"])
                body["keys"].update(part.get("keys", {}))
            ref.set({name: value for name, value in body.items() if value}, merge=True)
    db.document(ROSTER_DOC).set(
        {"built_at": datetime.now(UTC), "shards": ROSTER_SHARDS, "users": len(verdicts)}
    )
    roster = _parse(_shards(db))
    log.info(
        "roster rebuilt from a scan",
        fields={"users": len(verdicts), "eligible": len(roster.eligible)},
    )
    return roster


def _shards(db: firestore.Client) -> list[dict[str, Any]]:
    found = _get_maps(db, [roster_shard_doc(k) for k in range(ROSTER_SHARDS)])
    return [shard for shard in found.values() if shard]


def load(db: firestore.Client) -> Roster:
    """The roster, rebuilt first if it was never built."""
    roster = read(db)
    if roster is None:
        log.warning("roster missing: rebuilding it from a scan (once)")
        roster = rebuild(db)
    return roster


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
