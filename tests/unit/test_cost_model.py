"""The cost model's arithmetic, with hand-written inputs (no emulators)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from benchmarks import cost

WORKLOAD = cost.Workload(
    worker_reads_cold=3,
    worker_reads_warm=2,
    worker_writes=2,
    worker_deletes=1,
    publisher_reads_per_tenant=2,
    pulse_reads=12,
    pulse_writes=6,
    rollup_reads_fixed=2,
    rollup_aggregations=3,
    rollup_writes=2,
    message_bytes=180,
    cpu_ms=12.0,
    wall_ms=200.0,
    alpaca_bytes_sent=540,
    app_log_bytes=300,
    publisher_wall_ms_per_tenant=1.0,
)
ASSUMPTIONS = cost.Assumptions(
    tenants=10_000,
    warm_fraction=0.9,
    concurrency=40,
    vcpu=1.0,
    memory_gib=0.5,
    cpu_utilization=0.6,
    pulse_seconds=30.0,
    rollup_delay_seconds=5.0,
    log_entry_overhead_bytes=500.0,
    request_log_bytes=1000.0,
    tls_overhead_bytes=60.0,
    storage_bytes_per_tenant=10_000.0,
)
PRICES = cost.NAM5


def line(lines: list[cost.Line], component: str) -> cost.Line:
    return next(item for item in lines if item.component == component)


def test_schedules_are_a_minute_apart_around_the_clock_and_in_market_hours() -> None:
    assert cost.AROUND_THE_CLOCK == 43_200
    assert cost.MARKET_HOURS == 8_190


def test_list_prices_per_unit() -> None:
    assert cost.NAM5.firestore_read * 100_000 == pytest.approx(0.06)
    assert cost.NAM5.firestore_write * 100_000 == pytest.approx(0.18)
    assert cost.NAM5.firestore_delete * 100_000 == pytest.approx(0.02)
    assert cost.US_CENTRAL1.firestore_read * 100_000 == pytest.approx(0.03)
    assert cost.US_CENTRAL1.firestore_write * 100_000 == pytest.approx(0.09)
    assert cost.US_CENTRAL1.firestore_delete * 100_000 == pytest.approx(0.01)
    assert PRICES.run_request * 1e6 == pytest.approx(0.40)


def test_instance_time_is_the_cpu_at_the_target_utilization_when_cpu_bound() -> None:
    # 12 ms of CPU at 60 %: 20 ms; 200 ms of wall shared by 40 requests: 5 ms.
    assert cost.instance_seconds_per_sync(WORKLOAD, ASSUMPTIONS) == pytest.approx(0.020)


def test_instance_time_is_wall_over_concurrency_when_waiting_dominates() -> None:
    waiting = replace(WORKLOAD, cpu_ms=1.0, wall_ms=2000.0)
    # 1 ms / 0.6 = 1.7 ms < 2 s / 40 = 50 ms
    assert cost.instance_seconds_per_sync(waiting, ASSUMPTIONS) == pytest.approx(0.050)
    single = replace(ASSUMPTIONS, concurrency=1)
    assert cost.instance_seconds_per_sync(waiting, single) == pytest.approx(2.0)


def test_rollups_scale_with_worker_instances_unless_one_place_rolls_up() -> None:
    # 10,000 syncs x 20 ms = 200 instance-seconds over 30 s: 7 instances; 30 s / 5 s: 6.
    assert cost.worker_instances(WORKLOAD, ASSUMPTIONS) == 7
    assert cost.rollups_per_pulse(WORKLOAD, ASSUMPTIONS) == 42
    one = replace(ASSUMPTIONS, rollups_by_one_instance=True)
    assert cost.rollups_per_pulse(WORKLOAD, one) == 6
    # 2 documents + 10 reads for 10,000 successes + 1 each for errors and skips.
    assert cost.rollup_reads(WORKLOAD, ASSUMPTIONS) == 14


def test_pubsub_bills_the_push_minimum_and_the_batched_publish_size() -> None:
    # 180 + 36 = 216 bytes published (batched), 1,000 billed for its push.
    assert cost.pubsub_bytes_per_sync(WORKLOAD, PRICES) == 1216
    # Ten tenants per message: 1,836 bytes, published and pushed, shared by ten syncs.
    assert cost.pubsub_bytes_per_sync(WORKLOAD, PRICES, 10) == pytest.approx(367.2)


def test_pipeline_lines_by_hand() -> None:
    lines = cost.pipeline_lines(WORKLOAD, ASSUMPTIONS, PRICES)
    read, write, delete = PRICES.firestore_read, PRICES.firestore_write, PRICES.firestore_delete
    assert line(lines, "Firestore reads: worker").usd_per_sync == pytest.approx(2.1 * read)
    assert line(lines, "Firestore reads: fan-out scan").usd_per_sync == pytest.approx(2 * read)
    # 12 + 10 (count) + 42 rollups x 14 reads, over 10,000 tenants
    pulse = (12 + 10 + 42 * 14) / 10_000
    assert line(lines, "Firestore reads: pulse, count, rollups").usd_per_sync == pytest.approx(
        pulse * read
    )
    writes = 2 + (6 + 42 * 2) / 10_000
    assert line(lines, "Firestore writes").usd_per_sync == pytest.approx(writes * write)
    assert line(lines, "Firestore deletes").usd_per_sync == pytest.approx(delete)
    per_instance_second = 0.000024 + 0.5 * 0.0000025
    compute = line(lines, "Cloud Run: sync_user CPU + memory").usd_per_sync
    assert compute == pytest.approx(0.020 * per_instance_second)
    assert line(lines, "Cloud Run: requests").usd_per_sync == pytest.approx(
        (1 + 1 / 10_000) * 0.40e-6
    )
    assert line(lines, "Cloud Run: publisher").usd_per_sync == pytest.approx(
        0.001 * per_instance_second
    )
    assert line(lines, "Cloud Logging").usd_per_sync == pytest.approx(1800 / 2**30 * 0.50)
    assert line(lines, "Egress to Alpaca").usd_per_sync == pytest.approx(600 / 2**30 * 0.12)
    assert line(lines, "Pub/Sub throughput").usd_per_sync == pytest.approx(
        (1216 + 2000 / 10_000) / 2**40 * 40
    )
    scheduler = line(lines, "Cloud Scheduler")
    assert scheduler.usd_per_sync == 0
    assert scheduler.monthly(cost.MARKET_HOURS) == pytest.approx(0.10 / 10_000)


def test_total_is_per_sync_times_syncs_plus_the_fixed_share() -> None:
    lines = [
        cost.Line("a", "", usd_per_sync=1e-6),
        cost.Line("b", "", usd_per_sync=2e-6, usd_per_month=0.001),
    ]
    assert cost.total(lines, 8_190) == pytest.approx(3e-6 * 8_190 + 0.001)
    assert cost.total(lines, 43_200) == pytest.approx(3e-6 * 43_200 + 0.001)


def test_single_loop_shares_a_busy_minute_among_its_users() -> None:
    loop = cost.LoopWorkload(
        reads_per_user=2, writes_per_user=1, tenants_per_minute=240, alpaca_bytes_sent=540
    )
    lines = cost.single_loop_lines(loop, ASSUMPTIONS, PRICES)
    per_instance_second = 0.000024 + 0.5 * 0.0000025
    compute = line(lines, "Cloud Run: loop CPU + memory")
    assert compute.usd_per_sync == pytest.approx(60 * per_instance_second / 240)
    assert line(lines, "Firestore reads").usd_per_sync == pytest.approx(2 * 0.06e-5)
    assert line(lines, "Firestore writes").usd_per_sync == pytest.approx(0.18e-5)
    assert line(lines, "Cloud Scheduler").usd_per_month == pytest.approx(0.10 / 240)
    listing = replace(loop, enumeration_reads_per_user=1)
    reads = line(cost.single_loop_lines(listing, ASSUMPTIONS, PRICES), "Firestore reads")
    assert reads.usd_per_sync == pytest.approx(3 * 0.06e-5)


def test_savings_are_the_difference_the_changed_inputs_make() -> None:
    by_name = {s.name: s for s in cost.savings(WORKLOAD, ASSUMPTIONS, PRICES)}
    outcome = by_name["no status/sync write on success"].usd_by_schedule
    assert outcome["market hours"] == pytest.approx(8_190 * 0.18e-5)
    assert outcome["around the clock"] == pytest.approx(43_200 * 0.18e-5)
    deletes = by_name["delete last_sync_error only after an error"].usd_by_schedule
    assert deletes["market hours"] == pytest.approx(8_190 * 0.02e-5)
    roster = by_name["roster instead of the eligibility scan"].usd_by_schedule
    # 2 reads per tenant become 1 per 10,000 tenants; the count (10 reads a tick) goes.
    saved_reads = 2 - 1 / 10_000 + 10 / 10_000
    assert roster["market hours"] == pytest.approx(8_190 * saved_reads * 0.06e-5)
    lines = cost.pipeline_lines(WORKLOAD, ASSUMPTIONS, PRICES)
    schedule = by_name["market-hours schedule following /v2/clock"].usd_by_schedule
    assert schedule["around the clock"] == pytest.approx(
        cost.total(lines, 43_200) - cost.total(lines, 8_190)
    )
    assert not by_name["kill-switch from the roster (no re-check read)"].in_cumulative


def test_cumulative_changes_leave_optional_ones_out() -> None:
    w, a = cost.with_changes(WORKLOAD, ASSUMPTIONS)
    assert (w.worker_writes, w.worker_deletes, w.counts_users) == (1, 0, False)
    assert a.rollups_by_one_instance and a.request_log_bytes == 0
    assert (w.worker_reads_warm, a.tenants_per_message) == (2, 1)
    w, a = cost.with_changes(WORKLOAD, ASSUMPTIONS, optional=True)
    assert (w.worker_reads_warm, w.worker_reads_cold, a.tenants_per_message) == (1, 2, 10)


def test_verdict_against_the_goal() -> None:
    assert cost.verdict(0.0199) == "PASS"
    assert cost.verdict(0.02) == "FAIL"


def test_free_tier_is_capped_by_usage() -> None:
    tiny = replace(ASSUMPTIONS, tenants=1)
    everything = cost.free_tier_value(WORKLOAD, tiny, PRICES, cost.MARKET_HOURS)
    # One tenant's whole month fits in every free tier: the value is its cost, minus the
    # items the free tiers do not cover (storage, egress, the publisher, pulse overheads).
    lines = cost.pipeline_lines(WORKLOAD, tiny, PRICES)
    covered = (
        line(lines, "Firestore reads: worker").usd_per_sync
        + line(lines, "Firestore reads: fan-out scan").usd_per_sync
        + WORKLOAD.worker_writes * PRICES.firestore_write
        + line(lines, "Firestore deletes").usd_per_sync
        + line(lines, "Cloud Run: sync_user CPU + memory").usd_per_sync
        + PRICES.run_request
        + cost.pubsub_bytes_per_sync(WORKLOAD, PRICES) / 2**40 * 40
        + line(lines, "Cloud Logging").usd_per_sync
    ) * cost.MARKET_HOURS + 0.10
    assert everything == pytest.approx(covered)
    # 10,000 tenants exceed every free tier: each gives its whole value, shared by them all.
    many = cost.free_tier_value(WORKLOAD, ASSUMPTIONS, PRICES, cost.MARKET_HOURS)
    firestore = 1_500_000 * 0.06e-5 + 600_000 * 0.18e-5 + 600_000 * 0.02e-5
    cloud_run = 180_000 * 0.000024 + 360_000 * 0.0000025 + 2_000_000 * 0.40e-6
    pubsub, logging, scheduler = 10 / 1024 * 40, 50 * 0.50, 0.10
    assert many == pytest.approx((firestore + cloud_run + pubsub + logging + scheduler) / 10_000)
