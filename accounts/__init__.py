"""The accounts role: onboarding (:mod:`.onboarding`), deleting a tenant's data
(:mod:`.deletion`), the legacy migration (:mod:`.migration`), a tenant's key changes
(:mod:`.key_changes`), Alpaca OAuth connections (:mod:`.connections`, the code exchange in
:mod:`.alpaca_oauth`) and the first sync of new credentials (:mod:`.first_sync`); the entry
points ``onboard_user``, ``delete_account``, ``connect_alpaca``, ``disconnect_alpaca``,
``migrate_legacy_data`` and ``on_alpaca_secret_written`` in :mod:`.main`."""
