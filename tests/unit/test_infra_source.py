"""What `--source=.` uploads: .gcloudignore read as gcloud reads it, and enough to import
every entry point."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from infra import source

ROOT = Path(__file__).resolve().parents[2]


def test_the_upload_is_the_runtime_code_only() -> None:
    files = source.upload_files()
    assert "main.py" in files and "pyproject.toml" in files
    assert "agenttrader/settings.py" in files
    for prefix in (
        "tests/",
        "infra/",
        "node_modules/",
        ".venv/",
        "benchmarks/",
        "docs/",
        "devtools/localstack/",
        "devtools/simulator/",
        ".git/",
    ):
        assert not any(f.startswith(prefix) for f in files), prefix
    assert not any(f.endswith(".pyc") for f in files)
    assert "firestore.rules" not in files


def test_ignore_file_matches_gcloud(tmp_path: Path) -> None:
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        pytest.skip("gcloud is not installed")
    result = subprocess.run(
        [gcloud, "meta", "list-files-for-upload", "."],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "CLOUDSDK_CORE_DISABLE_PROMPTS": "1", "CLOUDSDK_CONFIG": str(tmp_path)},
    )
    if result.returncode != 0:
        pytest.skip(f"gcloud meta list-files-for-upload failed: {result.stderr[-300:]}")
    assert sorted(result.stdout.split()) == source.upload_files()


def test_ignore_syntax_subset(tmp_path: Path) -> None:
    (tmp_path / ".gcloudignore").write_text("# c\n\n*.log\ncache/\n/top.txt\na/b/\n")
    for rel in (
        "keep.py",
        "x.log",
        "cache/f",
        "sub/cache/f",
        "top.txt",
        "sub/top.txt",
        "a/b/c.py",
        "a/c.py",
    ):
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rel)
    assert source.upload_files(tmp_path) == [".gcloudignore", "a/c.py", "keep.py", "sub/top.txt"]
    with pytest.raises(ValueError, match="negation"):
        source.parse_ignore("!keep\n")


def test_digest_follows_content(tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text("a = 1\n")
    first = source.digest(tmp_path)
    assert source.digest(tmp_path) == first
    (tmp_path / "main.py").write_text("a = 2\n")
    assert source.digest(tmp_path) != first


def test_importing_main_needs_only_uploaded_files() -> None:
    """Every module `main.py` imports at start-up is inside the upload."""
    script = (
        "import json, sys; import main; "
        "print(json.dumps(sorted({m.__file__ for m in list(sys.modules.values()) "
        "if getattr(m, '__file__', None)})))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    uploaded = set(source.upload_files())
    ours = [
        Path(f).resolve().relative_to(ROOT).as_posix()
        for f in json.loads(result.stdout)
        if Path(f).resolve().is_relative_to(ROOT)
        and not Path(f).resolve().is_relative_to(ROOT / ".venv")
    ]
    assert ours, "main imported nothing from the repository?"
    missing = [f for f in ours if f not in uploaded]
    assert not missing, f"imported at start-up but not uploaded (see .gcloudignore): {missing}"
