"""Adapters of the functions that publish ``user-sync`` messages."""
