"""Text and JSON for the operator tool: pure functions of :mod:`.deadletters` and :mod:`.status`
results.

Every line and every JSON string passes :func:`agenttrader.logs.redact` as a last guard (the
worker already redacts what it records): no key value reaches a terminal or a script. A dead
letter's body is never printed, only the fields decoded from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TextIO

from agenttrader.logs import redact
from console.deadletters import DeadLetter, Listing, Progress, Report, Status
from console.status import FailingTenant, PipelineStatus, PulseStatus

ERROR_WIDTH = 60
"""Error texts are cut to this in tables (``--json`` has them whole)."""
MAX_DETAIL_LINES = 20
"""Refused / failed dead letters listed one by one in a summary, at most."""


def format_age(age: timedelta | float | None) -> str:
    """``45s``, ``12m``, ``3h05m``, ``2d04h``: compact, coarse, sortable by eye."""
    if age is None:
        return "—"
    seconds = int(age.total_seconds() if isinstance(age, timedelta) else age)
    seconds = max(seconds, 0)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86_400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86_400}d{seconds % 86_400 // 3600:02d}h"


def _cut(text: str, width: int) -> str:
    text = " ".join(text.split())  # one line, whatever the error text held
    return text if len(text) <= width else text[: width - 1] + "…"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "") -> list[str]:
    """Left-aligned columns sized to their content; the last column is not padded."""
    widths = [max(len(str(row[i])) for row in [headers, *rows]) for i in range(len(headers))]
    lines = []
    for row in [headers, *rows]:
        cells = [str(cell).ljust(widths[i]) for i, cell in enumerate(row)]
        lines.append((indent + "  ".join(cells)).rstrip())
    return lines


def _text(lines: Sequence[str]) -> str:
    return "".join(redact(line) + "\n" for line in lines)


def _or_dash(value: object) -> str:
    return "—" if value is None or value == "" else str(value)


# --- dead letters ------------------------------------------------------------------------------

_LETTER_HEADERS = ("AGE", "UID", "SOURCE", "ERROR CLASS", "ATTEMPTS", "REPLAYS", "ERROR")


def _letter_row(letter: DeadLetter, now: datetime) -> list[str]:
    error = letter.error if letter.request is not None else f"malformed: {letter.decode_error}"
    return [
        format_age(letter.age(now)),
        _or_dash(letter.uid),
        letter.source,
        letter.error_class,
        _or_dash(letter.delivery_attempts),
        _or_dash(letter.replay_count),
        _cut(error, ERROR_WIDTH),
    ]


def render_listing(listing: Listing, now: datetime, subscription: str) -> str:
    lines: list[str] = []
    if listing.letters:
        rows = [_letter_row(letter, now) for letter in listing.letters]
        lines += table(_LETTER_HEADERS, rows)
        lines.append("")
    lines.append(_scan_note(len(listing.letters), listing.scanned, listing.exhausted, subscription))
    return _text(lines)


def _scan_note(matching: int, scanned: int, exhausted: bool, subscription: str) -> str:
    note = f"{matching} matching of {scanned} held in {subscription}"
    if not exhausted:
        note += " (stopped at the limit: there may be more)"
    return note + "; nothing was changed" if matching == 0 else note


def render_report(report: Report, now: datetime, subscription: str, *, verb: str) -> str:
    """Summary of a replay (``verb="replay"``) or a purge (``verb="purge"``)."""
    replay = verb == "replay"
    lines: list[str] = []
    if report.dry_run:
        would = [i for i in report.items if i.status in {Status.WOULD_REPLAY, Status.WOULD_PURGE}]
        if would:
            headers: tuple[str, ...] = _LETTER_HEADERS
            rows = [_letter_row(i.letter, now) for i in would]
            if replay:
                headers = (*headers[:-1], "REPLAY AS", headers[-1])
                rows = [
                    [*row[:-1], f"#{item.replay_count}", row[-1]]
                    for row, item in zip(rows, would, strict=True)
                ]
            lines += [*table(headers, rows), ""]
        lines.append(f"dry run: would {verb} {len(would)}; nothing was changed")
    counts: list[tuple[str, int]] = []
    if not report.dry_run:
        done = Status.REPLAYED if replay else Status.PURGED
        counts.append(("replayed" if replay else "purged", report.count(done)))
    if replay:
        counts += [("refused", report.count(Status.REFUSED))]
        if not report.dry_run:
            counts += [("failed", report.count(Status.FAILED))]
    if report.count(Status.NOT_ATTEMPTED):
        counts.append(("not attempted", report.count(Status.NOT_ATTEMPTED)))
    counts.append(("skipped (did not match)", report.skipped))
    lines.append(", ".join(f"{name} {count}" for name, count in counts))
    lines += _detail_lines(report, Status.REFUSED, "refused", now)
    lines += _detail_lines(report, Status.FAILED, "failed", now)
    if report.cancelled:
        lines.append("cancelled: nothing was deleted")
    if report.interrupted:
        lines.append(
            "interrupted: what was not acknowledged is back in the dead-letter subscription"
            " (one republished just before the interrupt may be replayed twice, harmless)"
        )
    if report.aborted:
        lines.append(f"aborted: {report.aborted}; the rest is back in the subscription")
    if not report.exhausted:
        lines.append(f"stopped at the limit: {subscription} may hold more matching dead letters")
    return _text(lines)


def _detail_lines(report: Report, status: Status, title: str, now: datetime) -> list[str]:
    chosen = [i for i in report.items if i.status is status]
    if not chosen:
        return []
    lines = [f"{title}:"]
    for item in chosen[:MAX_DETAIL_LINES]:
        who = _or_dash(item.letter.uid)
        age = format_age(item.letter.age(now))
        lines.append(f"  {who} (message {item.letter.message_id}, {age} old): {item.detail}")
    if len(chosen) > MAX_DETAIL_LINES:
        lines.append(f"  … and {len(chosen) - MAX_DETAIL_LINES} more (--json lists them all)")
    return lines


@dataclass
class ProgressLine:
    """A progress bar on ``stream``: redrawn in place with ``\\r`` on a terminal, otherwise a
    plain line at every tenth of the way (logs stay short)."""

    stream: TextIO
    tty: bool
    width: int = 30
    _drawn: bool = field(default=False, repr=False)

    def __call__(self, progress: Progress) -> None:
        counts = (
            f"{progress.done}/{progress.total}  replayed {progress.replayed}"
            f" · failed {progress.failed} · refused {progress.refused}"
        )
        if self.tty:
            filled = self.width * progress.done // max(progress.total, 1)
            bar = "#" * filled + "-" * (self.width - filled)
            self.stream.write(f"\r[{bar}] {counts}")
            self._drawn = True
        elif progress.done % max(progress.total // 10, 1) == 0 or progress.done == progress.total:
            # Each call reports one more message done, so each checkpoint prints once.
            self.stream.write(f"progress {counts}\n")
        self.stream.flush()

    def close(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False


# --- status ------------------------------------------------------------------------------------


def _pulse_row(pulse: PulseStatus, now: datetime) -> list[str]:
    started = f"{format_age(now - pulse.timestamp)} ago" if pulse.timestamp else "—"
    if pulse.duration_seconds is None:
        duration = "—"
    else:
        duration = f"{pulse.duration_seconds:.1f}s"
        if not pulse.complete:
            duration += " (incomplete)"
    if pulse.slow:
        duration += " !"
    rate = pulse.error_rate
    return [
        pulse.pulse_id,
        started,
        _or_dash(pulse.published),
        str(pulse.success),
        str(pulse.error),
        str(pulse.skipped),
        "—" if rate is None else f"{rate:.0%}",
        duration,
    ]


def _failing_row(tenant: FailingTenant, now: datetime) -> list[str]:
    last = f"{format_age(now - tenant.last_failed_at)} ago" if tenant.last_failed_at else "—"
    return [
        tenant.uid,
        tenant.error_class,
        _or_dash(tenant.consecutive_failures),
        last,
        "failed" if tenant.final else "retrying",
        _cut(tenant.error, 50),
    ]


def render_status(
    status: PipelineStatus, project: str, subscription: str, *, max_tenants: int
) -> str:
    now = status.now
    lines = [f"AgentTrader pipeline · project {project} · {now.astimezone(UTC):%Y-%m-%d %H:%M:%S}Z"]
    lines += ["", "PULSES (newest first)"]
    if status.pulses:
        headers = ("PULSE", "STARTED", "PUBLISHED", "OK", "ERR", "SKIP", "ERR%", "DURATION")
        lines += table(headers, [_pulse_row(p, now) for p in status.pulses], indent="  ")
    else:
        lines.append("  none recorded (ops/pulses/history is empty)")
    capped = "+" if status.failing_capped else ""
    lines += ["", f"FAILING TENANTS ({len(status.failing)}{capped})"]
    if status.failing:
        rows = [_failing_row(t, now) for t in status.failing[:max_tenants]]
        lines += table(
            ("UID", "ERROR CLASS", "IN A ROW", "LAST FAILURE", "STATE", "ERROR"), rows, indent="  "
        )
        if len(status.failing) > max_tenants:
            lines.append(f"  … and {len(status.failing) - max_tenants} more (--json lists all)")
    else:
        lines.append("  none")
    lines += ["", "DEAD LETTERS"]
    if status.dead_letters is not None:
        depth = status.dead_letters
        count = f"{depth.scanned}{'' if depth.exhausted else '+'}"
        lines.append(f"  {subscription}: {count} held (peeked, nothing acknowledged)")
    elif status.dead_letters_problem:
        lines.append(f"  {subscription}: unknown ({status.dead_letters_problem})")
    else:
        lines.append("  not measured (--no-dead-letters)")
    lines += ["", "ALERTS"]
    lines += [f"  ! {a.kind.value}: {a.message}" for a in status.alerts] or ["  none"]
    return _text(lines)
