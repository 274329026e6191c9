"""Adapter of the ``sync_user`` worker."""
