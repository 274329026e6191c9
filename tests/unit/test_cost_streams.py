"""The streams' cost model: syncs, gateway sizing, the tick's share, the report's verdicts."""

from __future__ import annotations

from dataclasses import replace

import pytest

from benchmarks.cost import model, streams
from tests.unit.test_cost_model import ASSUMPTIONS, WORKLOAD, line

SA = streams.StreamAssumptions()
SF = streams.StreamFigures()
REGIONAL = model.US_CENTRAL1


def lines(
    a: model.Assumptions = ASSUMPTIONS,
    sa: streams.StreamAssumptions = SA,
    sf: streams.StreamFigures = SF,
) -> list[model.Line]:
    return streams.stream_lines(WORKLOAD, a, REGIONAL, sa, sf)


@pytest.mark.parametrize(
    ("fraction", "every", "orders", "reconnects", "expected"),
    [
        # Nobody streams: every tick polls, plus the trade and reconnect syncs of nobody.
        (0.0, 5, 0.0, 0.0, model.MARKET_MINUTES),
        # Everybody streams, nothing trades: one tick in five.
        (1.0, 5, 0.0, 0.0, model.MARKET_MINUTES / 5),
        (1.0, 1, 0.0, 0.0, model.MARKET_MINUTES),
        # Trades: syncs_per_order each; reconnects: one reconciliation each.
        (1.0, 5, 5.0, 0.0, model.MARKET_MINUTES / 5 + 5 * 2 * model.TRADING_DAYS),
        (1.0, 5, 0.0, 2.0, model.MARKET_MINUTES / 5 + 2 * model.TRADING_DAYS),
        # Half stream: half the ticks of those, every tick of the others.
        (0.5, 5, 0.0, 0.0, model.MARKET_MINUTES * (0.5 / 5 + 0.5)),
    ],
)
def test_syncs_of_a_month(
    fraction: float, every: int, orders: float, reconnects: float, expected: float
) -> None:
    sa = replace(
        SA,
        streaming_fraction=fraction,
        reconcile_every=every,
        orders_per_trading_day=orders,
        reconnects_per_trading_day=reconnects,
    )
    assert streams.syncs_per_month(sa, SF) == pytest.approx(expected)


def test_an_instance_holds_what_its_memory_and_its_cpu_both_allow() -> None:
    per_connection = SF.kib_per_connection + SA.tls_kib_per_connection
    by_memory = 2 * 0.7 * 2**20 / per_connection
    idle_share = SF.idle_cpu_percent_per_1000 / 100 * SF.measured_ping_seconds / SA.ping_seconds
    by_cpu = 0.6 / idle_share * 1000
    assert streams.connections_per_instance(SA, SF) == int(min(by_memory, by_cpu))
    # Less memory: memory decides; busier connections: the CPU decides.
    small = replace(SA, instance_memory_gib=0.5)
    assert streams.connections_per_instance(small, SF) == int(by_memory / 4)
    busy = replace(SF, idle_cpu_percent_per_1000=50.0)
    busy_share = 0.5 * SF.measured_ping_seconds / SA.ping_seconds
    assert streams.connections_per_instance(SA, busy) == int(0.6 / busy_share * 1000)
    # Pings half as often: half the idle CPU.
    slower = replace(SA, ping_seconds=2 * SA.ping_seconds, instance_memory_gib=64)
    faster = replace(SA, instance_memory_gib=64)
    assert streams.connections_per_instance(slower, SF) == pytest.approx(
        2 * streams.connections_per_instance(faster, SF), abs=1
    )


def test_instances_cover_the_streams_and_never_drop_below_the_floor() -> None:
    per = streams.connections_per_instance(SA, SF)
    assert streams.instances(1, SA, SF) == SA.min_instances == 1
    full = int(per / SA.streaming_fraction)
    assert streams.instances(full, SA, SF) == 1
    assert streams.instances(full + 2, SA, SF) == 2
    assert streams.instances(10, replace(SA, min_instances=3), SF) == 3


def test_the_gateways_instances_are_shared_by_the_tenants() -> None:
    month = 730 * 3600 * (streams.RUN_VCPU_SECOND_INSTANCE + 2 * streams.RUN_GIB_SECOND_INSTANCE)
    gateway = line(lines(), "Gateway instances")
    assert gateway.monthly(model.MARKET_HOURS) == pytest.approx(month / ASSUMPTIONS.tenants)
    full = int(streams.connections_per_instance(SA, SF) / SA.streaming_fraction)
    filled = line(lines(replace(ASSUMPTIONS, tenants=full)), "Gateway instances")
    assert filled.monthly(model.MARKET_HOURS) == pytest.approx(month / full)
    two = line(lines(replace(ASSUMPTIONS, tenants=full + 2)), "Gateway instances")
    assert two.monthly(model.MARKET_HOURS) == pytest.approx(2 * month / (full + 2))
    market = line(lines(sa=replace(SA, gateway_hours=157.5)), "Gateway instances")
    assert market.monthly(model.MARKET_HOURS) == pytest.approx(
        month * 157.5 / 730 / ASSUMPTIONS.tenants
    )


def test_syncs_are_priced_as_the_pipeline_prices_them() -> None:
    pipeline = model.pipeline_lines(WORKLOAD, ASSUMPTIONS, REGIONAL)
    per_sync = model.total(pipeline, model.Schedule("one", 1))
    fixed = model.total(pipeline, model.Schedule("none", 0))
    syncs = streams.syncs_per_month(SA, SF)
    got = line(lines(), "Syncs (reconcile, trade updates, reconnects)")
    assert got.monthly(model.MARKET_HOURS) == pytest.approx((per_sync - fixed) * syncs + fixed)
    # Polled every tick and never trading, a streaming tenant costs what it costs today.
    today = model.total(pipeline, model.MARKET_HOURS)
    idle = replace(SA, reconcile_every=1, orders_per_trading_day=0, reconnects_per_trading_day=0)
    assert got.monthly(model.MARKET_HOURS) > 0
    same = line(lines(sa=idle), "Syncs (reconcile, trade updates, reconnects)")
    assert same.monthly(model.MARKET_HOURS) == pytest.approx(today, rel=1e-3)


def test_a_quiet_tick_costs_the_tenant_its_share_of_the_tick() -> None:
    share = model.open_tick_usd_per_tenant(WORKLOAD, ASSUMPTIONS, REGIONAL)
    publisher = (
        WORKLOAD.publisher_wall_ms_per_tenant / 1000 * model.instance_price(ASSUMPTIONS, REGIONAL)
    )
    assert share > publisher > 0
    quiet = model.MARKET_MINUTES - streams.syncs_per_month(SA, SF)
    got = line(lines(), "Ticks between reconciliations")
    assert got.monthly(model.MARKET_HOURS) == pytest.approx(quiet * share)
    # More tenants: the tick's fixed part is spread thinner.
    more = model.open_tick_usd_per_tenant(WORKLOAD, replace(ASSUMPTIONS, tenants=100), REGIONAL)
    assert more > share


def test_streams_cost_less_than_polling_every_tick() -> None:
    today = model.total(model.pipeline_lines(WORKLOAD, ASSUMPTIONS, REGIONAL), model.MARKET_HOURS)
    assert streams.streams_total(WORKLOAD, ASSUMPTIONS, REGIONAL, SA, SF) < today


def test_the_always_on_gateway_is_a_saw_over_the_tenants() -> None:
    by_scale = dict(streams.always_on_by_scale(WORKLOAD, ASSUMPTIONS, REGIONAL, SA, SF))
    full = int(streams.connections_per_instance(SA, SF) / SA.streaming_fraction)
    assert list(by_scale) == sorted({*streams.SCALES, full, 2 * full})
    at = {
        n: streams.streams_total(WORKLOAD, replace(ASSUMPTIONS, tenants=n), REGIONAL, SA, SF)
        for n in (full, full + 2)
    }
    assert at[full + 2] > at[full]  # a second instance for two more tenants
    assert by_scale[10_000] == pytest.approx(
        streams.streams_total(WORKLOAD, ASSUMPTIONS, REGIONAL, SA, SF)
    )


def test_the_report_prints_each_price_set_with_its_verdicts() -> None:
    text = streams.report(WORKLOAD, ASSUMPTIONS, [model.NAM5, REGIONAL])
    assert text.count("with streams, gateway always on") == 2
    assert text.count("gateway always on, by tenants") == 2
    assert "goal ≤ $0.01" in text
    for name in (model.NAM5.name, REGIONAL.name):
        assert f"  {name}:" in text
    verdicts = [word for word in text.split() if word.strip("()") in ("PASS", "FAIL")]
    assert len(verdicts) == 2 * (2 + len(streams.SCALES) + 2)
