"""firestore.indexes.json is the rendering of infra/indexes.py, which lists every
collection-group query of the source (the emulator test runs them: test_indexes.py)."""

from __future__ import annotations

import ast
import importlib
import json
import shutil
import subprocess
import types
from pathlib import Path

import pytest

from agenttrader import paths, roster_read
from infra import indexes
from infra.indexes import EXEMPT_SOURCES, REQUIRED_INDEXES, covers

ROOT = Path(__file__).resolve().parents[2]
SCANNED = (
    "agenttrader",
    "publisher",
    "sync_worker",
    "signal_worker",
    "accounts",
    "console",
    "operations",
    "devtools",
    "benchmarks",
)


def test_the_index_file_is_the_rendering_of_the_declaration() -> None:
    on_disk = json.loads((ROOT / "firestore.indexes.json").read_text())
    assert on_disk == indexes.render(), "run: python -m infra indexes > firestore.indexes.json"
    assert (ROOT / "firestore.indexes.json").read_text() == indexes.render_text()


def test_every_required_index_is_covered_in_collection_group_scope() -> None:
    spec = indexes.render()
    for index in REQUIRED_INDEXES:
        assert covers(spec, index.collection_group, index.fields), index
    exempt = {(e.collection_group, e.field_path) for e in indexes.INDEX_EXEMPTIONS}
    for override in spec["fieldOverrides"]:
        if (override["collectionGroup"], override["fieldPath"]) in exempt:
            continue
        scopes = {
            (i.get("queryScope"), i.get("order") or i.get("arrayConfig"))
            for i in override["indexes"]
        }
        # The automatic collection-scope indexes are kept: an override replaces them.
        assert {
            ("COLLECTION", "ASCENDING"),
            ("COLLECTION", "DESCENDING"),
            ("COLLECTION", "CONTAINS"),
            ("COLLECTION_GROUP", "ASCENDING"),
        } == scopes
    assert spec["indexes"] == [
        {
            "collectionGroup": "status",
            "queryScope": "COLLECTION_GROUP",
            "fields": [
                {"fieldPath": "pulse_id", "order": "ASCENDING"},
                {"fieldPath": "outcome", "order": "ASCENDING"},
            ],
        },
        {
            "collectionGroup": "data",
            "queryScope": "COLLECTION_GROUP",
            "fields": [
                {"fieldPath": "pulseId", "order": "ASCENDING"},
                {"fieldPath": "syncOutcome", "order": "ASCENDING"},
            ],
        },
    ]


def test_the_roster_and_stream_maps_are_exempt_from_indexing_and_nothing_queries_them() -> None:
    spec = indexes.render()
    exempt = [o for o in spec["fieldOverrides"] if o["indexes"] == []]
    group = paths.ROSTER_COLLECTION.rsplit("/", 1)[-1]
    buckets = paths.STREAM_BUCKETS_COLLECTION.rsplit("/", 1)[-1]
    assert sorted((o["collectionGroup"], o["fieldPath"]) for o in exempt) == sorted(
        [*((group, field) for field in roster_read.MAP_FIELDS), (buckets, "live")]
    )
    # An exemption would leave a query on the field without its index.
    for index in REQUIRED_INDEXES:
        assert not (
            index.collection_group == group and set(index.fields) & set(roster_read.MAP_FIELDS)
        ), index
    # The shard documents are where the paths module puts them, in that collection group.
    assert paths.roster_shard_doc(7).split("/")[-2] == group


def test_coverage_rules() -> None:
    single = {
        "fieldOverrides": [
            {
                "collectionGroup": "g",
                "fieldPath": "a",
                "indexes": [{"order": "ASCENDING", "queryScope": "COLLECTION_GROUP"}],
            }
        ]
    }
    collection_only = {
        "fieldOverrides": [
            {
                "collectionGroup": "g",
                "fieldPath": "a",
                "indexes": [{"order": "ASCENDING", "queryScope": "COLLECTION"}],
            }
        ]
    }
    composite = {
        "indexes": [
            {
                "collectionGroup": "g",
                "queryScope": "COLLECTION_GROUP",
                "fields": [
                    {"fieldPath": "b", "order": "ASCENDING"},
                    {"fieldPath": "a", "order": "ASCENDING"},
                ],
            }
        ]
    }
    assert covers(single, "g", ["a"])
    assert not covers(single, "other", ["a"])
    assert not covers(collection_only, "g", ["a"])
    assert not covers({}, "g", ["a"])
    assert covers(composite, "g", ["a", "b"])
    assert not covers(composite, "g", ["a", "c"])
    assert not covers(single, "g", ["a", "b"])
    merged = {
        "fieldOverrides": [
            *single["fieldOverrides"],
            {
                "collectionGroup": "g",
                "fieldPath": "b",
                "indexes": [{"order": "ASCENDING", "queryScope": "COLLECTION_GROUP"}],
            },
        ]
    }
    assert covers(merged, "g", ["a", "b"])  # index merging of two single-field indexes


def _module_constants(path: Path) -> set[str]:
    """String values of the constants ``path`` imports by name (``from module import NAME``)
    or as a module (``from package import module``, then ``module.NAME``)."""
    values: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                try:
                    value = getattr(importlib.import_module(node.module), alias.name, None)
                except ImportError:
                    continue
                if isinstance(value, str):
                    values.add(value)
                elif isinstance(value, types.ModuleType):
                    values.update(v for v in vars(value).values() if isinstance(v, str))
    return values


def _groups_of(path: Path) -> list[str | None]:
    """Collection groups of every ``.collection_group(X)`` call in ``path``: ``X`` a literal,
    a module constant (defined or imported), or a parameter of the enclosing function given
    literals by its callers in the same module. ``None``: not resolvable (make it one of
    those)."""
    tree = ast.parse(path.read_text())
    constants = {
        target.id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    for node in tree.body:  # `from module import CONSTANT`
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                try:
                    value = getattr(importlib.import_module(node.module), alias.name, None)
                except ImportError:
                    continue
                if isinstance(value, str):
                    constants[alias.asname or alias.name] = value
    functions = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]

    def enclosing(call: ast.Call) -> ast.FunctionDef | None:
        inner = [f for f in functions if call in list(ast.walk(f))]
        return min(inner, key=lambda f: len(list(ast.walk(f))), default=None)

    def resolve(arg: ast.expr | None, call: ast.Call) -> list[str | None]:
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            return [arg.value]
        if isinstance(arg, ast.Name) and arg.id in constants:
            return [constants[arg.id]]
        fn = enclosing(call)
        if isinstance(arg, ast.Name) and fn is not None:
            params = [a.arg for a in fn.args.args]
            if arg.id in params:
                position = params.index(arg.id)
                found: list[str | None] = []
                for caller in ast.walk(tree):
                    if (
                        isinstance(caller, ast.Call)
                        and isinstance(caller.func, ast.Name)
                        and caller.func.id == fn.name
                        and len(caller.args) > position
                    ):
                        found += resolve(caller.args[position], caller)
                return found or [None]
        return [None]

    groups: list[str | None] = []
    for call in ast.walk(tree):
        if (
            isinstance(call, ast.Call)
            and isinstance(call.func, ast.Attribute)
            and call.func.attr == "collection_group"
        ):
            groups += resolve(call.args[0] if call.args else None, call)
    return groups


def _scanned_files() -> dict[str, list[str | None]]:
    found = {}
    for top in SCANNED:
        for path in sorted((ROOT / top).rglob("*.py")) if (ROOT / top).is_dir() else []:
            if "collection_group(" in path.read_text():
                found[path.relative_to(ROOT).as_posix()] = _groups_of(path)
    for path in sorted(ROOT.glob("*.py")):
        if "collection_group(" in path.read_text():
            found[path.name] = _groups_of(path)
    return found


def test_every_collection_group_query_in_the_source_is_declared() -> None:
    found = _scanned_files()
    assert found, "the scan found no collection_group( call at all"
    for source, groups in found.items():
        if source in EXEMPT_SOURCES:
            continue
        declared = {i.collection_group for i in REQUIRED_INDEXES if i.source == source}
        for group in groups:
            assert group is not None, (
                f"{source}: a collection_group( argument this test cannot resolve; use a "
                "literal or a module constant"
            )
            assert group in declared, (
                f"{source} queries collection group {group!r}: declare the index it needs in "
                "infra/indexes.py REQUIRED_INDEXES, then python -m infra indexes > "
                "firestore.indexes.json"
            )


def test_no_declared_index_is_stale() -> None:
    found = _scanned_files()
    for index in REQUIRED_INDEXES:
        assert index.collection_group in found.get(index.source, []), (
            f"{index.source} no longer queries {index.collection_group!r}"
        )
        text = (ROOT / index.source).read_text()
        spelled = _module_constants(ROOT / index.source)
        for field in index.fields:
            assert f'"{field}"' in text or field in spelled, (
                f"{index.source} no longer filters on {field!r}"
            )
    for source in EXEMPT_SOURCES:
        assert source in found, f"{source} is exempt but has no collection_group( call"


def test_firebase_tools_accepts_the_index_file() -> None:
    api = ROOT / "node_modules" / "firebase-tools" / "lib" / "firestore" / "api.js"
    node = shutil.which("node")
    if node is None or not api.exists():
        pytest.skip("node and firebase-tools (make setup) are needed for this check")
    script = (
        f"const {{FirestoreApi}} = require({json.dumps(str(api))});"
        "const api = new FirestoreApi();"
        "const spec = JSON.parse(require('fs').readFileSync(process.argv[1], 'utf8'));"
        "api.validateSpec(api.upgradeOldSpec(spec));"
    )
    result = subprocess.run(
        [node, "-e", script, str(ROOT / "firestore.indexes.json")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
