"""What a plan is made of: read-only checks, idempotent steps, apply-time placeholders.

Nothing here knows about Google Cloud; :mod:`infra.plan` fills these in.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

Argv = tuple[str, ...]

PLACEHOLDER = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")
"""``${NAME}``: a value only known at apply time (a function URL, the project number)."""

FINGERPRINT_KEY = "agenttrader-fp"
"""Label (or description marker) holding the hash of the desired state of a resource."""


def shell(argv: Sequence[str]) -> str:
    """``argv`` as one shell-quoted line (what the plan prints)."""
    return shlex.join(argv)


def placeholders(argv: Iterable[str]) -> list[str]:
    """Names of the ``${NAME}`` placeholders in ``argv``, in order of appearance."""
    names: list[str] = []
    for arg in argv:
        for name in PLACEHOLDER.findall(arg):
            if name not in names:
                names.append(name)
    return names


def fingerprint(*parts: object) -> str:
    """A short stable hash of ``parts`` (JSON-encoded), usable as a label value."""
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Result:
    """What a command returned. ``stdout`` is empty when the output was not captured."""

    returncode: int
    stdout: str = ""
    stderr: str = ""

    @property
    def ok(self) -> bool:
        return self.returncode == 0


class State(Enum):
    """What the check of a step found."""

    MISSING = "missing"
    CURRENT = "current"
    STALE = "stale"


@dataclass(frozen=True)
class Exists:
    """The resource exists when its check command succeeds."""

    def state(self, result: Result) -> State:
        return State.CURRENT if result.ok else State.MISSING

    def explain(self) -> str:
        return "exists when the check succeeds"


@dataclass(frozen=True)
class Fingerprinted:
    """The check prints the resource as JSON; ``path`` leads to where the fingerprint of the
    desired state is stored (a label, a description). Another value: the resource drifted."""

    path: tuple[str, ...]
    value: str

    def state(self, result: Result) -> State:
        if not result.ok:
            return State.MISSING
        found: Any = _json(result.stdout)
        if isinstance(found, list):  # a `list --filter` check: the first match, if any
            if not found:
                return State.MISSING
            found = found[0]
        for key in self.path:
            found = found.get(key) if isinstance(found, dict) else None
        marker = f"{FINGERPRINT_KEY}={self.value}"
        if isinstance(found, str) and (found == self.value or marker in found):
            return State.CURRENT
        return State.STALE

    def explain(self) -> str:
        return f"up to date when {'.'.join(self.path)} carries {FINGERPRINT_KEY} {self.value}"


@dataclass(frozen=True)
class HasBinding:
    """The check prints an IAM policy as JSON; present when ``role`` lists ``member``."""

    role: str
    member: str

    def state(self, result: Result) -> State:
        if not result.ok:
            return State.MISSING
        policy: Any = _json(result.stdout)
        bindings = policy.get("bindings", []) if isinstance(policy, dict) else []
        for binding in bindings:
            if (
                isinstance(binding, dict)
                and binding.get("role") == self.role
                and "condition" not in binding
                and self.member in binding.get("members", [])
            ):
                return State.CURRENT
        return State.MISSING

    def explain(self) -> str:
        return f"present when the policy binds {self.role} to {self.member}"


@dataclass(frozen=True)
class HasExclusion:
    """The check prints a log sink as JSON; current when its exclusion ``name`` carries the
    fingerprint ``value`` in its description, stale with another, missing without it."""

    name: str
    value: str

    def state(self, result: Result) -> State:
        if not result.ok:
            return State.MISSING
        sink: Any = _json(result.stdout)
        exclusions = sink.get("exclusions") if isinstance(sink, dict) else None
        for exclusion in exclusions if isinstance(exclusions, list) else []:
            if isinstance(exclusion, dict) and exclusion.get("name") == self.name:
                marker = f"{FINGERPRINT_KEY}={self.value}"
                described = exclusion.get("description")
                return (
                    State.CURRENT
                    if isinstance(described, str) and marker in described
                    else State.STALE
                )
        return State.MISSING

    def explain(self) -> str:
        return f"up to date when exclusion {self.name} carries {FINGERPRINT_KEY} {self.value}"


Probe = Exists | Fingerprinted | HasBinding | HasExclusion


def _json(text: str) -> Any:
    try:
        return json.loads(text or "null")
    except ValueError:
        return None


@dataclass(frozen=True)
class Step:
    """One resource: ``check`` (read-only) decides between ``create`` (missing), ``update``
    (drifted; ``None``: nothing to update) and nothing at all (current).

    A step without ``check`` runs ``create`` every time: only for commands that are idempotent
    by themselves (``firebase deploy`` skips an unchanged ruleset and existing indexes).
    """

    kind: str
    name: str
    purpose: str
    create: Argv
    check: Argv | None = None
    update: Argv | None = None
    probe: Probe = field(default_factory=Exists)
    retries: int = 0
    """Extra attempts of a failed create/update (IAM is eventually consistent)."""

    @property
    def title(self) -> str:
        return f"{self.kind} {self.name}"


@dataclass(frozen=True)
class Variable:
    """``${name}``: resolved at apply time by running ``command`` (read-only), first use."""

    name: str
    command: Argv
    why: str
    last_segment: bool = False
    """Keep only what follows the last ``/`` (a resource name's id)."""


class Expect(Enum):
    """How a precondition judges its command's output."""

    SUCCEEDS = "succeeds"
    NON_EMPTY = "prints something"
    CONTAINS_ALL = "lists every required item"
    EQUALS = "prints the expected value"
    JSON_RESULT = "prints a non-empty JSON result"


@dataclass(frozen=True)
class Check:
    """A read-only precondition; ``fix`` tells the user what to do when it fails."""

    what: str
    argv: Argv
    expect: Expect
    fix: str
    items: tuple[str, ...] = ()
    """``CONTAINS_ALL``: the lines that must be printed; ``EQUALS``: the one expected value."""
    alternative: Check | None = None
    """Also satisfied when this other check passes."""
    provides: str | None = None
    """The name of a :class:`Variable` this check's output resolves (saves a second call)."""

    def missing(self, result: Result) -> tuple[str, ...] | None:
        """``None`` when satisfied, else what is missing (possibly empty)."""
        out = result.stdout.strip()
        if not result.ok:
            return ()
        if self.expect is Expect.SUCCEEDS:
            return None
        if self.expect is Expect.NON_EMPTY:
            return None if out else ()
        if self.expect is Expect.EQUALS:
            return None if out == self.items[0] else ()
        if self.expect is Expect.JSON_RESULT:
            data = _json(out)
            return None if isinstance(data, dict) and data.get("result") else ()
        lines = {line.strip() for line in out.splitlines()}
        absent = tuple(item for item in self.items if item not in lines)
        return absent or None


@dataclass(frozen=True)
class Plan:
    """Everything a deployment does, in order."""

    project: str
    region: str
    source_digest: str
    checks: tuple[Check, ...]
    variables: tuple[Variable, ...]
    steps: tuple[Step, ...]
    notes: tuple[str, ...] = ()

    def variable(self, name: str) -> Variable:
        for variable in self.variables:
            if variable.name == name:
                return variable
        raise KeyError(name)

    def step(self, kind: str, name: str) -> Step:
        for step in self.steps:
            if step.kind == kind and step.name == name:
                return step
        raise KeyError(f"{kind} {name}")

    def render(self) -> str:
        """The plan as text: deterministic (no time, no absolute path, no lookup)."""
        lines = [
            f"# AgentTrader deployment plan: project {self.project}, region {self.region}",
            "# Rendered from agenttrader/topology.py, agenttrader/settings.py and infra/;"
            " nothing was looked up.",
            f"# Source digest {self.source_digest} (the files `--source=.` uploads, see"
            " .gcloudignore).",
        ]
        lines += [f"# {note}" for note in self.notes]
        lines += ["", "## Preconditions (apply checks all of them before changing anything)"]
        for check in self.checks:
            lines.append(f"- {check.what}")
            lines.append(f"    $ {shell(check.argv)}")
            if check.items and check.expect is Expect.CONTAINS_ALL:
                lines.append(f"    must list: {' '.join(check.items)}")
            if check.alternative is not None:
                lines.append(f"    or {check.alternative.what}")
                lines.append(f"    $ {shell(check.alternative.argv)}")
        lines += ["", "## Values known only at apply time (resolved on first use)"]
        for variable in self.variables:
            suffix = "  (last path segment)" if variable.last_segment else ""
            lines.append(f"- ${{{variable.name}}}: {variable.why}")
            lines.append(f"    $ {shell(variable.command)}{suffix}")
        lines += [
            "",
            "## Steps: check first; create if missing, update if drifted, else skip",
        ]
        width = len(str(len(self.steps)))
        for number, step in enumerate(self.steps, 1):
            lines.append("")
            lines.append(f"[{number:0{width}d}] {step.title}: {step.purpose}")
            if step.check is None:
                lines.append("    always  (idempotent by itself)")
            else:
                lines.append(f"    check   $ {shell(step.check)}")
                lines.append(f"            {step.probe.explain()}")
            lines.append(f"    create  $ {shell(step.create)}")
            if step.update is not None:
                lines.append(f"    update  $ {shell(step.update)}")
            elif step.check is not None:
                lines.append("    update  (none: an existing one is left as is)")
        return "\n".join(lines) + "\n"
