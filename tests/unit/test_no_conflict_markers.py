"""No file of the repository holds a merge's conflict markers (one landed once, in the README)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MARKER = re.compile(r"^(<{7}|>{7})( |$)", re.MULTILINE)


def test_no_tracked_file_holds_conflict_markers() -> None:
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    found = []
    for name in filter(None, listed):
        path = ROOT / name.decode()
        if not path.is_file() or path.suffix in {".png", ".lock"}:
            continue
        text = path.read_bytes().decode("utf-8", errors="replace")
        found += [
            f"{name.decode()}:{text[: m.start()].count(chr(10)) + 1}" for m in MARKER.finditer(text)
        ]
    assert found == []
