"""``requirements.txt``: what the Python buildpack installs for every function.

It holds the production dependencies of ``uv.lock`` (``pyproject.toml``'s ``dependencies`` and
theirs, no development group, not the project itself), each pinned with ``==`` and the hashes
of its files, so the build's pip runs in hash-checking mode and installs exactly what was
locked. ``render`` is its one generator: ``make lock`` writes the file with it
(``python -m infra.requirements``), ``make lint`` and ``python -m infra apply`` refuse a file
that differs from it. Standard library only, so it runs before the dependencies are installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from infra.source import REPO_ROOT

FILE = "requirements.txt"
HEADER = (
    "# Generated from uv.lock by `make lock`: the production dependencies, pinned with their\n"
    "# hashes. Do not edit: change pyproject.toml, then run `make lock`.\n"
)
EXPORT = (
    "export",
    "--locked",
    "--no-dev",
    "--no-emit-project",
    "--format=requirements.txt",
    "--no-header",
    "--quiet",
)
"""``uv`` arguments. ``--locked`` refuses a lock that ``pyproject.toml`` has moved away from."""


class LockError(RuntimeError):
    """``uv.lock`` cannot be exported (stale, missing, or uv absent); the message says why."""


def render(root: Path) -> str:
    """The ``requirements.txt`` that ``root/uv.lock`` calls for (offline: only the lock is read)."""
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "uv", *EXPORT],
            cwd=root,
            env={**os.environ, "UV_OFFLINE": "1"},
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
    except subprocess.TimeoutExpired:
        raise LockError("uv export timed out") from None
    if proc.returncode != 0:
        raise LockError(proc.stderr.strip() or f"uv export exited with {proc.returncode}")
    return HEADER + proc.stdout


def problem(root: Path) -> str | None:
    """Why ``root/requirements.txt`` must not be deployed as it is, or ``None``."""
    try:
        expected = render(root)
    except LockError as err:
        return f"uv.lock cannot be exported: {err} (run `make lock`)"
    path = root / FILE
    if not path.exists():
        return f"{FILE} is missing: the Python buildpack installs from it (run `make lock`)"
    if path.read_text() != expected:
        return f"{FILE} is not what uv.lock calls for (run `make lock`)"
    return None


def main(argv: list[str]) -> int:
    """``python -m infra.requirements [--check]``: write the file, or check it is current."""
    if argv == ["--check"]:
        found = problem(REPO_ROOT)
        print(f"error: {found}" if found else f"{FILE} matches uv.lock", file=sys.stderr)
        return 1 if found else 0
    if argv:
        print("usage: python -m infra.requirements [--check]", file=sys.stderr)
        return 2
    try:
        text = render(REPO_ROOT)
    except LockError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    (REPO_ROOT / FILE).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
