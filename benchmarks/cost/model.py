"""The cost model: what one tenant costs per month on Google Cloud, priced from per-sync figures.

Holds the list prices (:class:`Prices`, :data:`PRICE_SETS`), the schedules a month of ticks
can follow (:data:`SCHEDULES`), the model's inputs (:class:`Workload`, measured by
:mod:`benchmarks.cost.measure` or hand-written; :class:`Assumptions`; :class:`LoopWorkload`
for the single loop of the original spec) and the model itself: :func:`pipeline_lines` prices
the design as built per tenant-month, one :class:`Line` per component, for every schedule;
:data:`CHANGES` are design changes still only proposed, and :func:`savings` computes what each
would save. Everything here is pure arithmetic (no I/O), tested by
``tests/unit/test_cost_model.py``; ``docs/COST.md`` explains the model and its figures.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from agenttrader.roster_layout import shards_for

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
    kms_operation: float = 0.03 / 10_000
    """Cloud KMS cryptographic operation (encrypt, decrypt) on a SOFTWARE key (prices
    effective 2025-03-17; this and the three below checked 2026-12-06)."""
    kms_key_version_month: float = 0.06
    """Cloud KMS active (enabled or disabled) SOFTWARE symmetric key version; destroyed ones
    are free."""
    secret_version_month: float = 0.06
    """Secret Manager active secret version, per location (automatic replication: one)."""
    secret_access: float = 0.03 / 10_000


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

MINUTES_A_MONTH = 60 * 24 * 30
"""Scheduler ticks in a 30-day month, one a minute: 43,200."""
DAYS_A_MONTH = 30
TRADING_DAYS = 21
MARKET_MINUTES = round(6.5 * 60 * TRADING_DAYS)
"""Minutes of US regular market hours (9:30-16:00 ET) in ~21 trading days: 8,190."""
CLOCK_PULSES_OUTSIDE_HOURS = DAYS_A_MONTH
"""Pulses a market-hours month publishes outside the session, one a calendar day: the stored
clock turns stale (``market_clock.decide`` fails open: publish, and ask) at each close (an
"open" clock expires at ``next_close``) and on each day without a session (a "closed" clock
expires after ``MAX_CLOCK_AGE``, 24 h). Checked by running ``decide`` minute by minute over a
30-day month with holidays: 31 such pulses (30 + the first tick, which has no clock yet) and 51
asking pulses."""


@dataclass(frozen=True)
class Schedule:
    """What a month of ticks does, per tenant."""

    name: str
    pulses: int
    """Ticks that publish to every tenant: syncs per tenant-month."""
    closed_ticks: int = 0
    """Ticks that read the market clock and publish nothing."""
    clock_asks: int = 0
    """Pulses whose one ``check_clock`` message refreshes ``ops/market_clock``."""
    reads_clock: bool = True
    """Each pulse reads ``ops/market_clock`` (``False``: ``SYNC_SCHEDULE=always``)."""


MARKET_HOURS = Schedule("market hours", MARKET_MINUTES, clock_asks=TRADING_DAYS)
"""The goal's figure: the month's market minutes (one asking pulse at each open)."""
MONTH = Schedule(
    "month, market-hours schedule",
    MARKET_MINUTES + CLOCK_PULSES_OUTSIDE_HOURS,
    closed_ticks=MINUTES_A_MONTH - MARKET_MINUTES - CLOCK_PULSES_OUTSIDE_HOURS,
    clock_asks=TRADING_DAYS + CLOCK_PULSES_OUTSIDE_HOURS,
)
"""What production pays (``SYNC_SCHEDULE=market-hours``, the infra default): the market
minutes, a pulse a day outside them, and a tick for every other minute."""
ALWAYS = Schedule("always", MINUTES_A_MONTH, reads_clock=False)
"""``SYNC_SCHEDULE=always``: a pulse every minute, no clock."""
SCHEDULES: tuple[Schedule, ...] = (MARKET_HOURS, MONTH, ALWAYS)
GOAL_USD = 0.02
"""Per tenant-month, during market hours."""

# --- inputs ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    """Per-sync and per-tick figures of the pipeline (measured by
    :func:`benchmarks.cost.measure.measure`, or hand-written)."""

    worker_reads_cold: float
    """Firestore reads of one sync whose keys are not cached (kill-switch, snapshot, keys)."""
    worker_reads_warm: float
    """... whose keys are cached by the instance (kill-switch, snapshot)."""
    worker_writes: float
    """Writes other than deletes of a healthy tenant's successful sync."""
    worker_deletes: float
    tick_reads: float
    """Per pulse, besides the market clock and the roster (:func:`roster_reads`): the pulse
    documents, finalizing the previous pulse, the publisher's own rollup."""
    tick_writes: float
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
    """Wall time of an open tick's fan-out per tenant (one request at a time)."""
    clock_reads_per_tick: float = 1.0
    """``ops/market_clock``, read by every tick of the market-hours schedule."""
    closed_tick_reads: float = 1.0
    """All a closed tick reads."""
    tick_log_bytes: float = 0.0
    """The publisher's own log lines per pulse (besides Cloud Run's request log)."""
    tick_log_lines: float = 0.0
    closed_tick_log_bytes: float = 0.0
    closed_tick_log_lines: float = 0.0
    clock_ask_writes: float = 1.0
    """What the asking message adds to its sync: ``ops/market_clock``."""
    clock_ask_alpaca_bytes: float = 0.0
    """... and its ``/v2/clock`` request."""
    roster_refresh_reads: float = 4.0
    """One trigger run keeping the roster: ``users/{uid}``, the two documents eligibility is
    decided from, and the marker (the shard count)."""
    roster_refresh_writes: float = 1.0
    """... and the user's shard document."""
    roster_refresh_log_bytes: float = 0.0
    rebuild_reads_per_tenant: float = 0.0
    """The roster's one-off rebuild from a scan (a new deployment's first tick), per tenant."""
    rebuild_writes_per_tenant: float = 0.0
    failing_reads: float = 2.0
    """A failing attempt (retried by Pub/Sub): reads, writes (``last_sync_error``, the
    snapshot's ``syncFailing``), deletes."""
    failing_writes: float = 2.0
    failing_deletes: float = 0.0
    failing_log_bytes: float = 0.0
    failing_alpaca_bytes: float = 0.0
    recovery_reads: float = 2.0
    """The success after failures: snapshot, ``status/sync``, deleting the error document."""
    recovery_writes: float = 2.0
    recovery_deletes: float = 1.0


@dataclass(frozen=True)
class Assumptions:
    """What is not measured here; each is stated in ``docs/COST.md``."""

    tenants: int = 10_000
    """Tenants sharing the fixed costs (scheduler job, ticks, pulse documents, rollups)."""
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
    """``False``: every worker instance rolls up (as built); ``True``: only one place does (a
    proposed change)."""
    log_entry_overhead_bytes: float = 500.0
    """What Cloud Logging adds to a line (resource, labels, timestamps, insertId)."""
    request_log_bytes: float = 1000.0
    """Cloud Run's own request log entry per request."""
    tls_overhead_bytes: float = 60.0
    """TLS record overhead of the Alpaca requests per sync (connections are kept alive)."""
    storage_bytes_per_tenant: float = 10_000.0
    """Snapshot, status and config documents with their index entries."""
    tenants_per_message: int = 1
    """Tenants one ``user-sync`` message (one push request) names: 1 as built, more in a
    proposed change."""
    roster_writes_per_tenant_month: float = 4.0
    """Writes of a user's ``config/alpaca`` or ``status/trading`` (key changes, kill-switch
    toggles), each running one trigger that keeps the roster."""
    billed_seconds_per_short_request: float = 0.1
    """A trigger run or a closed tick: Cloud Run bills a request's instance time rounded up
    to 100 ms."""
    failure_episodes_per_tenant_month: float = 0.0
    """Failing attempts followed by a recovery (Pub/Sub's retry) per tenant-month."""
    kms_decrypts_per_cold_sync: float = 1.0
    """KEK operations of a sync whose credentials the instance has not opened yet: one
    (unwrapping the data key; ``benchmarks.sealing`` counts it). A warm sync asks none."""
    credential_writes_per_tenant_month: float = 1.0
    """Credentials sealed per tenant-month (key writes, rotations, OAuth connections): one
    KEK operation each."""
    kek_rotation_days: float = 90.0
    """The KEK's rotation period (``infra/resources.py``); each rotation is followed by
    ``agenttrader credentials rewrap`` (two KEK operations per tenant)."""
    kek_active_versions: int = 2
    """KEK versions billed: the primary and the one before it, destroyed once every data key
    was re-wrapped (versions kept instead add $0.06 a month each)."""
    oauth_secret_versions: int = 1
    """The app's OAuth client secret in Secret Manager (one for the whole deployment)."""


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


# --- inputs from other benchmarks ------------------------------------------------------------

PIPELINE_CPU_MS = 11.9
"""``sync_user`` CPU per sync: ``benchmarks.pipeline`` on this project's machine, 2026-11-27,
over the 16,000 syncs of its N = 1,000 / 5,000 / 10,000 run (11.25 / 14.05 / 10.93 ms)."""
PUBLISHER_WALL_MS_PER_TENANT = 0.024
"""A whole open tick's ``fan_out`` per tenant (roster, bulk publishing, upkeep, pulse
documents): ``benchmarks.publisher_scale`` at 100,000 tenants on this project's machine,
2026-12-06: 2.44 s (16.73 s at 1,000,000 in the same run)."""


# --- the model -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    """One component of a tenant's monthly cost, per unit of a :class:`Schedule`."""

    component: str
    detail: str
    usd_per_sync: float = 0.0
    """Per pulse (each tenant syncs once)."""
    usd_per_month: float = 0.0
    """Fixed monthly share (e.g. the scheduler job divided among the tenants)."""
    usd_per_closed_tick: float = 0.0
    usd_per_ask: float = 0.0
    usd_per_clock_read: float = 0.0
    """Per pulse, on schedules that read the market clock."""

    def monthly(self, s: Schedule) -> float:
        clock = self.usd_per_clock_read * s.pulses if s.reads_clock else 0.0
        return (
            self.usd_per_sync * s.pulses
            + self.usd_per_month
            + self.usd_per_closed_tick * s.closed_ticks
            + self.usd_per_ask * s.clock_asks
            + clock
        )


def instance_price(a: Assumptions, p: Prices) -> float:
    """USD per second of one instance (its vCPU and memory) while billed."""
    return a.vcpu * p.run_vcpu_second + a.memory_gib * p.run_gib_second


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


def roster_reads(tenants: int) -> int:
    """What a tick reads of the roster: the marker and every shard (one per ~1,000 tenants,
    a power of two: :func:`agenttrader.roster_layout.shards_for`)."""
    return 1 + shards_for(tenants)


def firestore_usd(
    p: Prices, reads: float = 0.0, writes: float = 0.0, deletes: float = 0.0
) -> float:
    return reads * p.firestore_read + writes * p.firestore_write + deletes * p.firestore_delete


def roster_upkeep_usd(w: Workload, a: Assumptions, p: Prices) -> float:
    """One trigger run keeping the roster: its reads and write, the request, its billed
    instance time and its log lines (one line, plus Cloud Run's request log)."""
    logs = w.roster_refresh_log_bytes + a.log_entry_overhead_bytes + a.request_log_bytes
    return (
        firestore_usd(p, w.roster_refresh_reads, w.roster_refresh_writes)
        + p.run_request
        + a.billed_seconds_per_short_request * instance_price(a, p)
        + logs / GIB * p.logging_gib
    )


def rebuild_usd(w: Workload, p: Prices) -> float:
    """The roster's one-off rebuild, per tenant (once per deployment, not monthly)."""
    return firestore_usd(p, w.rebuild_reads_per_tenant, w.rebuild_writes_per_tenant)


def failure_episode_usd(w: Workload, a: Assumptions, p: Prices) -> float:
    """What a failing attempt and its recovery cost beyond the one clean sync they replace:
    the failing attempt whole (Firestore, a push request, instance time, its log lines and
    Alpaca bytes) and the recovery's extra Firestore operations."""
    firestore = firestore_usd(
        p,
        w.failing_reads + w.recovery_reads - w.worker_reads_warm,
        w.failing_writes + w.recovery_writes - w.worker_writes,
        w.failing_deletes + w.recovery_deletes - w.worker_deletes,
    )
    logs = w.failing_log_bytes + a.log_entry_overhead_bytes + a.request_log_bytes
    attempt = (
        p.run_request
        + instance_seconds_per_sync(w, a) * instance_price(a, p)
        + p.pubsub_min_request_bytes / TIB * p.pubsub_tib
        + logs / GIB * p.logging_gib
        + (w.failing_alpaca_bytes + a.tls_overhead_bytes) / GIB * p.egress_gib
    )
    return firestore + attempt


def open_tick_usd_per_tenant(w: Workload, a: Assumptions, p: Prices) -> float:
    """What one open tick costs each tenant whether or not it publishes to it: its share of
    the tick's reads (clock, roster, rollups) and writes, of the tick's request, publish and
    log, and the publisher's time over the tenant's roster entry. :func:`pipeline_lines`
    prices the same parts inside each sync."""
    n = a.tenants
    rollups = rollups_per_pulse(w, a)
    reads = w.tick_reads + roster_reads(n) + rollups * rollup_reads(w, a) + w.clock_reads_per_tick
    writes = w.tick_writes + rollups * w.rollup_writes
    log = w.tick_log_bytes + w.tick_log_lines * a.log_entry_overhead_bytes + a.request_log_bytes
    shared = (
        firestore_usd(p, reads=reads, writes=writes)
        + p.run_request
        + 2 * p.pubsub_min_request_bytes / TIB * p.pubsub_tib
        + log / GIB * p.logging_gib
    )
    return shared / n + w.publisher_wall_ms_per_tenant / 1000 * instance_price(a, p)


def pipeline_lines(w: Workload, a: Assumptions, p: Prices) -> list[Line]:
    """The design as built: a tick reads the clock; an open one reads the roster and publishes one
    push request per tenant to ``sync_user``; triggers keep the roster."""
    n = a.tenants
    reads = w.worker_reads_warm * a.warm_fraction + w.worker_reads_cold * (1 - a.warm_fraction)
    rollups = rollups_per_pulse(w, a)
    tick_reads = w.tick_reads + roster_reads(n) + rollups * rollup_reads(w, a)
    tick_writes = (w.tick_writes + rollups * w.rollup_writes) / n
    instance_s = instance_seconds_per_sync(w, a)
    per_instance_second = instance_price(a, p)
    short_request = a.billed_seconds_per_short_request * per_instance_second
    tick_bytes = 2 * p.pubsub_min_request_bytes / n  # the tick: one publish, one push
    k = a.tenants_per_message
    message_bytes = pubsub_bytes_per_sync(w, p, k)
    envelope, request_log = a.log_entry_overhead_bytes, a.request_log_bytes
    # A success logs nothing at INFO (the envelope only comes with a line), and the deploy's
    # log exclusion drops the request logs of sync_user's successful pushes.
    log_bytes = w.app_log_bytes + (envelope if w.app_log_bytes else 0.0)
    tick_log = w.tick_log_bytes + w.tick_log_lines * envelope + request_log
    closed_log = w.closed_tick_log_bytes + w.closed_tick_log_lines * envelope + request_log
    return [
        Line(
            "Firestore reads: worker",
            f"{reads:.2f}/sync ({a.warm_fraction:.0%} with keys cached)",
            reads * p.firestore_read,
        ),
        Line(
            "Firestore reads: tick",
            f"{tick_reads:.0f}/pulse ({roster_reads(n)} roster, {rollups} rollups)",
            tick_reads / n * p.firestore_read,
        ),
        Line(
            "Firestore reads: market clock",
            f"{w.clock_reads_per_tick:.0f}/pulse, {w.closed_tick_reads:.0f}/closed tick",
            usd_per_clock_read=w.clock_reads_per_tick / n * p.firestore_read,
            usd_per_closed_tick=w.closed_tick_reads / n * p.firestore_read,
        ),
        Line(
            "Firestore writes",
            f"{w.worker_writes:.2f}/sync + {tick_writes:.4f} tick",
            (w.worker_writes + tick_writes) * p.firestore_write,
            usd_per_ask=w.clock_ask_writes / n * p.firestore_write,
        ),
        Line(
            "Firestore deletes",
            f"{w.worker_deletes:.2f}/sync",
            w.worker_deletes * p.firestore_delete,
        ),
        Line(
            "Roster upkeep (triggers)",
            f"{a.roster_writes_per_tenant_month:g} runs/tenant-month",
            usd_per_month=a.roster_writes_per_tenant_month * roster_upkeep_usd(w, a, p),
        ),
        Line(
            "Failing→recovered syncs",
            f"{a.failure_episodes_per_tenant_month:g}/tenant-month",
            usd_per_month=a.failure_episodes_per_tenant_month * failure_episode_usd(w, a, p),
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
            usd_per_closed_tick=tick_bytes / TIB * p.pubsub_tib,
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
            usd_per_closed_tick=p.run_request / n,
        ),
        Line(
            "Cloud Run: publisher",
            f"{w.publisher_wall_ms_per_tenant:.3f} ms/tenant/pulse",
            w.publisher_wall_ms_per_tenant / 1000 * per_instance_second,
            usd_per_closed_tick=short_request / n,
        ),
        Line(
            "Cloud Logging",
            f"{log_bytes:,.0f} B/sync (line + its envelope)",
            (log_bytes + tick_log / n) / GIB * p.logging_gib,
            usd_per_closed_tick=closed_log / n / GIB * p.logging_gib,
        ),
        Line(
            "Egress to Alpaca",
            f"{w.alpaca_bytes_sent + a.tls_overhead_bytes:,.0f} B/sync",
            (w.alpaca_bytes_sent + a.tls_overhead_bytes) / GIB * p.egress_gib,
            usd_per_ask=(w.clock_ask_alpaca_bytes + a.tls_overhead_bytes) / n / GIB * p.egress_gib,
        ),
        Line(
            "Cloud Scheduler",
            f"1 job / {n:,} tenants",
            usd_per_month=p.scheduler_job_month / n,
        ),
        *credentials_lines(a, p),
    ]


def credentials_lines(a: Assumptions, p: Prices) -> list[Line]:
    """What sealing credentials costs: KEK operations (a cold sync opens its tenant's
    credentials once, each key write seals once, each rotation re-wraps every data key), the
    KEK's active versions and the OAuth client secret, the last two shared by every tenant."""
    cold = 1 - a.warm_fraction
    rewraps = 2 * DAYS_A_MONTH / a.kek_rotation_days
    per_month = a.credential_writes_per_tenant_month + rewraps
    return [
        Line(
            "Cloud KMS: operations",
            f"{cold * a.kms_decrypts_per_cold_sync * 1000:.0f}/1,000 syncs"
            f" + {per_month:.2f} seal/rewrap a month",
            cold * a.kms_decrypts_per_cold_sync * p.kms_operation,
            usd_per_month=per_month * p.kms_operation,
        ),
        Line(
            "Cloud KMS: key versions",
            f"{a.kek_active_versions} active / {a.tenants:,} tenants",
            usd_per_month=a.kek_active_versions * p.kms_key_version_month / a.tenants,
        ),
        Line(
            "Secret Manager: OAuth client secret",
            f"{a.oauth_secret_versions} version / {a.tenants:,} tenants",
            usd_per_month=a.oauth_secret_versions * p.secret_version_month / a.tenants,
        ),
    ]


def single_loop_lines(loop: LoopWorkload, a: Assumptions, p: Prices) -> list[Line]:
    """The original spec: each minute one invocation walks its users in sequence; its
    instance is busy the whole minute. Per tenant: a share of that minute. (Priced per pulse
    only: as if it had the same market clock, for free.)"""
    share = 1 / loop.tenants_per_minute
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
            60 * instance_price(a, p) * share,
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


def total(lines: Sequence[Line], s: Schedule) -> float:
    return sum(line.monthly(s) for line in lines)


def month_overheads(lines: Sequence[Line]) -> tuple[float, float]:
    """What a month of the market-hours schedule costs beyond its market minutes: the closed
    ticks, and the pulses (with their clock refreshes) outside the session."""
    without_closed = replace(MONTH, closed_ticks=0)
    return (
        total(lines, MONTH) - total(lines, without_closed),
        total(lines, without_closed) - total(lines, MARKET_HOURS),
    )


def free_tier_value(
    w: Workload, a: Assumptions, p: Prices, s: Schedule, free: FreeTier = FreeTier()
) -> float:
    """What the free tiers would take off the whole project's month, per tenant (each capped
    by the usage it covers: the worker's reads, the worker's writes and
    deletes, its instance time and requests, the messages and the per-sync log lines); the
    table does not deduct it."""
    n, monthly = a.tenants, a.tenants * s.pulses
    reads = w.worker_reads_warm * a.warm_fraction + w.worker_reads_cold * (1 - a.warm_fraction)
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


# --- proposed changes --------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """A proposed design change, as the inputs it changes; its saving is computed."""

    name: str
    why: str
    workload: Callable[[Workload], Workload] = field(default=lambda w: w)
    assumptions: Callable[[Assumptions], Assumptions] = field(default=lambda a: a)
    in_cumulative: bool = True
    """``False``: listed with its saving, but it changes a contract of ``docs/DESIGN.md``."""


CHANGES: tuple[Change, ...] = (
    Change(
        "one rollup place per pulse",
        "a single trailing rollup (the publisher's, or a Cloud Tasks task) instead of one per "
        "worker instance per delay: count queries bill a read per 1,000 matches each time",
        assumptions=lambda a: replace(a, rollups_by_one_instance=True),
    ),
    Change(
        "10 tenants per user-sync message",
        "one push request syncs 10 tenants concurrently: a tenth of the request fees and push "
        "minimums; a failed tenant must then be re-published alone (the retry contract "
        "changes), so it is not in the cumulative total",
        assumptions=lambda a: replace(a, tenants_per_message=10),
        in_cumulative=False,
    ),
    Change(
        "kill-switch from the roster (no re-check read)",
        "the worker trusts the roster the tick was published from; conflicts with "
        "docs/DESIGN.md ('sync_user re-checks the kill-switch'), so it is not in the "
        "cumulative total",
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
    """What the change alone saves per tenant-month, by schedule name."""
    in_cumulative: bool


def savings(w: Workload, a: Assumptions, p: Prices) -> list[Saving]:
    """Each proposed change alone, against the design as built."""
    before = pipeline_lines(w, a, p)
    result = []
    for change in CHANGES:
        after = pipeline_lines(change.workload(w), change.assumptions(a), p)
        result.append(
            Saving(
                change.name,
                change.why,
                {s.name: total(before, s) - total(after, s) for s in SCHEDULES},
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
