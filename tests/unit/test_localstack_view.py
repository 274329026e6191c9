"""The terminal view of ``make run`` rendered from hand-written states, and the demo's specs."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from console.status import PulseStatus
from devtools.localstack import demo
from devtools.localstack.view import (
    ComponentRow,
    DeadLetterDepth,
    OrderRow,
    StackState,
    TenantRow,
    gateway_detail,
    order_row,
    render,
    render_line,
    screen,
)

NOW = datetime(2025, 3, 4, 12, 0, 0, tzinfo=UTC)
KEY_ID = "PKSECRETKEYID0000042"
SECRET = "s3cr3t" * 7


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


def state(**overrides: object) -> StackState:
    values: dict[str, object] = {
        "now": NOW,
        "project": "demo-agenttrader",
        "started_at": ago(185),
        "components": (
            ComponentRow("Pub/Sub emulator", "127.0.0.1:8085"),
            ComponentRow("Alpaca simulator", "http://127.0.0.1:9999", "accounts 6 · requests 12"),
            ComponentRow("fn sync_user", "http://127.0.0.1:5002/"),
            ComponentRow(
                "push bridge",
                "user-sync-worker → sync_user",
                "delivered 40 · acked 35 · nacked 5",
            ),
            ComponentRow(
                "Eventarc bridge", "secrets → on_alpaca_secret_written", "delivered 6 · failed 0"
            ),
        ),
        "last_pulse": PulseStatus("20250304T115950Z-77", ago(10), 5, 3, 1, 2, False, 10.0),
        "pulse_history": (PulseStatus("20250304T115850Z-70", ago(70), 5, 4, 1, 1, True, 8.0),),
        "tenants": (
            TenantRow(
                "demo-bad-keys",
                "bad keys (401)",
                trading_enabled=True,
                configured=True,
                outcome="error",
                error_class="AlpacaAuthError",
                error_at=ago(4),
            ),
            TenantRow(
                "demo-healthy-1",
                "healthy",
                trading_enabled=True,
                configured=True,
                synced_at=ago(3),
                equity="101234.56",
                outcome="success",
            ),
            TenantRow("demo-trading-off", "healthy, kill-switch off", False, False),
            TenantRow("late-arrival"),
        ),
        "tenants_total": 4,
        "dead_letters": DeadLetterDepth(3, capped=False, measured_at=ago(2)),
        "hints": ("Add a tenant while it runs: python -m devtools.localstack.demo add alice",),
    }
    values.update(overrides)
    return StackState(**values)  # type: ignore[arg-type]


def line_of(text: str, needle: str) -> str:
    return next(line for line in text.splitlines() if needle in line)


def test_render_shows_what_runs_where_with_live_counters() -> None:
    text = render(state())
    assert "project demo-agenttrader" in text
    assert "up 3m05s" in text
    assert "12:00:00Z" in text
    assert "127.0.0.1:8085" in line_of(text, "Pub/Sub emulator")
    assert "http://127.0.0.1:5002/" in line_of(text, "fn sync_user")
    assert "delivered 40 · acked 35 · nacked 5" in line_of(text, "push bridge")
    assert "delivered 6" in line_of(text, "Eventarc bridge")


def test_render_shows_last_pulse_and_history() -> None:
    text = render(state())
    last = line_of(text, "20250304T115950Z-77")
    assert last.split()[0] == "last"
    assert "(10s ago)" in last
    assert last.split()[-5:] == ["5", "3", "1", "2", "no"]
    older = line_of(text, "20250304T115850Z-70")
    assert "(1m10s ago)" in older
    assert older.split()[-5:] == ["5", "4", "1", "1", "yes"]


def test_render_shows_each_tenant_state() -> None:
    text = render(state())
    assert "TENANTS (4)" in text
    healthy = line_of(text, "demo-healthy-1")
    assert "11:59:57Z (3s ago)" in healthy
    assert "101234.56" in healthy and "success" in healthy
    bad = line_of(text, "demo-bad-keys")
    assert "never" in bad and "error" in bad and "AlpacaAuthError (4s ago)" in bad
    off = line_of(text, "demo-trading-off")
    assert " off " in off and "never" in off
    assert "—" in line_of(text, "late-arrival")  # a tenant that only just appeared


def test_render_shows_dead_letter_depth_and_hints() -> None:
    text = render(state())
    assert "user-sync-dead-letter-hold: 3 held (peeked 2s ago" in text
    assert "add alice" in text
    capped = render(state(dead_letters=DeadLetterDepth(5000, True, NOW)))
    assert "≥5000 held" in capped
    assert "not measured yet" in render(state(dead_letters=None))


def test_render_of_an_empty_stack() -> None:
    text = render(state(last_pulse=None, pulse_history=(), tenants=(), tenants_total=0))
    assert "none yet" in line_of(text, "scheduler publishes")
    assert "TENANTS (0)" in text


def test_render_says_how_many_tenants_are_not_shown() -> None:
    text = render(state(tenants_total=250))
    assert "TENANTS (250, 246 not shown)" in text


def test_render_reports_problems_instead_of_failing() -> None:
    text = render(state(problems=("tenants unreadable: ServiceUnavailable",)))
    assert "tenants unreadable: ServiceUnavailable" in text


def test_no_secret_like_value_is_ever_rendered() -> None:
    leaky = state(
        components=(
            ComponentRow("Alpaca simulator", "http://127.0.0.1:9999", f"key_id={KEY_ID}"),
            ComponentRow("push bridge", f"https://user:{SECRET}@example.com", ""),
        ),
        tenants=(TenantRow("demo-x", f"scenario {KEY_ID}", error_class=f"secret_key: {SECRET}"),),
        hints=(f"APCA-API-SECRET-KEY: {SECRET}",),
    )
    for text in (render(leaky), render(leaky, color=True), render_line(leaky)):
        assert KEY_ID not in text
        assert SECRET not in text
        assert not re.search(r"\b[PA]K[A-Z0-9]{14,30}\b", text)


def test_colour_only_adds_escape_codes() -> None:
    plain = render(state())
    coloured = render(state(), color=True)
    assert "\x1b[" not in plain
    assert re.sub(r"\x1b\[[0-9;]*m", "", coloured) == plain


def test_render_line_is_one_compact_line() -> None:
    line = render_line(state())
    assert "\n" not in line
    assert "pulse 20250304T115950Z-77: published 5 success 3 error 1 skipped 2 running" in line
    assert "tenants 4: synced 1, failing 1" in line
    assert "dead letters 3" in line
    assert "push bridge delivered 40 · acked 35 · nacked 5" in line
    assert "pulse none" in render_line(state(last_pulse=None))


def test_screen_redraws_in_place() -> None:
    drawn = screen("a\nb\n")
    assert drawn.startswith("\x1b[H") and drawn.endswith("\x1b[J")
    assert "a\x1b[K\nb\x1b[K\n" in drawn


def test_demo_specs_cover_the_scenarios_and_grow_with_healthy_tenants() -> None:
    specs = demo.demo_specs(6)
    kinds = sorted(spec.scenario.kind for spec in specs)
    assert kinds == ["bad_keys", "flaky", "latency", "normal", "normal", "normal"]
    assert [s.uid for s in specs if not s.enabled] == ["demo-trading-off"]
    assert next(s for s in specs if s.scenario.kind == "latency").scenario.latency_ms == 800
    assert next(s for s in specs if s.scenario.kind == "flaky").scenario.failure_rate == 0.3
    more = demo.demo_specs(9)
    assert len({s.uid for s in more}) == 9
    assert [s.uid for s in more[6:]] == ["demo-healthy-3", "demo-healthy-4", "demo-healthy-5"]
    assert [s.uid for s in demo.demo_specs(2)] == ["demo-healthy-1", "demo-bad-keys"]
    assert demo.demo_specs(0) == []


def test_demo_tenant_repr_hides_keys() -> None:
    tenant = demo.DemoTenant(demo.DEMO_SPECS[0], KEY_ID, SECRET)
    assert KEY_ID not in repr(tenant) and SECRET not in repr(tenant)


def test_env_file_round_trip_and_latest(tmp_path: Path) -> None:
    env = {"GOOGLE_CLOUD_PROJECT": "demo-x", "FIRESTORE_EMULATOR_HOST": "127.0.0.1:1"}
    older, newer = tmp_path / "run-20250101-000000-a", tmp_path / "run-20250102-000000-b"
    older.mkdir()
    newer.mkdir()
    demo.write_env_file(older, {**env, "GOOGLE_CLOUD_PROJECT": "old"})
    path = demo.write_env_file(newer, env)
    assert demo.read_env_file(path) == env
    assert demo.latest_env_file(tmp_path) == path
    path.unlink()
    assert demo.latest_env_file(tmp_path) == older / demo.ENV_FILE


def test_the_streams_show_per_gateway_and_each_fill_with_how_fast_it_was_stored() -> None:
    health = {"streaming": 3, "buckets": list(range(32)), "events_per_second": 0.4, "events": 12}
    detail = gateway_detail({**health, "connection_attempts": 4})
    assert detail == "streams 3 tenants · buckets 32 · 0.4 events/s · events 12 · connects 4"
    fill = OrderRow(
        "demo-healthy-1", "fill", "AAPL", "3", "3", ago(2), ago(2) + timedelta(seconds=0.25)
    )
    text = render(
        state(
            components=(ComponentRow("stream gateway 1", "http://127.0.0.1:1/healthz", detail),),
            orders=(fill,),
        )
    )
    assert "streams 3 tenants" in line_of(text, "stream gateway 1")
    line = line_of(text, "AAPL")
    assert "demo-healthy-1" in line and "fill" in line and "3/3" in line and "0.25s" in line
    assert "none yet" in render(state(orders=()))
    assert "stream gateway 1 streams 3" in render_line(
        state(components=(ComponentRow("stream gateway 1", "x", detail),))
    )


def test_an_order_document_becomes_a_row() -> None:
    row = order_row(
        "u1",
        {
            "event": "partial_fill",
            "order": {"symbol": "KO", "filled_qty": "2", "qty": "5"},
            "eventAt": ago(3),
            "updatedAt": ago(2),
        },
    )
    assert row == OrderRow("u1", "partial_fill", "KO", "2", "5", ago(3), ago(2))
    assert order_row("u2", {"order": "not a map"}).symbol == "?"
