"""The live terminal view of ``make run``: collect a :class:`StackState`, render it as text.

:func:`collect_state` does the reading (Firestore, bridge counters, the dead-letter depth);
:func:`render` and :func:`render_line` are pure, so a test can render a hand-written state.
The view never reads ``users/{uid}/secrets/alpaca``, and every rendered line passes
:func:`agenttrader.logs.redact` as a last guard: no key value reaches the terminal.

Dead-letter depth: the emulator has no Cloud Monitoring metric, so :class:`DeadLetterPeek`
counts by leasing. It pulls ``user-sync-dead-letter-hold`` until a pull comes back empty,
never acknowledges, and hands every lease straight back with ``modify_ack_deadline(0)``. A
message is never lost: at worst (the view dies mid-peek) its lease expires after the
subscription's ack deadline and it is delivered again. While a peek holds them (well under a
second on the emulator, once every few seconds) another puller such as ``agenttrader dlq``
does not see those messages, so the peek runs at most every ``interval`` seconds.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

from agenttrader import paths
from agenttrader.logs import redact
from agenttrader.topology import USER_SYNC_DEAD_LETTER_HOLD
from console.status import PulseStatus, pulse_status
from devtools.localstack.demo import SCENARIO_FIELD

if TYPE_CHECKING:
    from google.cloud import firestore

    from devtools.localstack.eventarc_bridge import EventarcBridge
    from devtools.localstack.push_bridge import PushBridge
    from devtools.simulator import AlpacaSimulator


@dataclass(frozen=True)
class ComponentRow:
    """One running piece: what it is, where it listens, live counters."""

    name: str
    where: str
    detail: str = ""


@dataclass(frozen=True)
class TenantRow:
    """One tenant's state, from its non-secret documents."""

    uid: str
    scenario: str | None = None
    trading_enabled: bool | None = None
    configured: bool | None = None
    synced_at: datetime | None = None
    equity: str | None = None
    outcome: str | None = None
    """``status/sync.outcome`` of its latest sync: success, error, skipped. Exact although a
    healthy tenant's sync writes only its snapshot: the worker writes ``status/sync`` whenever
    the outcome changes (sync_worker/record.py); its ``pulse_id`` may be older."""
    error_class: str | None = None
    """``status/last_sync_error.error_class`` (absent once a sync succeeds)."""
    error_at: datetime | None = None


@dataclass(frozen=True)
class OrderRow:
    """A tenant's latest order as its trade-update stream reported it (``users/{uid}/orders``)."""

    uid: str
    event: str
    symbol: str
    filled: str
    qty: str
    event_at: datetime | None
    """When Alpaca (the simulator) stamped the update."""
    stored_at: datetime | None
    """When the gateway's write of it committed (``updatedAt``)."""


@dataclass(frozen=True)
class DeadLetterDepth:
    count: int
    capped: bool
    """``True`` when counting stopped at the cap: there are at least ``count``."""
    measured_at: datetime


@dataclass(frozen=True)
class StackState:
    """Everything one frame of the view shows."""

    now: datetime
    project: str
    started_at: datetime
    components: tuple[ComponentRow, ...] = ()
    last_pulse: PulseStatus | None = None
    pulse_history: tuple[PulseStatus, ...] = ()
    tenants: tuple[TenantRow, ...] = ()
    tenants_total: int = 0
    dead_letters: DeadLetterDepth | None = None
    hints: tuple[str, ...] = ()
    orders: tuple[OrderRow, ...] = ()
    """Each shown tenant's latest order from its stream, newest first."""
    problems: tuple[str, ...] = field(default=())
    """What could not be read for this frame (the view keeps going)."""


# --- collecting ---------------------------------------------------------------------------

_TENANT_DOCS = (
    ("user", paths.user_doc),
    ("config", paths.alpaca_config_doc),
    ("trading", paths.trading_status_doc),
    ("error", paths.last_sync_error_doc),
    ("sync", paths.sync_state_doc),
    ("snapshot", paths.snapshot_doc),
)
_TENANT_FIELDS = [
    SCENARIO_FIELD,
    "configured",
    "enabled",
    "error_class",
    "timestamp",
    "outcome",
    "syncedAt",
    "equity",
]
"""Read with a field mask: a frame reads a few small fields, never a whole snapshot."""


def collect_state(
    db: firestore.Client,
    *,
    project: str,
    started_at: datetime,
    components: Sequence[ComponentRow] = (),
    dead_letters: DeadLetterDepth | None = None,
    hints: Sequence[str] = (),
    history: int = 4,
    max_tenants: int = 30,
    now: datetime | None = None,
) -> StackState:
    """Read one frame. Firestore failures become ``problems`` instead of exceptions."""
    problems: list[str] = []
    now = now or datetime.now(UTC)
    last_pulse: PulseStatus | None = None
    pulse_history: tuple[PulseStatus, ...] = ()
    tenants: tuple[TenantRow, ...] = ()
    total = 0
    try:
        last_pulse, pulse_history = _pulses(db, history, now)
    except Exception as err:  # noqa: BLE001 - one unreadable frame must not end the view
        problems.append(f"pulses unreadable: {type(err).__name__}")
    try:
        tenants, total = _tenants(db, max_tenants)
    except Exception as err:  # noqa: BLE001
        problems.append(f"tenants unreadable: {type(err).__name__}")
    orders: tuple[OrderRow, ...] = ()
    try:
        orders = _orders(db, [tenant.uid for tenant in tenants])
    except Exception as err:  # noqa: BLE001
        problems.append(f"orders unreadable: {type(err).__name__}")
    return StackState(
        now=now,
        project=project,
        started_at=started_at,
        components=tuple(components),
        last_pulse=last_pulse,
        pulse_history=pulse_history,
        tenants=tenants,
        tenants_total=total,
        dead_letters=dead_letters,
        hints=tuple(hints),
        orders=orders,
        problems=tuple(problems),
    )


def _pulses(
    db: firestore.Client, history: int, now: datetime
) -> tuple[PulseStatus | None, tuple[PulseStatus, ...]]:
    from google.cloud import firestore

    last = db.document(paths.LAST_PULSE_DOC).get()
    last_row = pulse_status(last.to_dict() or {}, "", now) if last.exists else None
    query = (
        db.collection(paths.PULSES_COLLECTION)
        .order_by("timestamp", direction=firestore.Query.DESCENDING)
        .limit(history + 1)
    )
    rows = [pulse_status(doc.to_dict() or {}, doc.id, now) for doc in query.stream()]
    if last_row is not None:
        rows = [row for row in rows if row.pulse_id != last_row.pulse_id]
    return last_row, tuple(rows[:history])


def _tenants(db: firestore.Client, limit: int) -> tuple[tuple[TenantRow, ...], int]:
    users = db.collection(paths.USERS)
    listed = [ref.id for ref in itertools.islice(users.list_documents(page_size=100), limit + 1)]
    total = len(listed)
    if total > limit:
        listed = listed[:limit]
        result: Any = cast(Any, users).count().get()
        total = max(int(result[0][0].value), total)
    refs = [db.document(build(uid)) for uid in listed for _, build in _TENANT_DOCS]
    found = {
        snapshot.reference.path: (snapshot.to_dict() or {}) if snapshot.exists else None
        for snapshot in (db.get_all(refs, field_paths=_TENANT_FIELDS) if refs else [])
    }
    rows = []
    for uid in listed:
        docs = {name: found.get(build(uid)) for name, build in _TENANT_DOCS}
        rows.append(_tenant_row(uid, docs))
    return tuple(sorted(rows, key=lambda row: row.uid)), total


def _orders(db: firestore.Client, uids: Sequence[str]) -> tuple[OrderRow, ...]:
    """The latest order document of each tenant (one collection query each: the view runs
    beside a handful of demo tenants)."""
    from google.cloud import firestore

    rows = []
    for uid in uids:
        query = (
            db.collection(paths.orders_collection(uid))
            .order_by("updatedAt", direction=firestore.Query.DESCENDING)
            .limit(1)
        )
        for snap in query.stream():
            rows.append(order_row(uid, snap.to_dict() or {}))
    return tuple(
        sorted(rows, key=lambda r: r.stored_at or datetime.min.replace(tzinfo=UTC), reverse=True)
    )


def order_row(uid: str, data: dict[str, Any]) -> OrderRow:
    raw = data.get("order")
    order: dict[str, Any] = raw if isinstance(raw, dict) else {}

    def when(name: str) -> datetime | None:
        value = data.get(name)
        return value if isinstance(value, datetime) else None

    return OrderRow(
        uid=uid,
        event=str(data.get("event") or "?"),
        symbol=str(order.get("symbol") or "?"),
        filled=str(order.get("filled_qty") or "0"),
        qty=str(order.get("qty") or "?"),
        event_at=when("eventAt"),
        stored_at=when("updatedAt"),
    )


def _tenant_row(uid: str, docs: dict[str, dict[str, Any] | None]) -> TenantRow:
    def get(doc: str, name: str) -> Any:
        return (docs.get(doc) or {}).get(name)

    def when(doc: str, name: str) -> datetime | None:
        value = get(doc, name)
        return value if isinstance(value, datetime) else None

    def flag(doc: str, name: str) -> bool | None:
        value = get(doc, name)
        return value if isinstance(value, bool) else None

    def text(doc: str, name: str) -> str | None:
        value = get(doc, name)
        return str(value) if value is not None else None

    return TenantRow(
        uid=uid,
        scenario=text("user", SCENARIO_FIELD),
        trading_enabled=flag("trading", "enabled"),
        configured=flag("config", "configured"),
        synced_at=when("snapshot", "syncedAt"),
        equity=text("snapshot", "equity"),
        outcome=text("sync", "outcome"),
        error_class=text("error", "error_class") if docs.get("error") is not None else None,
        error_at=when("error", "timestamp"),
    )


def push_bridge_detail(bridge: PushBridge) -> str:
    stats = bridge.stats
    return f"delivered {stats.delivered} · acked {stats.acked} · nacked {stats.nacked}"


def gateway_detail(health: dict[str, Any]) -> str:
    """A stream gateway's line: the tenants it streams, its buckets, its events per second."""
    return (
        f"streams {health.get('streaming', 0)} tenants · buckets {len(health.get('buckets', []))}"
        f" · {health.get('events_per_second', 0):g} events/s · events {health.get('events', 0)}"
        f" · connects {health.get('connection_attempts', 0)}"
    )


def eventarc_bridge_detail(bridge: EventarcBridge) -> str:
    return f"delivered {bridge.delivered} · failed {bridge.failed}"


def simulator_detail(sim: AlpacaSimulator) -> str:
    stats = sim.stats()
    by_class: dict[str, int] = {}
    for status, count in stats.get("by_status", {}).items():
        key = f"{status[0]}xx" if status[:1].isdigit() else status
        by_class[key] = by_class.get(key, 0) + int(count)
    classes = " · ".join(f"{k} {v}" for k, v in sorted(by_class.items()))
    detail = f"accounts {stats.get('tenants', 0)} · requests {stats.get('total', 0)}"
    return f"{detail} ({classes})" if classes else detail


class DeadLetterPeek:
    """Counts the messages held in ``user-sync-dead-letter-hold`` without consuming them
    (see the module docstring); measures at most every ``interval`` seconds."""

    def __init__(
        self,
        project: str,
        subscription: str = USER_SYNC_DEAD_LETTER_HOLD,
        *,
        interval: float = 5.0,
        cap: int = 5_000,
        pull_timeout: float = 2.0,
    ) -> None:
        from devtools.localstack.subscriber import subscriber_client

        self._subscriber = subscriber_client()
        self.path = self._subscriber.subscription_path(project, subscription)
        self._interval = interval
        self._cap = cap
        self._pull_timeout = pull_timeout
        self._last: DeadLetterDepth | None = None
        self._measured = float("-inf")

    def depth(self) -> DeadLetterDepth | None:
        """The latest measure, refreshed when older than ``interval`` (``None``: unknown)."""
        if time.monotonic() - self._measured >= self._interval:
            self._measured = time.monotonic()
            # A failed measure keeps the previous one on screen.
            with contextlib.suppress(Exception):
                self._last = self.measure()
        return self._last

    def measure(self) -> DeadLetterDepth:
        from google.api_core import exceptions as gexc

        ack_ids: list[str] = []
        try:
            while len(ack_ids) < self._cap:
                try:
                    response = self._subscriber.pull(
                        request={
                            "subscription": self.path,
                            "max_messages": min(1_000, self._cap - len(ack_ids)),
                        },
                        timeout=self._pull_timeout,
                        retry=None,
                    )
                except gexc.DeadlineExceeded:
                    break  # production Pub/Sub waits instead of answering empty
                if not response.received_messages:
                    break
                ack_ids.extend(m.ack_id for m in response.received_messages)
        finally:
            self._release(ack_ids)
        return DeadLetterDepth(len(ack_ids), len(ack_ids) >= self._cap, datetime.now(UTC))

    def _release(self, ack_ids: list[str]) -> None:
        """Hand the leases back now; a failed release only delays redelivery to the ack
        deadline, it loses nothing."""
        for start in range(0, len(ack_ids), 500):
            with contextlib.suppress(Exception):
                self._subscriber.modify_ack_deadline(
                    request={
                        "subscription": self.path,
                        "ack_ids": ack_ids[start : start + 500],
                        "ack_deadline_seconds": 0,
                    }
                )

    def close(self) -> None:
        self._subscriber.close()


# --- rendering ----------------------------------------------------------------------------

_GREEN, _RED, _YELLOW, _BOLD, _DIM, _RESET = (
    "\x1b[32m",
    "\x1b[31m",
    "\x1b[33m",
    "\x1b[1m",
    "\x1b[2m",
    "\x1b[0m",
)
_OUTCOME_COLORS = {"success": _GREEN, "error": _RED, "skipped": _YELLOW}


def _age(now: datetime, then: datetime | None) -> str:
    if then is None:
        return "—"
    seconds = max(int((now - then).total_seconds()), 0)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _clock(moment: datetime | None) -> str:
    return "—" if moment is None else f"{moment.astimezone(UTC):%H:%M:%S}Z"


def _when(now: datetime, moment: datetime | None) -> str:
    return "—" if moment is None else f"{_clock(moment)} ({_age(now, moment)} ago)"


def _yes_no(value: bool | None, yes: str = "yes", no: str = "no") -> str:
    return "—" if value is None else (yes if value else no)


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _paint(text: str, code: str | None, color: bool) -> str:
    return f"{code}{text}{_RESET}" if color and code else text


def _pulse_line(label: str, now: datetime, pulse: PulseStatus) -> str:
    published = "?" if pulse.published is None else str(pulse.published)
    return (
        f"  {label:<5} {_cut(pulse.pulse_id, 34):<34} {_when(now, pulse.timestamp):<22}"
        f" {published:>4} {pulse.success:>4} {pulse.error:>4} {pulse.skipped:>4}"
        f"  {'yes' if pulse.complete else 'no'}"
    )


def _tenant_line(now: datetime, tenant: TenantRow, color: bool) -> str:
    synced = _when(now, tenant.synced_at) if tenant.synced_at else "never"
    error = "—"
    if tenant.error_class:
        error = f"{tenant.error_class} ({_age(now, tenant.error_at)} ago)"
    outcome = tenant.outcome or "—"
    return (
        f"  {_cut(tenant.uid, 20):<20} {_cut(tenant.scenario or '—', 24):<24}"
        f" {_yes_no(tenant.trading_enabled, 'on', 'off'):<7}"
        f" {_yes_no(tenant.configured):<5} {synced:<22} {_cut(tenant.equity or '—', 12):>12}"
        f"  {_paint(f'{outcome:<8}', _OUTCOME_COLORS.get(outcome), color)}"
        f" {_paint(error, _RED if tenant.error_class else None, color)}"
    )


def _order_line(now: datetime, order: OrderRow, color: bool) -> str:
    lag = "—"
    if order.event_at is not None and order.stored_at is not None:
        lag = f"{max((order.stored_at - order.event_at).total_seconds(), 0.0):.2f}s"
    painted = _paint(f"{order.event:<13}", _GREEN if order.event == "fill" else None, color)
    return (
        f"  {_cut(order.uid, 20):<20} {painted} {_cut(order.symbol, 6):<6}"
        f" {order.filled + '/' + order.qty:>9}  {_when(now, order.event_at):<22} {lag:>8}"
    )


def _dead_letter_text(now: datetime, depth: DeadLetterDepth | None) -> str:
    if depth is None:
        return "not measured yet"
    count = f"≥{depth.count}" if depth.capped else str(depth.count)
    return (
        f"{count} held (peeked {_age(now, depth.measured_at)} ago, nothing acked)"
        " · inspect and replay: agenttrader dlq list / replay"
    )


def render(state: StackState, *, color: bool = False) -> str:
    """The full view as text (no cursor movement); ``color`` adds ANSI colours."""
    now = state.now

    def head(title: str) -> str:
        return _paint(title, _BOLD, color)

    lines = [
        head(f"AgentTrader local stack · project {state.project}")
        + f" · up {_age(now, state.started_at)} · {_clock(now)}",
        "",
        head("RUNNING"),
    ]
    width = max((len(c.name) for c in state.components), default=0)
    for component in state.components:
        line = f"  {component.name:<{width}}  {component.where}"
        if component.detail:
            line += "  " + _paint(component.detail, _DIM, color)
        lines.append(line)
    lines += [
        "",
        head("PULSES")
        + f"{'':<35}{'time':<23}{'pub':>4} {'ok':>4} {'err':>4} {'skip':>4}  complete",
    ]
    if state.last_pulse is None and not state.pulse_history:
        lines.append("  none yet (the scheduler publishes sync-tick at start, then on its period)")
    if state.last_pulse is not None:
        lines.append(_pulse_line("last", now, state.last_pulse))
    lines += [_pulse_line("", now, pulse) for pulse in state.pulse_history]
    shown = len(state.tenants)
    more = f", {state.tenants_total - shown} not shown" if state.tenants_total > shown else ""
    lines += [
        "",
        head(f"TENANTS ({state.tenants_total}{more})"),
        f"  {'uid':<20} {'scenario':<24} {'trading':<7} {'keys':<5} {'last sync':<22}"
        f" {'equity':>12}  {'outcome':<8} last error",
    ]
    lines += [_tenant_line(now, tenant, color) for tenant in state.tenants]
    if not state.tenants:
        lines.append("  none yet")
    lines += [
        "",
        head("ORDERS (trade-update streams: each tenant's latest)")
        + f"{'':<8}{'filled':>9}  {'event time':<22} {'stored':>8}",
    ]
    lines += [_order_line(now, order, color) for order in state.orders]
    if not state.orders:
        lines.append("  none yet (the demo trader places an order now and then)")
    lines += [
        "",
        head("DEAD LETTERS")
        + f"  {USER_SYNC_DEAD_LETTER_HOLD}: {_dead_letter_text(now, state.dead_letters)}",
    ]
    if state.problems:
        lines += ["", _paint("! " + "; ".join(state.problems), _RED, color)]
    if state.hints:
        lines += ["", *state.hints]
    return "\n".join(redact(line) for line in lines) + "\n"


def render_line(state: StackState) -> str:
    """One compact line, for logs and pipes."""
    parts = [_clock(state.now)]
    pulse = state.last_pulse
    if pulse is None:
        parts.append("pulse none")
    else:
        published = "?" if pulse.published is None else pulse.published
        parts.append(
            f"pulse {pulse.pulse_id}: published {published} success {pulse.success}"
            f" error {pulse.error} skipped {pulse.skipped}"
            f" {'complete' if pulse.complete else 'running'}"
        )
    synced = sum(1 for t in state.tenants if t.synced_at is not None)
    failing = sum(1 for t in state.tenants if t.error_class)
    parts.append(f"tenants {state.tenants_total}: synced {synced}, failing {failing}")
    depth = state.dead_letters
    if depth is None:
        parts.append("dead letters ?")
    else:
        parts.append(f"dead letters {'≥' if depth.capped else ''}{depth.count}")
    parts += [
        f"{c.name} {c.detail}"
        for c in state.components
        if "bridge" in c.name or "gateway" in c.name
    ]
    parts += [f"! {problem}" for problem in state.problems]
    return redact(" | ".join(parts))


def screen(text: str) -> str:
    """``text`` as a full-screen redraw: home, each line cleared to its end, rest erased."""
    return "\x1b[H" + text.replace("\n", "\x1b[K\n") + "\x1b[J"
