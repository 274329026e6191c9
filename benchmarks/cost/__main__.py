"""Cost per tenant-month: measure the design on the emulators (or load saved figures), then price.

``python -m benchmarks.cost`` (what ``make bench`` runs) measures with
:func:`benchmarks.cost.measure.measure` and prints the figures and the model's report for both
price sets; ``--json FILE`` keeps the measured figures, ``--figures FILE`` prices saved ones
without starting anything. ``docs/COST.md`` explains the options and the figures.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from benchmarks.cost import streams
from benchmarks.cost.measure import inputs_from, measure, print_measured
from benchmarks.cost.model import (
    PIPELINE_CPU_MS,
    PRICE_SETS,
    PUBLISHER_WALL_MS_PER_TENANT,
    Assumptions,
)
from benchmarks.cost.report import report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.cost", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("--sample", type=int, default=100, help="tenants measured")
    parser.add_argument("--threads", type=int, default=4, help="concurrent worker syncs")
    parser.add_argument("--tenants", type=int, default=Assumptions.tenants)
    parser.add_argument("--cpu-ms", type=float, default=PIPELINE_CPU_MS)
    parser.add_argument("--publisher-ms", type=float, default=PUBLISHER_WALL_MS_PER_TENANT)
    parser.add_argument("--concurrency", type=int, default=Assumptions.concurrency)
    parser.add_argument("--cpu-utilization", type=float, default=Assumptions.cpu_utilization)
    parser.add_argument("--warm-fraction", type=float, default=Assumptions.warm_fraction)
    parser.add_argument(
        "--roster-writes",
        type=float,
        default=Assumptions.roster_writes_per_tenant_month,
        help="config/alpaca and status/trading writes per tenant-month",
    )
    parser.add_argument(
        "--failures",
        type=float,
        default=Assumptions.failure_episodes_per_tenant_month,
        help="failing→recovered episodes per tenant-month",
    )
    parser.add_argument("--prices", choices=[*PRICE_SETS, "both"], default="both")
    parser.add_argument("--json", help="also write the measured figures here")
    parser.add_argument("--figures", help="price figures written by --json instead of measuring")
    args = parser.parse_args(argv)

    if args.figures:
        with open(args.figures) as saved:
            figures = json.load(saved)
    else:
        figures = measure(args.sample, args.threads)
    print_measured(figures)
    if args.json:
        with open(args.json, "w") as out:
            json.dump(figures, out, indent=2)
    workload, loop = inputs_from(figures, args.cpu_ms, args.publisher_ms)
    assumptions = Assumptions(
        tenants=args.tenants,
        concurrency=args.concurrency,
        cpu_utilization=args.cpu_utilization,
        warm_fraction=args.warm_fraction,
        roster_writes_per_tenant_month=args.roster_writes,
        failure_episodes_per_tenant_month=args.failures,
    )
    prices = list(PRICE_SETS.values()) if args.prices == "both" else [PRICE_SETS[args.prices]]
    print(
        f"\nassumptions: {assumptions}\n"
        f"sync_user CPU {workload.cpu_ms} ms/sync (benchmarks.pipeline), "
        f"wall {workload.wall_ms:.0f} ms/sync (measured here); publisher "
        f"{workload.publisher_wall_ms_per_tenant} ms/tenant/pulse (benchmarks.publisher_scale)"
    )
    print(report(workload, assumptions, loop, prices))
    print(streams.report(workload, assumptions, prices))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
