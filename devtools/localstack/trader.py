"""The demo trader of ``make run``: a tenant's own trading bot, as the simulator sees it.

Every ``period`` seconds it places a market order for the account (through the simulator's
admin route, as the tenant's bot would through ``POST /v2/orders``), buying and selling in
turn, filled in one to three steps. Its fills reach the tenant's trade-update stream, the
stream gateway stores them in ``users/{uid}/orders``, and the view shows each with how long
after the fill it was stored.
"""

from __future__ import annotations

import itertools
import threading
from typing import Self

from devtools.simulator import AlpacaSimulator
from devtools.simulator.trading import FillPlan, OrderRequest

SYMBOLS = ("AAPL", "MSFT", "NVDA", "KO")


class DemoTrader:
    def __init__(self, sim: AlpacaSimulator, key_id: str, period: float) -> None:
        self._sim = sim
        self._key_id = key_id
        self._period = period
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-trader", daemon=True)
        self.orders = 0

    def start(self) -> Self:
        self._thread.start()
        return self

    def _run(self) -> None:
        for step in itertools.count():
            if self._stop.wait(self._period if step else min(self._period, 5.0)):
                return
            self.place(step)

    def place(self, step: int) -> None:
        tenant = self._sim.tenant(self._key_id)
        side = "buy" if step % 2 == 0 else "sell"
        request = OrderRequest.from_dict(
            {"symbol": SYMBOLS[step // 2 % len(SYMBOLS)], "qty": 3, "side": side}
        )
        plan = FillPlan(fill_delay_ms=300, partial_fills=1 + step % 3, fill_interval_ms=150)
        self._sim.orders.place(tenant, request, plan)
        self.orders += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
