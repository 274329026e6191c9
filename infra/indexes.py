"""The Firestore indexes the code's queries need, declared once.

Collection-group queries are not served by Firestore's automatic indexes (those are
collection-scoped): each needs a ``COLLECTION_GROUP`` index, declared in
``firestore.indexes.json`` (rendered by :func:`render`; ``python -m infra indexes``).

- one equality (or ``in``) field: a single-field override in collection-group scope, which keeps the
  automatic collection-scope indexes of that field (an override replaces them otherwise);
- several equality fields: one composite index. ``status.pulse_id == X and outcome == Y`` (and
  ``data.pulseId == X and syncOutcome == success``) could be served by merging two single-field
  indexes, but a merge walks both (``syncOutcome == success`` matches most users of most
  pulses), while the composite reads exactly the matches and keeps the count aggregation at one
  read per 1,000 of them.

Indexing exemptions (``INDEX_EXEMPTIONS``): fields no query filters on whose automatic
indexes would cost. The roster's shard maps hold one entry per user (~1,000 a document):
indexed, each entry would take two index entries per map (ascending, descending) in a
document that changes about once a second, and Firestore's limit of 40,000 index entries per
document would cap a shard near 10,000 users. An override on a map covers its subfields. It
applies to the collection group (the collection id, wherever it sits) and the field path:
every collection named ``shards`` — the pulse shards under ``ops/pulses/history/*`` hold no
such fields. The stream buckets' ``live`` maps (``ops/streams/buckets/*``: one entry per
streaming tenant of the bucket) are exempt for the same reason.

tests/integration/test_indexes.py runs the queries against the emulator and checks each one
is covered; tests/unit/test_infra_indexes.py keeps this list in step with the source.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from agenttrader.paths import ROSTER_COLLECTION, STREAM_BUCKETS_COLLECTION
from agenttrader.roster_read import MAP_FIELDS
from agenttrader.streams import LIVE

QUERY_SCOPE = "COLLECTION_GROUP"


@dataclass(frozen=True)
class RequiredIndex:
    collection_group: str
    fields: tuple[str, ...]
    """Equality-filtered fields, in the index's order."""
    used_by: str
    """The function issuing the query (``module.function``)."""
    source: str
    """The file holding the ``collection_group(...)`` call."""


REQUIRED_INDEXES: tuple[RequiredIndex, ...] = (
    RequiredIndex(
        "config", ("configured",), "publisher.roster.eligible_uids", "publisher/roster.py"
    ),
    RequiredIndex("status", ("enabled",), "publisher.roster.eligible_uids", "publisher/roster.py"),
    RequiredIndex(
        "status",
        ("pulse_id", "outcome"),
        "agenttrader.pulses.count_outcomes",
        "agenttrader/pulses.py",
    ),
    RequiredIndex(
        "data",
        ("pulseId", "syncOutcome"),
        "agenttrader.pulses.count_outcomes",
        "agenttrader/pulses.py",
    ),
    RequiredIndex(
        "status",
        ("final",),
        "console.status.read_failing",
        "console/status.py",
    ),
    RequiredIndex(
        "data", ("pulseId",), "benchmarks.pipeline.run_pipeline", "benchmarks/pipeline.py"
    ),
    *(
        RequiredIndex(group, (field,), "console.tenants.candidates", "console/tenants.py")
        for group, field in (
            ("status", "final"),
            ("status", "enabled"),
            ("config", "configured"),
            ("data", "syncOutcome"),
        )
    ),
)

EXEMPT_SOURCES: Mapping[str, str] = {
    "devtools/localstack/eventarc_bridge.py": (
        "an unfiltered listener of the local stack, on the emulator only"
    ),
    "benchmarks/sealing.py": "an unfiltered listener of a benchmark, on the emulator only",
}
"""Files calling ``collection_group(`` that need no index, and why."""


@dataclass(frozen=True)
class IndexExemption:
    collection_group: str
    field_path: str
    why: str


ROSTER_GROUP = ROSTER_COLLECTION.rsplit("/", 1)[-1]
STREAM_BUCKETS_GROUP = STREAM_BUCKETS_COLLECTION.rsplit("/", 1)[-1]
INDEX_EXEMPTIONS: tuple[IndexExemption, ...] = (
    *(
        IndexExemption(ROSTER_GROUP, field, "the roster's per-user map, read whole, never queried")
        for field in MAP_FIELDS
    ),
    IndexExemption(
        STREAM_BUCKETS_GROUP,
        LIVE,
        "a stream bucket's map of live tenants (~1,600 at 100,000 tenants), read whole",
    ),
)

_COLLECTION_SCOPE_DEFAULTS: tuple[dict[str, str], ...] = (
    {"order": "ASCENDING", "queryScope": "COLLECTION"},
    {"order": "DESCENDING", "queryScope": "COLLECTION"},
    {"arrayConfig": "CONTAINS", "queryScope": "COLLECTION"},
)


def render(
    required: Iterable[RequiredIndex] = REQUIRED_INDEXES,
    exemptions: Iterable[IndexExemption] = INDEX_EXEMPTIONS,
) -> dict[str, Any]:
    """The content of ``firestore.indexes.json``."""
    indexes: list[dict[str, Any]] = []
    overrides: list[dict[str, Any]] = []
    seen: set[tuple[str, tuple[str, ...]]] = set()
    for index in required:
        key = (index.collection_group, index.fields)
        if key in seen:
            continue
        seen.add(key)
        if len(index.fields) == 1:
            overrides.append(
                {
                    "collectionGroup": index.collection_group,
                    "fieldPath": index.fields[0],
                    "indexes": [
                        *_COLLECTION_SCOPE_DEFAULTS,
                        {"order": "ASCENDING", "queryScope": QUERY_SCOPE},
                    ],
                }
            )
        else:
            indexes.append(
                {
                    "collectionGroup": index.collection_group,
                    "queryScope": QUERY_SCOPE,
                    "fields": [{"fieldPath": f, "order": "ASCENDING"} for f in index.fields],
                }
            )
    for exemption in exemptions:
        overrides.append(
            {
                "collectionGroup": exemption.collection_group,
                "fieldPath": exemption.field_path,
                "indexes": [],
            }
        )
    return {"indexes": indexes, "fieldOverrides": overrides}


def render_text() -> str:
    return json.dumps(render(), indent=2) + "\n"


def covers(spec: Mapping[str, Any], collection_group: str, fields: Iterable[str]) -> bool:
    """Whether ``spec`` (a parsed ``firestore.indexes.json``) serves a collection-group query
    with equality filters on ``fields``: a single field needs a collection-group single-field
    index on it; several need a collection-group composite index whose leading fields are
    exactly them (in any order), or a collection-group single-field index on each (merge)."""
    wanted = set(fields)

    def single(field: str) -> bool:
        for override in spec.get("fieldOverrides", []):
            if (
                override.get("collectionGroup") == collection_group
                and override.get("fieldPath") == field
            ):
                return any(
                    i.get("queryScope") == QUERY_SCOPE and "order" in i
                    for i in override.get("indexes", [])
                )
        return False

    if len(wanted) == 1:
        return single(next(iter(wanted)))
    for index in spec.get("indexes", []):
        if index.get("collectionGroup") != collection_group:
            continue
        if index.get("queryScope") != QUERY_SCOPE:
            continue
        leading = [f.get("fieldPath") for f in index.get("fields", [])][: len(wanted)]
        if set(leading) == wanted:
            return True
    return all(single(f) for f in wanted)
