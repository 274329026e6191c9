"""What `--source=.` uploads: production code only, read from .gcloudignore as gcloud reads it,
enough to import every entry point, and a digest that no development tool moves."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra import resources, source
from infra.__main__ import main as infra_main

ROOT = Path(__file__).resolve().parents[2]

DEV_ONLY_DIRS = (
    "devtools",
    "operations",
    "chaos",
    "benchmarks",
    "tests",
    "infra",
    "docs",
    "console/web",
    "stream_gateway",
    "node_modules",
    ".venv",
    ".git",
    ".ci",
    ".local",
)
"""Directories never uploaded: the tools, tests, docs, the console's web page (Firebase
Hosting; the console's callables are uploaded), the stream gateway (a Cloud Run service of its
own), and local state."""

DEPLOY_FILES = {"main.py", "requirements.txt"}
"""The top-level files the Python builder reads: the entry points and the dependencies."""

NOT_COPIED = shutil.ignore_patterns(
    ".venv", "node_modules", ".git", ".local", "__pycache__", "*.egg-info", ".*_cache"
)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def gcloud_upload(root: Path, config: Path) -> list[str] | None:
    """``gcloud meta list-files-for-upload`` of ``root``; ``None`` without gcloud."""
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        return None
    result = subprocess.run(
        [gcloud, "meta", "list-files-for-upload", "."],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "CLOUDSDK_CORE_DISABLE_PROMPTS": "1", "CLOUDSDK_CONFIG": str(config)},
    )
    if result.returncode != 0:
        pytest.skip(f"gcloud meta list-files-for-upload failed: {result.stderr[-300:]}")
    return sorted(result.stdout.split())


def test_ignore_file_matches_gcloud(tmp_path: Path) -> None:
    listed = gcloud_upload(ROOT, tmp_path)
    if listed is None:
        pytest.skip("gcloud is not installed")
    assert listed == source.upload_files()


def test_ignore_file_matches_gcloud_on_files_the_checkout_may_grow(tmp_path: Path) -> None:
    """The rules for what is not in the checkout today (a console, a lock file, a coverage
    report, tests inside a package) read the same by gcloud and by infra/source.py."""
    tree = tmp_path / "tree"
    shutil.copytree(ROOT, tree, ignore=NOT_COPIED)
    for rel in (
        ".env",
        ".coverage",
        ".python-version",
        ".import_linter_cache/x",
        "htmlcov/index.html",
        "coverage.xml",
        "console/web/index.html",
        "console/web/dist/app.js",
        "uv.lock",
        "requirements-dev.txt",
        "requirements.in",
        "node_modules/x/index.js",
        "sync_worker/tests/test_x.py",
        "publisher/.hidden.py",
        "publisher/infra/x.py",
        "agenttrader/data/quota.json",
        "build/lib/x.py",
        "conftest.py",
        "publisher/conftest.py",
        "setup.cfg",
        "tox.ini",
    ):
        _write(tree / rel, rel)
    listed = gcloud_upload(tree, tmp_path / "config")
    if listed is None:
        pytest.skip("gcloud is not installed")
    assert listed == source.upload_files(tree)
    assert "publisher/infra/x.py" in listed and "agenttrader/data/quota.json" in listed


def test_ignore_syntax_subset(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    _write(tree / ".gcloudignore", "# c\n\n*.log\ncache/\n/top.txt\na/b/\n/d/*.txt\n")
    for rel in (
        "keep.py",
        "x.log",
        "cache/f",
        "sub/cache/f",
        "top.txt",
        "sub/top.txt",
        "a/b/c.py",
        "a/c.py",
        "d/x.txt",
        "d/e/x.txt",
    ):
        _write(tree / rel, rel)
    expected = [".gcloudignore", "a/c.py", "d/e/x.txt", "keep.py", "sub/top.txt"]
    assert source.upload_files(tree) == expected
    assert gcloud_upload(tree, tmp_path / "config") in (None, expected)
    with pytest.raises(ValueError, match="negation"):
        source.parse_ignore("!keep\n")


def test_digest_follows_content(tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text("a = 1\n")
    first = source.digest(tmp_path)
    assert source.digest(tmp_path) == first
    (tmp_path / "main.py").write_text("a = 2\n")
    assert source.digest(tmp_path) != first


def test_the_upload_holds_no_dev_tool() -> None:
    files = source.upload_files()
    assert "main.py" in files and "requirements.txt" in files
    for directory in DEV_ONLY_DIRS:
        assert not [f for f in files if f.startswith(f"{directory}/")], directory
    assert not [f for f in files if "/tests/" in f or f.endswith(".pyc")]
    top_files = {f for f in files if "/" not in f}
    assert top_files == DEPLOY_FILES, "a new top-level file: production, or .gcloudignore?"


def test_source_command_prints_the_list_and_the_digest(capsys: pytest.CaptureFixture[str]) -> None:
    assert infra_main(["source", "--list"]) == 0
    assert capsys.readouterr().out.splitlines() == source.upload_files()
    assert infra_main(["source", "--digest"]) == 0
    assert capsys.readouterr().out == source.digest() + "\n"


# A change to a copy of the checkout: the real one is never touched.


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    copy = tmp_path_factory.mktemp("checkout") / "repo"
    shutil.copytree(ROOT, copy, ignore=NOT_COPIED)
    assert source.digest(copy) == source.digest(ROOT), "the copy must upload what the checkout does"
    return copy


def _first_file(directory: Path) -> Path:
    return min(p for p in directory.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


@pytest.fixture
def changed(tree: Path, request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """Applies one change to the copy (``new FILE``, ``edit FILE``, ``edit-in DIR``: a file of
    DIR), yields the digests before and after, and undoes it."""
    kind, rel = request.param
    target = _first_file(tree / rel) if kind == "edit-in" else tree / rel
    created = next(p for p in [target, *target.parents] if p.parent.exists())
    original = target.read_bytes() if target.exists() else None
    before = source.digest(tree)
    if original is None:
        _write(target, "x = 1\n")
    else:
        target.write_bytes(original + b"\n# changed\n")
    try:
        yield before, source.digest(tree)
    finally:
        if original is not None:
            target.write_bytes(original)
        elif created.is_dir():
            shutil.rmtree(created)
        else:
            created.unlink()
    assert source.digest(tree) == before


DEV_ONLY_CHANGES = [
    *[("new", f"{d}/probe.py") for d in DEV_ONLY_DIRS],
    *[
        ("edit-in", d)
        for d in ("devtools", "operations", "chaos", "benchmarks", "tests", "docs", "infra")
    ],
    ("edit", "chaos/run.py"),
    ("new", "sync_worker/tests/test_probe.py"),
    ("new", "publisher/__pycache__/probe.cpython-311.pyc"),
    ("new", ".env"),
    ("new", ".coverage"),
    ("new", "htmlcov/index.html"),
    ("new", "uv.lock"),
    ("new", "requirements-dev.txt"),
    *[
        ("edit", f)
        for f in (
            "Makefile",
            "README.md",
            "pyproject.toml",
            "package.json",
            "package-lock.json",
            "firebase.json",
            "firestore.rules",
            "firestore.indexes.json",
            ".gitignore",
            ".gcloudignore",
        )
    ],
]

PRODUCTION_CHANGES = [
    ("edit", "main.py"),
    ("edit", "requirements.txt"),
    ("edit", "agenttrader/settings.py"),
    *[
        ("edit", f"{package}/main.py")
        for package in ("publisher", "sync_worker", "signal_worker", "accounts", "console")
    ],
    ("new", "sync_worker/probe.py"),
    ("new", "agenttrader/data/table.json"),
]


@pytest.mark.parametrize("changed", DEV_ONLY_CHANGES, indirect=True, ids=" ".join)
def test_a_dev_only_change_leaves_the_digest(changed: tuple[str, str]) -> None:
    before, after = changed
    assert after == before


@pytest.mark.parametrize("changed", PRODUCTION_CHANGES, indirect=True, ids=" ".join)
def test_a_production_change_moves_the_digest(changed: tuple[str, str]) -> None:
    before, after = changed
    assert after != before


# Importing main from the upload alone, in an interpreter that cannot reach the checkout.

IMPORT_MAIN = r"""
import json, sys
upload = sys.argv[1]
interpreter = (sys.prefix, sys.base_prefix)
# Only the standard library and the installed dependencies: no editable finder mapping the
# project's packages back to the checkout, no path entry pointing at it.
sys.meta_path[:] = [
    f for f in sys.meta_path if not getattr(f, "__module__", "").startswith("__editable__")
]
sys.path_hooks[:] = [
    h for h in sys.path_hooks if not getattr(h, "__module__", "").startswith("__editable__")
]
sys.path[:] = [upload, *(p for p in sys.path if p.startswith(interpreter))]
import main
print(json.dumps({
    "attributes": dir(main),
    "modules": {name: getattr(m, "__file__", None) for name, m in list(sys.modules.items())},
}))
"""


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    """The uploaded files alone in a directory, and what ``import main`` there loads."""
    upload = tmp_path_factory.mktemp("upload")
    for rel in source.upload_files():
        (upload / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, upload / rel)
    result = subprocess.run(
        [sys.executable, "-I", "-c", IMPORT_MAIN, str(upload)],
        cwd=upload,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return upload.resolve(), json.loads(result.stdout)


def _loaded_files(report: dict[str, object]) -> dict[str, Path]:
    modules = report["modules"]
    assert isinstance(modules, dict)
    return {name: Path(f).resolve() for name, f in modules.items() if isinstance(f, str)}


def test_every_deployed_entry_point_imports_from_the_upload_alone(
    imported: tuple[Path, dict[str, object]],
) -> None:
    upload, report = imported
    attributes = report["attributes"]
    assert isinstance(attributes, list)
    loaded = _loaded_files(report)
    for fn in resources.FUNCTIONS:
        assert fn.name in attributes, f"main.{fn.name} missing when imported from the upload"
        assert loaded[fn.module].is_relative_to(upload), fn.module
    interpreter = {Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve()}
    outside = {
        name: str(path)
        for name, path in loaded.items()
        if not path.is_relative_to(upload) and not any(path.is_relative_to(p) for p in interpreter)
    }
    assert not outside, f"loaded from neither the upload nor the interpreter: {outside}"
    project = {p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file()} | {"main"}
    elsewhere = {
        name: str(path)
        for name, path in loaded.items()
        if name.partition(".")[0] in project and not path.is_relative_to(upload)
    }
    assert not elsewhere, f"project modules loaded from outside the upload: {elsewhere}"


def test_every_uploaded_package_is_one_main_imports(
    imported: tuple[Path, dict[str, object]],
) -> None:
    """A new top-level directory that no entry point imports is a tool: .gcloudignore it."""
    upload, report = imported
    uploaded = {f.partition("/")[0] for f in source.upload_files() if "/" in f}
    from_upload = {
        name.partition(".")[0]
        for name, path in _loaded_files(report).items()
        if path.is_relative_to(upload)
    }
    assert uploaded <= from_upload, f"uploaded, never imported: {uploaded - from_upload}"


# The stream gateway: a service built from a staged copy of its own source.

IMPORT_GATEWAY = IMPORT_MAIN.replace("import main\n", "import stream_gateway.__main__ as main\n")


def test_a_service_stages_the_core_its_package_and_how_to_start_it(tmp_path: Path) -> None:
    files = source.service_files("stream_gateway")
    tops = {f.split("/", 1)[0] for f in files}
    assert tops == {"agenttrader", "stream_gateway", "requirements.txt"}
    assert not any("__pycache__" in f or f.endswith(".pyc") for f in files)
    staged = source.stage("stream_gateway", tmp_path / "gateway")
    assert set(staged) == {*files, "Procfile", ".python-version"}
    assert (tmp_path / "gateway" / "Procfile").read_text() == "web: python -m stream_gateway\n"
    assert "stream_gateway" not in {f.split("/", 1)[0] for f in source.upload_files()}


def test_the_staged_gateway_imports_from_the_staged_files_alone(tmp_path: Path) -> None:
    staged = tmp_path / "gateway"
    source.stage("stream_gateway", staged)
    result = subprocess.run(
        [sys.executable, "-I", "-c", IMPORT_GATEWAY, str(staged)],
        cwd=staged,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    modules = json.loads(result.stdout)["modules"]
    project = {p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file()}
    ours = {
        name: path
        for name, path in modules.items()
        if isinstance(path, str) and name.partition(".")[0] in project
    }
    assert ours and all(
        Path(path).resolve().is_relative_to(staged.resolve()) for path in ours.values()
    )
    assert {name.partition(".")[0] for name in ours} <= {"agenttrader", "stream_gateway"}


def test_the_service_digest_follows_its_source_only(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    shutil.copytree(ROOT, tree, ignore=NOT_COPIED)
    before = source.service_digest("stream_gateway", tree)
    (tree / "publisher" / "tick.py").write_text("# another role changed\n")
    assert source.service_digest("stream_gateway", tree) == before
    (tree / "stream_gateway" / "gateway.py").write_text("# the gateway changed\n")
    assert source.service_digest("stream_gateway", tree) != before
