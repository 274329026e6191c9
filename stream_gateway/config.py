"""The gateway's own tunables, read once from the environment (the shared ones, such as
``GOOGLE_CLOUD_PROJECT`` and ``ALPACA_ALLOWED_BASE_URLS``, come from
:class:`agenttrader.settings.Settings`).

| variable | meaning | default |
|---|---|---|
| ``PORT`` | the health endpoint's port (``GET /healthz``) | 8080 |
| ``STREAM_HEALTH_HOST`` | the address it listens on | 0.0.0.0 |
| ``STREAM_CONNECTS_PER_SECOND`` | connection attempts of one instance a second, at most | 100 |
| ``STREAM_CONNECT_BURST`` | ... at once after a quiet period | 50 |
| ``STREAM_SYNC_COALESCE_SECONDS`` | one ``trade_update`` sync per tenant per this long | 1 |
| ``STREAM_PING_SECONDS`` | websocket keepalive ping period (and its timeout) | 30 |
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass


def _number(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw[:40]!r}") from None
    if not math.isfinite(value) or not low <= value <= high:
        raise ValueError(f"{name} must be between {low:g} and {high:g}, got {raw[:40]!r}")
    return value


@dataclass(frozen=True)
class GatewayConfig:
    port: int = 8080
    health_host: str = "0.0.0.0"
    connects_per_second: float = 100.0
    connect_burst: int = 50
    coalesce_seconds: float = 1.0
    ping_seconds: float = 30.0
    """A dead connection is noticed within two periods; each ping is egress and CPU."""
    order_flush_seconds: float = 0.05
    """How long a tenant's updates gather before their order documents are written."""
    live_flush_seconds: float = 1.0
    """How often the buckets' ``live`` maps are written (when something changed)."""
    roster_debounce_seconds: float = 0.2
    roster_refresh_seconds: float = 60.0
    """The roster is read again at least this often, whatever the listener said."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> GatewayConfig:
        """``ValueError`` naming the variable for anything malformed."""
        return cls(
            port=int(_number(env, "PORT", cls.port, 1, 65535)),
            health_host=env.get("STREAM_HEALTH_HOST", "").strip() or cls.health_host,
            connects_per_second=_number(
                env, "STREAM_CONNECTS_PER_SECOND", cls.connects_per_second, 0.1, 10_000
            ),
            connect_burst=int(_number(env, "STREAM_CONNECT_BURST", cls.connect_burst, 1, 10_000)),
            coalesce_seconds=_number(
                env, "STREAM_SYNC_COALESCE_SECONDS", cls.coalesce_seconds, 0.0, 60.0
            ),
            ping_seconds=_number(env, "STREAM_PING_SECONDS", cls.ping_seconds, 1.0, 300.0),
        )
