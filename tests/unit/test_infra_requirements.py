"""requirements.txt generated from uv.lock: production dependencies only, each pinned and hashed,
and refused for deploy once it drifts from the lock."""

from __future__ import annotations

import re
import shutil
import tomllib
from pathlib import Path

import pytest

from infra import requirements

ROOT = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^([A-Za-z0-9._-]+)==([^ ;\\]+)")


def _pins(text: str) -> dict[str, str]:
    return {m[1].lower(): m[2] for line in text.splitlines() if (m := PIN.match(line))}


def _requirement_name(spec: str) -> str:
    name = re.match(r"[A-Za-z0-9._-]+", spec)
    assert name is not None
    return name[0].lower()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    for name in ("pyproject.toml", "uv.lock", "requirements.txt"):
        shutil.copy(ROOT / name, tmp_path / name)
    return tmp_path


def test_every_requirement_is_pinned_with_hashes() -> None:
    text = requirements.render(ROOT)
    assert text.startswith(requirements.HEADER)
    # One block per requirement: its line, then its indented --hash and "# via" lines.
    blocks = re.split(r"\n(?=\S)", text.removeprefix(requirements.HEADER).strip())
    assert len(blocks) > 50
    for block in blocks:
        assert PIN.match(block) and "--hash=sha256:" in block, block.splitlines()[0]


def test_it_holds_the_production_dependencies_and_no_development_tool() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pins = _pins(requirements.render(ROOT))
    for spec in pyproject["project"]["dependencies"]:
        assert _requirement_name(spec) in pins, spec
    development = {_requirement_name(spec) for spec in pyproject["dependency-groups"]["dev"]}
    assert not development & pins.keys()
    assert "agenttrader" not in pins  # the project itself is uploaded as source


def test_firestore_is_pinned_exactly_where_the_roster_reads_its_internals() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    (spec,) = [s for s in pyproject["project"]["dependencies"] if "google-cloud-firestore" in s]
    assert spec.startswith("google-cloud-firestore==")
    assert _pins(requirements.render(ROOT))["google-cloud-firestore"] == spec.split("==")[1]


def test_the_committed_file_is_current(root: Path) -> None:
    assert requirements.problem(root) is None


def test_an_edited_or_missing_file_is_refused(root: Path) -> None:
    path = root / requirements.FILE
    path.write_text(path.read_text().replace("alpaca-py==", "alpaca-py>="))
    assert "is not what uv.lock calls for" in str(requirements.problem(root))
    path.unlink()
    assert "is missing" in str(requirements.problem(root))


def test_a_lock_behind_pyproject_is_refused(root: Path) -> None:
    pyproject = root / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"pytest>=8,<10"', '"pytest>=8,<11"'))
    problem = str(requirements.problem(root))
    assert "uv.lock cannot be exported" in problem and "make lock" in problem
