"""The publisher role: the tick that publishes one ``user-sync`` message per eligible user
(:mod:`.tick`, :mod:`.bulk_publish`), the roster it reads and the triggers that keep it
(:mod:`.roster`; its layout, verdicts, read and upkeep in :mod:`.roster_layout`,
:mod:`.roster_verdict`, :mod:`.roster_read`, :mod:`.roster_upkeep`), the kill-switch audit
(:mod:`.kill_switch`); entry points in :mod:`.main`."""
