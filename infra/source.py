"""What ``gcloud functions deploy --source=.`` uploads, and a digest of it.

The upload is production code only (``main.py``, ``requirements.txt``, the packages ``main.py``
imports): ``.gcloudignore`` leaves out the development tools, tests, docs and project metadata,
and ``python -m infra source --list`` prints what is left. The digest goes into each function's
fingerprint label, so ``apply`` redeploys a function exactly when its code or its configuration
changed, and never for a change to a tool. ``.gcloudignore`` is read with the subset of the
gitignore syntax it uses (comments, ``name``, ``*.ext``, ``dir/``, anchored paths; no negation);
tests/unit/test_infra_source.py checks the result against ``gcloud meta list-files-for-upload``
when gcloud is installed.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
IGNORE_FILE = ".gcloudignore"


@dataclass(frozen=True)
class Pattern:
    glob: str
    anchored: bool
    dir_only: bool

    def matches(self, rel: str, is_dir: bool) -> bool:
        if self.dir_only and not is_dir:
            return False
        if self.anchored:
            # Component by component: a `*` never matches a `/`, as in gitignore.
            parts, globs = rel.split("/"), self.glob.split("/")
            return len(parts) == len(globs) and all(map(fnmatch.fnmatchcase, parts, globs))
        return fnmatch.fnmatchcase(rel.rsplit("/", 1)[-1], self.glob)


def parse_ignore(text: str) -> list[Pattern]:
    patterns = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("!"):
            raise ValueError(f"{IGNORE_FILE}: negation is not supported here: {line!r}")
        dir_only = line.endswith("/")
        core = line.rstrip("/")
        anchored = "/" in core
        patterns.append(Pattern(core.lstrip("/"), anchored, dir_only))
    return patterns


def _patterns(root: Path) -> list[Pattern]:
    ignore_path = root / IGNORE_FILE
    return parse_ignore(ignore_path.read_text()) if ignore_path.exists() else []


def upload_files(root: Path = REPO_ROOT, patterns: list[Pattern] | None = None) -> list[str]:
    """Paths (relative, ``/``-separated, sorted) of the files ``--source=.`` uploads."""
    patterns = _patterns(root) if patterns is None else patterns
    files: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath).relative_to(root).as_posix()
        prefix = "" if base == "." else base + "/"
        kept = []
        for name in sorted(dirnames):
            rel = prefix + name
            if not any(p.matches(rel, True) for p in patterns):
                kept.append(name)
        dirnames[:] = kept
        for name in filenames:
            rel = prefix + name
            if not any(p.matches(rel, False) for p in patterns):
                files.append(rel)
    return sorted(files)


def digest(root: Path = REPO_ROOT) -> str:
    """A hash of the uploaded files' paths and contents."""
    h = hashlib.sha256()
    for rel in upload_files(root):
        h.update(rel.encode() + b"\0")
        h.update(hashlib.sha256((root / rel).read_bytes()).digest())
    return h.hexdigest()[:16]


# --- services (infra.resources.SERVICES): built from a staged copy of their own --------------

SHARED_PACKAGE = "agenttrader"
STAGE_ROOT = ".local/deploy"
"""Where ``apply`` stages a service's source (git-ignored)."""


def service_files(package: str, root: Path = REPO_ROOT) -> list[str]:
    """What a service's image is built from: the shared core, its own package and
    ``requirements.txt`` (of them, what ``.gcloudignore`` keeps; the package itself is ignored
    there so that the functions never upload it)."""
    patterns = [p for p in _patterns(root) if p.glob != package]
    return [
        rel
        for rel in upload_files(root, patterns)
        if rel == "requirements.txt" or rel.split("/", 1)[0] in (SHARED_PACKAGE, package)
    ]


def generated_files(package: str) -> dict[str, str]:
    """The files staging adds: how the buildpack starts the service, and its Python."""
    return {"Procfile": f"web: python -m {package}\n", ".python-version": "3.11\n"}


def service_digest(package: str, root: Path = REPO_ROOT) -> str:
    """A hash of a service's staged source (its fingerprint: redeployed exactly when it moves)."""
    h = hashlib.sha256()
    for rel in service_files(package, root):
        h.update(rel.encode() + b"\0")
        h.update(hashlib.sha256((root / rel).read_bytes()).digest())
    for rel, text in sorted(generated_files(package).items()):
        h.update(rel.encode() + b"\0" + text.encode())
    return h.hexdigest()[:16]


def stage(package: str, dest: Path, root: Path = REPO_ROOT) -> list[str]:
    """Copy a service's source to ``dest`` (emptied first); returns the files written."""
    import shutil

    if dest.exists():
        shutil.rmtree(dest)
    written = []
    for rel in service_files(package, root):
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, target)
        written.append(rel)
    for rel, text in generated_files(package).items():
        (dest / rel).write_text(text)
        written.append(rel)
    return sorted(written)
