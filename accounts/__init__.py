"""Adapters of the account callables: ``onboard_user`` and ``migrate_legacy_data``."""
