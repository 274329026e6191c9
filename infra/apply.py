"""Run a plan: every precondition first (nothing changes unless all pass), then each step
idempotently. The command runner is injected, so tests replace Google Cloud with a fake.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, TextIO

from infra import indexes, monitoring, requirements
from infra.model import (
    PLACEHOLDER,
    Argv,
    Check,
    HasBinding,
    Plan,
    Probe,
    Result,
    State,
    Step,
    shell,
)
from infra.plan import FIREBASE, deployed

HOSTING_PUBLIC = "console/web/dist"
"""What firebase.json's Hosting section serves: the console's built page."""

RETRY_DELAY_SECONDS = 10.0
READ_TIMEOUT_SECONDS = 300.0


class Runner(Protocol):
    """Runs one command. ``capture=False``: the output goes to the terminal (long mutations
    such as a function deploy show their progress) and the result carries no output."""

    def __call__(self, argv: Sequence[str], *, capture: bool = True) -> Result: ...


class SubprocessRunner:
    """The real runner: commands run from the repository root, gcloud never prompts."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd

    def __call__(self, argv: Sequence[str], *, capture: bool = True) -> Result:
        env = {**os.environ, "CLOUDSDK_CORE_DISABLE_PROMPTS": "1"}
        try:
            proc = subprocess.run(
                list(argv),
                cwd=self.cwd,
                env=env,
                capture_output=capture,
                text=True,
                check=False,
                timeout=READ_TIMEOUT_SECONDS if capture else None,
            )
        except FileNotFoundError:
            return Result(127, "", f"{argv[0]}: command not found")
        except subprocess.TimeoutExpired:
            return Result(124, "", f"{argv[0]}: timed out")
        return Result(proc.returncode, proc.stdout or "", proc.stderr or "")


class ApplyError(RuntimeError):
    """The apply cannot go on; the message says why and what to do."""


# --- preconditions ---------------------------------------------------------------------------


def local_problems(root: Path) -> list[str]:
    """What is wrong in the working tree for a deploy (no cloud command run)."""
    problems: list[str] = []
    stale = requirements.problem(root)
    if stale:
        problems.append(stale)
    if not (root / FIREBASE).exists():
        problems.append(f"{FIREBASE} is missing: run `make setup` (installs the pinned tools)")
    config_path = root / "firebase.json"
    try:
        config = json.loads(config_path.read_text())
    except FileNotFoundError:
        problems.append("firebase.json is missing (it names firestore.rules and the indexes)")
    except ValueError as err:
        problems.append(f"firebase.json is not valid JSON: {err}")
    else:
        firestore = config.get("firestore") if isinstance(config, dict) else None
        if not isinstance(firestore, dict) or (
            firestore.get("rules"),
            firestore.get("indexes"),
        ) != ("firestore.rules", "firestore.indexes.json"):
            problems.append(
                'firebase.json needs "firestore": {"rules": "firestore.rules", '
                '"indexes": "firestore.indexes.json"}'
            )
        hosting = config.get("hosting") if isinstance(config, dict) else None
        if not isinstance(hosting, dict) or hosting.get("public") != HOSTING_PUBLIC:
            problems.append(f'firebase.json needs "hosting": {{"public": "{HOSTING_PUBLIC}"}}')
    drifted = [
        r.path
        for r in monitoring.resources(deployed())
        if not (root / r.path).exists() or json.loads((root / r.path).read_text()) != r.document
    ]
    if drifted:
        problems.append(
            f"{', '.join(drifted)}: not infra/monitoring.py's rendering: python -m infra monitoring"
        )
    index_file = root / "firestore.indexes.json"
    if not index_file.exists() or json.loads(index_file.read_text()) != indexes.render():
        problems.append(
            "firestore.indexes.json differs from infra/indexes.py: "
            "python -m infra indexes > firestore.indexes.json"
        )
    return problems


def _judge(check: Check, runner: Runner) -> tuple[str | None, Result]:
    """``None`` when ``check`` passes, else the message for the user."""
    result = runner(check.argv, capture=True)
    missing = check.missing(result)
    if missing is None:
        return None, result
    if check.alternative is not None:
        alt_message, _ = _judge(check.alternative, runner)
        if alt_message is None:
            return None, result
    if result.returncode == 127:
        return f"{check.what}: `{check.argv[0]}` is not installed or not on PATH.", result
    if missing:
        fix = check.fix
        if check.argv[:3] == ("gcloud", "services", "list"):
            project = next(a for a in check.argv if a.startswith("--project="))
            fix = f"enable them: {shell(('gcloud', 'services', 'enable', *missing, project))}"
        return f"{check.what}: missing {', '.join(missing)}. {fix}", result
    detail = result.stderr.strip().splitlines()[-1:] if not result.ok else []
    suffix = f" ({detail[0]})" if detail else ""
    return f"{check.what}: no.{suffix} {check.fix}", result


GATES = 2
"""The first checks (authenticated, project readable): when one fails the rest are moot."""


def preconditions(plan: Plan, runner: Runner, root: Path) -> tuple[list[str], dict[str, str]]:
    """Problems found (empty: go) and the values the checks resolved on the way."""
    problems = local_problems(root)
    values: dict[str, str] = {}
    for number, check in enumerate(plan.checks):
        message, result = _judge(check, runner)
        if message is not None:
            problems.append(message)
            if number < GATES:
                problems.append("(the other cloud checks need that first)")
                break
        elif check.provides:
            values[check.provides] = result.stdout.strip()
    return problems, values


# --- the executor ----------------------------------------------------------------------------


class _Values:
    def __init__(self, plan: Plan, runner: Runner, known: dict[str, str]) -> None:
        self.plan, self.runner, self.known = plan, runner, dict(known)

    def get(self, name: str) -> str:
        if name not in self.known:
            variable = self.plan.variable(name)
            result = self.runner(variable.command, capture=True)
            value = result.stdout.strip() if result.ok else ""
            if variable.last_segment:
                value = value.rsplit("/", 1)[-1]
            if not value:
                raise ApplyError(
                    f"could not resolve ${{{name}}} ({variable.why}): "
                    f"`{shell(variable.command)}` gave nothing"
                    + (f": {result.stderr.strip()}" if result.stderr.strip() else "")
                )
            self.known[name] = value
        return self.known[name]

    def text(self, value: str) -> str:
        return PLACEHOLDER.sub(lambda m: self.get(m.group(1)), value)

    def resolve(self, argv: Argv) -> Argv:
        return tuple(self.text(arg) for arg in argv)

    def probe(self, probe: Probe) -> Probe:
        if isinstance(probe, HasBinding):
            return dataclasses.replace(probe, member=self.text(probe.member))
        return probe


def apply(
    plan: Plan,
    runner: Runner,
    *,
    root: Path,
    out: TextIO,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Apply ``plan``: 0 done, 1 a step failed (what ran stays; run again to resume),
    2 a precondition failed (nothing changed)."""
    problems, known = preconditions(plan, runner, root)
    if problems:
        out.write("Nothing was changed: the deployment's preconditions are not met.\n")
        for problem in problems:
            out.write(f"  - {problem}\n")
        return 2
    out.write(f"Preconditions met; applying {len(plan.steps)} steps to {plan.project}.\n")
    values = _Values(plan, runner, known)
    counts = {"created": 0, "updated": 0, "unchanged": 0, "ran": 0}
    width = len(str(len(plan.steps)))
    for number, step in enumerate(plan.steps, 1):
        label = f"[{number:0{width}d}/{len(plan.steps)}] {step.title}"
        try:
            verdict = _apply_step(step, runner, values, sleep)
        except ApplyError as err:
            out.write(f"{label}: FAILED. {err}\n")
            out.write("Stopped. Completed steps stay in place; `apply` again resumes.\n")
            return 1
        counts[verdict] += 1
        out.write(f"{label}: {verdict}\n")
    out.write(
        f"Done: {counts['created']} created, {counts['updated']} updated, "
        f"{counts['unchanged']} unchanged, {counts['ran']} idempotent commands run.\n"
    )
    return 0


def _apply_step(step: Step, runner: Runner, values: _Values, sleep: Callable[[float], None]) -> str:
    if step.check is None:
        command, verdict = step.create, "ran"
    else:
        probe = values.probe(step.probe)
        state = probe.state(runner(values.resolve(step.check), capture=True))
        if state is State.CURRENT or (state is State.STALE and step.update is None):
            return "unchanged"
        if state is State.MISSING:
            command, verdict = step.create, "created"
        else:
            assert step.update is not None
            command, verdict = step.update, "updated"
    resolved = values.resolve(command)
    for attempt in range(step.retries + 1):
        if attempt:
            sleep(RETRY_DELAY_SECONDS * attempt)
        result = runner(resolved, capture=False)
        if result.ok:
            return verdict
    raise ApplyError(f"`{shell(resolved)}` exited with {result.returncode}")
