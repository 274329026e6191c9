"""The publisher role: the tick that publishes one ``user-sync`` message per eligible user
(:mod:`.tick`, :mod:`.bulk_publish`; streaming tenants once in ``RECONCILE_EVERY_TICKS``:
:mod:`.reconcile`), the roster it reads and the triggers that keep it (:mod:`.roster` and its
upkeep :mod:`.roster_upkeep`; the roster's layout, verdicts and reading are shared with the
stream gateway: :mod:`agenttrader.roster_layout`, :mod:`agenttrader.roster_verdict`,
:mod:`agenttrader.roster_read`), the kill-switch audit (:mod:`.kill_switch`); entry points in
:mod:`.main`."""
