"""The accounts role: onboarding (:mod:`.onboarding`), deleting a tenant's data
(:mod:`.deletion`), the legacy migration (:mod:`.migration`) and a tenant's key changes
(:mod:`.key_changes`); the entry points ``onboard_user``, ``delete_account``,
``migrate_legacy_data`` and ``on_alpaca_secret_written`` in :mod:`.main`."""
