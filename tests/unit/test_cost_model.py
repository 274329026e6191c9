"""The cost model's arithmetic and report, with hand-written inputs (no emulators)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from benchmarks.cost import measure, model, report

N = 10_000
WORKLOAD = model.Workload(
    worker_reads_cold=3,
    worker_reads_warm=2,
    worker_writes=1,
    worker_deletes=0,
    tick_reads=12,
    tick_writes=6,
    rollup_reads_fixed=2,
    rollup_aggregations=3,
    rollup_writes=2,
    message_bytes=180,
    cpu_ms=12.0,
    wall_ms=200.0,
    alpaca_bytes_sent=540,
    app_log_bytes=300,
    publisher_wall_ms_per_tenant=0.3,
    clock_reads_per_tick=1,
    closed_tick_reads=1,
    tick_log_bytes=250,
    tick_log_lines=1,
    closed_tick_log_bytes=300,
    closed_tick_log_lines=1,
    clock_ask_writes=1,
    clock_ask_alpaca_bytes=240,
    roster_refresh_reads=4,
    roster_refresh_writes=1,
    roster_refresh_log_bytes=200,
    failing_reads=2,
    failing_writes=2,
    failing_deletes=0,
    failing_log_bytes=400,
    failing_alpaca_bytes=260,
    recovery_reads=2,
    recovery_writes=2,
    recovery_deletes=1,
)
ASSUMPTIONS = model.Assumptions(
    tenants=N,
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
    roster_writes_per_tenant_month=4.0,
    billed_seconds_per_short_request=0.1,
    failure_episodes_per_tenant_month=0.0,
)
PRICES = model.NAM5
READ, WRITE, DELETE = 0.06e-5, 0.18e-5, 0.02e-5
INSTANCE_SECOND = 0.000024 + 0.5 * 0.0000025
GIB, TIB = 2**30, 2**40


def line(lines: list[model.Line], component: str) -> model.Line:
    return next(item for item in lines if item.component == component)


def test_schedules_of_a_month() -> None:
    assert (model.MARKET_HOURS.pulses, model.MARKET_HOURS.closed_ticks) == (8_190, 0)
    assert model.MARKET_HOURS.clock_asks == 21  # one at each open
    # A pulse a calendar day outside the session, a closed tick every other minute.
    assert (model.MONTH.pulses, model.MONTH.closed_ticks, model.MONTH.clock_asks) == (
        8_220,
        34_980,
        51,
    )
    assert model.MONTH.pulses + model.MONTH.closed_ticks == 43_200
    assert (model.ALWAYS.pulses, model.ALWAYS.reads_clock) == (43_200, False)


def test_list_prices_per_unit() -> None:
    assert model.NAM5.firestore_read * 100_000 == pytest.approx(0.06)
    assert model.NAM5.firestore_write * 100_000 == pytest.approx(0.18)
    assert model.NAM5.firestore_delete * 100_000 == pytest.approx(0.02)
    assert model.US_CENTRAL1.firestore_read * 100_000 == pytest.approx(0.03)
    assert model.US_CENTRAL1.firestore_write * 100_000 == pytest.approx(0.09)
    assert model.US_CENTRAL1.firestore_delete * 100_000 == pytest.approx(0.01)
    assert PRICES.run_request * 1e6 == pytest.approx(0.40)


def test_a_line_prices_each_unit_of_a_schedule() -> None:
    item = model.Line(
        "x",
        "",
        usd_per_sync=1e-6,
        usd_per_month=1e-3,
        usd_per_closed_tick=1e-8,
        usd_per_ask=1e-5,
        usd_per_clock_read=1e-9,
    )
    month = 1e-6 * 8_220 + 1e-3 + 1e-8 * 34_980 + 1e-5 * 51 + 1e-9 * 8_220
    assert item.monthly(model.MONTH) == pytest.approx(month)
    # No clock read, no ask, no closed tick.
    assert item.monthly(model.ALWAYS) == pytest.approx(1e-6 * 43_200 + 1e-3)
    assert model.total([item, item], model.ALWAYS) == pytest.approx(2 * (1e-6 * 43_200 + 1e-3))


def test_instance_time_is_the_cpu_at_the_target_utilization_when_cpu_bound() -> None:
    # 12 ms of CPU at 60 %: 20 ms; 200 ms of wall shared by 40 requests: 5 ms.
    assert model.instance_seconds_per_sync(WORKLOAD, ASSUMPTIONS) == pytest.approx(0.020)


def test_instance_time_is_wall_over_concurrency_when_waiting_dominates() -> None:
    waiting = replace(WORKLOAD, cpu_ms=1.0, wall_ms=2000.0)
    # 1 ms / 0.6 = 1.7 ms < 2 s / 40 = 50 ms
    assert model.instance_seconds_per_sync(waiting, ASSUMPTIONS) == pytest.approx(0.050)
    single = replace(ASSUMPTIONS, concurrency=1)
    assert model.instance_seconds_per_sync(waiting, single) == pytest.approx(2.0)


def test_rollups_scale_with_worker_instances_unless_one_place_rolls_up() -> None:
    # 10,000 syncs x 20 ms = 200 instance-seconds over 30 s: 7 instances; 30 s / 5 s: 6.
    assert model.worker_instances(WORKLOAD, ASSUMPTIONS) == 7
    assert model.rollups_per_pulse(WORKLOAD, ASSUMPTIONS) == 42
    one = replace(ASSUMPTIONS, rollups_by_one_instance=True)
    assert model.rollups_per_pulse(WORKLOAD, one) == 6
    # 2 documents + 10 reads for 10,000 successes + 1 each for errors and skips.
    assert model.rollup_reads(WORKLOAD, ASSUMPTIONS) == 14


def test_pubsub_bills_the_push_minimum_and_the_batched_publish_size() -> None:
    # 180 + 36 = 216 bytes published (batched), 1,000 billed for its push.
    assert model.pubsub_bytes_per_sync(WORKLOAD, PRICES) == 1216
    # Ten tenants per message: 1,836 bytes, published and pushed, shared by ten syncs.
    assert model.pubsub_bytes_per_sync(WORKLOAD, PRICES, 10) == pytest.approx(367.2)


UPKEEP_RUN = 4 * READ + WRITE + 0.40e-6 + 0.1 * INSTANCE_SECOND + 1700 / GIB * 0.50


@pytest.mark.parametrize(
    ("tenants", "reads"),
    [(1, 2), (100, 2), (1_000, 2), (1_001, 3), (10_000, 17), (100_000, 129), (1_000_000, 1025)],
)
def test_a_tick_reads_the_marker_and_a_shard_per_thousand_tenants(tenants: int, reads: int) -> None:
    assert model.roster_reads(tenants) == reads


def test_a_roster_trigger_run_by_hand() -> None:
    # 4 reads, 1 write, a request, 100 ms billed, its line + envelope + request log.
    assert model.roster_upkeep_usd(WORKLOAD, ASSUMPTIONS, PRICES) == pytest.approx(UPKEEP_RUN)


def test_the_rebuild_is_a_one_off_per_tenant() -> None:
    rebuilt = replace(WORKLOAD, rebuild_reads_per_tenant=2.5, rebuild_writes_per_tenant=0.25)
    assert model.rebuild_usd(rebuilt, PRICES) == pytest.approx(2.5 * READ + 0.25 * WRITE)
    # Not part of any month.
    lines = model.pipeline_lines(WORKLOAD, ASSUMPTIONS, PRICES)
    again = model.pipeline_lines(rebuilt, ASSUMPTIONS, PRICES)
    assert model.total(again, model.MONTH) == model.total(lines, model.MONTH)


def test_a_failing_attempt_and_its_recovery_by_hand() -> None:
    # Beyond the clean sync they replace: reads 2 + 2 - 2, writes 2 + 2 - 1, deletes 0 + 1 - 0;
    # and the failing attempt's request, instance time, push, logs and Alpaca bytes.
    firestore = 2 * READ + 3 * WRITE + 1 * DELETE
    attempt = (
        0.40e-6 + 0.020 * INSTANCE_SECOND + 1000 / TIB * 40 + 1900 / GIB * 0.50 + 320 / GIB * 0.12
    )
    assert model.failure_episode_usd(WORKLOAD, ASSUMPTIONS, PRICES) == pytest.approx(
        firestore + attempt
    )
    lines = model.pipeline_lines(
        WORKLOAD, replace(ASSUMPTIONS, failure_episodes_per_tenant_month=3), PRICES
    )
    episodes = line(lines, "Failing→recovered syncs")
    assert episodes.monthly(model.MARKET_HOURS) == pytest.approx(3 * (firestore + attempt))


def test_pipeline_lines_by_hand() -> None:
    lines = model.pipeline_lines(WORKLOAD, ASSUMPTIONS, PRICES)
    assert line(lines, "Firestore reads: worker").usd_per_sync == pytest.approx(2.1 * READ)
    # 12 + the roster (the marker, 16 shards) + 42 rollups x 14 reads, over 10,000 tenants;
    # no scan, no count.
    tick = line(lines, "Firestore reads: tick")
    assert tick.usd_per_sync == pytest.approx((12 + 17 + 42 * 14) / N * READ)
    clock = line(lines, "Firestore reads: market clock")
    assert clock.usd_per_sync == 0
    assert clock.usd_per_clock_read == pytest.approx(READ / N)
    assert clock.usd_per_closed_tick == pytest.approx(READ / N)
    writes = line(lines, "Firestore writes")
    assert writes.usd_per_sync == pytest.approx((1 + (6 + 42 * 2) / N) * WRITE)
    assert writes.usd_per_ask == pytest.approx(WRITE / N)
    assert line(lines, "Firestore deletes").usd_per_sync == 0
    upkeep = line(lines, "Roster upkeep (triggers)")
    assert upkeep.usd_per_month == pytest.approx(4 * UPKEEP_RUN)
    assert line(lines, "Failing→recovered syncs").usd_per_month == 0
    compute = line(lines, "Cloud Run: sync_user CPU + memory").usd_per_sync
    assert compute == pytest.approx(0.020 * INSTANCE_SECOND)
    requests = line(lines, "Cloud Run: requests")
    assert requests.usd_per_sync == pytest.approx((1 + 1 / N) * 0.40e-6)
    assert requests.usd_per_closed_tick == pytest.approx(0.40e-6 / N)
    publisher = line(lines, "Cloud Run: publisher")
    assert publisher.usd_per_sync == pytest.approx(0.0003 * INSTANCE_SECOND)
    assert publisher.usd_per_closed_tick == pytest.approx(0.1 * INSTANCE_SECOND / N)
    logging = line(lines, "Cloud Logging")
    # The sync's line + envelope (its request log is excluded); the tick's line + envelope +
    # request log / N.
    assert logging.usd_per_sync == pytest.approx((800 + 1750 / N) / GIB * 0.50)
    assert logging.usd_per_closed_tick == pytest.approx(1800 / N / GIB * 0.50)
    egress = line(lines, "Egress to Alpaca")
    assert egress.usd_per_sync == pytest.approx(600 / GIB * 0.12)
    assert egress.usd_per_ask == pytest.approx(300 / N / GIB * 0.12)
    pubsub = line(lines, "Pub/Sub throughput")
    assert pubsub.usd_per_sync == pytest.approx((1216 + 2000 / N) / TIB * 40)
    assert pubsub.usd_per_closed_tick == pytest.approx(2000 / N / TIB * 40)
    assert pubsub.usd_per_ask == 0  # the asking message is one of the pulse's
    scheduler = line(lines, "Cloud Scheduler")
    assert scheduler.usd_per_sync == 0
    assert scheduler.monthly(model.MARKET_HOURS) == pytest.approx(0.10 / N)


def test_month_overheads_are_the_closed_ticks_and_the_pulses_outside_the_session() -> None:
    item = model.Line("x", "", usd_per_sync=1e-6, usd_per_closed_tick=1e-8, usd_per_ask=1e-5)
    closed, outside = model.month_overheads([item])
    assert closed == pytest.approx(34_980 * 1e-8)
    # 30 more pulses and 30 more asks than the market minutes.
    assert outside == pytest.approx(30 * 1e-6 + 30 * 1e-5)


def test_a_success_without_a_line_pays_no_envelope() -> None:
    quiet = replace(WORKLOAD, app_log_bytes=0)
    lines = model.pipeline_lines(quiet, ASSUMPTIONS, PRICES)
    assert line(lines, "Cloud Logging").usd_per_sync == pytest.approx(1750 / N / GIB * 0.50)


def test_proposed_savings_are_the_difference_the_changed_inputs_make() -> None:
    by_name = {s.name: s for s in model.savings(WORKLOAD, ASSUMPTIONS, PRICES)}
    market = model.MARKET_HOURS.name
    # One rollup place: 6 rollups a pulse instead of 42, each 14 reads and 2 writes.
    rollups = by_name["one rollup place per pulse"].usd_by_schedule[market]
    assert rollups == pytest.approx(8_190 * 36 * (14 * READ + 2 * WRITE) / N)
    killswitch = by_name["kill-switch from the roster (no re-check read)"]
    assert killswitch.usd_by_schedule[market] == pytest.approx(8_190 * READ)
    assert not killswitch.in_cumulative
    assert not by_name["10 tenants per user-sync message"].in_cumulative


def test_cumulative_changes_leave_optional_ones_out() -> None:
    w, a = model.with_changes(WORKLOAD, ASSUMPTIONS)
    assert a.rollups_by_one_instance
    assert (w.worker_reads_warm, a.tenants_per_message) == (2, 1)
    w, a = model.with_changes(WORKLOAD, ASSUMPTIONS, optional=True)
    assert (w.worker_reads_warm, w.worker_reads_cold, a.tenants_per_message) == (1, 2, 10)


def test_verdict_against_the_goal() -> None:
    assert report.verdict(0.0199) == "PASS"
    assert report.verdict(0.02) == "FAIL"


def test_small_amounts_are_not_printed_as_zero() -> None:
    assert report.usd(0.0123456) == "$0.01235"
    assert report.usd(-0.0000012) == "$-1.2e-06"
    assert report.usd(0.0) == "$0.00000"


def test_single_loop_shares_a_busy_minute_among_its_users() -> None:
    loop = model.LoopWorkload(
        reads_per_user=2, writes_per_user=1, tenants_per_minute=240, alpaca_bytes_sent=540
    )
    lines = model.single_loop_lines(loop, ASSUMPTIONS, PRICES)
    compute = line(lines, "Cloud Run: loop CPU + memory")
    assert compute.usd_per_sync == pytest.approx(60 * INSTANCE_SECOND / 240)
    assert line(lines, "Firestore reads").usd_per_sync == pytest.approx(2 * READ)
    assert line(lines, "Firestore writes").usd_per_sync == pytest.approx(WRITE)
    assert line(lines, "Cloud Scheduler").usd_per_month == pytest.approx(0.10 / 240)
    listing = replace(loop, enumeration_reads_per_user=1)
    reads = line(model.single_loop_lines(listing, ASSUMPTIONS, PRICES), "Firestore reads")
    assert reads.usd_per_sync == pytest.approx(3 * READ)


def test_free_tier_is_capped_by_usage() -> None:
    tiny = replace(ASSUMPTIONS, tenants=1)
    everything = model.free_tier_value(WORKLOAD, tiny, PRICES, model.MARKET_HOURS)
    # One tenant's whole month fits in every free tier: the value is what they cover of it.
    covered = (
        2.1 * READ + WRITE + 0.020 * INSTANCE_SECOND + 0.40e-6 + 1216 / TIB * 40 + 1800 / GIB * 0.50
    ) * 8_190 + 0.10
    assert everything == pytest.approx(covered)
    # 10,000 tenants exceed every free tier but deletes (none): each gives its whole value.
    many = model.free_tier_value(WORKLOAD, ASSUMPTIONS, PRICES, model.MARKET_HOURS)
    firestore = 1_500_000 * READ + 600_000 * WRITE
    cloud_run = 180_000 * 0.000024 + 360_000 * 0.0000025 + 2_000_000 * 0.40e-6
    pubsub, logging, scheduler = 10 / 1024 * 40, 50 * 0.50, 0.10
    assert many == pytest.approx((firestore + cloud_run + pubsub + logging + scheduler) / N)


# --- from measured figures to the model's inputs ---------------------------------------------


def _pass(reads: float, writes: float, deletes: float, **extra: float) -> dict[str, float]:
    figures = {
        "reads": reads,
        "writes": writes,
        "deletes": deletes,
        "wall_ms": 250.0,
        "alpaca_bytes_sent": 530.0,
        "log_bytes": 322.0,
    }
    return {**figures, **extra}


FIGURES: dict[str, Any] = {
    "sample": 100,
    "roster": {
        "rebuild_per_tenant": {"reads": 2.7, "writes": 0.3, "deletes": 0},
        "refresh": {"reads": 4.0, "writes": 1.0, "deletes": 0.0, "log_bytes": 210.0},
        "upkeep_drop": {"reads": 1, "writes": 1, "deletes": 0},
    },
    "fan_out": {
        "clock_reads": 1,
        "roster_reads": 2,
        "tick_reads": 12,
        "tick_writes": 6,
        "tick_log_bytes": 242,
        "tick_log_lines": 1,
        "closed_tick_reads": 1,
        "closed_tick_log_bytes": 307,
        "closed_tick_log_lines": 1,
        "message_bytes": 180.0,
    },
    "worker": {
        "cold": _pass(3, 1, 0),
        "warm": _pass(2, 1, 0, wall_ms=260.0),
        "failing": _pass(2, 2, 0, alpaca_bytes_sent=264.0, log_bytes=415.0),
        "recovery": _pass(2, 2, 1),
        "asking": _pass(2, 2, 0, alpaca_bytes_sent=790.0, clock_refreshed=1.0),
    },
    "rollup": {"reads": 5, "writes": 2, "deletes": 0},
    "single_loop": {"reads": 2.0, "writes": 1.0, "deletes": 0.0, "syncs_per_s": 4.0},
}
FIGURES["single_loop"]["alpaca_bytes_sent"] = 530.0


def test_inputs_from_measured_figures() -> None:
    w, loop = measure.inputs_from(FIGURES, cpu_ms=13.9, publisher_ms=0.29)
    assert (w.worker_reads_cold, w.worker_reads_warm, w.worker_writes, w.worker_deletes) == (
        3,
        2,
        1,
        0,
    )
    assert (w.tick_reads, w.tick_writes, w.clock_reads_per_tick, w.closed_tick_reads) == (
        12,
        6,
        1,
        1,
    )
    # A rollup's 5 reads are 2 documents and 3 count queries.
    assert (w.rollup_reads_fixed, w.rollup_aggregations, w.rollup_writes) == (2, 3, 2)
    # The asking message's extra over a warm sync: one write, one /v2/clock request.
    assert (w.clock_ask_writes, w.clock_ask_alpaca_bytes) == (1, 260)
    assert (w.failing_writes, w.failing_alpaca_bytes, w.failing_log_bytes) == (2, 264, 415)
    assert (w.recovery_writes, w.recovery_deletes) == (2, 1)
    assert (w.roster_refresh_reads, w.roster_refresh_writes) == (4, 1)
    assert (w.rebuild_reads_per_tenant, w.rebuild_writes_per_tenant) == (2.7, 0.3)
    assert (w.wall_ms, w.cpu_ms, w.publisher_wall_ms_per_tenant) == (260, 13.9, 0.29)
    assert (loop.tenants_per_minute, loop.reads_per_user, loop.writes_per_user) == (240, 2, 1)


class _FakeFuture:
    def result(self, timeout: float | None = None) -> str:
        return "id"


class _FakeApi:
    def __init__(self) -> None:
        self.requests: list[Any] = []

    def publish(self, request: Any = None, timeout: float | None = None) -> str:
        self.requests.append(request)
        return "response"


class _FakeClient:
    def __init__(self) -> None:
        self.api = _FakeApi()
        self.published: list[tuple[str, bytes, dict[str, str]]] = []

    def publish(self, topic: str, data: bytes, **attributes: str) -> _FakeFuture:
        self.published.append((topic, data, attributes))
        return _FakeFuture()

    def topic_path(self, project: str, topic: str) -> str:
        return f"projects/{project}/topics/{topic}"


class _Message:
    def __init__(self, data: bytes, attributes: dict[str, str]) -> None:
        self.data, self.attributes = data, attributes


class _Request:
    def __init__(self, *messages: _Message) -> None:
        self.messages = list(messages)


def test_the_recording_publisher_measures_both_publish_paths_and_forwards_them() -> None:
    real = _FakeClient()
    recorder = measure.RecordingPublisher(real)
    request = _Request(_Message(b"x" * 100, {"uid": "u" * 12}), _Message(b"{}", {}))
    assert recorder.api.publish(request=request, timeout=60.0) == "response"
    recorder.publish("topic", b"y" * 50, uid="abc").result()
    # 100 + 3 + 12; 2; 50 + 3 + 3.
    assert recorder.sizes == [115, 2, 56]
    assert real.api.requests == [request] and real.published == [
        ("topic", b"y" * 50, {"uid": "abc"})
    ]
    assert recorder.topic_path("p", "t") == "projects/p/topics/t"


def test_the_report_prints_each_price_set_with_its_totals_and_the_proposed_changes() -> None:
    loop = model.LoopWorkload(
        reads_per_user=2, writes_per_user=1, tenants_per_minute=240, alpaca_bytes_sent=540
    )
    prices = [model.NAM5, model.US_CENTRAL1]
    text = report.report(WORKLOAD, ASSUMPTIONS, loop, prices)
    for p in prices:
        assert f"=== {p.name}; list prices as of {model.PRICES_AS_OF} ===" in text
        for lines in (
            model.pipeline_lines(WORKLOAD, ASSUMPTIONS, p),
            model.single_loop_lines(loop, ASSUMPTIONS, p),
        ):
            totals = "".join(f"{model.total(lines, s):>11.5f}" for s in model.SCHEDULES)
            assert f"{'total per tenant-month, $':<82}{totals}" in text
    for change in model.CHANGES:
        assert text.count(f"  - {change.name}: ") == len(prices)
    assert text.count("(optional: changes a contract)") == 2 * len(prices)


def test_credentials_lines_by_hand() -> None:
    """A cold sync asks the KEK once, a key write seals once, a rotation re-wraps every data
    key (2 operations); the KEK's versions and the OAuth secret are shared by every tenant."""
    lines = model.pipeline_lines(WORKLOAD, ASSUMPTIONS, PRICES)
    operation = 0.03 / 10_000
    kms = line(lines, "Cloud KMS: operations")
    cold = 1 - ASSUMPTIONS.warm_fraction
    assert kms.usd_per_sync == pytest.approx(cold * operation)
    assert kms.usd_per_month == pytest.approx((1 + 2 * 30 / 90) * operation)
    assert kms.detail.startswith(f"{cold * 1000:.0f}/1,000 syncs")
    versions = line(lines, "Cloud KMS: key versions")
    assert versions.monthly(model.MARKET_HOURS) == pytest.approx(2 * 0.06 / N)
    secret = line(lines, "Secret Manager: OAuth client secret")
    assert secret.monthly(model.ALWAYS) == pytest.approx(0.06 / N)
    all_warm = model.pipeline_lines(WORKLOAD, replace(ASSUMPTIONS, warm_fraction=1.0), PRICES)
    assert line(all_warm, "Cloud KMS: operations").usd_per_sync == 0


def test_log_bytes_counts_the_lines_of_every_package_of_the_backend() -> None:
    from agenttrader.logs import get_logger

    with measure.log_bytes() as counted:
        for name in ("agenttrader.pulses", "publisher.roster", "sync_worker.worker", "accounts.x"):
            get_logger(name).info("a line")
        get_logger("google.cloud.x").info("not ours")
    assert counted[1] == 4 and counted[0] > 4 * len('{"message": "a line"}')
