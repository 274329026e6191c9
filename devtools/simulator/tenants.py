"""Simulated Alpaca tenants: scenario settings, account state and the per-tenant price walk.

Each tenant is one Alpaca paper account reached with its own key pair. The HTTP layer turns
this state into Alpaca JSON; the mutable parts (prices, scenario, counters) change only under
the tenant's lock because many request threads serve the same tenant at once.
"""

from __future__ import annotations

import hmac
import math
import random
import re
import secrets
import string
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, Literal, get_args

ScenarioKind = Literal[
    "normal",
    "latency",
    "bad_keys",
    "forbidden",
    "rate_limited",
    "server_error",
    "timeout",
    "flaky",
    "fail_then_ok",
]
SCENARIO_KINDS: tuple[str, ...] = get_args(ScenarioKind)

CENT = Decimal("0.01")
_MAX_LATENCY_MS = 600_000.0
_MAX_HANG_SECONDS = 3_600.0
_MAX_AMOUNT = 10**12  # keeps every product well inside Decimal's default 28-digit precision
_WALK_SIGMA = 0.0015  # relative per-call price move: visible between calls, tame over hours
_KEY_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,128}")  # also a URL path segment of the admin API
_SECRET_RE = re.compile(r"[\x21-\x7e]{1,256}")  # must survive as an HTTP header value
_ALNUM_UPPER = string.ascii_uppercase + string.digits
_ALNUM = string.ascii_letters + string.digits

# symbol -> (exchange, reference price); asset ids are derived so they are stable per symbol.
_CATALOG: dict[str, tuple[str, str]] = {
    "AAPL": ("NASDAQ", "190.00"),
    "MSFT": ("NASDAQ", "410.00"),
    "NVDA": ("NASDAQ", "120.00"),
    "AMZN": ("NASDAQ", "180.00"),
    "GOOGL": ("NASDAQ", "165.00"),
    "META": ("NASDAQ", "500.00"),
    "TSLA": ("NASDAQ", "240.00"),
    "QQQ": ("NASDAQ", "470.00"),
    "SPY": ("ARCA", "550.00"),
    "JPM": ("NYSE", "200.00"),
    "KO": ("NYSE", "62.00"),
    "XOM": ("NYSE", "110.00"),
}
_DEFAULT_EXCHANGE = "NASDAQ"
_OPEN_ORDER_STATUSES = frozenset({"new", "accepted", "pending_new", "partially_filled"})


@dataclass(frozen=True)
class Scenario:
    """How a tenant's Alpaca endpoint behaves; see SCENARIO_KINDS.

    ``latency_ms`` applies to every kind; ``None`` means "use the server's default latency",
    so a benchmark can slow every tenant down without touching each scenario.
    """

    kind: ScenarioKind = "normal"
    latency_ms: float | None = None
    failure_rate: float = 0.0
    status: int = 500
    hang_seconds: float = 30.0
    fail_count: int = 0
    fail_status: int = 429

    def __post_init__(self) -> None:
        if self.kind not in SCENARIO_KINDS:
            raise ValueError(f"scenario kind must be one of {', '.join(SCENARIO_KINDS)}")
        if self.latency_ms is not None:
            _check_number("latency_ms", self.latency_ms, 0.0, _MAX_LATENCY_MS)
        _check_number("failure_rate", self.failure_rate, 0.0, 1.0)
        _check_int("status", self.status, 500, 599)
        _check_number("hang_seconds", self.hang_seconds, 0.0, _MAX_HANG_SECONDS)
        _check_int("fail_count", self.fail_count, 0, 1_000_000_000)
        _check_int("fail_status", self.fail_status, 400, 599)

    @classmethod
    def from_dict(cls, data: object) -> Scenario:
        """Build from the admin API's JSON object; raises ValueError naming the bad field."""
        if not isinstance(data, Mapping):
            raise ValueError("scenario must be a JSON object")
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown scenario field(s): {', '.join(map(str, unknown))}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_number(name: str, value: object, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number")
    if not (math.isfinite(value) and low <= value <= high):
        raise ValueError(f"{name} must be between {low:g} and {high:g}")


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer")
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}")


def _decimal(name: str, value: object, *, allow_zero: bool = False) -> Decimal:
    """Parse a money or quantity value given as a JSON string or number."""
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        raise ValueError(f"{name} must be a number or a numeric string")
    try:
        result = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"{name} must be a number or a numeric string") from None
    if not result.is_finite() or result < 0 or (result == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'non-negative' if allow_zero else 'positive'}")
    if result >= _MAX_AMOUNT:
        raise ValueError(f"{name} must be below {_MAX_AMOUNT:,}")
    return result


def _cents(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def asset_id_for(symbol: str) -> str:
    """Stable asset id per symbol, as Alpaca's are."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"agenttrader-simulator/asset/{symbol}"))


@dataclass(frozen=True)
class Holding:
    """One long position; replaced (not mutated) on every price tick."""

    symbol: str
    asset_id: str
    exchange: str
    qty: Decimal
    avg_entry_price: Decimal
    lastday_price: Decimal
    price: Decimal

    @property
    def market_value(self) -> Decimal:
        return _cents(self.qty * self.price)

    @property
    def cost_basis(self) -> Decimal:
        return _cents(self.qty * self.avg_entry_price)

    @property
    def lastday_value(self) -> Decimal:
        return _cents(self.qty * self.lastday_price)


@dataclass(frozen=True)
class Portfolio:
    """A consistent view of cash and holdings taken under the tenant lock."""

    cash: Decimal
    holdings: tuple[Holding, ...]


@dataclass(frozen=True)
class SimOrder:
    """A demo order; immutable, so order listings need no locking."""

    id: str
    client_order_id: str
    symbol: str
    asset_id: str
    qty: Decimal
    filled_qty: Decimal
    side: str
    order_type: str
    time_in_force: str
    limit_price: Decimal | None
    filled_avg_price: Decimal | None
    status: str
    submitted_at: datetime
    filled_at: datetime | None
    expires_at: datetime
    updated_at: datetime | None = None
    canceled_at: datetime | None = None

    @property
    def is_open(self) -> bool:
        return self.status in _OPEN_ORDER_STATUSES


@dataclass(frozen=True)
class Verdict:
    """What the scenario decided for one request: wait this long, then fail or answer."""

    delay_s: float
    fail_status: int | None = None


@dataclass(eq=False)
class SimTenant:
    """One simulated Alpaca account and the key pair that reaches it."""

    key_id: str
    secret_key: str = field(repr=False)
    seed: int
    scenario: Scenario
    account_id: str
    account_number: str
    created_at: datetime
    cash: Decimal = field(repr=False)
    holdings: tuple[Holding, ...] = field(repr=False)
    orders: tuple[SimOrder, ...] = field(repr=False)
    requests: int = field(default=0, init=False)
    _failures_served: int = field(default=0, init=False, repr=False)
    _walk_rng: random.Random = field(init=False, repr=False)
    _fault_rng: random.Random = field(init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        self._walk_rng = random.Random(f"walk:{self.seed}")
        self._fault_rng = random.Random(f"fault:{self.seed}")

    def admit(self, authenticated: bool, default_latency_ms: float) -> Verdict:
        """Count one API request and decide, per the current scenario, how to answer it
        (``authenticated``: the request's key pair or OAuth token is this tenant's)."""
        with self._lock:
            self.requests += 1
            scenario = self.scenario
            latency_ms = default_latency_ms if scenario.latency_ms is None else scenario.latency_ms
            delay = latency_ms / 1000.0
            if scenario.kind == "timeout":  # a network-level hang: even bad credentials wait
                delay += scenario.hang_seconds
            if not authenticated or scenario.kind == "bad_keys":
                return Verdict(delay, 401)
            match scenario.kind:
                case "forbidden":
                    return Verdict(delay, 403)
                case "rate_limited":
                    return Verdict(delay, 429)
                case "server_error":
                    return Verdict(delay, scenario.status)
                case "flaky" if self._fault_rng.random() < scenario.failure_rate:
                    return Verdict(delay, 503)
                case "fail_then_ok" if self._failures_served < scenario.fail_count:
                    self._failures_served += 1
                    return Verdict(delay, scenario.fail_status)
            return Verdict(delay)

    def secret_matches(self, secret: str | None) -> bool:
        if secret is None:
            return False
        return hmac.compare_digest(secret.encode(), self.secret_key.encode())

    def tick(self) -> Portfolio:
        """Move every price one random-walk step and return the resulting portfolio."""
        with self._lock:
            self.holdings = tuple(replace(h, price=self._step(h.price)) for h in self.holdings)
            return Portfolio(self.cash, self.holdings)

    def _step(self, price: Decimal) -> Decimal:
        move = _cents(price * Decimal(self._walk_rng.gauss(0.0, _WALK_SIGMA)))
        if move == 0:  # guarantee visible movement between calls, even for cheap symbols
            move = CENT if self._walk_rng.random() < 0.5 else -CENT
        return max(price + move, CENT)

    def price_of(self, symbol: str) -> Decimal:
        """What ``symbol`` trades at for this tenant: its holding's price, else the catalog's."""
        with self._lock:
            for holding in self.holdings:
                if holding.symbol == symbol:
                    return holding.price
        return Decimal(_CATALOG.get(symbol, (_DEFAULT_EXCHANGE, "100.00"))[1])

    def record_order(self, order: SimOrder) -> None:
        """Store ``order`` (a new one, or the next state of one already listed)."""
        with self._lock:
            others = tuple(o for o in self.orders if o.id != order.id)
            self.orders = (*others, order)

    def apply_fill(self, symbol: str, side: str, qty: Decimal, price: Decimal) -> Decimal:
        """Move cash and the position for a fill of ``qty`` at ``price``; returns the
        position's quantity after it."""
        with self._lock:
            held = {h.symbol: h for h in self.holdings}
            current = held.get(symbol)
            signed = qty if side == "buy" else -qty
            self.cash = _cents(self.cash - signed * price)
            if current is None:
                exchange = _CATALOG.get(symbol, (_DEFAULT_EXCHANGE, ""))[0]
                current = Holding(
                    symbol, asset_id_for(symbol), exchange, Decimal(0), price, price, price
                )
            new_qty = current.qty + signed
            if new_qty <= 0:
                held.pop(symbol, None)
            else:
                entry = current.avg_entry_price
                if side == "buy":
                    entry = _cents((current.qty * entry + qty * price) / new_qty)
                held[symbol] = replace(current, qty=new_qty, avg_entry_price=entry)
            self.holdings = tuple(held[s] for s in sorted(held))
            return max(new_qty, Decimal(0))

    def set_scenario(self, scenario: Scenario) -> None:
        """Switch behaviour at run time; a fail_then_ok scenario starts counting afresh."""
        with self._lock:
            self.scenario = scenario
            self._failures_served = 0

    def reset_requests(self) -> None:
        with self._lock:
            self.requests = 0


class DuplicateTenantError(ValueError):
    """A tenant with this key id already exists."""


class TenantRegistry:
    """All tenants by key id; creation validates input so the admin API can answer 400."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tenants: dict[str, SimTenant] = {}

    def __len__(self) -> int:
        return len(self._tenants)

    def get(self, key_id: str) -> SimTenant | None:
        return self._tenants.get(key_id)

    def all(self) -> list[SimTenant]:
        with self._lock:
            return list(self._tenants.values())

    def create(
        self,
        *,
        scenario: Scenario | None = None,
        key_id: str | None = None,
        secret_key: str | None = None,
        seed: int | None = None,
        cash: object = None,
        positions: Sequence[Mapping[str, Any]] | None = None,
    ) -> SimTenant:
        """Validate, build and register a tenant; raises ValueError on bad input."""
        if key_id is not None and not (isinstance(key_id, str) and _KEY_ID_RE.fullmatch(key_id)):
            raise ValueError("key_id must be 1-128 characters of A-Z, a-z, 0-9, '_' or '-'")
        if secret_key is not None and not (
            isinstance(secret_key, str) and _SECRET_RE.fullmatch(secret_key)
        ):
            raise ValueError("secret_key must be 1-256 printable ASCII characters, no spaces")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError("seed must be an integer")
        if scenario is not None and not isinstance(scenario, Scenario):
            raise ValueError("scenario must be a Scenario")
        seed = secrets.randbits(32) if seed is None else seed
        rng = random.Random(f"init:{seed}")
        balance = _default_cash(rng) if cash is None else _decimal("cash", cash, allow_zero=True)
        now = datetime.now(UTC)
        holdings = _default_holdings(rng) if positions is None else _holdings_from(positions)
        created_at = now - timedelta(days=rng.randint(30, 400), seconds=rng.randint(0, 86_399))
        tenant = SimTenant(
            key_id=key_id or _generate("PK", 18, _ALNUM_UPPER),
            secret_key=secret_key or _generate("", 40, _ALNUM),
            seed=seed,
            scenario=scenario or Scenario(),
            account_id=str(uuid.uuid4()),
            account_number="PA" + uuid.uuid4().hex[:10].upper(),
            created_at=created_at,
            cash=_cents(balance),
            holdings=holdings,
            orders=_demo_orders(holdings, created_at, now, rng),
        )
        with self._lock:
            if tenant.key_id in self._tenants:
                raise DuplicateTenantError("a tenant with this key_id already exists")
            self._tenants[tenant.key_id] = tenant
        return tenant


def _generate(prefix: str, length: int, alphabet: str) -> str:
    return prefix + "".join(secrets.choice(alphabet) for _ in range(length))


def _default_cash(rng: random.Random) -> Decimal:
    return Decimal(rng.randrange(2_000_000, 10_000_000)) / 100


def _default_holdings(rng: random.Random) -> tuple[Holding, ...]:
    holdings = []
    for symbol in sorted(rng.sample(sorted(_CATALOG), k=rng.randint(2, 4))):
        exchange, reference = _CATALOG[symbol]
        lastday = _cents(Decimal(reference) * Decimal(rng.uniform(0.95, 1.05)))
        holdings.append(
            Holding(
                symbol=symbol,
                asset_id=asset_id_for(symbol),
                exchange=exchange,
                qty=Decimal(rng.randint(1, 50)),
                avg_entry_price=_cents(Decimal(reference) * Decimal(rng.uniform(0.85, 1.10))),
                lastday_price=lastday,
                price=lastday,
            )
        )
    return tuple(holdings)


def _holdings_from(positions: Sequence[Mapping[str, Any]]) -> tuple[Holding, ...]:
    """Parse caller-given positions: {symbol, qty, avg_entry_price, current_price?}."""
    if isinstance(positions, str | bytes) or not isinstance(positions, Sequence):
        raise ValueError("positions must be a list of objects")
    allowed = {"symbol", "qty", "avg_entry_price", "current_price"}
    holdings: dict[str, Holding] = {}
    for spec in positions:
        if not isinstance(spec, Mapping):
            raise ValueError("each position must be an object")
        unknown = sorted(set(spec) - allowed)
        if unknown:
            raise ValueError(f"unknown position field(s): {', '.join(map(str, unknown))}")
        symbol = spec.get("symbol")
        if not (isinstance(symbol, str) and re.fullmatch(r"[A-Z][A-Z0-9.]{0,11}", symbol)):
            raise ValueError("position symbol must be an upper-case ticker like 'AAPL'")
        if symbol in holdings:
            raise ValueError("each position symbol may appear only once")
        avg_entry = _cents(_decimal("avg_entry_price", spec.get("avg_entry_price")))
        current = spec.get("current_price")
        price = avg_entry if current is None else _cents(_decimal("current_price", current))
        holdings[symbol] = Holding(
            symbol=symbol,
            asset_id=asset_id_for(symbol),
            exchange=_CATALOG.get(symbol, (_DEFAULT_EXCHANGE, ""))[0],
            qty=_decimal("qty", spec.get("qty")),
            avg_entry_price=avg_entry,
            lastday_price=price,
            price=price,
        )
    return tuple(holdings[symbol] for symbol in sorted(holdings))


def _session_end(moment: datetime) -> datetime:
    """When a day order submitted at ``moment`` expires (21:00 UTC, after the close)."""
    end = moment.replace(hour=21, minute=0, second=0, microsecond=0)
    return end if end > moment else end + timedelta(days=1)


def _demo_orders(
    holdings: tuple[Holding, ...], created_at: datetime, now: datetime, rng: random.Random
) -> tuple[SimOrder, ...]:
    """The filled buys that opened each position, plus one resting limit order."""
    orders = []
    for index, holding in enumerate(holdings):
        submitted = created_at + timedelta(days=index + 1, seconds=rng.randint(0, 20_000))
        orders.append(
            SimOrder(
                id=str(uuid.uuid4()),
                client_order_id=str(uuid.uuid4()),
                symbol=holding.symbol,
                asset_id=holding.asset_id,
                qty=holding.qty,
                filled_qty=holding.qty,
                side="buy",
                order_type="market",
                time_in_force="day",
                limit_price=None,
                filled_avg_price=holding.avg_entry_price,
                status="filled",
                submitted_at=submitted,
                filled_at=submitted + timedelta(milliseconds=rng.randint(20, 900)),
                expires_at=_session_end(submitted),
            )
        )
    if holdings:
        target = holdings[0]
        submitted = now - timedelta(minutes=rng.randint(5, 600))
        orders.append(
            SimOrder(
                id=str(uuid.uuid4()),
                client_order_id=str(uuid.uuid4()),
                symbol=target.symbol,
                asset_id=target.asset_id,
                qty=Decimal(1),
                filled_qty=Decimal(0),
                side="buy",
                order_type="limit",
                time_in_force="gtc",
                limit_price=_cents(target.price * Decimal("0.95")),
                filled_avg_price=None,
                status="new",
                submitted_at=submitted,
                filled_at=None,
                expires_at=submitted + timedelta(days=90),
            )
        )
    return tuple(orders)
