"""The simulator's routes for streams and orders, beside the Trading API and the admin API.

Trading API (the tenant's keys or OAuth token): ``POST /v2/orders``, ``DELETE
/v2/orders/{id}``. Admin (no Alpaca auth):

- ``GET /_sim/stream``: the stream counters (``refused_second``: second connections for an
  open account; attempts per second; events sent and lost); ``GET /_sim/stream/open``: the
  accounts whose stream is open (key ids);
- ``POST /_sim/stream/reset``: zero them;
- ``POST /_sim/stream/drop``: cut every stream connection at once;
- ``PUT /_sim/stream/scenario`` ``{"refuse_auth": bool, "frames": "binary|text|mixed"}``;
- ``POST /_sim/tenants/{key_id}/orders``: an order placed as the tenant's own bot would,
  with an optional fill plan (``partial_fills``, ``fill_delay_ms``, ``fill_interval_ms``);
  ``GET``: every order of the account, whatever its status;
- ``PUT /_sim/tenants/{key_id}/fills``: the tenant's fill plan for its market orders;
- ``PUT /_sim/tenants/{key_id}/stream`` ``{"held_elsewhere": bool, "slow_consumer":
  {"delay_ms", "max_backlog"} | null}``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from devtools.simulator.oauth import OAuthServer
from devtools.simulator.responses import Reply, error_reply, order_body
from devtools.simulator.stream import Resolve, SlowConsumer, StreamHub
from devtools.simulator.tenants import SimTenant, TenantRegistry
from devtools.simulator.trading import FillPlan, OrderEngine, OrderRequest

_FRAMES = ("binary", "text", "mixed")


def resolver(registry: TenantRegistry, oauth: OAuthServer) -> Resolve:
    """How the stream finds the account an auth message names, and whether it may enter."""

    def resolve(data: Mapping[str, Any]) -> tuple[SimTenant | None, bool]:
        token = data.get("oauth_token")
        if isinstance(token, str):
            tenant = oauth.tenant_for(token)
            return tenant, tenant is not None
        key = data.get("key", data.get("key_id"))
        secret = data.get("secret", data.get("secret_key"))
        tenant = registry.get(key) if isinstance(key, str) else None
        valid = tenant is not None and tenant.secret_matches(
            secret if isinstance(secret, str) else None
        )
        return tenant, valid

    return resolve


def _object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body or b"{}")
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError("request body must be valid JSON") from None
    if not isinstance(data, dict):
        raise ValueError("request body must be a JSON object")
    return data


def place_order(engine: OrderEngine, tenant: SimTenant, body: bytes, *, admin: bool) -> Reply:
    """``POST /v2/orders`` (``admin``: the admin route, which may carry a fill plan)."""
    try:
        data = _object(body)
        plan = None
        if admin:
            plan_fields = {k: data.pop(k) for k in list(data) if k in FillPlan.__annotations__}
            plan = FillPlan.from_dict(plan_fields, engine.plan_for(tenant)) if plan_fields else None
        order = engine.place(tenant, OrderRequest.from_dict(data), plan)
    except ValueError as exc:
        return error_reply(422, str(exc))
    return Reply(200, order_body(order))


def cancel_order(engine: OrderEngine, tenant: SimTenant, order_id: str) -> Reply:
    """``DELETE /v2/orders/{id}``: 204, or 422 as Alpaca answers for an order not open."""
    if engine.cancel(tenant, order_id) is None:
        return error_reply(422, "order is not open")
    return Reply(204, None)


def stream_admin(hub: StreamHub, method: str, route: list[str], body: bytes) -> Reply:
    """``/_sim/stream/…``."""
    match method, route:
        case "GET", []:
            return Reply(200, hub.stats())
        case "GET", ["open"]:
            return Reply(200, hub.open_accounts())
        case "POST", ["reset"]:
            hub.reset_stats()
            return Reply(200, hub.stats())
        case "POST", ["drop"]:
            return Reply(200, {"dropped": hub.drop_all()})
        case "PUT", ["scenario"]:
            try:
                data = _object(body)
                unknown = sorted(set(data) - {"refuse_auth", "frames"})
                if unknown:
                    raise ValueError(f"unknown stream scenario field(s): {', '.join(unknown)}")
                refuse, frames = data.get("refuse_auth", hub.refuse_auth), data.get("frames")
                if not isinstance(refuse, bool) or frames not in (None, *_FRAMES):
                    raise ValueError("refuse_auth must be true|false, frames binary|text|mixed")
            except ValueError as exc:
                return error_reply(400, str(exc))
            hub.refuse_auth = refuse
            if frames is not None:
                hub.frames = frames
            return Reply(200, hub.stats())
        case _, ([] | ["open"] | ["reset"] | ["drop"] | ["scenario"]):
            return error_reply(405)
        case _:
            return error_reply(404)


def tenant_admin(
    hub: StreamHub, engine: OrderEngine, tenant: SimTenant, *, method: str, what: str, body: bytes
) -> Reply:
    """``/_sim/tenants/{key_id}/orders | fills | stream``."""
    match method, what:
        case "POST", "orders":
            return place_order(engine, tenant, body, admin=True)
        case "GET", "orders":
            return Reply(200, [order_body(o) for o in tenant.orders])
        case "PUT", "fills":
            try:
                plan = FillPlan.from_dict(_object(body), engine.plan_for(tenant))
            except ValueError as exc:
                return error_reply(400, str(exc))
            engine.set_plan(tenant, plan)
            return Reply(200, dict(vars(plan)))
        case "PUT", "stream":
            try:
                data = _object(body)
                unknown = sorted(set(data) - {"held_elsewhere", "slow_consumer"})
                if unknown:
                    raise ValueError(f"unknown stream field(s): {', '.join(unknown)}")
                held = data.get("held_elsewhere")
                if held is not None and not isinstance(held, bool):
                    raise ValueError("held_elsewhere must be true or false")
                slow = data.get("slow_consumer", ...)
                if slow not in (None, ...) and not isinstance(slow, dict):
                    raise ValueError("slow_consumer must be an object or null")
                slowness = None if slow in (None, ...) else SlowConsumer.from_dict(slow)
            except ValueError as exc:
                return error_reply(400, str(exc))
            if held is not None:
                hub.hold_elsewhere(tenant.key_id, held)
            if slow is not ...:
                hub.set_slow_consumer(tenant.key_id, slowness)
            return Reply(200, hub.stats())
        case _:
            return error_reply(405)
