"""Alpaca paper Trading API v2 simulator for tests, benchmarks and the local stack.

Serves ``GET /v2/account``, ``/v2/positions``, ``/v2/orders`` and ``/v2/clock`` for many
tenants (one key pair each) with JSON that alpaca-py parses into its own models, and lets
each tenant misbehave on demand so the sync worker's failure handling can be exercised
without touching Alpaca::

    with AlpacaSimulator() as sim:
        tenant = sim.add_tenant(Scenario(kind="rate_limited"))
        client = TradingClient(tenant.key_id, tenant.secret_key, paper=True,
                               url_override=sim.base_url)

OAuth (Alpaca Connect, :mod:`devtools.simulator.oauth`): ``GET /oauth/authorize`` redirects
with a code, ``POST /oauth/token`` exchanges it for an access token, and the Trading API
accepts ``Authorization: Bearer <token>`` besides the key headers::

    app = sim.add_oauth_app(["http://127.0.0.1:5000/callback"])
    client = TradingClient(oauth_token=token, paper=True, url_override=sim.base_url)

Scenario kinds: normal, latency, bad_keys (401), forbidden (403), rate_limited (429),
server_error (``status``, 5xx), timeout (hangs ``hang_seconds``), flaky (503 at
``failure_rate``), fail_then_ok (``fail_count`` x ``fail_status``, then healthy).

Admin API (JSON, no Alpaca auth): ``POST /_sim/tenants`` (201 with the tenant's secret),
``GET /_sim/tenants``, ``GET /_sim/tenants/{key_id}``,
``PUT /_sim/tenants/{key_id}/scenario``, ``GET /_sim/stats``, ``POST /_sim/reset-stats``,
``GET | PUT | DELETE /_sim/clock`` (pin ``/v2/clock``'s ``is_open`` / ``next_open`` /
``next_close``, or make it fail with ``fail_status``; DELETE restores the regular session),
``POST /_sim/oauth/apps`` (201 with the client secret), ``GET /_sim/oauth/apps``,
``GET /_sim/oauth/grants`` (issued tokens, without their values), ``POST /_sim/oauth/revoke``
(``{tenant | client_id | token}``: a revoked token is answered 401).
"""

from devtools.simulator.clock import REGULAR, ClockSetting
from devtools.simulator.oauth import Grant, OAuthApp
from devtools.simulator.server import AlpacaSimulator
from devtools.simulator.tenants import SCENARIO_KINDS, Scenario, ScenarioKind, SimTenant

__all__ = [
    "REGULAR",
    "SCENARIO_KINDS",
    "AlpacaSimulator",
    "ClockSetting",
    "Grant",
    "OAuthApp",
    "Scenario",
    "ScenarioKind",
    "SimTenant",
]
