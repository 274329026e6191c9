"""What a tenant costs per month with trade-update streams, beside the pipeline as built.

With a live stream a tenant is polled once every ``RECONCILE_EVERY_TICKS`` ticks; it is synced
besides after its trade updates (coalesced: ``syncs_per_order``) and after every (re)connection
(the reconciliation). Those syncs are priced per sync by the pipeline's own model
(:func:`benchmarks.cost.model.pipeline_lines`); the ticks that publish nothing to a streaming
tenant still cost it their per-tenant share (the tick's reads, its request, its log, the
publisher's time; :func:`benchmarks.cost.model.open_tick_usd_per_tenant`). Beside them, the gateway:
its instances (Cloud Run instance-based billing, CPU always allocated), sized by the measured
memory and CPU per connection (:mod:`benchmarks.streams`) with the TLS a real ``wss://``
connection adds; its leases (session renewals, scans); the tick's bucket reads; the order
documents; the keepalive pings' egress. Pure arithmetic; ``docs/COST.md`` explains the
figures.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from benchmarks.cost.model import (
    GIB,
    MARKET_HOURS,
    MARKET_MINUTES,
    TRADING_DAYS,
    Assumptions,
    Line,
    Prices,
    Schedule,
    Workload,
    firestore_usd,
    open_tick_usd_per_tenant,
    pipeline_lines,
    total,
)

GOAL_USD = 0.01
"""Per tenant-month with streams, in market hours, at regional prices, gateway included."""
SECONDS_A_MONTH = 730 * 3600
MARKET_SECONDS = MARKET_MINUTES * 60
RUN_VCPU_SECOND_INSTANCE = 0.000018
"""Cloud Run instance-based billing (CPU always allocated), Tier 1, per vCPU-second."""
RUN_GIB_SECOND_INSTANCE = 0.000002
"""... per GiB-second."""


@dataclass(frozen=True)
class StreamFigures:
    """Measured by ``python -m benchmarks.streams`` (1,000 tenants, this machine,
    2026-12-06) and by the lease design (``stream_gateway.leases``)."""

    kib_per_connection: float = 27.6
    """Resident memory per idle streaming tenant (plain ``ws://``: no TLS locally)."""
    idle_cpu_percent_per_1000: float = 2.85
    """CPU of a core per 1,000 idle connections (keepalive every 30 s when measured)."""
    measured_ping_seconds: float = 30.0
    cpu_ms_per_1000_events: float = 1985.0
    syncs_per_order: float = 2.0
    """``trade_update`` syncs an order's ``new`` and ``fill`` 200 ms apart came to."""
    renewals_per_instance_second: float = 1 / 3
    """A session renewal every ``RENEW_SECONDS``: one write."""
    scan_reads_per_instance_second: float = 2 / 3 + 64 / 60
    """Sessions read every 3 s (one document per instance: 2), buckets every 60 s (64)."""
    tick_reads: float = 66.0
    """What a tick reads to know who streams: 64 buckets and the sessions."""


@dataclass(frozen=True)
class StreamAssumptions:
    streaming_fraction: float = 0.95
    """Tenants whose stream is live (the rest: held elsewhere, refused, reconnecting)."""
    reconcile_every: int = 5
    orders_per_trading_day: float = 5.0
    events_per_order: float = 2.0
    reconnects_per_trading_day: float = 2.0
    """Deploys, network blips, Alpaca restarts: each is one reconciliation sync."""
    tls_kib_per_connection: float = 50.0
    """What ``wss://`` adds per connection (an OpenSSL session and its buffers): an estimate."""
    instance_vcpu: float = 1.0
    instance_memory_gib: float = 2.0
    """As deployed (``infra.resources.STREAM_GATEWAY``: 1 vCPU, 2 GiB: memory and CPU run
    out at about the same number of streams)."""
    memory_headroom: float = 0.7
    """Share of an instance's memory connections may take."""
    cpu_utilization: float = 0.6
    min_instances: int = 1
    ping_seconds: float = 30.0
    ping_bytes: float = 100.0
    """Egress of one keepalive ping (frame, TLS record, TCP/IP headers)."""
    gateway_hours: float = 730.0
    """Hours a month the gateway runs: always (730), or the market's hours and one more."""


MARKET_HOURS_GATEWAY = round((MARKET_MINUTES / 60) + TRADING_DAYS, 1)
"""The market's 136.5 hours a month and an hour a trading day around them (157.5)."""


def syncs_per_month(sa: StreamAssumptions, sf: StreamFigures) -> float:
    """Syncs of a tenant in the market hours of a month."""
    polled = MARKET_MINUTES * (
        sa.streaming_fraction / sa.reconcile_every + (1 - sa.streaming_fraction)
    )
    trades = sa.orders_per_trading_day * sf.syncs_per_order * TRADING_DAYS
    reconnects = sa.reconnects_per_trading_day * TRADING_DAYS * sa.streaming_fraction
    return polled + trades + reconnects


def connections_per_instance(sa: StreamAssumptions, sf: StreamFigures) -> int:
    """What one instance holds: the fewer of what its memory and its CPU allow."""
    by_memory = (
        sa.instance_memory_gib
        * sa.memory_headroom
        * 2**20
        / (sf.kib_per_connection + sa.tls_kib_per_connection)
    )
    idle_per_1000 = sf.idle_cpu_percent_per_1000 / 100 * sf.measured_ping_seconds / sa.ping_seconds
    by_cpu = sa.instance_vcpu * sa.cpu_utilization / idle_per_1000 * 1000
    return max(1, math.floor(min(by_memory, by_cpu)))


def instances(tenants: int, sa: StreamAssumptions, sf: StreamFigures) -> int:
    return max(
        sa.min_instances,
        math.ceil(tenants * sa.streaming_fraction / connections_per_instance(sa, sf)),
    )


def stream_lines(
    w: Workload, a: Assumptions, p: Prices, sa: StreamAssumptions, sf: StreamFigures
) -> list[Line]:
    """The month of a tenant (market hours) with streams, one line per component."""
    n = a.tenants
    syncs = syncs_per_month(sa, sf)
    per_sync = total(pipeline_lines(w, a, p), Schedule("one sync", 1))
    fixed = total(pipeline_lines(w, a, p), Schedule("none", 0))
    quiet_ticks = max(MARKET_MINUTES - syncs, 0.0)
    tick_share = open_tick_usd_per_tenant(w, a, p)
    count = instances(n, sa, sf)
    seconds = sa.gateway_hours * 3600
    instance_usd = seconds * (
        sa.instance_vcpu * RUN_VCPU_SECOND_INSTANCE
        + sa.instance_memory_gib * RUN_GIB_SECOND_INSTANCE
    )
    events = sa.orders_per_trading_day * sa.events_per_order * TRADING_DAYS
    lease_writes = count * sf.renewals_per_instance_second * seconds
    lease_reads = count * sf.scan_reads_per_instance_second * seconds
    pings = MARKET_SECONDS / sa.ping_seconds * sa.streaming_fraction
    return [
        Line(
            "Syncs (reconcile, trade updates, reconnects)",
            f"{syncs:,.0f}/month at the pipeline's {per_sync - fixed:.7f} a sync",
            usd_per_month=(per_sync - fixed) * syncs + fixed,
        ),
        Line(
            "Ticks between reconciliations",
            f"{quiet_ticks:,.0f} ticks × {tick_share:.2e} (the tick's share of a tenant)",
            usd_per_month=quiet_ticks * tick_share,
        ),
        Line(
            "Tick: who streams",
            f"{sf.tick_reads:.0f} reads a tick ÷ {n:,}",
            usd_per_month=MARKET_MINUTES * firestore_usd(p, reads=sf.tick_reads) / n,
        ),
        Line(
            "Gateway instances",
            f"{count} × {sa.instance_vcpu:g} vCPU {sa.instance_memory_gib:g} GiB, "
            f"{sa.gateway_hours:g} h; {connections_per_instance(sa, sf):,} streams each",
            usd_per_month=count * instance_usd / n,
        ),
        Line(
            "Gateway: leases",
            f"{lease_writes / n:,.0f} writes + {lease_reads / n:,.0f} reads a tenant",
            usd_per_month=firestore_usd(p, reads=lease_reads, writes=lease_writes) / n,
        ),
        Line(
            "Order documents",
            f"{events:,.0f} updates, a write each",
            usd_per_month=firestore_usd(p, writes=events),
        ),
        Line(
            "Gateway: CPU of the updates",
            f"{sf.cpu_ms_per_1000_events:,.0f} ms per 1,000 (inside the instances' price)",
        ),
        Line(
            "Keepalive egress",
            f"{pings:,.0f} pings × {sa.ping_bytes:.0f} B",
            usd_per_month=pings * sa.ping_bytes / GIB * p.egress_gib,
        ),
    ]


def streams_total(
    w: Workload, a: Assumptions, p: Prices, sa: StreamAssumptions, sf: StreamFigures
) -> float:
    return total(stream_lines(w, a, p, sa, sf), MARKET_HOURS)


SCALES = (10_000, 100_000, 1_000_000)
"""Tenant counts the report prices the always-on gateway at, besides one and two instances
filled."""


def always_on_by_scale(
    w: Workload, a: Assumptions, p: Prices, sa: StreamAssumptions, sf: StreamFigures
) -> list[tuple[int, float]]:
    """``(tenants, $ per tenant-month)`` with the gateway always on, at :data:`SCALES` and at
    the tenants filling one and two instances. A saw: an instance added for a few tenants
    costs them all until it fills."""
    full = math.floor(connections_per_instance(sa, sf) / sa.streaming_fraction)
    counts = sorted({*SCALES, full, 2 * full})
    return [(n, streams_total(w, replace(a, tenants=n), p, sa, sf)) for n in counts]


def report(
    w: Workload,
    a: Assumptions,
    prices: Sequence[Prices],
    sa: StreamAssumptions = StreamAssumptions(),
    sf: StreamFigures = StreamFigures(),
) -> str:
    """The streams' month beside the pipeline's, per price set, gateway always on and during
    the market's hours only."""
    out = [
        f"\nWith trade-update streams ({a.tenants:,} tenants; reconcile every "
        f"{sa.reconcile_every} ticks; {sa.orders_per_trading_day:g} orders a trading day; "
        f"goal ≤ ${GOAL_USD:.2f} per tenant-month in market hours at regional prices):"
    ]
    for p in prices:
        today = total(pipeline_lines(w, a, p), MARKET_HOURS)
        always = streams_total(w, a, p, sa, sf)
        market = streams_total(w, a, p, replace(sa, gateway_hours=MARKET_HOURS_GATEWAY), sf)
        out.append(f"  {p.name}:")
        for line in stream_lines(w, a, p, sa, sf):
            value = line.monthly(MARKET_HOURS)
            out.append(f"    {line.component:<46}{line.detail:<66}${value:.5f}")
        verdict = "PASS" if market <= GOAL_USD else "FAIL"
        out.append(
            f"    {'as built (every tenant every tick)':<46}{'':<66}${today:.5f}\n"
            f"    {'with streams, gateway always on':<46}{'':<66}${always:.5f} "
            f"({'PASS' if always <= GOAL_USD else 'FAIL'})\n"
            f"    {'with streams, gateway in market hours':<46}"
            f"{f'{MARKET_HOURS_GATEWAY:g} h a month':<66}${market:.5f} ({verdict})"
        )
        scaled = " · ".join(
            f"{n:,} ${usd:.4f} {'PASS' if usd <= GOAL_USD else 'FAIL'}"
            for n, usd in always_on_by_scale(w, a, p, sa, sf)
        )
        out.append(f"    {'gateway always on, by tenants':<46}{scaled}")
    return "\n".join(out)
