"""Cost model: what one tenant costs per month on Google Cloud, from measured per-sync figures.

``python -m benchmarks.cost`` measures, against the emulators and the Alpaca simulator (in this
process, 100 ms latency), over a sample of tenants:
- the Firestore reads, writes and deletes of ``SyncWorker.handle`` for a cold sync (keys read)
  and a warm one (keys cached: the same ``keys_version`` again), of one ``fan_out`` (per
  tenant and per pulse), of one rollup, and of the single loop of the original spec;
- the ``user-sync`` message published per tenant (bytes of data and attributes);
- per sync: wall time, CPU of the handling thread, bytes sent to Alpaca, bytes of log lines;
then prices them with the list prices below, per tenant-month, at one sync a minute around the
clock and during US market hours only, for the pipeline and for the single loop, and computes
what each proposed change would save. The model itself (everything above ``measure``) is pure
arithmetic, tested by ``tests/unit/test_cost_model.py``. ``docs/COST.md`` explains it.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import math
import os
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

# --- prices ----------------------------------------------------------------------------------

PRICES_AS_OF = "2026-11-27"
"""When these list prices were last checked (USD, no discounts, free tiers shown apart)."""

GIB = 2**30
TIB = 2**40


@dataclass(frozen=True)
class Prices:
    """Google Cloud list prices, USD, per unit named in each field."""

    name: str
    firestore_read: float
    """Per document read (Firestore Standard edition, Native mode)."""
    firestore_write: float
    firestore_delete: float
    firestore_storage_gib_month: float = 0.18
    pubsub_tib: float = 40.0
    """Pub/Sub message delivery (basic), per TiB of publish plus delivery throughput."""
    pubsub_min_request_bytes: int = 1000
    """Each publish, push or pull request is billed as at least 1,000 bytes."""
    run_vcpu_second: float = 0.000024
    """Cloud Run (functions 2nd gen), Tier 1 region, CPU allocated during requests only."""
    run_gib_second: float = 0.0000025
    run_request: float = 0.40 / 1e6
    scheduler_job_month: float = 0.10
    logging_gib: float = 0.50
    """Cloud Logging ingestion (30-day retention included)."""
    egress_gib: float = 0.12
    """Premium Tier internet egress from North America (Cloud Run → Alpaca)."""


NAM5 = Prices("Firestore nam5 (US multi-region)", 0.06e-5, 0.18e-5, 0.02e-5)
US_CENTRAL1 = Prices("Firestore us-central1 (regional)", 0.03e-5, 0.09e-5, 0.01e-5)
PRICE_SETS = {"nam5": NAM5, "us-central1": US_CENTRAL1}


@dataclass(frozen=True)
class FreeTier:
    """Monthly free usage, per project or billing account; not deducted in the table."""

    firestore_reads: float = 50_000 * 30
    firestore_writes: float = 20_000 * 30
    firestore_deletes: float = 20_000 * 30
    run_vcpu_seconds: float = 180_000
    run_gib_seconds: float = 360_000
    run_requests: float = 2_000_000
    pubsub_bytes: float = 10 * GIB
    logging_bytes: float = 50 * GIB
    scheduler_jobs: float = 3


# --- schedules -------------------------------------------------------------------------------

AROUND_THE_CLOCK = 60 * 24 * 30
"""Syncs a month at one a minute, every minute of a 30-day month: 43,200."""
MARKET_HOURS = round(6.5 * 60 * 21)
"""Syncs a month at one a minute during US regular market hours (9:30-16:00 ET, ~21 trading
days): 8,190."""
SCHEDULES = {"around the clock": AROUND_THE_CLOCK, "market hours": MARKET_HOURS}
GOAL_USD = 0.02
"""Per tenant-month, during market hours."""

# --- inputs ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    """Per-sync figures of the pipeline (measured by :func:`measure`, or hand-written)."""

    worker_reads_cold: float
    """Firestore reads of one sync whose keys are not cached (kill-switch, snapshot, keys)."""
    worker_reads_warm: float
    """... whose keys are cached by the instance (kill-switch, snapshot)."""
    worker_writes: float
    """Writes other than deletes (snapshot, ``status/sync``)."""
    worker_deletes: float
    """Deletes (``status/last_sync_error``, on every success)."""
    publisher_reads_per_tenant: float
    """The eligibility scan: one read per configured and per enabled user."""
    pulse_reads: float
    """Per pulse, besides the scan and the count: pulse documents, finalizing the previous
    pulse, the publisher's own rollup."""
    pulse_writes: float
    rollup_reads_fixed: float
    """One rollup: pulse document and ``ops/last_pulse`` (in its transaction)."""
    rollup_aggregations: int
    """Count queries per rollup (one per outcome); each bills a read per 1,000 matches."""
    rollup_writes: float
    message_bytes: float
    """One ``user-sync`` message: data plus attribute keys and values."""
    cpu_ms: float
    """CPU per sync of the ``sync_user`` process (measured by ``benchmarks.pipeline``)."""
    wall_ms: float
    """Wall time of one ``sync_user`` request."""
    alpaca_bytes_sent: float
    """Bytes sent to Alpaca per sync (requests; responses are ingress, free)."""
    app_log_bytes: float
    """Bytes of the log lines the worker writes per successful sync."""
    publisher_wall_ms_per_tenant: float
    """Wall time of the fan-out per tenant (the publisher runs one request at a time)."""
    counts_users: bool = True
    """The tick counts ``users`` (an aggregation: a read per 1,000 users)."""


@dataclass(frozen=True)
class Assumptions:
    """What is not measured here; each is stated in ``docs/COST.md``."""

    tenants: int = 10_000
    """Tenants sharing the fixed costs (scheduler job, pulse documents, rollups)."""
    warm_fraction: float = 0.95
    """Share of syncs that find the keys in the instance's cache."""
    concurrency: int = 40
    """``sync_user``'s Cloud Run concurrency (``infra/resources.py``)."""
    vcpu: float = 1.0
    memory_gib: float = 0.5
    cpu_utilization: float = 0.6
    """CPU share an instance runs at: Cloud Run's autoscaler adds instances at about 60 %."""
    pulse_seconds: float = 30.0
    """Over how long one pulse's syncs spread (bounds the number of worker instances)."""
    rollup_delay_seconds: float = 5.0
    """``PULSE_ROLLUP_DELAY_SECONDS``: at most one rollup per instance per delay."""
    rollups_by_one_instance: bool = False
    """``False``: every worker instance rolls up (now); ``True``: only one place does."""
    log_entry_overhead_bytes: float = 500.0
    """What Cloud Logging adds to a line (resource, labels, timestamps, insertId)."""
    request_log_bytes: float = 1000.0
    """Cloud Run's own request log entry per push request."""
    tls_overhead_bytes: float = 60.0
    """TLS record overhead of the Alpaca requests per sync (connections are kept alive)."""
    storage_bytes_per_tenant: float = 10_000.0
    """Snapshot, status and config documents with their index entries."""
    tenants_per_message: int = 1
    """Tenants one ``user-sync`` message (one push request) names; 1 now."""


@dataclass(frozen=True)
class LoopWorkload:
    """The single loop of the original spec: one function walks every user each minute."""

    reads_per_user: float
    writes_per_user: float
    tenants_per_minute: float
    """Users one loop walks in a minute (its measured rate × 60 s): the most it can serve."""
    alpaca_bytes_sent: float
    enumeration_reads_per_user: float = 0.0
    """Listing the users to walk (0: the spec's loop is handed its users)."""


# --- the model -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    """One component of a tenant's monthly cost."""

    component: str
    detail: str
    usd_per_sync: float = 0.0
    usd_per_month: float = 0.0
    """Fixed monthly share (e.g. the scheduler job divided among the tenants)."""

    def monthly(self, syncs: int) -> float:
        return self.usd_per_sync * syncs + self.usd_per_month


def instance_seconds_per_sync(w: Workload, a: Assumptions) -> float:
    """Billed instance time of one sync: the instance is billed while it has a request in
    flight; with ``concurrency`` requests sharing it, a sync's share of that time is its wall
    time divided by the concurrency, unless the CPU is the limit (at the utilization the
    autoscaler keeps)."""
    cpu_bound = w.cpu_ms / 1000 / (a.vcpu * a.cpu_utilization)
    wall_bound = w.wall_ms / 1000 / a.concurrency
    return max(cpu_bound, wall_bound)


def worker_instances(w: Workload, a: Assumptions) -> int:
    """Worker instances busy during one pulse."""
    busy = a.tenants * instance_seconds_per_sync(w, a)
    return max(1, math.ceil(busy / a.pulse_seconds))


def rollups_per_pulse(w: Workload, a: Assumptions) -> int:
    windows = max(1, math.ceil(a.pulse_seconds / a.rollup_delay_seconds))
    return windows * (1 if a.rollups_by_one_instance else worker_instances(w, a))


def rollup_reads(w: Workload, a: Assumptions) -> float:
    """One rollup's reads: its documents, and a read per 1,000 entries matched by each count
    query (at least one each; successes match about every tenant)."""
    return w.rollup_reads_fixed + math.ceil(a.tenants / 1000) + (w.rollup_aggregations - 1)


def pubsub_bytes_per_sync(w: Workload, p: Prices, tenants_per_message: int = 1) -> float:
    """Billed throughput per sync of the ``user-sync`` messages: published in batches (their
    own size, plus 20 bytes of publish time and ~16 of message id) and delivered by one push
    request each (the 1,000-byte minimum)."""
    size = tenants_per_message * w.message_bytes + 20 + 16
    return (size + max(size, p.pubsub_min_request_bytes)) / tenants_per_message


def pipeline_lines(w: Workload, a: Assumptions, p: Prices) -> list[Line]:
    """The current design: a tick, a fan-out, one push request per tenant to ``sync_user``."""
    n = a.tenants
    reads = w.worker_reads_warm * a.warm_fraction + w.worker_reads_cold * (1 - a.warm_fraction)
    rollups = rollups_per_pulse(w, a)
    count_reads = math.ceil(n / 1000) if w.counts_users else 0
    pulse_reads = (w.pulse_reads + count_reads + rollups * rollup_reads(w, a)) / n
    pulse_writes = (w.pulse_writes + rollups * w.rollup_writes) / n
    instance_s = instance_seconds_per_sync(w, a)
    publisher_s = w.publisher_wall_ms_per_tenant / 1000
    per_instance_second = a.vcpu * p.run_vcpu_second + a.memory_gib * p.run_gib_second
    tick_bytes = 2 * p.pubsub_min_request_bytes / n  # the tick: one publish, one push
    k = a.tenants_per_message
    message_bytes = pubsub_bytes_per_sync(w, p, k)
    log_bytes = w.app_log_bytes + a.log_entry_overhead_bytes + a.request_log_bytes / k
    return [
        Line(
            "Firestore reads: worker",
            f"{reads:.2f}/sync ({a.warm_fraction:.0%} with keys cached)",
            reads * p.firestore_read,
        ),
        Line(
            "Firestore reads: fan-out scan",
            f"{w.publisher_reads_per_tenant:.3g}/tenant/tick",
            w.publisher_reads_per_tenant * p.firestore_read,
        ),
        Line(
            "Firestore reads: pulse, count, rollups",
            f"{pulse_reads:.3f}/tenant/tick ({rollups} rollups/pulse)",
            pulse_reads * p.firestore_read,
        ),
        Line(
            "Firestore writes",
            f"{w.worker_writes:.2f}/sync + {pulse_writes:.4f} pulse",
            (w.worker_writes + pulse_writes) * p.firestore_write,
        ),
        Line(
            "Firestore deletes",
            f"{w.worker_deletes:.2f}/sync",
            w.worker_deletes * p.firestore_delete,
        ),
        Line(
            "Firestore storage",
            f"{a.storage_bytes_per_tenant / 1000:.0f} KB/tenant",
            usd_per_month=a.storage_bytes_per_tenant / GIB * p.firestore_storage_gib_month,
        ),
        Line(
            "Pub/Sub throughput",
            f"{message_bytes:,.0f} B/sync (publish + push)",
            (message_bytes + tick_bytes) / TIB * p.pubsub_tib,
        ),
        Line(
            "Cloud Run: sync_user CPU + memory",
            f"{instance_s * 1000:.1f} ms instance/sync",
            instance_s * per_instance_second,
        ),
        Line(
            "Cloud Run: requests",
            f"{'1' if k == 1 else f'1/{k}'} push/sync + 1/{n:,} tick",
            (1 / k + 1 / n) * p.run_request,
        ),
        Line(
            "Cloud Run: publisher",
            f"{w.publisher_wall_ms_per_tenant:.3f} ms/tenant/tick",
            publisher_s * per_instance_second,
        ),
        Line(
            "Cloud Logging",
            f"{log_bytes:,.0f} B/sync (app line + entry + request log)",
            log_bytes / GIB * p.logging_gib,
        ),
        Line(
            "Egress to Alpaca",
            f"{w.alpaca_bytes_sent + a.tls_overhead_bytes:,.0f} B/sync",
            (w.alpaca_bytes_sent + a.tls_overhead_bytes) / GIB * p.egress_gib,
        ),
        Line(
            "Cloud Scheduler",
            f"1 job / {n:,} tenants",
            usd_per_month=p.scheduler_job_month / n,
        ),
    ]


def single_loop_lines(loop: LoopWorkload, a: Assumptions, p: Prices) -> list[Line]:
    """The original spec: each minute one invocation walks its users in sequence; its
    instance is busy the whole minute. Per tenant: a share of that minute."""
    share = 1 / loop.tenants_per_minute
    per_instance_second = a.vcpu * p.run_vcpu_second + a.memory_gib * p.run_gib_second
    reads = loop.reads_per_user + loop.enumeration_reads_per_user
    return [
        Line("Firestore reads", f"{reads:.2f}/user/minute", reads * p.firestore_read),
        Line(
            "Firestore writes",
            f"{loop.writes_per_user:.2f}/user/minute",
            loop.writes_per_user * p.firestore_write,
        ),
        Line(
            "Cloud Run: loop CPU + memory",
            f"60 s/minute shared by {loop.tenants_per_minute:.0f} users",
            60 * per_instance_second * share,
        ),
        Line("Cloud Run: requests", "1/minute", share * p.run_request),
        Line(
            "Cloud Logging",
            "1 request log/minute",
            share * a.request_log_bytes / GIB * p.logging_gib,
        ),
        Line(
            "Egress to Alpaca",
            f"{loop.alpaca_bytes_sent + a.tls_overhead_bytes:,.0f} B/user/minute",
            (loop.alpaca_bytes_sent + a.tls_overhead_bytes) / GIB * p.egress_gib,
        ),
        Line(
            "Cloud Scheduler",
            f"1 job / {loop.tenants_per_minute:.0f} users",
            usd_per_month=p.scheduler_job_month * share,
        ),
        Line(
            "Firestore storage",
            f"{a.storage_bytes_per_tenant / 1000:.0f} KB/tenant",
            usd_per_month=a.storage_bytes_per_tenant / GIB * p.firestore_storage_gib_month,
        ),
    ]


def total(lines: Sequence[Line], syncs: int) -> float:
    return sum(line.monthly(syncs) for line in lines)


def free_tier_value(
    w: Workload, a: Assumptions, p: Prices, syncs: int, free: FreeTier = FreeTier()
) -> float:
    """What the free tiers would take off the whole project's month, per tenant (each capped
    by the usage it covers); the table does not deduct it."""
    n, monthly = a.tenants, a.tenants * syncs
    reads = (
        w.worker_reads_warm * a.warm_fraction
        + w.worker_reads_cold * (1 - a.warm_fraction)
        + w.publisher_reads_per_tenant
    )
    instance_s = instance_seconds_per_sync(w, a)
    requests = monthly / a.tenants_per_message
    log_bytes = (
        w.app_log_bytes + a.log_entry_overhead_bytes + a.request_log_bytes * requests / monthly
    )
    covered = (
        min(free.firestore_reads, reads * monthly) * p.firestore_read
        + min(free.firestore_writes, w.worker_writes * monthly) * p.firestore_write
        + min(free.firestore_deletes, w.worker_deletes * monthly) * p.firestore_delete
        + min(free.run_vcpu_seconds, instance_s * a.vcpu * monthly) * p.run_vcpu_second
        + min(free.run_gib_seconds, instance_s * a.memory_gib * monthly) * p.run_gib_second
        + min(free.run_requests, requests) * p.run_request
        + min(free.pubsub_bytes, pubsub_bytes_per_sync(w, p, a.tenants_per_message) * monthly)
        / TIB
        * p.pubsub_tib
        + min(free.logging_bytes, log_bytes * monthly) / GIB * p.logging_gib
        + min(free.scheduler_jobs, 1) * p.scheduler_job_month
    )
    return covered / n


# --- proposed changes ------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """A design change, as the inputs it changes; its saving is computed by the model."""

    name: str
    why: str
    workload: Callable[[Workload], Workload] = field(default=lambda w: w)
    assumptions: Callable[[Assumptions], Assumptions] = field(default=lambda a: a)
    in_cumulative: bool = True
    """``False``: listed with its saving, but it conflicts with DESIGN.md as written."""


ROSTER_TENANTS_PER_SHARD = 10_000

CHANGES: tuple[Change, ...] = (
    Change(
        "roster instead of the eligibility scan",
        "triggers on config/alpaca and status/trading keep `uid keys_version` lines in a few "
        f"shard documents ({ROSTER_TENANTS_PER_SHARD:,} tenants each); a tick reads the shards "
        "and takes the user count from them, instead of 2 reads per tenant and a count query",
        workload=lambda w: replace(
            w, publisher_reads_per_tenant=1 / ROSTER_TENANTS_PER_SHARD, counts_users=False
        ),
    ),
    Change(
        "no status/sync write on success",
        "count successes from the snapshots' pulseId (the same count query, on data/snapshot); "
        "write status/sync only for errors and skips",
        workload=lambda w: replace(w, worker_writes=max(w.worker_writes - 1, 0)),
    ),
    Change(
        "delete last_sync_error only after an error",
        "a failure also sets a flag in the snapshot, which the worker reads anyway; a success "
        "deletes the error document (and clears the flag) only when the flag is set",
        workload=lambda w: replace(w, worker_deletes=0),
    ),
    Change(
        "one rollup place per pulse",
        "a single trailing rollup (the publisher's, or a Cloud Tasks task) instead of one per "
        "worker instance per delay: count queries bill a read per 1,000 matches each time",
        assumptions=lambda a: replace(a, rollups_by_one_instance=True),
    ),
    Change(
        "quiet logs",
        "a logging exclusion filter for sync_user's request logs and the per-sync success "
        "line at DEBUG (errors keep their lines)",
        workload=lambda w: replace(w, app_log_bytes=0),
        assumptions=lambda a: replace(a, request_log_bytes=0, log_entry_overhead_bytes=0),
    ),
    Change(
        "10 tenants per user-sync message",
        "one push request syncs 10 tenants concurrently: a tenth of the request fees, push "
        "minimums and request logs; a failed tenant must then be re-published alone (the "
        "retry contract changes), so it is not in the cumulative total",
        assumptions=lambda a: replace(a, tenants_per_message=10),
        in_cumulative=False,
    ),
    Change(
        "kill-switch from the roster (no re-check read)",
        "the worker trusts the roster the tick was published from; conflicts with DESIGN.md "
        "('sync_user re-checks the kill-switch'), so it is not in the cumulative total",
        workload=lambda w: replace(
            w,
            worker_reads_warm=max(w.worker_reads_warm - 1, 0),
            worker_reads_cold=max(w.worker_reads_cold - 1, 0),
        ),
        in_cumulative=False,
    ),
)


@dataclass(frozen=True)
class Saving:
    name: str
    why: str
    usd_by_schedule: dict[str, float]
    """What the change alone saves per tenant-month, by schedule."""
    in_cumulative: bool


def savings(w: Workload, a: Assumptions, p: Prices) -> list[Saving]:
    """Each change alone, against the current design; and the market-hours schedule."""
    result = [
        Saving(
            "market-hours schedule following /v2/clock",
            "the scheduler ticks every minute but the publisher publishes only while Alpaca's "
            "/v2/clock says the market is open: 8,190 instead of 43,200 syncs a month",
            {
                "around the clock": total(pipeline_lines(w, a, p), AROUND_THE_CLOCK)
                - total(pipeline_lines(w, a, p), MARKET_HOURS)
            },
            True,
        )
    ]
    for change in CHANGES:
        before = pipeline_lines(w, a, p)
        after = pipeline_lines(change.workload(w), change.assumptions(a), p)
        result.append(
            Saving(
                change.name,
                change.why,
                {name: total(before, s) - total(after, s) for name, s in SCHEDULES.items()},
                change.in_cumulative,
            )
        )
    return result


def with_changes(
    w: Workload, a: Assumptions, *, optional: bool = False
) -> tuple[Workload, Assumptions]:
    """The inputs with every change of the cumulative total applied (``optional``: and those
    left out of it)."""
    for change in CHANGES:
        if change.in_cumulative or optional:
            w, a = change.workload(w), change.assumptions(a)
    return w, a


# --- printing --------------------------------------------------------------------------------


def verdict(usd: float) -> str:
    return "PASS" if usd < GOAL_USD else "FAIL"


def format_table(title: str, lines: Sequence[Line]) -> str:
    head = f"{'component':<40}{'quantity':<46}{'24/7 $/mo':>11}{'mkt $/mo':>11}"
    rows = [title, head, "-" * len(head)]
    for line in lines:
        rows.append(
            f"{line.component:<40}{line.detail:<46}"
            f"{line.monthly(AROUND_THE_CLOCK):>11.5f}{line.monthly(MARKET_HOURS):>11.5f}"
        )
    market = total(lines, MARKET_HOURS)
    rows.append("-" * len(head))
    rows.append(
        f"{'total per tenant-month':<86}{total(lines, AROUND_THE_CLOCK):>11.5f}{market:>11.5f}"
    )
    rows.append(
        f"{'goal: market hours < $' + format(GOAL_USD, '.2f'):<86}{'':>11}{verdict(market):>11}"
    )
    return "\n".join(rows)


def report(w: Workload, a: Assumptions, loop: LoopWorkload, prices: Sequence[Prices]) -> str:
    out: list[str] = []
    for p in prices:
        out.append(f"\n=== {p.name}; list prices as of {PRICES_AS_OF} ===")
        out.append(
            format_table(
                f"\nPipeline (current design), per tenant, {a.tenants:,} tenants",
                pipeline_lines(w, a, p),
            )
        )
        loop_lines = single_loop_lines(loop, a, p)
        out.append(
            format_table(
                f"\nSingle loop (original spec) at its capacity of "
                f"{loop.tenants_per_minute:.0f} users/minute",
                loop_lines,
            )
        )
        free = free_tier_value(w, a, p, MARKET_HOURS)
        out.append(
            f"\nfree tiers (not deducted) would cover ${free:.5f} per tenant-month at "
            f"{a.tenants:,} tenants, market hours"
        )
        out.append("\nproposed changes, each alone (saving per tenant-month):")
        for s in savings(w, a, p):
            cells = "  ".join(f"{k} ${v:.5f}" for k, v in s.usd_by_schedule.items())
            mark = "" if s.in_cumulative else "  (not in the cumulative total)"
            out.append(f"  - {s.name}: {cells}{mark}")
        out.append(
            format_table(
                "\nPipeline with the cumulative changes, per tenant",
                pipeline_lines(*with_changes(w, a), p),
            )
        )
        for label, optional in (("the cumulative ones", False), ("all of them", True)):
            changed = pipeline_lines(*with_changes(w, a, optional=optional), p)
            market = total(changed, MARKET_HOURS)
            out.append(
                f"with {label}: ${total(changed, AROUND_THE_CLOCK):.5f} around the clock, "
                f"${market:.5f} market hours (goal < ${GOAL_USD:.2f}: {verdict(market)})"
            )
    return "\n".join(out)


# --- measuring -------------------------------------------------------------------------------

LATENCY_MS = 100
PIPELINE_CPU_MS = 13.9
"""``sync_user`` CPU per sync, from ``benchmarks.pipeline`` at N=1,000 (this machine)."""
PUBLISHER_WALL_MS_PER_TENANT = 1.13
"""``fan_out`` at 100,000 tenants: 113 s (``benchmarks.publisher_scale``, this machine)."""


@dataclass
class Ops:
    reads: int = 0
    writes: int = 0
    """Writes other than deletes."""
    deletes: int = 0

    def per(self, n: int) -> dict[str, float]:
        return {k: v / n for k, v in asdict(self).items()}


@contextmanager
def counted() -> Iterator[Ops]:
    """``benchmarks.metering.metered`` with deletes told apart from the other writes."""
    from google.cloud.firestore_v1 import batch, transaction

    from benchmarks.metering import metered

    ops = Ops()
    deletes = [0]
    originals = [(batch.WriteBatch, "commit"), (transaction.Transaction, "_commit")]
    saved = []
    with metered() as meter:
        for owner, name in originals:
            original = getattr(owner, name)
            saved.append((owner, name, original))

            def wrapped(self: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
                deletes[0] += sum(
                    1
                    for pb in self._write_pbs
                    if getattr(pb, "_pb", pb).WhichOneof("operation") == "delete"
                )
                return _original(self, *args, **kwargs)

            setattr(owner, name, wrapped)
        try:
            yield ops
        finally:
            for owner, name, original in saved:
                setattr(owner, name, original)
            ops.reads = meter.reads
            ops.deletes = deletes[0]
            ops.writes = meter.writes - deletes[0]


@contextmanager
def bytes_sent_to(port: int) -> Iterator[list[int]]:
    """Bytes this process sends over Python sockets to ``port`` (urllib3 uses them; gRPC and
    the in-process simulator's server side do not count). ``[bytes, connections]``."""
    import socket

    counts = [0, 0]
    original_sendall, original_connect = socket.socket.sendall, socket.socket.connect

    def to_port(sock: socket.socket) -> bool:
        try:
            return bool(sock.getpeername()[1] == port)
        except (OSError, IndexError, TypeError):
            return False

    def sendall(self: socket.socket, data: Any, *args: Any) -> Any:
        if to_port(self):
            counts[0] += len(data)
        return original_sendall(self, data, *args)

    def connect(self: socket.socket, address: Any) -> Any:
        if isinstance(address, tuple) and address[1] == port:
            counts[1] += 1
        return original_connect(self, address)

    socket.socket.sendall = sendall  # type: ignore[method-assign,assignment]
    socket.socket.connect = connect  # type: ignore[method-assign,assignment]
    try:
        yield counts
    finally:
        socket.socket.sendall = original_sendall  # type: ignore[method-assign,assignment]
        socket.socket.connect = original_connect  # type: ignore[method-assign,assignment]


@contextmanager
def log_bytes() -> Iterator[list[int]]:
    """Bytes of the Cloud Logging JSON lines ``agenttrader`` loggers write, at INFO."""
    import logging

    from agenttrader.logs import CloudLoggingFormatter

    counts = [0, 0]

    class Counting(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            counts[0] += len(self.format(record).encode()) + 1
            counts[1] += 1

    handler = Counting()
    handler.setFormatter(CloudLoggingFormatter())
    logger = logging.getLogger("agenttrader")
    level, propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield counts
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


class RecordingPublisher:
    """The real publisher, recording the size of each message published through it."""

    def __init__(self, real: Any) -> None:
        self._real = real
        self.sizes: list[int] = []

    def publish(self, topic: str, data: bytes, **attributes: str) -> Any:
        self.sizes.append(len(data) + sum(len(k) + len(v) for k, v in attributes.items()))
        return self._real.publish(topic, data, **attributes)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def uid_of(i: int) -> str:
    """``benchmarks.pipeline``'s uids, so its single loop walks these tenants."""
    return f"bench-{i:06d}"


CONFIGURED_AT = datetime(2026, 1, 1, tzinfo=UTC)


def seed(db: Any, sim: Any, uids: Sequence[str]) -> None:
    """Configured, enabled tenants with keys of their own simulator account."""
    from agenttrader import paths

    batch = db.batch()
    for uid in uids:
        tenant = sim.add_tenant()
        keys = {"key_id": tenant.key_id, "secret_key": tenant.secret_key, "base_url": sim.base_url}
        batch.set(db.document(paths.user_doc(uid)), {"onboarded": True})
        batch.set(
            db.document(paths.alpaca_config_doc(uid)),
            {"configured": True, "configuredAt": CONFIGURED_AT},
        )
        batch.set(db.document(paths.trading_status_doc(uid)), {"enabled": True})
        batch.set(db.document(paths.alpaca_secret_doc(uid)), keys)
    batch.commit()


def tick(at: datetime) -> Any:
    from agenttrader.events import PubsubDelivery

    return PubsubDelivery(f"cost-{uuid.uuid4().hex[:8]}", b"{}", {}, at, 1)


def measure_fan_out(deps: Any, recorder: RecordingPublisher, sample: int) -> dict[str, Any]:
    """The scan and the count alone, then a whole fan-out: the second one, since from then
    on each tick also finalizes the previous pulse."""
    from agenttrader import fanout

    fanout.fan_out(deps, tick(datetime.now(UTC)))
    recorder.sizes.clear()
    with counted() as scan:
        fanout.eligible_users(deps.firestore)
    with counted() as count:
        fanout.count_users(deps.firestore)
    with counted() as whole:
        result = fanout.fan_out(deps, tick(datetime.now(UTC)))
    return {
        "pulse_id": result.pulse_id,
        "published": result.published,
        "scan_reads_per_tenant": scan.reads / sample,
        "count_reads": count.reads,
        "pulse_reads": whole.reads - scan.reads - count.reads,
        "pulse_writes": whole.writes + whole.deletes,
        "message_bytes": sum(recorder.sizes) / max(len(recorder.sizes), 1),
    }


def measure_worker_pass(
    worker: Any, uids: Sequence[str], pulse_id: str, at: datetime, *, sim_port: int, threads: int
) -> dict[str, float]:
    """One scheduled sync of every tenant through ``SyncWorker.handle``, ``threads`` at once."""
    from agenttrader.events import PubsubDelivery
    from agenttrader.key_cache import version_of
    from agenttrader.messages import Reason, SyncRequest
    from agenttrader.sync import Result

    version = version_of(CONFIGURED_AT)

    def handle(uid: str) -> tuple[float, float]:
        request = SyncRequest(uid, Reason.SCHEDULE, at, pulse_id=pulse_id, keys_version=version)
        delivery = PubsubDelivery(
            f"cost-{uid}-{at.timestamp()}", request.to_bytes(), request.attributes(), at, 1
        )
        wall, cpu = time.monotonic(), time.thread_time()
        outcome = worker.handle(delivery)
        if outcome is not Result.SYNCED:
            raise RuntimeError(f"{uid}: {outcome}")
        return time.monotonic() - wall, time.thread_time() - cpu

    with (
        counted() as ops,
        bytes_sent_to(sim_port) as sent,
        log_bytes() as logged,
        concurrent.futures.ThreadPoolExecutor(max_workers=threads) as pool,
    ):
        timings = list(pool.map(handle, uids))
    n = len(uids)
    return {
        **ops.per(n),
        "wall_ms": 1000 * sum(t[0] for t in timings) / n,
        "thread_cpu_ms": 1000 * sum(t[1] for t in timings) / n,
        "alpaca_bytes_sent": sent[0] / n,
        "alpaca_connections": sent[1] / n,
        "log_bytes": logged[0] / n,
        "log_lines": logged[1] / n,
    }


def measure(sample: int, threads: int) -> dict[str, Any]:
    """Every measured figure, against fresh emulators and an in-process simulator."""
    import google.cloud.pubsub_v1 as pubsub_v1

    from agenttrader import emulators, pulses, topology
    from agenttrader.deps import Deps
    from agenttrader.settings import Settings
    from agenttrader.simulator import AlpacaSimulator
    from agenttrader.sync import SyncWorker
    from benchmarks import pipeline

    project = f"cost-{uuid.uuid4().hex[:6]}"
    uids = [uid_of(i) for i in range(sample)]
    with (
        emulators.running(emulators.PUBSUB, emulators.FIRESTORE, project=project) as hosts,
        AlpacaSimulator(default_latency_ms=LATENCY_MS) as sim,
    ):
        os.environ.update(
            {**hosts, "GOOGLE_CLOUD_PROJECT": project, "ALPACA_ALLOWED_BASE_URLS": sim.base_url}
        )
        settings = Settings.from_env()
        real = Deps(settings).publisher
        subscriber = pubsub_v1.SubscriberClient()
        try:
            topology.apply(project, real, subscriber)
        finally:
            subscriber.close()
        recorder = RecordingPublisher(real)
        deps = Deps(settings, publisher=recorder)  # type: ignore[arg-type]
        seed(deps.firestore, sim, uids)
        fan = measure_fan_out(deps, recorder, sample)
        pulse_id, at = fan["pulse_id"], datetime.now(UTC)

        # First syncs (snapshots created); then a new instance (keys not cached: cold) and
        # the same instance again (the same keys_version: warm).
        where: dict[str, Any] = {"sim_port": sim.port, "threads": threads}
        worker = {}
        worker["first"] = measure_worker_pass(
            SyncWorker(deps), uids, pulse_id, at + timedelta(seconds=1), **where
        )
        instance = SyncWorker(deps)
        for i, name in enumerate(("cold", "warm"), start=2):
            worker[name] = measure_worker_pass(
                instance, uids, pulse_id, at + timedelta(seconds=i), **where
            )
        with counted() as rollup:
            pulses.rollup(deps.firestore, pulse_id)
        with counted() as loop_ops, bytes_sent_to(sim.port) as loop_sent:
            loop = pipeline.run_single_loop(project, sim.base_url, sample)
        real.stop()
    return {
        "sample": sample,
        "fan_out": fan,
        "worker": worker,
        "rollup": asdict(rollup),
        "single_loop": {
            **loop_ops.per(sample),
            "syncs_per_s": loop["syncs_per_s"],
            "alpaca_bytes_sent": loop_sent[0] / sample,
        },
    }


def inputs_from(
    figures: dict[str, Any], cpu_ms: float, publisher_ms: float
) -> tuple[Workload, LoopWorkload]:
    fan, worker, rollup = figures["fan_out"], figures["worker"], figures["rollup"]
    cold, warm = worker["cold"], worker["warm"]
    workload = Workload(
        worker_reads_cold=cold["reads"],
        worker_reads_warm=warm["reads"],
        worker_writes=warm["writes"],
        worker_deletes=warm["deletes"],
        publisher_reads_per_tenant=fan["scan_reads_per_tenant"],
        pulse_reads=fan["pulse_reads"],
        pulse_writes=fan["pulse_writes"],
        rollup_reads_fixed=rollup["reads"] - 3,
        rollup_aggregations=3,
        rollup_writes=rollup["writes"] + rollup["deletes"],
        message_bytes=fan["message_bytes"],
        cpu_ms=cpu_ms,
        wall_ms=warm["wall_ms"],
        alpaca_bytes_sent=warm["alpaca_bytes_sent"],
        app_log_bytes=warm["log_bytes"],
        publisher_wall_ms_per_tenant=publisher_ms,
    )
    loop = figures["single_loop"]
    loop_workload = LoopWorkload(
        reads_per_user=loop["reads"],
        writes_per_user=loop["writes"] + loop["deletes"],
        tenants_per_minute=60 * loop["syncs_per_s"],
        alpaca_bytes_sent=loop["alpaca_bytes_sent"],
    )
    return workload, loop_workload


def print_measured(figures: dict[str, Any]) -> None:
    n = figures["sample"]
    print(f"measured over {n} tenants (Alpaca simulator at {LATENCY_MS} ms, in-process):")
    for name in ("first", "cold", "warm"):
        f = figures["worker"][name]
        print(
            f"  worker, {name:<5} sync: {f['reads']:.2f} reads, {f['writes']:.2f} writes, "
            f"{f['deletes']:.2f} deletes; {f['wall_ms']:.0f} ms wall, "
            f"{f['thread_cpu_ms']:.1f} ms handler-thread CPU, "
            f"{f['alpaca_bytes_sent']:.0f} B sent to Alpaca "
            f"({f['alpaca_connections']:.2f} connections), "
            f"{f['log_bytes']:.0f} B in {f['log_lines']:.1f} log lines"
        )
    fan = figures["fan_out"]
    print(
        f"  fan-out: {fan['scan_reads_per_tenant']:.2f} scan reads/tenant, "
        f"{fan['count_reads']} count read(s), {fan['pulse_reads']} other reads and "
        f"{fan['pulse_writes']} writes per pulse; message {fan['message_bytes']:.0f} B "
        f"(data + attributes); published {fan['published']}"
    )
    r = figures["rollup"]
    print(f"  one rollup: {r['reads']} reads, {r['writes'] + r['deletes']} writes")
    loop = figures["single_loop"]
    print(
        f"  single loop: {loop['reads']:.2f} reads, {loop['writes']:.2f} writes per user; "
        f"{loop['syncs_per_s']:.2f} users/s; {loop['alpaca_bytes_sent']:.0f} B sent to Alpaca"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=int, default=100, help="tenants measured")
    parser.add_argument("--threads", type=int, default=4, help="concurrent worker syncs")
    parser.add_argument("--tenants", type=int, default=Assumptions.tenants)
    parser.add_argument("--cpu-ms", type=float, default=PIPELINE_CPU_MS)
    parser.add_argument("--publisher-ms", type=float, default=PUBLISHER_WALL_MS_PER_TENANT)
    parser.add_argument("--concurrency", type=int, default=Assumptions.concurrency)
    parser.add_argument("--cpu-utilization", type=float, default=Assumptions.cpu_utilization)
    parser.add_argument("--warm-fraction", type=float, default=Assumptions.warm_fraction)
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
    )
    prices = list(PRICE_SETS.values()) if args.prices == "both" else [PRICE_SETS[args.prices]]
    print(
        f"\nassumptions: {assumptions}\n"
        f"sync_user CPU {workload.cpu_ms} ms/sync (benchmarks.pipeline), "
        f"wall {workload.wall_ms:.0f} ms/sync (measured here)"
    )
    print(report(workload, assumptions, loop, prices))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
