"""Fault-injection suite: one pulse over many simulated tenants through the local stack while
Alpaca fails, keys break, the worker is killed, deliveries are duplicated, replays race the
schedule and kill-switches flip; then invariants over what the pipeline left behind.

``python -m chaos.run --tenants 300`` (``make chaos``) runs it; ``tests/integration/
test_chaos.py`` runs it small. :mod:`chaos.faults` plans and injects the faults,
:mod:`chaos.invariants` holds what must be true at the end.
"""
