"""CPU time and peak memory of this process and everything it started (Linux ``/proc``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcessSample:
    pid: int
    name: str
    cpu_seconds: float
    peak_rss_mb: float


def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces: split after the last ")".
    return [raw[: raw.rindex(")") + 1], *raw[raw.rindex(")") + 2 :].split()]


def _name(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    words = [a.decode(errors="replace") for a in argv if a]
    for marker in ("--target", "-m", "-jar", "-cp"):
        if marker in words and words.index(marker) + 1 < len(words):
            value = words[words.index(marker) + 1]
            if marker == "-cp":
                value = "firestore-emulator" if "firestore" in value else value
            if marker == "-jar":
                value = "pubsub-emulator" if "pubsub" in value else value
            return value.rsplit("/", 1)[-1]
    return Path(words[0]).name if words else "?"


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat:
                children.setdefault(int(stat[2]), []).append(int(entry.name))
    found, stack = [], [root]
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack.extend(children.get(pid, []))
    return found


def sample(pid: int) -> ProcessSample | None:
    stat = _stat(pid)
    if stat is None:
        return None
    cpu = (int(stat[12]) + int(stat[13])) / _TICKS  # utime + stime
    peak = 0.0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peak = int(line.split()[1]) / 1024
    except OSError:
        pass
    return ProcessSample(pid, _name(pid), cpu, peak)


def sample_tree(root: int | None = None) -> dict[int, ProcessSample]:
    """Every live process in the tree under ``root`` (default: this process)."""
    samples = (sample(pid) for pid in descendants(root or os.getpid()))
    return {s.pid: s for s in samples if s is not None}
