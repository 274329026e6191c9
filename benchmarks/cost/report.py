"""The cost model's printed report: per-tenant-month tables of :mod:`benchmarks.cost.model`.

Pure text formatting (no I/O): :func:`report` lays out, for each price set, the design as
built, what a month adds beyond its market minutes, the single loop of the original spec, the
free tiers' value and the proposed changes' savings, each against :data:`model.GOAL_USD`.
"""

from __future__ import annotations

from collections.abc import Sequence

from benchmarks.cost.model import (
    ALWAYS,
    CLOCK_PULSES_OUTSIDE_HOURS,
    GOAL_USD,
    MARKET_HOURS,
    MONTH,
    PRICES_AS_OF,
    SCHEDULES,
    Assumptions,
    Line,
    LoopWorkload,
    Prices,
    Schedule,
    Workload,
    failure_episode_usd,
    free_tier_value,
    month_overheads,
    pipeline_lines,
    rebuild_usd,
    roster_upkeep_usd,
    savings,
    single_loop_lines,
    total,
    with_changes,
)


def verdict(usd: float) -> str:
    return "PASS" if usd < GOAL_USD else "FAIL"


def usd(value: float) -> str:
    """Dollars to 5 decimals; amounts too small for that in scientific notation."""
    if value and abs(value) < 0.000005:
        return f"${value:.1e}"
    return f"${value:.5f}"


def _goal(value: float) -> str:
    return f"${value:.4f} (goal < ${GOAL_USD:.2f}: {verdict(value)})"


COLUMNS = {MARKET_HOURS.name: "mkt hours", MONTH.name: "month", ALWAYS.name: "always"}


def format_table(title: str, lines: Sequence[Line], schedules: Sequence[Schedule]) -> str:
    head = f"{'component':<36}{'quantity':<46}" + "".join(
        f"{COLUMNS.get(s.name, s.name)[:10]:>11}" for s in schedules
    )
    rows = [title, head, "-" * len(head)]
    for line in lines:
        cells = "".join(f"{line.monthly(s):>11.5f}" for s in schedules)
        rows.append(f"{line.component[:35]:<36}{line.detail[:45]:<46}{cells}")
    rows.append("-" * len(head))
    totals = "".join(f"{total(lines, s):>11.5f}" for s in schedules)
    rows.append(f"{'total per tenant-month, $':<82}{totals}")
    verdicts = "".join(
        f"{verdict(total(lines, s)) if s.reads_clock else '':>11}" for s in schedules
    )
    rows.append(
        f"{'goal < $' + format(GOAL_USD, '.2f') + ' (market-hours schedule)':<82}{verdicts}"
    )
    return "\n".join(rows)


def schedules_legend() -> str:
    return "\n".join(
        f"  {COLUMNS[s.name]:<10} {s.name}: {s.pulses:,} pulses, {s.closed_ticks:,} closed "
        f"ticks, {s.clock_asks} clock refreshes a month"
        for s in SCHEDULES
    )


def report(w: Workload, a: Assumptions, loop: LoopWorkload, prices: Sequence[Prices]) -> str:
    out: list[str] = [f"\nschedules (columns):\n{schedules_legend()}"]
    for p in prices:
        out.append(f"\n=== {p.name}; list prices as of {PRICES_AS_OF} ===")
        lines = pipeline_lines(w, a, p)
        out.append(
            format_table(
                f"\nPipeline (the design as built), per tenant, {a.tenants:,} tenants",
                lines,
                SCHEDULES,
            )
        )
        closed, outside = month_overheads(lines)
        out.append(
            f"of the month: closed ticks ${closed:.5f}; the {CLOCK_PULSES_OUTSIDE_HOURS} "
            f"pulses outside the session (a stale clock fails open) ${outside:.5f}; roster "
            f"upkeep ${a.roster_writes_per_tenant_month * roster_upkeep_usd(w, a, p):.6f}; "
            f"one failing→recovered episode {usd(failure_episode_usd(w, a, p))}; the roster's "
            f"one-off rebuild {usd(rebuild_usd(w, p))} per tenant (once, not monthly)"
        )
        out.append(
            format_table(
                f"\nSingle loop (original spec) at its capacity of "
                f"{loop.tenants_per_minute:.0f} users/minute",
                single_loop_lines(loop, a, p),
                SCHEDULES,
            )
        )
        free = free_tier_value(w, a, p, MARKET_HOURS)
        out.append(
            f"\nfree tiers (not deducted) would cover ${free:.5f} per tenant-month at "
            f"{a.tenants:,} tenants, market hours"
        )
        out.append("proposed changes, each alone (saving per tenant-month):")
        for s in savings(w, a, p):
            cells = "  ".join(f"{COLUMNS[k]} {usd(v)}" for k, v in s.usd_by_schedule.items())
            mark = "" if s.in_cumulative else "  (optional: changes a contract)"
            out.append(f"  - {s.name}: {cells}{mark}")
        for label, optional in (("the proposed ones", False), ("the optional ones too", True)):
            changed = pipeline_lines(*with_changes(w, a, optional=optional), p)
            out.append(
                f"with {label}: market hours {_goal(total(changed, MARKET_HOURS))}, "
                f"month {_goal(total(changed, MONTH))}, always ${total(changed, ALWAYS):.4f}"
            )
    return "\n".join(out)
